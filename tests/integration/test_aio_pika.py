"""aio-pika (asyncio, over aiormq) against the broker: robust connections, confirms, the queue
iterator, an RPC round trip through a reply queue, QoS, nack/requeue, returns and transactions."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aio_pika
import aiormq
import pytest
from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import DeliveryError, PublishError


async def connect(broker: Any, **kw: Any) -> aio_pika.abc.AbstractRobustConnection:
    return await aio_pika.connect_robust(broker.url, **kw)


async def ready_count(channel: aio_pika.abc.AbstractChannel, name: str) -> int:
    """queue.declare passive: the ready count, and a round trip on ``channel``.

    (aio-pika's own passive declare answers from its cache for a queue it declared.)
    """
    underlay = await channel.get_underlay_channel()
    return (await underlay.queue_declare(name, passive=True)).message_count


async def test_declare_publish_with_confirms_and_consume_with_the_iterator(broker, unique):
    connection = await connect(broker)
    async with connection:
        channel = await connection.channel()  # publisher confirms on by default
        exchange = await channel.declare_exchange(unique, aio_pika.ExchangeType.DIRECT, auto_delete=True)
        queue = await channel.declare_queue(unique, exclusive=True)
        await queue.bind(exchange, routing_key="k")
        for i in range(10):
            confirmation = await exchange.publish(
                aio_pika.Message(b"m%d" % i, content_type="text/plain", headers={"i": i}), routing_key="k"
            )
            assert isinstance(confirmation, aiormq.spec.Basic.Ack)
        assert await ready_count(channel, unique) == 10
        received = []
        async with queue.iterator() as messages:
            async for message in messages:
                async with message.process():
                    received.append(
                        (message.body, message.content_type, message.headers["i"], message.redelivered)
                    )
                if len(received) == 10:
                    break
        assert received == [(b"m%d" % i, "text/plain", i, False) for i in range(10)]
        assert await ready_count(channel, unique) == 0


async def test_mandatory_unroutable_is_returned_before_its_ack(broker, unique):
    connection = await connect(broker)
    async with connection:
        channel = await connection.channel()
        # aiormq resolves a publish with the returned message only if the return comes first.
        result = await channel.default_exchange.publish(
            aio_pika.Message(b"lost", message_id="m1"), routing_key=unique, mandatory=True
        )
        assert isinstance(result, aiormq.abc.DeliveredMessage)
        assert (result.delivery.reply_code, result.delivery.reply_text, result.body) == (
            312,
            "NO_ROUTE",
            b"lost",
        )
        strict = await connection.channel(on_return_raises=True)
        with pytest.raises(PublishError):
            await strict.default_exchange.publish(
                aio_pika.Message(b"lost", message_id="m2"), routing_key=unique
            )


async def test_refused_publish_is_nacked(broker, unique):
    connection = await connect(broker)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(
            unique, exclusive=True, arguments={"x-max-length": 1, "x-overflow": "reject-publish"}
        )
        await channel.default_exchange.publish(aio_pika.Message(b"a"), routing_key=unique)
        with pytest.raises(DeliveryError) as raised:
            await channel.default_exchange.publish(aio_pika.Message(b"b"), routing_key=unique)
        assert isinstance(raised.value.frame, aiormq.spec.Basic.Nack)


async def test_rpc_through_a_reply_queue(broker, unique):
    connection = await connect(broker)
    async with connection:
        server_channel = await connection.channel()
        requests = await server_channel.declare_queue(unique, auto_delete=True)

        async def serve(message: AbstractIncomingMessage) -> None:
            async with message.process():
                reply = aio_pika.Message(message.body.upper(), correlation_id=message.correlation_id)
                await server_channel.default_exchange.publish(reply, routing_key=message.reply_to)

        await requests.consume(serve)

        client_channel = await connection.channel()
        replies = await client_channel.declare_queue("", exclusive=True)  # aio-pika names it itself
        pending: dict[str, asyncio.Future[bytes]] = {}

        async def on_reply(message: AbstractIncomingMessage) -> None:
            pending.pop(message.correlation_id).set_result(message.body)

        await replies.consume(on_reply, no_ack=True)

        async def call(text: bytes) -> bytes:
            correlation_id = uuid.uuid4().hex
            future = pending[correlation_id] = asyncio.get_running_loop().create_future()
            request = aio_pika.Message(text, correlation_id=correlation_id, reply_to=replies.name)
            await client_channel.default_exchange.publish(request, routing_key=unique)
            return await asyncio.wait_for(future, 5)

        assert await asyncio.gather(*(call(b"req%d" % i) for i in range(20))) == [
            b"REQ%d" % i for i in range(20)
        ]


async def test_qos_limits_unacked_deliveries(broker, unique):
    connection = await connect(broker)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=2)
        queue = await channel.declare_queue(unique, auto_delete=True)
        for i in range(5):
            await channel.default_exchange.publish(aio_pika.Message(b"%d" % i), routing_key=unique)
        held: list[AbstractIncomingMessage] = []
        arrived = asyncio.Event()

        async def hold(message: AbstractIncomingMessage) -> None:
            held.append(message)
            arrived.set()

        await queue.consume(hold)
        while len(held) < 2:
            await asyncio.wait_for(arrived.wait(), 5)
            arrived.clear()
        assert await ready_count(channel, unique) == 3  # the window is full: no third delivery
        assert [m.body for m in held] == [b"0", b"1"]
        await held[0].ack()
        while len(held) < 3:
            await asyncio.wait_for(arrived.wait(), 5)
            arrived.clear()
        assert [m.body for m in held] == [b"0", b"1", b"2"]
        assert await ready_count(channel, unique) == 2


async def test_nack_and_reject_with_and_without_requeue(broker, unique):
    connection = await connect(broker)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(unique, exclusive=True)
        for body in (b"a", b"b"):
            await channel.default_exchange.publish(aio_pika.Message(body), routing_key=unique)
        first = await queue.get()
        assert (first.body, first.redelivered) == (b"a", False)
        await first.nack(requeue=True)
        again = await queue.get()
        assert (again.body, again.redelivered) == (b"a", True)  # back at the head
        await again.reject(requeue=False)
        second = await queue.get()
        await second.nack(requeue=False)
        assert await queue.get(fail=False) is None


async def test_transaction_commit_and_rollback(broker, unique):
    connection = await connect(broker)
    async with connection:
        channel = await connection.channel(publisher_confirms=False)
        queue = await channel.declare_queue(unique, exclusive=True)
        async with channel.transaction():
            await channel.default_exchange.publish(aio_pika.Message(b"kept"), routing_key=unique)
            assert await ready_count(channel, unique) == 0
        assert await ready_count(channel, unique) == 1
        transaction = channel.transaction()
        await transaction.select()
        await channel.default_exchange.publish(aio_pika.Message(b"dropped"), routing_key=unique)
        await transaction.rollback()
        message = await queue.get(no_ack=True)
        assert message.body == b"kept"
        assert await queue.get(fail=False) is None


async def test_transaction_on_a_confirm_channel_is_refused(broker):
    connection = await connect(broker)
    async with connection:
        channel = await connection.channel(publisher_confirms=False)
        underlay = await channel.get_underlay_channel()
        await underlay.confirm_delivery()
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed) as raised:
            await underlay.tx_select()
        assert raised.value.args == ("PRECONDITION_FAILED - cannot switch from confirm to tx mode",)


async def test_robust_connection_recovers_its_consumer(broker, unique):
    name = f"robust-{unique}"
    connection = await connect(broker, client_properties={"connection_name": name}, reconnect_interval=0.1)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(unique, auto_delete=False)
        got: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_message(message: AbstractIncomingMessage) -> None:
            await message.ack()
            await got.put(message.body)

        await queue.consume(on_message)
        await channel.default_exchange.publish(aio_pika.Message(b"before"), routing_key=unique)
        assert await asyncio.wait_for(got.get(), 5) == b"before"
        reconnected = asyncio.Event()
        connection.reconnect_callbacks.add(lambda *_: reconnected.set())

        def force_close() -> int:
            mine = [
                c for c in broker.broker.connections if c.client_properties.get("connection_name") == name
            ]
            for server_side in mine:
                server_side.force_close("closed by a test")
            return len(mine)

        assert broker.call(force_close) == 1
        await asyncio.wait_for(reconnected.wait(), 10)
        await channel.default_exchange.publish(aio_pika.Message(b"after"), routing_key=unique)
        assert await asyncio.wait_for(got.get(), 5) == b"after"
        await queue.delete(if_unused=False, if_empty=False)
