"""One dynamic shovel: consume from the source, publish to the destination, acknowledge at the
source as ``ack-mode`` says (rabbit_amqp091_shovel), restart after ``reconnect-delay``."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

from aiormq.abc import AbstractChannel, AbstractConnection, DeliveredMessage
from pamqp.commands import Basic

from amqp_server.plugin_api import NodeContext
from plugins.shovel.definition import ShovelSpec
from plugins.shovel.link import (
    Link,
    bind_queue,
    close_quietly,
    connect,
    consume,
    declare_queue,
    ensure_queue,
    first_failure,
)
from plugins.shovel.uri import Endpoint

CANCELLED = object()  # the broker cancelled the source consumer (its queue was deleted)


class ConsumerCancelled(Exception):
    pass


class Shovel(Link):
    def __init__(self, node: NodeContext, spec: ShovelSpec, log: logging.Logger) -> None:
        super().__init__(log, f"shovel '{spec.name}' in vhost '{spec.vhost}'")
        self.node = node
        self.spec = spec
        self.src_uri: Endpoint | None = None  # while running: the ends it is connected to
        self.dest_uri: Endpoint | None = None

    def restart_delay(self) -> float | None:
        """rabbit_shovel_dyn_worker_sup: restarted after a positive whole number of seconds only."""
        delay = self.spec.reconnect_delay
        return delay if isinstance(delay, int) and delay > 0 else None

    def failed(self, error: BaseException) -> None:
        """A shovel that never got running stays "starting" (RabbitMQ's worker fails in init)."""
        self.set_status("terminated" if self.status == "running" else "starting", error)

    async def finished(self) -> None:
        """delete-after reached: the shovel deletes its own parameter, as RabbitMQ's does."""
        self.log.info("%s: done (delete-after), deleting it", self.what)
        await self.node.clear_parameter(self.spec.vhost, "shovel", self.spec.name)

    async def session(self) -> bool:
        spec = self.spec
        src_uri, dest_uri = random.choice(spec.src_uris), random.choice(spec.dest_uris)
        source: AbstractConnection | None = None
        dest: AbstractConnection | None = None
        try:
            source = await connect(src_uri, self.node, f"Shovel {spec.name}")
            dest = await connect(dest_uri, self.node, f"Shovel {spec.name}")
            queue, count = await self._declare_source(source)
            if spec.dest_queue is not None:
                await ensure_queue(dest, spec.dest_queue, spec.dest_queue_args)
            remaining = count if spec.delete_after == "queue-length" else spec.delete_after
            if remaining == 0:
                return True
            src_channel = await source.channel(publisher_confirms=False)
            dest_channel = await dest.channel(publisher_confirms=spec.ack_mode == "on-confirm")
            if spec.ack_mode != "no-ack":
                await src_channel.basic_qos(prefetch_count=spec.prefetch_count)
            inbox: asyncio.Queue[Any] = asyncio.Queue()
            src_channel.on_consumer_cancel_callbacks.add(lambda _frame: inbox.put_nowait(CANCELLED))
            await consume(src_channel, queue, inbox.put, no_ack=spec.ack_mode == "no-ack",
                          arguments=spec.src_consumer_args or None)  # fmt: skip
            self.src_uri, self.dest_uri = src_uri, dest_uri
            self.set_status("running")
            limit = remaining if isinstance(remaining, int) else None
            forward = self._forward(inbox, src_channel, dest_channel, limit)
            error = await first_failure(
                forward, source.closing, dest.closing, src_channel.closing, dest_channel.closing
            )
            if error is None and limit is not None:
                return True
            raise error or ConnectionError("closed")
        finally:
            await close_quietly(source, dest)

    async def _declare_source(self, source: AbstractConnection) -> tuple[str, int]:
        """The queue to consume and its message count: the named queue (made if missing), or a
        private queue bound to the source exchange."""
        spec = self.spec
        if spec.src_queue is not None:
            return spec.src_queue, await ensure_queue(source, spec.src_queue, spec.src_queue_args)
        channel = await source.channel(publisher_confirms=False)
        queue = (await declare_queue(channel, "", exclusive=True)).queue
        await bind_queue(channel, queue, spec.src_exchange or "", spec.src_exchange_key, {})
        return queue, 0

    async def _forward(self, inbox: asyncio.Queue[Any], src: AbstractChannel, dest: AbstractChannel,
                       limit: int | None) -> None:  # fmt: skip
        """Move messages until ``limit`` (if any) have been moved and settled. On-confirm
        publishes are pipelined: each is acked at the source when its confirm arrives (nacked,
        for requeueing, when the destination nacks it); a failed one ends the session through
        the inbox."""
        spec = self.spec
        confirming: set[asyncio.Task[None]] = set()

        def settled(task: asyncio.Task[None]) -> None:
            confirming.discard(task)
            if not task.cancelled() and task.exception() is not None:
                inbox.put_nowait(task.exception())

        moved = 0
        try:
            while limit is None or moved < limit:
                message = await inbox.get()
                if message is CANCELLED:
                    raise ConsumerCancelled("consumer cancelled by the source broker")
                if isinstance(message, BaseException):
                    raise message
                moved += 1
                exchange, routing_key, properties = self._addressed(message)
                tag = message.delivery.delivery_tag
                if spec.ack_mode == "on-confirm":
                    task = asyncio.ensure_future(self._publish_confirmed(src, dest, tag, message.body, exchange,
                                                                         routing_key, properties))  # fmt: skip
                    confirming.add(task)
                    task.add_done_callback(settled)
                else:
                    await dest.basic_publish(message.body, exchange=exchange, routing_key=routing_key,
                                             properties=properties)  # fmt: skip
                    if spec.ack_mode == "on-publish":
                        await src.basic_ack(tag)
            while confirming:
                await asyncio.wait(set(confirming))
            while not inbox.empty():  # a confirm that failed after the last message
                if isinstance(failed := inbox.get_nowait(), BaseException):
                    raise failed
        finally:
            for task in confirming:
                task.cancel()

    @staticmethod
    async def _publish_confirmed(src: AbstractChannel, dest: AbstractChannel, tag: int, body: bytes,
                                 exchange: str, routing_key: str, properties: Basic.Properties) -> None:  # fmt: skip
        confirm = await dest.basic_publish(
            body, exchange=exchange, routing_key=routing_key, properties=properties
        )
        if isinstance(confirm, Basic.Ack):
            await src.basic_ack(tag)
        else:
            await src.basic_nack(tag, requeue=True)

    def _addressed(self, message: DeliveredMessage) -> tuple[str, str, Basic.Properties]:
        """Where the message goes and its properties (rabbit_shovel_parameters' PubFun and
        PubPropsFun): the destination queue or exchange and key, else where it was published;
        publish properties set; the x-shovelled and timestamp headers when asked for."""
        spec = self.spec
        delivery = message.delivery
        exchange = "" if spec.dest_queue is not None else spec.dest_exchange
        routing_key = spec.dest_queue if spec.dest_queue is not None else spec.dest_exchange_key
        properties = message.header.properties
        for key, value in spec.publish_properties.items():
            setattr(properties, key, value)
        if spec.add_forward_headers or spec.add_timestamp_header:
            headers = dict(properties.headers or {})
            if spec.add_forward_headers:
                headers["x-shovelled"] = [self._forward_header(), *_list(headers.get("x-shovelled"))]
            if spec.add_timestamp_header:
                headers["x-shovelled-timestamp"] = int(time.time())
            properties.headers = headers
        return (
            delivery.exchange if exchange is None else exchange,
            delivery.routing_key if routing_key is None else routing_key,
            properties,
        )

    def _forward_header(self) -> dict[str, str]:
        """rabbit_shovel_util:update_headers' table, in its order."""
        spec = self.spec
        assert self.src_uri is not None and self.dest_uri is not None
        table = {"shovelled-by": self.node.cluster_name, "shovel-type": "dynamic", "shovel-name": spec.name,
                 "shovel-vhost": spec.vhost, "src-uri": self.src_uri.shown, "dest-uri": self.dest_uri.shown}  # fmt: skip
        table.update(spec.source_details)
        table.update(spec.dest_details)
        return table


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []
