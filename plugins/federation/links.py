"""Federation links: an exchange link (messages published to the upstream exchange reach the
federated exchange) and a queue link (a federated queue pulls from the upstream queue while it
has consumers and nothing ready)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
from typing import Any

from aiormq.abc import AbstractChannel, AbstractConnection, DeliveredMessage
from pamqp.commands import Basic, Exchange, Queue

from amqp_server.plugin_api import QUEUE, Destination, Message, NodeContext, new_message
from plugins.federation.upstreams import Upstream
from plugins.shovel.link import (
    Link,
    bind_queue,
    close_quietly,
    connect,
    consume,
    declare_queue,
    ensure_queue,
    first_failure,
    unchecked,
)
from plugins.shovel.uri import Endpoint

RECEIVED_FROM = "x-received-from"
PROPERTY_NAMES = ("content_type", "content_encoding", "headers", "delivery_mode", "priority", "correlation_id",
                  "reply_to", "expiration", "message_id", "timestamp", "message_type", "user_id", "app_id",
                  "cluster_id")  # fmt: skip
CLEANUP_TIMEOUT = 2  # seconds a stopping link gives the upstream to delete its queue
EMPTY_POLL = 0.05  # seconds between looks at a federated queue that has consumers but messages ready


class FederationLink(Link):
    """What both kinds share: the upstream connection, the x-received-from header, republishing
    locally, the status row."""

    kind = ""

    def __init__(self, node: NodeContext, vhost: str, name: str, upstream: Upstream, policy: str,
                 log: logging.Logger) -> None:  # fmt: skip
        super().__init__(
            log, f"federation {self.kind} link {name} in vhost '{vhost}' from upstream '{upstream.name}'"
        )
        self.node = node
        self.vhost = vhost
        self.name = name  # the federated exchange or queue
        self.upstream = upstream
        self.policy = policy
        self.endpoint: Endpoint = upstream.uris[0]
        self.channel: AbstractChannel | None = None
        self.local = node.vhost(vhost)

    @property
    def id(self) -> str:
        """A short stable id for the link, as RabbitMQ shows one."""
        key = f"{self.kind}/{self.vhost}/{self.name}/{self.upstream.name}"
        return hashlib.sha1(key.encode()).hexdigest()[:8]

    def restart_delay(self) -> float | None:
        delay = self.upstream.reconnect_delay
        return delay if delay > 0 else None

    def failed(self, error: BaseException) -> None:
        self.set_status("error", error)

    async def session(self) -> bool:
        self.endpoint = random.choice(self.upstream.uris)
        connection: AbstractConnection | None = None
        try:
            connection = await connect(self.endpoint, self.node,
                                       f"Federation link (upstream: {self.upstream.name}, policy: {self.policy})")  # fmt: skip
            self.channel = channel = await connection.channel(publisher_confirms=False)
            await self.prepare(channel)
            if self.upstream.ack_mode != "no-ack":
                await channel.basic_qos(prefetch_count=self.upstream.prefetch_count)
            self.set_status("running")
            error = await first_failure(self.run(channel), connection.closing, channel.closing)
            raise error or ConnectionError("closed")
        finally:
            self.channel = None
            await close_quietly(connection)

    async def prepare(self, channel: AbstractChannel) -> None:
        raise NotImplementedError

    async def run(self, channel: AbstractChannel) -> None:
        """What the link does while it is up."""
        raise NotImplementedError

    def local_message(self, message: DeliveredMessage, exchange: str, routing_key: str) -> Message | None:
        """The message to republish, with this hop prepended to x-received-from; None when it
        has made ``max-hops`` hops already (exchange links)."""
        properties: Basic.Properties = message.header.properties
        headers = dict(properties.headers or {})
        hops = headers.get(RECEIVED_FROM)
        hops = list(hops) if isinstance(hops, list | tuple) else []
        if self.kind == "exchange" and len(hops) >= self.upstream.max_hops:
            return None
        server = getattr(message.channel.connection, "server_properties", None) or {}
        cluster = server.get("cluster_name", "")
        this_hop = {"uri": self.endpoint.shown, self.kind: self.upstream_name, "redelivered": bool(message.delivery.redelivered),
                    "cluster-name": cluster.decode() if isinstance(cluster, bytes) else cluster,
                    "vhost": self.endpoint.vhost}  # fmt: skip
        headers[RECEIVED_FROM] = [this_hop, *hops]
        values: dict[str, Any] = {name: getattr(properties, name) for name in PROPERTY_NAMES}
        values["headers"] = headers
        if not self.upstream.trust_user_id:
            values["user_id"] = None
        return new_message(
            exchange, routing_key, message.body, {k: v for k, v in values.items() if v is not None}
        )

    @property
    def upstream_name(self) -> str:
        raise NotImplementedError

    async def settle(self, message: DeliveredMessage) -> None:
        if self.upstream.ack_mode != "no-ack" and self.channel is not None:
            await self.channel.basic_ack(message.delivery.delivery_tag)


class ExchangeLink(FederationLink):
    """Bindings of the federated exchange X are mirrored onto the upstream queue
    ``federation: X -> <node>``, bound to the upstream exchange; what arrives is republished to X."""

    kind = "exchange"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bound: dict[tuple[str, str], dict[str, Any]] = {}  # (routing key, arguments) on the upstream
        self._syncing = asyncio.Lock()

    @property
    def upstream_name(self) -> str:
        return self.upstream.exchange or self.name

    @property
    def queue(self) -> str:
        """The upstream queue (rabbit_federation_exchange_link:upstream_queue_name): the
        downstream exchange and vhost are named when they differ from the upstream's."""
        if self.vhost != self.endpoint.vhost:
            suffix = f":{self.vhost}:{self.name}"
        else:
            suffix = "" if self.name == self.upstream_name else f":{self.name}"
        return f"federation: {self.upstream_name} -> {self.node.cluster_name}{suffix}"

    async def stop(self) -> None:
        """A link shut down deletes its upstream queue, unless resource-cleanup-mode is never."""
        channel = self.channel
        if channel is not None and not channel.is_closed and self.upstream.resource_cleanup_mode != "never":
            with contextlib.suppress(Exception):  # the upstream may be gone already
                await asyncio.wait_for(
                    channel.rpc(unchecked(Queue.Delete, queue=self.queue)), CLEANUP_TIMEOUT
                )
        await super().stop()

    async def prepare(self, channel: AbstractChannel) -> None:
        await channel.rpc(unchecked(Exchange.Declare, exchange=self.upstream_name, passive=True))
        arguments: dict[str, Any] = {"x-internal-purpose": "federation"}
        if self.upstream.expires is not None:
            arguments["x-expires"] = self.upstream.expires
        if self.upstream.message_ttl is not None:
            arguments["x-message-ttl"] = self.upstream.message_ttl
        await declare_queue(channel, self.queue, durable=True, arguments=arguments)
        self.bound = {}
        await self.sync_bindings()

    async def run(self, channel: AbstractChannel) -> None:
        await consume(channel, self.queue, self._received, no_ack=self.upstream.ack_mode == "no-ack")
        await asyncio.Future()

    async def sync_bindings(self) -> None:
        """Bind the upstream queue with each (routing key, arguments) the federated exchange's
        bindings use; unbind what none uses any more."""
        async with self._syncing:
            channel = self.channel
            if channel is None:
                return  # the next session binds from scratch
            wanted = {(b.routing_key, repr(sorted(b.arguments.items()))): dict(b.arguments)
                      for b in self.node.bindings(self.vhost, self.name)}  # fmt: skip
            for key in wanted.keys() - self.bound.keys():
                await bind_queue(channel, self.queue, self.upstream_name, key[0], wanted[key])
                self.bound[key] = wanted[key]
            for key in self.bound.keys() - wanted.keys():
                await bind_queue(
                    channel, self.queue, self.upstream_name, key[0], self.bound.pop(key), bind=False
                )

    async def _received(self, message: DeliveredMessage) -> None:
        local = self.local_message(message, self.name, message.delivery.routing_key or "")
        if local is not None:
            self.local.publish(self.name, local)
        await self.settle(message)


class QueueLink(FederationLink):
    """Consumes from the upstream queue while the federated queue has consumers and no message
    ready, and enqueues what arrives on the federated queue."""

    kind = "queue"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wake = asyncio.Event()

    @property
    def upstream_name(self) -> str:
        return self.upstream.queue or self.name

    @property
    def consumer_tag(self) -> str:
        return self.upstream.consumer_tag or f"federation-link-{self.upstream.name}"

    async def prepare(self, channel: AbstractChannel) -> None:
        assert channel.connection is not None
        await ensure_queue(channel.connection, self.upstream_name, {})

    async def run(self, channel: AbstractChannel) -> None:
        consuming = False
        while True:
            stats = self.node.queue_stats(self.vhost, self.name) or {}
            has_consumers = stats.get("consumers", 0) > 0
            wanted = has_consumers and stats.get("messages_ready", 0) == 0
            if wanted and not consuming:
                await consume(channel, self.upstream_name, self._received, consumer_tag=self.consumer_tag,
                              no_ack=self.upstream.ack_mode == "no-ack")  # fmt: skip
            elif consuming and not wanted:
                await channel.basic_cancel(self.consumer_tag)
            consuming = wanted
            self.wake.clear()
            # A consumer coming or going wakes the link (consumer events); while there are
            # consumers, whether the queue has emptied is looked at again shortly.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), EMPTY_POLL if has_consumers else None)

    async def _received(self, message: DeliveredMessage) -> None:
        local = self.local_message(message, "", self.name)
        if local is not None:
            self.local.deliver((Destination(QUEUE, self.name),), local)
        await self.settle(message)
