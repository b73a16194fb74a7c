"""The queue-type contract, modelled on RabbitMQ's ``rabbit_queue_type`` behaviour.

A queue instance lives on its home node. The broker core reaches it through this interface
only: ``publish`` on the publish path, ``add_consumer``/``dispatch`` on the consume path,
``settle``/``requeue`` when a channel acks, nacks or closes. Consumers are objects of the
channel layer, seen here through the small ``Consumer`` protocol.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Protocol

from queues.settings import QueueSettings


class QueueEntry:
    """A message's place in one queue: the message is shared, the entry is per queue."""

    __slots__ = ("message", "seq", "queue", "redelivered", "consumer", "expires", "stored", "disk")

    def __init__(self, message: Any, seq: int, queue: QueueType, expires: float | None = None) -> None:
        self.message = message
        self.seq = seq  # position in the queue; requeued entries go back to it
        self.queue = queue
        self.redelivered = False
        self.consumer: Consumer | None = None  # who holds it unacked, None if ready or got
        # Event-loop time at which it expires (TTL counts from enqueue, not from a requeue).
        self.expires = expires
        # The message store's record of a persistent message in a durable queue, None when the
        # entry is not stored. ``disk`` (the entry's own disk state) is set only with it.
        self.stored: Any = None


class Settlement:
    """A later "settled" notice for publishes a queue took but cannot confirm yet: a queue's
    ``publish`` returns one, and whoever waits (a channel's confirms, a tx.commit) ``watch``es it.
    One settlement serves every publish settled by the same event (a message store batch on
    disk today, a replica majority tomorrow), so nothing is allocated per message.
    """

    __slots__ = ("done", "ok", "_watchers")

    def __init__(self) -> None:
        self.done = False
        self.ok = True
        self._watchers: set[Any] = set()

    def watch(self, watcher: Callable[[Settlement], None]) -> None:
        """``watcher(self)`` is called once this is settled (at once if it is); watching twice
        with the same callable is watching once."""
        if self.done:
            watcher(self)
        else:
            self._watchers.add(watcher)

    def settle(self, ok: bool) -> None:
        self.done = True
        self.ok = ok
        watchers, self._watchers = self._watchers, set()
        for watcher in watchers:
            watcher(self)


async def all_settled(settlements: Iterable[Settlement]) -> bool:
    """Wait until every one is settled; True if all were settled ok."""
    ok = True
    for settlement in settlements:
        if not settlement.done:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            settlement.watch(lambda _settled, future=future: future.done() or future.set_result(None))
            await future
        ok = ok and settlement.ok
    return ok


class Consumer(Protocol):
    """What a queue needs from a consumer (implemented by the channel layer).

    Flow is by credit, as RabbitMQ's queue types take it: ``credit`` is how many more
    deliveries the consumer takes now. The queue spends one per delivery and never asks the
    channel; the channel grants more (its prefetch window opens, its socket drains) and then
    calls the queue's ``dispatch``, or sets it to 0 to stop deliveries. A queue on another node
    keeps the same count there, so no delivery waits on a question to the channel.
    """

    tag: str
    priority: int
    no_ack: bool
    exclusive: bool
    credit: int

    def deliver(self, entry: QueueEntry) -> None:
        """Send ``entry`` to the client (the consumer records it as unacked unless no_ack)."""

    def cancelled_by_server(self) -> None:
        """The queue went away: tell the client with basic.cancel if it supports that."""


class QueueType(ABC):
    """Base class for queue types."""

    #: Value of the ``x-queue-type`` argument that selects this type.
    type_name: ClassVar[str]
    #: False for a queue this node cannot reach now (its home node is down: queues.remote);
    #: the vhost then refuses to declare, bind, consume from, get from, purge or delete it.
    home_reachable: ClassVar[bool] = True
    #: True for the proxy of a queue homed on another node (queues.remote): basic.get, purge
    #: and declare-ok's counts ask the home node, asynchronously.
    is_remote: ClassVar[bool] = False
    #: The arguments of rabbit_amqqueue:declare_args/0 only some types take that this one takes
    #: (of ``queues.arguments.TYPE_ARGS``): checked with the shared ones, in RabbitMQ's order.
    type_arguments: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        vhost: str,
        name: str,
        *,
        durable: bool,
        exclusive_owner: object | None,
        auto_delete: bool,
        arguments: Mapping[str, Any],
        home_node: str,
    ) -> None:
        self.vhost = vhost
        self.name = name
        self.durable = durable
        self.exclusive_owner = exclusive_owner
        self.auto_delete = auto_delete
        self.arguments = dict(arguments)
        self.home_node = home_node
        self.settings = QueueSettings.resolve(self.arguments)
        # Set by the vhost: called with (queue, messages, reason) for messages that leave the
        # queue by rejection, expiry or overflow; it republishes them to the dead-letter exchange.
        self.dead_letter: Callable[[QueueType, list[Any], str], None] | None = None

    def apply_settings(self, settings: QueueSettings) -> None:
        """A policy changed: take the new effective settings into use at once."""
        self.settings = settings

    def touch(self) -> None:
        """The queue was used (declared again, basic.get): restart its x-expires countdown."""

    def stats(self) -> dict[str, Any]:
        """Counters for the admin surfaces (kept in O(1) on the message path)."""
        return {}

    @classmethod
    def validate_arguments(cls, arguments: Mapping[str, Any], where: str) -> None:
        """Refuse queue.declare arguments this type does not take (``ChannelError``); the checks
        every type shares (queues.arguments) have passed. ``where`` is ``queue 'q' in vhost '/'``."""

    @classmethod
    def validate_properties(cls, *, durable: bool, exclusive: bool, auto_delete: bool, where: str) -> None:
        """Refuse queue.declare flags this type does not take (``ChannelError``), after
        ``validate_arguments``; ``durable`` is False for an exclusive queue."""

    @abstractmethod
    def publish(self, message: Any) -> bool | Settlement:
        """Enqueue (or hand straight to a consumer). True: accepted, nothing more will be said;
        False: refused (overflow reject-publish; a confirm is a nack); or a Settlement that tells
        later whether the message is safe (a persistent message waiting for the disk)."""

    @abstractmethod
    def get(self) -> QueueEntry | None:
        """basic.get: the head entry, now unacked by the caller, or None when empty."""

    @abstractmethod
    def add_consumer(self, consumer: Consumer) -> None: ...

    @abstractmethod
    def remove_consumer(self, consumer: Consumer) -> None: ...

    @abstractmethod
    def dispatch(self) -> None:
        """Deliver ready entries to consumers with credit (called when a consumer got some)."""

    @abstractmethod
    def settle(self, entry: QueueEntry) -> None:
        """The entry was acked (or rejected without requeue): forget it."""

    @abstractmethod
    def discard(self, entry: QueueEntry, reason: str) -> None:
        """The entry was rejected/nacked without requeue (``reason`` "rejected"): settle it and
        dead-letter it if the queue has a dead-letter exchange."""

    @abstractmethod
    def requeue(self, entries: Iterable[QueueEntry]) -> None:
        """Return entries to their places, marked redelivered."""

    @abstractmethod
    def purge(self) -> int:
        """Drop every ready entry; returns how many."""

    @abstractmethod
    def delete(self) -> int:
        """Release the queue; consumers are told. Returns the ready count it held."""

    @property
    @abstractmethod
    def message_count(self) -> int:
        """Ready messages."""

    @property
    @abstractmethod
    def consumer_count(self) -> int: ...

    @property
    @abstractmethod
    def unacked_count(self) -> int: ...
