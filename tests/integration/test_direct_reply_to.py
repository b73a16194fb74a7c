"""Direct reply-to: the ``amq.rabbitmq.reply-to`` pseudo-queue, as RabbitMQ 3.10 does it (recorded against RabbitMQ 3.10.8): RPC with pika and aio-pika, the 406s, the
rewritten reply_to, declare-ok of the pseudo-queue, dropped replies, mandatory replies (which
RabbitMQ both delivers and returns 312) and the reply's delivery tag."""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
import pika
from helpers import closes, wait_until
from pamqp import commands
from pamqp.body import ContentBody
from pamqp.header import ContentHeader
from rawamqp import RawClient

REPLY_TO = "amq.rabbitmq.reply-to"


def serve_one(broker: Any, queue: str, seen: list[Any], **reply_kw: Any) -> None:
    """A responder on its own connection: answer one request on ``queue`` via its reply_to."""
    connection = broker.connect()
    try:
        channel = connection.channel()
        for method, properties, body in channel.consume(queue, inactivity_timeout=3):
            assert method is not None, "no request came"
            seen.append(properties.reply_to)
            channel.basic_publish(
                "",
                properties.reply_to,
                b"re:" + body,
                pika.BasicProperties(correlation_id=properties.correlation_id),
                **reply_kw,
            )
            channel.basic_ack(method.delivery_tag)
            break
        channel.cancel()
    finally:
        connection.close()


def test_pika_rpc_round_trip(broker, unique):
    connection = broker.connect()
    channel = connection.channel()
    channel.queue_declare(unique, auto_delete=True)
    replies = []
    channel.basic_consume(REPLY_TO, lambda _ch, m, p, b: replies.append((m, p, b)), auto_ack=True)
    channel.basic_publish(
        "", unique, b"ping", pika.BasicProperties(reply_to=REPLY_TO, correlation_id="c-1", message_id="m-1")
    )
    seen: list[str] = []
    serve_one(broker, unique, seen)
    wait_until(connection, lambda: replies, limit=3.0)
    method, properties, body = replies[0]
    reply_to = seen[0]
    assert reply_to.startswith(REPLY_TO + ".") and len(reply_to) > len(REPLY_TO) + 10
    assert (body, properties.correlation_id) == (b"re:ping", "c-1")
    assert (method.exchange, method.routing_key, method.redelivered) == ("", reply_to, False)
    connection.close()


def test_rewrite_keeps_every_other_property(broker, unique):
    connection = broker.connect()
    channel = connection.channel()
    channel.queue_declare(unique, exclusive=True)
    channel.basic_consume(REPLY_TO, lambda *_: None, auto_ack=True)
    sent = pika.BasicProperties(
        content_type="text/plain",
        content_encoding="utf-8",
        headers={"h": "v", "n": 7},
        delivery_mode=2,
        priority=3,
        correlation_id="cid",
        reply_to=REPLY_TO,
        expiration="60000",
        message_id="mid",
        timestamp=1700000000,
        type="t",
        app_id="app",
    )
    channel.basic_publish("", unique, b"body", sent)
    method, got, body = channel.basic_get(unique, auto_ack=True)
    assert got.reply_to.startswith(REPLY_TO + ".") and body == b"body"
    got.reply_to = REPLY_TO
    assert vars(got) == vars(sent)
    connection.close()


async def test_aio_pika_rpc_round_trip(broker, unique):
    connection = await aio_pika.connect_robust(broker.url)
    async with connection:
        server_channel = await connection.channel()
        requests = await server_channel.declare_queue(unique, auto_delete=True)

        async def serve(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                await server_channel.default_exchange.publish(
                    aio_pika.Message(b"re:" + message.body, correlation_id=message.correlation_id),
                    routing_key=message.reply_to,
                )

        await requests.consume(serve)
        client_channel = await connection.channel()
        reply_queue = await client_channel.get_queue(REPLY_TO, ensure=True)  # declare-ok: it exists
        replies: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
        await reply_queue.consume(replies.put, no_ack=True)
        for n in range(3):
            await client_channel.default_exchange.publish(
                aio_pika.Message(b"q%d" % n, correlation_id=f"c{n}", reply_to=REPLY_TO), routing_key=unique
            )
        got = [await asyncio.wait_for(replies.get(), 5) for _ in range(3)]
        assert sorted((m.correlation_id, m.body) for m in got) == [(f"c{n}", b"re:q%d" % n) for n in range(3)]
        assert all(m.routing_key.startswith(REPLY_TO + ".") for m in got)


def test_reply_consumer_must_be_no_ack(broker):
    raw = RawClient.connected(broker.port)
    close = raw.rpc(1, commands.Basic.Consume(queue=REPLY_TO, no_ack=False), commands.Channel.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        406,
        "PRECONDITION_FAILED - reply consumer cannot acknowledge",
        60,
        20,
    )
    raw.close()


def test_second_reply_consumer_on_a_channel(broker):
    connection = broker.connect()
    channel = connection.channel()
    tag = channel.basic_consume(REPLY_TO, lambda *_: None, auto_ack=True)
    assert tag
    code_text = closes(channel, lambda: channel.basic_consume(REPLY_TO, lambda *_: None, auto_ack=True))
    assert code_text == (406, "PRECONDITION_FAILED - reply consumer already set")
    # Another channel may have its own.
    other = connection.channel()
    other.basic_consume(REPLY_TO, lambda *_: None, auto_ack=True, exclusive=True, consumer_tag="mine")
    connection.close()


def test_request_without_reply_consumer_is_refused(broker, unique):
    raw = RawClient.connected(broker.port)
    raw.publish(1, "", unique, b"q", commands.Basic.Properties(reply_to=REPLY_TO))
    close = raw.expect(1, commands.Channel.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        406,
        "PRECONDITION_FAILED - fast reply consumer does not exist",
        60,
        40,
    )
    raw.close()


def test_request_after_cancel_is_refused_and_suffixed_reply_to_passes_unchanged(broker, unique):
    connection = broker.connect()
    channel = connection.channel()
    channel.queue_declare(unique, exclusive=True)
    tag = channel.basic_consume(REPLY_TO, lambda *_: None, auto_ack=True)
    channel.basic_cancel(tag)
    channel.basic_publish("", unique, b"q", pika.BasicProperties(reply_to=REPLY_TO + ".abc"))
    _method, properties, _body = channel.basic_get(unique, auto_ack=True)
    assert properties.reply_to == REPLY_TO + ".abc"
    code_text = closes(
        channel, lambda: channel.basic_publish("", unique, b"q", pika.BasicProperties(reply_to=REPLY_TO))
    )
    assert code_text == (406, "PRECONDITION_FAILED - fast reply consumer does not exist")
    connection.close()


def test_declare_of_the_pseudo_queue(broker, unique):
    connection = broker.connect()
    channel = connection.channel()
    for passive in (True, False):  # with no reply consumer anywhere
        ok = channel.queue_declare(REPLY_TO, passive=passive).method
        assert (ok.queue, ok.message_count, ok.consumer_count) == (REPLY_TO, 0, 1)
    channel.queue_declare(unique, exclusive=True)
    channel.basic_consume(REPLY_TO, lambda *_: None, auto_ack=True)
    channel.basic_publish("", unique, b"q", pika.BasicProperties(reply_to=REPLY_TO))
    reply_to = channel.basic_get(unique, auto_ack=True)[1].reply_to
    other = broker.connect()
    ok = other.channel().queue_declare(reply_to, passive=True).method
    assert (ok.queue, ok.message_count, ok.consumer_count) == (reply_to, 0, 1)
    connection.close()  # the reply consumer goes: its name no longer exists
    for name in (reply_to, REPLY_TO + ".bogus", REPLY_TO + "x"):
        probe = other.channel()
        code_text = closes(probe, lambda name=name, probe=probe: probe.queue_declare(name, passive=True))
        assert code_text == (404, f"NOT_FOUND - no queue '{name}' in vhost '/'")
    other.close()


def reply_address(raw: RawClient, queue: str, channel: int = 1) -> str:
    """Publish a request from ``channel`` (which has a reply consumer) and read its reply_to."""
    raw.publish(channel, "", queue, b"req", commands.Basic.Properties(reply_to=REPLY_TO))
    raw.rpc(channel, commands.Basic.Get(queue=queue, no_ack=True), commands.Basic.GetOk)
    header = raw.expect(channel, ContentHeader)
    raw.expect(channel, ContentBody)
    return header.properties.reply_to


def test_mandatory_reply_is_delivered_and_also_returned(broker, unique):
    """RabbitMQ 3.10 routes replies outside the queue list: a mandatory reply is delivered and
    the responder gets basic.return 312 (and its confirm). Without mandatory: just the ack."""
    requester = RawClient.connected(broker.port)
    requester.rpc(1, commands.Queue.Declare(queue=unique, exclusive=True), commands.Queue.DeclareOk)
    requester.rpc(1, commands.Basic.Consume(queue=REPLY_TO, consumer_tag="mine", no_ack=True), commands.Basic.ConsumeOk)
    reply_to = reply_address(requester, unique)
    responder = RawClient.connected(broker.port)
    responder.rpc(1, commands.Confirm.Select(), commands.Confirm.SelectOk)
    responder.publish(1, "", reply_to, b"reply", commands.Basic.Properties(correlation_id="c1"), mandatory=True)
    returned = responder.expect(1, commands.Basic.Return)
    assert (returned.reply_code, returned.reply_text, returned.exchange, returned.routing_key) == (
        312,
        "NO_ROUTE",
        "",
        reply_to,
    )
    responder.expect(1, ContentHeader)
    assert responder.expect(1, ContentBody).value == b"reply"
    assert responder.expect(1, commands.Basic.Ack).delivery_tag == 1
    deliver = requester.expect(1, commands.Basic.Deliver)
    assert (deliver.consumer_tag, deliver.redelivered, deliver.exchange, deliver.routing_key) == (
        "mine",
        False,
        "",
        reply_to,
    )
    assert requester.expect(1, ContentHeader).properties.correlation_id == "c1"
    assert requester.expect(1, ContentBody).value == b"reply"
    responder.publish(1, "", reply_to, b"plain")
    assert responder.expect(1, commands.Basic.Ack).delivery_tag == 2  # no return first
    requester.expect(1, commands.Basic.Deliver)
    requester.close()
    responder.close()


def test_bogus_and_late_replies_are_dropped(broker, unique):
    requester = RawClient.connected(broker.port)
    requester.rpc(1, commands.Queue.Declare(queue=unique, exclusive=True), commands.Queue.DeclareOk)
    requester.rpc(1, commands.Basic.Consume(queue=REPLY_TO, no_ack=True), commands.Basic.ConsumeOk)
    reply_to = reply_address(requester, unique)
    requester.rpc(1, commands.Channel.Close(200, "bye", 0, 0), commands.Channel.CloseOk)  # the reply consumer goes
    responder = RawClient.connected(broker.port)
    responder.rpc(1, commands.Confirm.Select(), commands.Confirm.SelectOk)
    for seq, (exchange, key) in enumerate(
        [("", REPLY_TO + ".xxx"), ("", REPLY_TO), ("", reply_to), ("amq.direct", reply_to)], start=1
    ):
        responder.publish(1, exchange, key, b"r%d" % seq, mandatory=True)
        returned = responder.expect(1, commands.Basic.Return)
        assert (returned.reply_code, returned.exchange, returned.routing_key) == (312, exchange, key)
        responder.expect(1, ContentHeader)
        responder.expect(1, ContentBody)
        assert responder.expect(1, commands.Basic.Ack).delivery_tag == seq
    responder.publish(1, "", REPLY_TO + ".xxx", b"quiet")  # not mandatory: only the ack
    assert responder.expect(1, commands.Basic.Ack).delivery_tag == 5
    # The requester's connection got nothing: its next frame answers this round trip.
    requester.open_channel(2)
    requester.rpc(2, commands.Basic.Qos(), commands.Basic.QosOk)
    requester.close()
    responder.close()


def test_reply_delivery_tag_is_the_next_tag_but_not_used_up(broker, unique):
    """RabbitMQ sends a reply with the channel's next delivery tag without advancing it."""
    raw = RawClient.connected(broker.port)
    raw.rpc(1, commands.Queue.Declare(queue=unique, exclusive=True), commands.Queue.DeclareOk)
    raw.rpc(1, commands.Basic.Consume(queue=REPLY_TO, no_ack=True), commands.Basic.ConsumeOk)
    reply_to = reply_address(raw, unique)  # basic.get: tag 1
    tags = []
    for _ in range(2):
        raw.publish(1, "", reply_to, b"r")
        tags.append(raw.expect(1, commands.Basic.Deliver).delivery_tag)
        raw.expect(1, ContentHeader)
        raw.expect(1, ContentBody)
    raw.publish(1, "", unique, b"m")
    tags.append(raw.rpc(1, commands.Basic.Get(queue=unique, no_ack=True), commands.Basic.GetOk).delivery_tag)
    assert tags == [2, 2, 2]
    raw.close()
