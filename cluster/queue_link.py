"""Queues across nodes: a queue lives on its home node, and clients of any node use it.

This node plays two parts over the cluster's links (``cluster.service``):

- **Proxy side.** A ``queues.remote.RemoteQueue`` forwards here what the broker asks of a
  queue homed elsewhere. A publish routed to it becomes a ``Publish`` to the home node (one per
  message and home node: the names of every queue there it was routed to) and a ``Settlement``
  the channel's confirm waits on, settled by the home node's ``Published``. A consumer becomes a
  ``Subscribe``; deliveries come back as ``Deliver`` and go to the channel as a local queue's
  would, with entries whose ``seq`` is the home node's delivery id; acks, requeues and rejects
  go home as ``Settle``.
- **Home side.** A ``Subscribe`` puts a ``StandIn`` consumer on the real queue: it forwards
  each delivery and keeps the unacked entries by delivery id until the subscriber's node
  settles them. A peer's link going down requeues what that peer held, as a closed channel's
  unacked messages are requeued.

Flow is by credit, as on one node (``queues.base.Consumer``): the proxy side sends a limit,
"deliver until you have sent N in all", so deliveries in flight are never counted twice.

Messages to one node leave in the order made, batched per event-loop turn, so a channel's
publish followed by its basic.get reaches the home node in that order, as RabbitMQ's channel
and queue processes keep it. What a link loses when it drops is not resent: pending publishes
are refused (nack), this node's consumers of the home node's queues are cancelled
(basic.cancel), and the entries they held are requeued by the home node.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from amqp_server.channel.deliveries import exclusive_use_error
from amqp_server.core.message import Message
from amqp_server.metadata.store import Change
from amqp_server.protocol.errors import NOT_FOUND, PRECONDITION_FAILED, ChannelError
from cluster.link import LinkDown
from cluster.wire import message
from queues.base import Consumer, QueueEntry, QueueType, Settlement
from queues.remote import ACK, REQUEUE, RemoteQueue

if TYPE_CHECKING:
    from amqp_server.core.broker import Broker
    from cluster.service import ClusterService

log = logging.getLogger(__name__)

#: The most deliveries in flight to a consumer no prefetch limits (no_ack, prefetch 0).
WINDOW = 1000
#: Pauses before asking a home node again that does not have a queue yet (it applies the
#: queue's metadata a little after the node that committed it).
APPLY_WAITS = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
#: Seconds a peer stays down before its transient queues are deleted (a link that comes
#: straight back was not a node going down).
DOWN_GRACE = 2.0
DROP_TRIES = 15  # drop_transient tries, DOWN_GRACE apart, while the node stays down
#: Seconds between the home node's reports of its queues' counters.
STATS_INTERVAL = 1.0


# -- messages ---------------------------------------------------------------------------------


@message(210)
@dataclass(slots=True)
class Publish:
    id: int
    vhost: str
    queues: list[str]
    exchange_and_key: bytes
    header: bytes
    body: bytes


@message(211)
@dataclass(slots=True)
class Published:
    """Publishes the home node has (``ok``; persisted when they must be) or refused."""

    ok: list[int]
    refused: list[int]


@message(212)
@dataclass(slots=True)
class Subscribe:
    id: int  # the call's (answered by Reply) and the subscription's
    vhost: str
    queue: str
    tag: str
    priority: int
    exclusive: bool
    no_ack: bool
    limit: int


@message(213)
@dataclass(slots=True)
class Unsubscribe:
    id: int


@message(214)
@dataclass(slots=True)
class Deliver:
    subscription: int
    delivery: int  # 0 for no_ack
    redelivered: bool
    exchange_and_key: bytes
    header: bytes
    body: bytes


@message(215)
@dataclass(slots=True)
class Settle:
    """Deliveries settled on the proxy side, and the new credit limits of subscriptions."""

    acked: list[int] = field(default_factory=list)
    requeued: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    limits: list[list[int]] = field(default_factory=list)  # [subscription, limit]


@message(216)
@dataclass(slots=True)
class Cancelled:
    """The home node ended a subscription (its queue was deleted)."""

    id: int


@message(217)
@dataclass(slots=True)
class Call:
    id: int  # 0: no answer wanted
    op: str
    vhost: str
    queue: str
    args: dict[str, Any]


@message(218)
@dataclass(slots=True)
class Answer:
    id: int
    result: Any = None
    code: int = 0  # a channel error's, with its text
    text: str = ""


@message(219)
@dataclass(slots=True)
class Counters:
    """The home node's queue counters: [vhost, queue, stats] each."""

    queues: list[list[Any]]


# -- the proxy side's state -------------------------------------------------------------------


class Subscription:
    """A consumer of this node on a queue homed elsewhere."""

    __slots__ = ("id", "queue", "consumer", "node", "received", "limit", "held")

    def __init__(self, id: int, queue: RemoteQueue, consumer: Consumer) -> None:
        self.id = id
        self.queue = queue
        self.consumer = consumer
        self.node = queue.home_node
        self.received = 0  # deliveries that arrived
        self.limit = 0  # the limit last sent
        # Deliveries that came before basic.consume-ok went out: given to the channel after it.
        self.held: list[Deliver] | None = []

    def wanted_limit(self) -> int:
        return self.received + max(min(self.consumer.credit, WINDOW), 0)


class _Outbox:
    """What this node sends one peer in the current event-loop turn, in order."""

    __slots__ = ("items", "settle", "publish_of", "settlement")

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.settle: Settle | None = None  # the Settle being filled (the last item)
        self.publish_of: Any = None  # the message whose Publish is the last item
        self.settlement: Settlement | None = None  # and what its publisher waits on


# -- the home side's state --------------------------------------------------------------------


class StandIn:
    """The consumer a peer's subscription is on the real queue (``queues.base.Consumer``)."""

    __slots__ = ("link", "peer", "id", "queue", "tag", "priority", "no_ack", "exclusive", "credit", "sent",
                 "arguments", "channel")  # fmt: skip

    def __init__(self, link: QueueLink, peer: str, request: Subscribe, queue: QueueType) -> None:
        self.link = link
        self.peer = peer
        self.id = request.id
        self.queue = queue
        self.tag = request.tag
        self.priority = request.priority
        self.no_ack = request.no_ack
        self.exclusive = request.exclusive
        self.sent = 0
        self.credit = request.limit
        self.arguments: dict[str, Any] = {}
        self.channel = None  # not a channel of this node's (the admin surfaces skip it)

    def deliver(self, entry: QueueEntry) -> None:
        self.sent += 1
        delivery = 0
        if not self.no_ack:
            delivery = next(self.link._deliveries)
            self.link._held.setdefault(self.peer, {})[delivery] = entry
        message = entry.message
        self.link._send(
            self.peer,
            Deliver(self.id, delivery, entry.redelivered, message.exchange_and_key, message.header, message.body),
        )

    def cancelled_by_server(self) -> None:
        if self.link._stand_ins.pop((self.peer, self.id), None) is not None:
            self.link._send(self.peer, Cancelled(self.id))


class QueueLink:
    """Both parts of this node: proxies of queues homed elsewhere, home of its own."""

    def __init__(self, broker: Broker, service: ClusterService) -> None:
        self.broker = broker
        self.service = service
        self._ids = itertools.count(1)
        self._deliveries = itertools.count(1)
        self._outboxes: dict[str, _Outbox] = {}
        self._flushing = False
        self._throttled: set[str] = set()  # peers whose link is over its send buffer
        # park(proxy, consumer): keeps a consumer of a lost home node for its queue's next
        # leader instead of cancelling it (cluster.replicated_queues); True if it did.
        self.park: Callable[[RemoteQueue, Consumer], bool] | None = None
        # Proxy side.
        self._publishes: dict[str, dict[int, Settlement]] = {}  # node -> id -> settlement
        self._subscriptions: dict[int, Subscription] = {}
        self._credit_dirty: dict[Subscription, None] = {}
        self._calls: dict[int, tuple[RemoteQueue, asyncio.Future[Any]]] = {}
        # Per node: bumped when its link goes down, so entries delivered before are not
        # settled on a later link (the home node requeued them already).
        self._generations: dict[str, int] = {}
        # Home side.
        self._stand_ins: dict[tuple[str, int], StandIn] = {}
        self._held: dict[str, dict[int, QueueEntry]] = {}  # peer -> delivery id -> entry
        self._published: dict[str, Published] = {}  # answers being gathered, per peer
        self._reported: dict[tuple[str, str], tuple[int, int, int]] = {}
        self._reporter: asyncio.Task[None] | None = None
        # Queue operations other modules serve at the home node (``Call`` ops answered
        # asynchronously): op -> handler(queue, args).
        self.operations: dict[str, Callable[[QueueType, dict[str, Any]], Awaitable[Any]]] = {}
        for kind, handler in (
            (Publish, self._on_publish), (Published, self._on_published), (Subscribe, self._on_subscribe),
            (Unsubscribe, self._on_unsubscribe), (Deliver, self._on_deliver), (Settle, self._on_settle),
            (Cancelled, self._on_cancelled), (Call, self._on_call), (Answer, self._on_answer),
            (Counters, self._on_counters),
        ):  # fmt: skip
            service.handlers[kind] = handler
        service.on_peer_up = self._peer_up
        service.on_peer_down = self._peer_down

    def start(self) -> None:
        self._reporter = asyncio.get_running_loop().create_task(self._report())
        assert self.service.links is not None
        self.service.links.on_writable = self._writable

    async def stop(self) -> None:
        if self._reporter is not None:
            self._reporter.cancel()
            await asyncio.gather(self._reporter, return_exceptions=True)

    # -- sending ---------------------------------------------------------------------------------

    def _outbox(self, node: str) -> _Outbox:
        outbox = self._outboxes.get(node)
        if outbox is None:
            outbox = self._outboxes[node] = _Outbox()
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().call_soon(self._flush)
        return outbox

    def send(self, node: str, item: Any) -> None:
        """Send ``item`` (a registered message) to ``node`` in order with this link's own."""
        self._send(node, item)

    def _send(self, node: str, item: Any) -> None:
        outbox = self._outbox(node)
        outbox.items.append(item)
        outbox.settle = outbox.publish_of = None

    def _settle_batch(self, node: str) -> Settle:
        outbox = self._outbox(node)
        if outbox.settle is None:
            outbox.settle = Settle()
            outbox.items.append(outbox.settle)
            outbox.publish_of = None
        return outbox.settle

    def _flush(self) -> None:
        self._flush_credit()  # (fills the outboxes: before they go)
        self._flushing = False
        outboxes, self._outboxes = self._outboxes, {}
        self._published.clear()  # sent: later answers make new ones
        for node, outbox in outboxes.items():
            try:
                for item in outbox.items:
                    self.service.post(node, item)
            except LinkDown:
                self._lost(node)
                continue
            if node not in self._throttled and not self.service.writable(node):
                # The peer reads slower than this node sends: publishers wait (credit flow).
                self._throttled.add(node)
                self.broker.throttle_publishers(f"link to node {node}", True)

    def _writable(self, node: str) -> None:
        if node in self._throttled:
            self._throttled.discard(node)
            self.broker.throttle_publishers(f"link to node {node}", False)

    # -- proxy side: what RemoteQueue asks --------------------------------------------------------

    def reachable(self, node: str) -> bool:
        return self.service.linked(node)

    def running_nodes(self) -> list[str]:
        """The other nodes queues can be placed on now (linked)."""
        return self.service.peers()

    def publish(self, queue: RemoteQueue, message: Message) -> bool | Settlement:
        node = queue.home_node
        if not self.service.linked(node):
            return False
        outbox = self._outbox(node)
        if outbox.publish_of is message:  # routed to another queue of the same node: one Publish
            outbox.items[-1].queues.append(queue.name)
            assert outbox.settlement is not None
            return outbox.settlement
        id = next(self._ids)
        settlement = Settlement()
        self._publishes.setdefault(node, {})[id] = settlement
        publish = Publish(id, queue.vhost, [queue.name], message.exchange_and_key, message.header, message.body)
        outbox.items.append(publish)
        outbox.settle = None
        outbox.publish_of = message
        outbox.settlement = settlement
        return settlement

    def consume(self, queue: RemoteQueue, consumer: Consumer) -> asyncio.Future[Any]:
        id = next(self._ids)
        subscription = Subscription(id, queue, consumer)
        subscription.limit = subscription.wanted_limit()
        self._subscriptions[id] = subscription
        queue.subscriptions[consumer] = subscription
        request = Subscribe(
            id, queue.vhost, queue.name, consumer.tag, consumer.priority, consumer.exclusive, consumer.no_ack,
            subscription.limit,
        )  # fmt: skip
        future = self._expect(queue, id)
        self._send(queue.home_node, request)
        return future

    def subscribed(self, queue: RemoteQueue, consumer: Consumer) -> None:
        """basic.consume-ok went out: deliveries that came before it go to the channel now."""
        subscription = queue.subscriptions.get(consumer)
        if subscription is None:
            return
        held, subscription.held = subscription.held, None
        for delivery in held or ():
            self._deliver(subscription, delivery)

    def cancel(self, queue: RemoteQueue, consumer: Consumer) -> None:
        subscription = queue.subscriptions.pop(consumer, None)
        if subscription is None:
            return
        self._subscriptions.pop(subscription.id, None)
        self._credit_dirty.pop(subscription, None)
        if self.service.linked(subscription.node):
            self._send(subscription.node, Unsubscribe(subscription.id))

    def credit_changed(self, queue: RemoteQueue) -> None:
        for subscription in queue.subscriptions.values():
            self._credit_dirty[subscription] = None
        self._outbox(queue.home_node)  # (schedules the flush)

    def _flush_credit(self) -> None:
        dirty, self._credit_dirty = self._credit_dirty, {}
        for subscription in dirty:
            limit = subscription.wanted_limit()
            if limit != subscription.limit and subscription.id in self._subscriptions:
                subscription.limit = limit
                self._settle_batch(subscription.node).limits.append([subscription.id, limit])

    def settle(self, queue: RemoteQueue, entries: Iterable[QueueEntry], outcome: int) -> None:
        node = queue.home_node
        generation = self._generations.get(node, 0)
        ids = [entry.seq for entry in entries if entry.seq and entry.stored == generation]
        if not ids or not self.service.linked(node):
            return
        batch = self._settle_batch(node)
        (batch.acked if outcome == ACK else batch.requeued if outcome == REQUEUE else batch.rejected).extend(ids)

    async def call(self, queue: RemoteQueue, op: str, **args: Any) -> Any:
        for wait in itertools.chain(APPLY_WAITS, (None,)):
            id = next(self._ids)
            future = self._expect(queue, id)
            self._send(queue.home_node, Call(id, op, queue.vhost, queue.name, args))
            try:
                result = await future
                break
            except ChannelError as exc:
                # The home node may not have applied a queue just committed: asked again
                # while this node still has the queue.
                vhost = self.broker.vhosts.get(queue.vhost)
                if exc.code != NOT_FOUND or wait is None or vhost is None or vhost.queues.get(queue.name) is not queue:
                    raise
                await asyncio.sleep(wait)
        if op == "get":
            return self._got(queue, result)
        return result

    def cast(self, queue: RemoteQueue, op: str, **args: Any) -> None:
        self._send(queue.home_node, Call(0, op, queue.vhost, queue.name, args))

    def _expect(self, queue: RemoteQueue, id: int) -> asyncio.Future[Any]:
        """The future of call ``id`` to ``queue``'s home node: its answer, or the home node
        down error if the link goes first."""
        if not self.service.linked(queue.home_node):
            raise self._home_down(queue)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls[id] = (queue, future)
        return future

    def _home_down(self, queue: RemoteQueue) -> ChannelError:
        return self.broker.vhosts[queue.vhost].home_node_down(queue)

    def _got(self, queue: RemoteQueue, result: list[Any]) -> tuple[QueueEntry | None, int]:
        delivery, redelivered, exchange_and_key, header, body, count = result
        if exchange_and_key is None:
            return None, count
        entry = self._entry(queue, delivery, redelivered, exchange_and_key, header, body)
        return entry, count

    def _entry(
        self, queue: RemoteQueue, delivery: int, redelivered: bool, exchange_and_key: bytes, header: bytes,
        body: bytes,
    ) -> QueueEntry:  # fmt: skip
        entry = QueueEntry(message_from(exchange_and_key, header, body), delivery, queue)
        entry.redelivered = redelivered
        entry.stored = self._generations.get(queue.home_node, 0)  # the link it came on
        return entry

    # -- proxy side: what the home node sends --------------------------------------------------

    def _on_published(self, node: str, answer: Published) -> None:
        pending = self._publishes.get(node, {})
        for ids, ok in ((answer.ok, True), (answer.refused, False)):
            for id in ids:
                settlement = pending.pop(id, None)
                if settlement is not None:
                    settlement.settle(ok)

    def _on_deliver(self, node: str, delivery: Deliver) -> None:
        subscription = self._subscriptions.get(delivery.subscription)
        if subscription is None:  # cancelled here meanwhile: back to the queue
            if delivery.delivery:
                self._settle_batch(node).requeued.append(delivery.delivery)
            return
        subscription.received += 1
        if subscription.held is not None:
            subscription.held.append(delivery)
            return
        self._deliver(subscription, delivery)

    def _deliver(self, subscription: Subscription, delivery: Deliver) -> None:
        consumer = subscription.consumer
        entry = self._entry(
            subscription.queue, delivery.delivery, delivery.redelivered, delivery.exchange_and_key, delivery.header,
            delivery.body,
        )  # fmt: skip
        consumer.credit -= 1  # spent, as a queue spends it
        if not consumer.no_ack:
            entry.consumer = consumer
        consumer.deliver(entry)
        if consumer.credit < WINDOW:  # the window may have moved (no_ack consumers' does)
            self._credit_dirty[subscription] = None

    def _on_cancelled(self, node: str, cancelled: Cancelled) -> None:
        subscription = self._subscriptions.pop(cancelled.id, None)
        if subscription is not None:
            subscription.queue.subscriptions.pop(subscription.consumer, None)
            subscription.consumer.cancelled_by_server()

    def _on_answer(self, node: str, answer: Answer) -> None:
        _, future = self._calls.pop(answer.id, (None, None))
        if future is None or future.done():
            return
        if answer.code:
            future.set_exception(ChannelError(answer.code, answer.text))
        else:
            future.set_result(answer.result)

    def _on_counters(self, node: str, counters: Counters) -> None:
        for vhost_name, name, stats in counters.queues:
            vhost = self.broker.vhosts.get(vhost_name)
            queue = vhost.queues.get(name) if vhost is not None else None
            if isinstance(queue, RemoteQueue):
                queue.reported = stats

    # -- home side ----------------------------------------------------------------------------------

    def _home_queue(self, vhost_name: str, name: str) -> QueueType:
        vhost = self.broker.vhosts.get(vhost_name)
        queue = vhost.queues.get(name) if vhost is not None else None
        if queue is None or queue.is_remote:
            raise ChannelError(NOT_FOUND, f"no queue '{name}' in vhost '{vhost_name}'")
        return queue

    def _on_publish(self, node: str, publish: Publish) -> None:
        message = message_from(publish.exchange_and_key, publish.header, publish.body)
        ok = True
        pending: list[Settlement] = []
        for name in publish.queues:
            try:
                queue = self._home_queue(publish.vhost, name)
            except ChannelError:
                ok = False  # deleted meanwhile: the publisher is told, as for an absent queue
                continue
            result = queue.publish(message)
            if result is False:
                ok = False
            elif result is not True:
                pending.append(result)
        if not ok or not pending:
            self._answer_publish(node, publish.id, ok)
            return
        left = [len(pending)]

        def settled(settlement: Settlement) -> None:
            left[0] -= 1
            if not settlement.ok:
                left[0] = -len(pending)  # answered now, once
                self._answer_publish(node, publish.id, False)
            elif left[0] == 0:
                self._answer_publish(node, publish.id, True)

        for settlement in pending:
            settlement.watch(settled)

    def _answer_publish(self, node: str, id: int, ok: bool) -> None:
        answer = self._published.get(node)
        if answer is None:
            answer = self._published[node] = Published([], [])
            self._send(node, answer)  # filled until the flush
        (answer.ok if ok else answer.refused).append(id)

    def _on_subscribe(self, node: str, request: Subscribe) -> None:
        try:
            queue = self._home_queue(request.vhost, request.queue)
            error = exclusive_use_error(queue, request.exclusive)
            if error is not None:
                raise error
        except ChannelError as exc:
            self._send(node, Answer(request.id, code=exc.code, text=exc.explanation))
            return
        stand_in = StandIn(self, node, request, queue)
        self._stand_ins[node, request.id] = stand_in
        self._send(node, Answer(request.id, True))
        queue.add_consumer(stand_in)

    def _on_unsubscribe(self, node: str, request: Unsubscribe) -> None:
        stand_in = self._stand_ins.pop((node, request.id), None)
        if stand_in is not None:
            stand_in.queue.remove_consumer(stand_in)

    def _on_settle(self, node: str, batch: Settle) -> None:
        held = self._held.get(node, {})
        touched: dict[QueueType, None] = {}
        for id in batch.acked:
            entry = held.pop(id, None)
            if entry is not None:
                entry.queue.settle(entry)
                touched[entry.queue] = None
        for id in batch.rejected:
            entry = held.pop(id, None)
            if entry is not None:
                entry.queue.discard(entry, "rejected")
                touched[entry.queue] = None
        if batch.requeued:
            self._requeue([entry for id in batch.requeued if (entry := held.pop(id, None)) is not None], touched)
        for id, limit in batch.limits:
            stand_in = self._stand_ins.get((node, id))
            if stand_in is not None:
                stand_in.credit = max(limit - stand_in.sent, 0)
                touched[stand_in.queue] = None
        for queue in touched:
            queue.dispatch()

    @staticmethod
    def _requeue(entries: list[QueueEntry], touched: dict[QueueType, None]) -> None:
        by_queue: dict[QueueType, list[QueueEntry]] = {}
        for entry in entries:
            by_queue.setdefault(entry.queue, []).append(entry)
        for queue, queue_entries in by_queue.items():
            queue.requeue(queue_entries)
            touched[queue] = None

    def _on_call(self, node: str, call: Call) -> None:
        try:
            queue = self._home_queue(call.vhost, call.queue)
            if call.op in self.operations:
                self.broker.spawn(self._operation(node, call, queue))
                return
            if call.op == "get":
                result = self._get(node, queue, bool(call.args.get("no_ack")))
            elif call.op == "purge":
                result = queue.purge()
            elif call.op == "touch":
                result = queue.touch()
            elif call.op == "counts":
                result = [queue.message_count, queue.consumer_count]
            else:
                raise ChannelError(NOT_FOUND, f"unknown queue operation '{call.op}'")
        except ChannelError as exc:
            if call.id:
                self._send(node, Answer(call.id, code=exc.code, text=exc.explanation))
            return
        if call.id:
            self._send(node, Answer(call.id, result))

    async def _operation(self, node: str, call: Call, queue: QueueType) -> None:
        try:
            result = await self.operations[call.op](queue, call.args)
        except Exception as exc:  # noqa: BLE001 - the asking node gets the reason
            if call.id:
                self._send(node, Answer(call.id, code=PRECONDITION_FAILED, text=str(exc) or type(exc).__name__))
            return
        if call.id:
            self._send(node, Answer(call.id, result))

    def _get(self, node: str, queue: QueueType, no_ack: bool) -> list[Any]:
        entry = queue.get()
        if entry is None:
            return [0, False, None, None, None, queue.message_count]
        delivery = 0
        if no_ack:
            queue.settle(entry)
        else:
            delivery = next(self._deliveries)
            self._held.setdefault(node, {})[delivery] = entry
        message = entry.message
        return [delivery, entry.redelivered, message.exchange_and_key, message.header, message.body,
                queue.message_count]  # fmt: skip

    async def _report(self) -> None:
        """Every STATS_INTERVAL, the counters of this node's queues that changed, to every peer."""
        while True:
            await asyncio.sleep(STATS_INTERVAL)
            changed = self._changed_counters()
            if changed:
                for peer in self.service.peers():
                    self._send(peer, Counters(changed))

    def _changed_counters(self, every: bool = False) -> list[list[Any]]:
        changed = []
        seen: dict[tuple[str, str], tuple[int, int, int]] = {}
        for vhost in self.broker.vhosts.values():
            for queue in vhost.queues.values():
                if queue.is_remote:
                    continue
                key = (vhost.name, queue.name)
                counts = seen[key] = (queue.message_count, queue.unacked_count, queue.consumer_count)
                if every or self._reported.get(key) != counts:
                    changed.append([vhost.name, queue.name, queue.stats()])
        self._reported = seen
        return changed

    # -- links up and down ---------------------------------------------------------------------

    def _peer_up(self, node: str) -> None:
        """A peer linked: it learns every counter of this node's queues."""
        counters = self._changed_counters(every=True)
        if counters:
            self._send(node, Counters(counters))

    def _peer_down(self, node: str) -> None:
        self._lost(node)
        asyncio.get_running_loop().call_later(DOWN_GRACE, self._still_down, node)

    def _still_down(self, node: str) -> None:
        # One node does the deleting: the first of the running ones by name.
        if not self.service.running(node) and self.broker.node_name == min([self.broker.node_name, *self.service.peers()]):
            self.broker.spawn(self._drop_while_down(node))

    async def _drop_while_down(self, node: str) -> None:
        """drop_transient, tried again while the metadata cannot commit (its leader was the
        node that went, and the others are electing one) and the node is still down."""
        for _ in range(DROP_TRIES):
            if self.service.running(node) or await self.drop_transient(node):
                return
            await asyncio.sleep(DOWN_GRACE)

    async def drop_transient(self, node: str) -> bool:
        """Delete the exclusive and non-durable queues homed on ``node``: as RabbitMQ deletes
        them when their node goes down (they cannot come back), and at a node's start those of
        its previous run (a whole cluster stopped together left them in the metadata). False
        if the metadata refused a delete (no quorum now)."""
        for vhost in list(self.broker.vhosts.values()):
            gone = [q.name for q in vhost.queues.values()
                    if q.home_node == node and (not q.durable or q.exclusive_owner is not None)]  # fmt: skip
            for name in gone:
                try:
                    await self.broker.change(Change("queue", "delete", vhost.name, name, persisted=False))
                except Exception as exc:  # noqa: BLE001 - no quorum now, say: the next start tries again
                    log.warning("transient queue '%s' in vhost '%s' of node %s not deleted: %s", name, vhost.name,
                                node, getattr(exc, "reply_text", exc))  # fmt: skip
                    return False
        return True

    def _lost(self, node: str) -> None:
        """The link to ``node`` is gone, with whatever it carried."""
        self._generations[node] = self._generations.get(node, 0) + 1
        self._writable(node)
        self._outboxes.pop(node, None)
        self._published.pop(node, None)
        # Proxy side: pending publishes refused, calls failed, consumers cancelled.
        for settlement in self._publishes.pop(node, {}).values():
            settlement.settle(False)
        for id, (queue, future) in list(self._calls.items()):
            if queue.home_node == node:
                del self._calls[id]
                if not future.done():
                    future.set_exception(self._home_down(queue))
        for id, subscription in list(self._subscriptions.items()):
            if subscription.node == node:
                del self._subscriptions[id]
                subscription.queue.subscriptions.pop(subscription.consumer, None)
                if self.park is None or not self.park(subscription.queue, subscription.consumer):
                    subscription.consumer.cancelled_by_server()
        # Home side: the peer's subscriptions end and what it held is requeued.
        touched: dict[QueueType, None] = {}
        for key in [key for key in self._stand_ins if key[0] == node]:
            stand_in = self._stand_ins.pop(key)
            stand_in.queue.remove_consumer(stand_in)
            touched[stand_in.queue] = None
        self._requeue(list(self._held.pop(node, {}).values()), touched)
        for queue in touched:
            queue.dispatch()


def message_from(exchange_and_key: bytes, header: bytes, body: bytes) -> Message:
    """A message as the home node gets it: basic.publish's raw exchange and routing key
    shortstrs, the content header and body, unchanged."""
    size = exchange_and_key[0]
    exchange = exchange_and_key[1 : 1 + size].decode("utf-8", "replace")
    key_size = exchange_and_key[1 + size]
    routing_key = exchange_and_key[2 + size : 2 + size + key_size].decode("utf-8", "replace")
    return Message(exchange, routing_key, exchange_and_key, header, body)
