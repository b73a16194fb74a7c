"""A queue whose home is another node: what this node builds for it when applying its metadata.

Every node applies the same metadata; the queue's record names its home node, and only that
node builds the real queue (queues.registry's type). The others build this proxy, which
forwards what the broker core asks of a queue over the cluster's link to the home node
(``cluster.queue_link``): publishes (settled when the home node has the message, on disk
when it must be), consumers (the home node delivers to a stand-in consumer that forwards
each delivery here; credit flows back), acks, requeues and rejects, basic.get and purge.
Counters (``message_count``, ``stats``) are the home node's, as it last reported them.

With no link to the home node (a node not clustered started under a new name, or the home
node is down) the queue is absent, as RabbitMQ has it: declare, bind, consume, get, purge
and delete answer ``NOT_FOUND - home node 'N' of durable queue 'q' in vhost '/' is down or
inaccessible`` (the vhost asks ``home_reachable``); unbinding, a metadata-only change, still
works. A publish routed to an absent queue is refused (a confirm is a nack). RabbitMQ 3.10
drops it and still confirms it, which loses a confirmed message; here the publisher is told.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from queues.base import Consumer, QueueEntry, QueueType, Settlement


class HomeLink(Protocol):
    """What a proxy needs of the link to its queue's home node (``cluster.queue_link``)."""

    def reachable(self, node: str) -> bool: ...

    def running_nodes(self) -> list[str]: ...

    def publish(self, queue: RemoteQueue, message: Any) -> bool | Settlement: ...

    def consume(self, queue: RemoteQueue, consumer: Consumer) -> Any: ...

    def subscribed(self, queue: RemoteQueue, consumer: Consumer) -> None: ...

    def cancel(self, queue: RemoteQueue, consumer: Consumer) -> None: ...

    def credit_changed(self, queue: RemoteQueue) -> None: ...

    def settle(self, queue: RemoteQueue, entries: Iterable[QueueEntry], outcome: int) -> None: ...

    async def call(self, queue: RemoteQueue, op: str, **args: Any) -> Any: ...

    def cast(self, queue: RemoteQueue, op: str, **args: Any) -> None: ...


#: Settlement outcomes sent home (the channel layer's ACKED, REQUEUED, REJECTED).
ACK, REQUEUE, REJECT = 0, 1, 2


class RemoteQueue(QueueType):
    """The proxy of a queue homed on another node (of the record's type, e.g. classic)."""

    is_remote = True

    def __init__(self, queue_type: str, link: HomeLink | None, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.type_name = queue_type  # type: ignore[misc]  # the real queue's type, for the admin surfaces
        self.link = link
        # The home node's last report of its counters (``stats``); empty until the first.
        self.reported: dict[str, Any] = {}
        # Consumers of this node on the queue -> the link's subscription of each.
        self.subscriptions: dict[Consumer, Any] = {}

    @property  # type: ignore[override]
    def home_reachable(self) -> bool:  # a property here: the base class's is a constant
        return self.link is not None and self.link.reachable(self.home_node)

    def stats(self) -> dict[str, Any]:
        if not self.home_reachable:
            return {"state": "down", "messages": 0, "messages_ready": 0, "messages_unacknowledged": 0, "consumers": 0}
        return {**self.reported, "state": "running"}

    def touch(self) -> None:
        if self.link is not None and self.home_reachable:
            self.link.cast(self, "touch")

    # -- publish and consume: forwarded home

    def publish(self, message: Any) -> bool | Settlement:
        if self.link is None:
            return False
        return self.link.publish(self, message)

    def get(self) -> QueueEntry | None:
        raise AssertionError("basic.get of a remote queue is asynchronous (fetch)")

    async def fetch(self, no_ack: bool) -> tuple[QueueEntry | None, int]:
        """basic.get at the home node: the entry (unacked here unless ``no_ack``) and the
        ready count left."""
        assert self.link is not None
        return await self.link.call(self, "get", no_ack=no_ack)  # type: ignore[no-any-return]

    async def counts(self) -> tuple[int, int]:
        """(ready messages, consumers) now, as queue.declare-ok reports them."""
        assert self.link is not None
        ready, consumers = await self.link.call(self, "counts")
        return ready, consumers

    async def purge_home(self) -> int:
        """queue.purge at the home node; how many messages it dropped."""
        assert self.link is not None
        return await self.link.call(self, "purge")  # type: ignore[no-any-return]

    def add_consumer(self, consumer: Consumer) -> Any:
        """Subscribe at the home node: returns what to await for its answer (a ChannelError
        when the home node refuses the consumer, e.g. the queue is in exclusive use)."""
        assert self.link is not None
        return self.link.consume(self, consumer)

    def subscribed(self, consumer: Consumer) -> None:
        """basic.consume-ok went out: deliveries may follow it."""
        if self.link is not None:
            self.link.subscribed(self, consumer)

    def remove_consumer(self, consumer: Consumer) -> None:
        if consumer in self.subscriptions and self.link is not None:
            self.link.cancel(self, consumer)

    def dispatch(self) -> None:
        """A consumer of this node got credit: the home node learns it (once per loop turn)."""
        if self.subscriptions and self.link is not None:
            self.link.credit_changed(self)

    def settle(self, entry: QueueEntry) -> None:
        if self.link is not None:
            self.link.settle(self, (entry,), ACK)

    def discard(self, entry: QueueEntry, reason: str) -> None:
        if self.link is not None:
            self.link.settle(self, (entry,), REJECT)

    def requeue(self, entries: Iterable[QueueEntry]) -> None:
        if self.link is not None:
            self.link.settle(self, entries, REQUEUE)

    def purge(self) -> int:
        """A purge from the admin surfaces: sent home; answers the last reported count."""
        count = self.message_count
        if self.link is not None and self.home_reachable:
            self.link.cast(self, "purge")
        return count

    def delete(self) -> int:
        """The queue's metadata is gone: this node's consumers of it are told. Its messages
        were the home node's, which deletes the queue itself."""
        for consumer in list(self.subscriptions):
            self.remove_consumer(consumer)
            consumer.cancelled_by_server()
        return self.message_count

    @property
    def message_count(self) -> int:
        return self.reported.get("messages_ready", 0) if self.home_reachable else 0

    @property
    def consumer_count(self) -> int:
        return self.reported.get("consumers", 0) if self.home_reachable else 0

    @property
    def unacked_count(self) -> int:
        return self.reported.get("messages_unacknowledged", 0) if self.home_reachable else 0
