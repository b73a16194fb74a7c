"""Replicated queues: a quorum queue of a cluster is a Raft group (``cluster.raft_host``) of
its member nodes, chosen when it is declared (``x-quorum-initial-group-size``, by default
every running node). Its messages are the group's log, so a confirm means "on a majority of
the members' disks", and whichever member leads serves the queue.

How it fits the broker: the leader runs an ordinary ``queues.quorum.QuorumQueue`` whose
message store is a ``ReplicatedStore``: what the queue stores and removes (``add``,
``remove``, ``mark_delivered``, the same calls it makes to the disk store on one node) becomes
log commands, proposed once per event-loop turn; the batch's ``Settlement`` is settled when
they commit. Every member applies the commands to a ``QueueLog`` (the messages by sequence
number, and how far they were delivered). Every other node, and the members that do not
lead, hold a ``queues.remote.RemoteQueue`` whose home is the leader (``cluster.queue_link``
carries publishes, consumers and acks there).

When the leadership moves (the leader is lost, stopped or cut off): the new leader builds
its queue from its ``QueueLog`` (entries up to the delivered mark marked redelivered) and
tells every node (``QueueLeader``); each node puts a fresh proxy towards it in place and its
clients' consumers consume from it (``_hand_over``; those of a lost leader's node are parked
until then), except those that asked for ``x-cancel-on-ha-failover``, which get basic.cancel,
as RabbitMQ does; what they held unacked is delivered again by the new leader.
A confirmed message is committed on a majority, so the new leader has it: none is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from amqp_server.core.events import Event
from amqp_server.protocol.errors import ChannelError
from cluster.mirroring import Mirroring
from cluster.queue_link import message_from
from cluster.raft import MembershipOp, NotLeader
from cluster.wire import decode, encode, message
from queues.base import QueueEntry, QueueType, Settlement
from queues.remote import RemoteQueue

if TYPE_CHECKING:
    from collections.abc import Mapping

    from amqp_server.core.broker import Broker
    from amqp_server.core.vhost import VirtualHost
    from cluster.queue_link import QueueLink
    from cluster.raft_host import RaftHost
    from cluster.service import ClusterService

log = logging.getLogger(__name__)

#: Queue types replicated on a cluster whatever their policies (classic queues are when an
#: ha-mode policy applies: ``cluster.mirroring``).
REPLICATED_TYPES = frozenset(("quorum",))
#: The version of the commands' meaning (QueueLog.apply), as rabbit_fifo's machine version.
MACHINE_VERSION = 1
#: How long a declare waits for its new queue's group to elect a leader.
LEADER_WAIT = 10.0


#: Why a membership command found no leader to run it (asked again until LEADER_WAIT).
NO_LEADER = "the queue's leader is down or not known yet"


class MembershipRefused(Exception):
    """A membership command refused (rabbitmq-queues' error terms)."""


@message(221)
@dataclass(slots=True)
class JoinGroup:
    """To a node being added to a replicated queue's group: start it, empty, as a new member."""

    vhost: str
    queue: str
    group: str


@message(222)
@dataclass(slots=True)
class LeaveGroup:
    """To a node removed from a replicated queue's group (the removal committed): drop it.
    (Told, not read from the log: a member catching up replays older removals of itself.)"""

    vhost: str
    queue: str
    group: str


@message(220)
@dataclass(slots=True)
class QueueLeader:
    """A replicated queue's leader and members (``voters``: the synchronised ones, which count
    for confirms and may lead), from the leader itself, to every node."""

    vhost: str
    queue: str
    leader: str
    members: list[str]
    voters: list[str]


@dataclass(slots=True)
class ReplicaInfo:
    """What a node knows of a replicated queue's group, for list_queues and the HTTP API (the
    queue objects in place share it: ``replica_info``)."""

    leader: str | None = None
    members: list[str] = field(default_factory=list)
    voters: list[str] = field(default_factory=list)

    def mirrors(self) -> tuple[list[str], list[str]]:
        """(mirrors, synchronised mirrors): the members but the leader, as slave_pids and
        synchronised_slave_pids."""
        others = [node for node in self.members if node != self.leader]
        return others, [node for node in others if node in self.voters]


def is_replicated(queue: QueueType) -> bool:
    """Whether ``queue`` (the leader's queue or a proxy) is one of a group's."""
    return getattr(queue, "replica_info", None) is not None


def group_name(vhost: str, queue: str, record: dict[str, Any]) -> str:
    """The group of one incarnation of a queue (a queue deleted and declared again is another)."""
    return f"{vhost}\x00{queue}\x00{record.get('group', '')}"


class QueueLog:
    """A replicated queue's state on every member: the messages by sequence number and the
    delivered mark (``GroupMachine``)."""

    def __init__(self, manager: ReplicatedQueues, vhost: str, queue: str, group: str) -> None:
        self.manager = manager
        self.vhost = vhost
        self.queue = queue
        self.group = group
        self.entries: dict[int, tuple[bytes, bytes, bytes]] = {}  # seq -> (exchange and key, header, body)
        self.counts: dict[int, int] = {}  # seq -> times returned (a quorum queue's delivery count)
        self.held: dict[int, str] = {}  # seq -> reason: being dead-lettered at least once
        self.mark = -1
        self.leader: str | None = None

    def apply(self, index: int, command: Any) -> Any:
        for op in command:
            kind = op[0]
            if kind == "e":
                self.entries[op[1]] = (op[2], op[3], op[4])
            elif kind == "r":
                for seq in op[1]:
                    self.entries.pop(seq, None)
                    self.counts.pop(seq, None)
                    self.held.pop(seq, None)
            elif kind == "c":
                for seq, count in op[1]:
                    if seq in self.entries:
                        self.counts[seq] = count
            elif kind == "x":
                for seq, reason in op[1]:
                    if seq in self.entries:
                        self.held[seq] = reason
            elif kind == "d":
                self.mark = max(self.mark, op[1])
        return None

    def restore(self, data: bytes, index: int) -> None:
        mark, entries, counts, held = decode(data)
        self.mark = mark
        self.entries = {seq: (eak, header, body) for seq, eak, header, body in entries}
        self.counts = dict(counts)
        self.held = dict(held)

    def snapshot(self) -> bytes:
        entries = [[seq, *entry] for seq, entry in self.entries.items()]
        counts = [[seq, count] for seq, count in self.counts.items()]
        return encode([self.mark, entries, counts, [[seq, reason] for seq, reason in self.held.items()]])

    def leader_changed(self, leader: str | None, term: int) -> None:
        self.leader = leader
        self.manager.leader_changed(self, leader)


class ReplicatedStore:
    """The leader's queue's message store: its writes become the group's log commands."""

    def __init__(self, host: RaftHost, group: str) -> None:
        self.host = host
        self.group = group
        self.settlement = Settlement()
        self.active = True  # False once the leadership moved: nothing more is proposed
        self._ops: list[list[Any]] = []
        self._removed: list[int] = []
        self._mark: int | None = None
        self._scheduled = False

    # -- what queues.classic calls on its store

    def add(self, entry: QueueEntry) -> None:
        message = entry.message
        entry.stored = self
        self._ops.append(["e", entry.seq, message.exchange_and_key, message.header, message.body])
        self._schedule()

    def remove(self, entry: QueueEntry, qid: int | None) -> None:
        if entry.stored is None:
            return
        entry.stored = None
        self._removed.append(entry.seq)
        self._schedule()

    def mark_delivered(self, qid: int, queue: QueueType) -> None:
        self._mark = queue.delivered_mark  # type: ignore[attr-defined]
        self._schedule()

    def returned(self, counts: list[tuple[int, int]]) -> None:
        """A quorum queue's entries returned: their delivery counts, (seq, count) each."""
        self._ops.append(["c", counts])
        self._schedule()

    def held(self, reasons: list[tuple[int, str]]) -> None:
        """A quorum queue's entries being dead-lettered at least once, (seq, reason) each."""
        self._ops.append(["x", reasons])
        self._schedule()

    def pending(self) -> Settlement:
        self._schedule()
        return self.settlement

    def queue_deleted(self, qid: int, tail_from: int | None = None) -> None:
        self.active = False  # the group goes with the queue's metadata

    def transient_qid(self) -> int:
        return 0

    # -- the batch

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        ops, self._ops = self._ops, []
        if self._removed:
            ops.append(["r", self._removed])
            self._removed = []
        if self._mark is not None:
            ops.append(["d", self._mark])
            self._mark = None
        settlement, self.settlement = self.settlement, Settlement()
        if not ops:
            settlement.settle(True)
            return
        if not self.active:
            settlement.settle(False)
            return
        try:
            (future,) = self.host.propose(self.group, ops)
        except (NotLeader, KeyError):
            settlement.settle(False)
            return
        future.add_done_callback(lambda done: settlement.settle(not done.cancelled() and done.exception() is None))


class ReplicatedQueues:
    """This node's part in every replicated queue: the groups it is a member of, the queue
    object in place for each (the leader's queue, or a proxy towards the leader)."""

    def __init__(self, broker: Broker, service: ClusterService, host: RaftHost, link: QueueLink) -> None:
        self.broker = broker
        self.service = service
        self.host = host
        self.link = link
        self.node = broker.node_name
        self.logs: dict[tuple[str, str], QueueLog] = {}
        self.info: dict[tuple[str, str], ReplicaInfo] = {}
        self._changed = asyncio.Event()
        broker.events.subscribe(self._queue_created, "queue.created")
        broker.events.subscribe(self._queue_deleted, "queue.deleted")
        service.handlers[QueueLeader] = self._on_leader
        service.handlers[JoinGroup] = self._on_join
        service.handlers[LeaveGroup] = self._on_leave
        link.operations["membership"] = self._membership
        self._peer_up = service.on_peer_up
        service.on_peer_up = self._peer_up_too
        self.on_lead: Callable[[QueueLog], None] | None = None  # cluster.mirroring's, when it leads
        self.on_node_up: Callable[[str], None] | None = None
        self.mirroring = Mirroring(self)
        link.operations["sync"] = self.mirroring.sync
        # Consumers of proxies whose leader's node was lost, until a leader takes them.
        self._parked: dict[QueueType, list[Any]] = {}
        self._moving: dict[Any, asyncio.Task[None]] = {}  # consumers being subscribed elsewhere
        link.park = self._park

    def running_nodes(self) -> list[str]:
        """The nodes a new queue's group may have as members: this one and those linked."""
        return [self.node, *self.service.peers()]

    # -- building queue objects ---------------------------------------------------------------

    def initial_members(
        self, vhost: VirtualHost, name: str, queue_type: str, arguments: Mapping[str, Any], exclusive: bool
    ) -> list[str] | None:
        """The founding members of a queue declared on this node now, None for a queue that is
        not replicated: a quorum queue's ``x-quorum-initial-group-size`` of the running nodes
        (every one by default), this one first, then by name; a mirrored classic queue's as
        its policy says (``cluster.mirroring``)."""
        if queue_type == "classic":
            return self.mirroring.initial_members(vhost, name, exclusive)
        if queue_type not in REPLICATED_TYPES:
            return None
        others = sorted(set(self.running_nodes()) - {self.node})
        size = arguments.get("x-quorum-initial-group-size")
        return [self.node, *others][: size if isinstance(size, int) and size > 0 else None]

    @staticmethod
    def replicated(record: dict[str, Any]) -> bool:
        """Whether a queue record is a replicated queue's: one with a group."""
        return record.get("group") is not None

    def _info(self, vhost: str, name: str) -> ReplicaInfo:
        return self.info.setdefault((vhost, name), ReplicaInfo())

    def build(self, queue_type: str, record: dict[str, Any], vhost: str, name: str, **kwargs: Any) -> QueueType:
        """The object a node first holds for a replicated queue: a proxy towards the leader
        (none known yet: the home node recorded, which answers "down" until it leads)."""
        info = self.info.get((vhost, name))
        if info is not None and info.leader is not None:
            kwargs["home_node"] = info.leader
        proxy = RemoteQueue(queue_type, self.link, vhost, name, **kwargs)
        proxy.replica_record = record  # type: ignore[attr-defined]  # its members and group, for _queue_created
        proxy.replica_info = self._info(vhost, name)  # type: ignore[attr-defined]
        return proxy

    async def ready(self, vhost_name: str, name: str) -> QueueType:
        """The queue object once the group has a leader in place (a declare waits for it)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LEADER_WAIT
        while True:
            vhost = self.broker.vhosts[vhost_name]
            queue = vhost.queue_or_404(name, reachable=False)
            if queue.home_reachable and (not queue.is_remote or queue.home_node != self.node):
                if not queue.is_remote:
                    await self.mirroring.settled(vhost_name, name)
                return queue
            left = deadline - loop.time()
            if left <= 0:
                raise vhost.home_node_down(queue)
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.25))

    # -- metadata events ----------------------------------------------------------------------

    def _queue_created(self, event: Event) -> None:
        queue = event.subject
        record = getattr(queue, "replica_record", None)
        if record is None:
            return
        members = record.get("members") or [queue.home_node]
        group = group_name(queue.vhost, queue.name, record)
        known = self.logs.get((queue.vhost, queue.name))
        if known is not None and known.group == group:
            return
        if self.node not in members and group not in self.host.stored_groups():
            return  # (a member added later has the group stored)
        qlog = QueueLog(self, queue.vhost, queue.name, group)
        self.logs[(queue.vhost, queue.name)] = qlog
        self.broker.spawn(self.host.open_group(group, qlog, sorted(members), campaign=members[0] == self.node))

    def _queue_deleted(self, event: Event) -> None:
        queue = event.subject
        key = (queue.vhost, queue.name)
        self.info.pop(key, None)
        qlog = self.logs.pop(key, None)
        if qlog is not None:
            self.broker.spawn(self.host.close_group(qlog.group))

    # -- leadership ----------------------------------------------------------------------------

    def leader_changed(self, qlog: QueueLog, leader: str | None) -> None:
        if leader is None:
            return  # an election: the queue in place stays until one is known
        self._info(qlog.vhost, qlog.queue).leader = leader
        if leader == self.node:
            self._lead(qlog)
            self.tell_members(qlog)
            if self.on_lead is not None:
                self.on_lead(qlog)
        else:
            self._follow(qlog.vhost, qlog.queue, leader)
        self._changed.set()

    def _lead(self, qlog: QueueLog) -> None:
        vhost = self.broker.vhosts.get(qlog.vhost)
        old = vhost.queues.get(qlog.queue) if vhost is not None else None
        if vhost is None or old is None or not old.is_remote:
            return
        type_class = self.broker.queue_types[old.type_name]
        queue = type_class(
            vhost.name, old.name, durable=old.durable, exclusive_owner=None, auto_delete=old.auto_delete,
            arguments=old.arguments, home_node=self.node,
        )  # fmt: skip
        queue.on_unused = vhost._queue_unused
        queue.dead_letter = vhost._dead_letter
        _carry(old, queue)
        queue.stores_every_message = True  # type: ignore[misc]  # a mirrored classic queue's transient ones too
        store = ReplicatedStore(self.host, qlog.group)
        queue.attach_store(store, 0)  # type: ignore[attr-defined]
        entries = []
        held = []
        for seq, (exchange_and_key, header, body) in qlog.entries.items():
            entry = QueueEntry(message_from(exchange_and_key, header, body), seq, queue)
            entry.stored = store
            entry.redelivered = seq <= qlog.mark
            (held if seq in qlog.held else entries).append(entry)
        if entries:
            queue.reserve_seqs(entries[-1].seq + 1)  # type: ignore[attr-defined]
            queue.recover_entries(entries)  # type: ignore[attr-defined]
            if qlog.counts and hasattr(queue, "restore_delivery_counts"):
                queue.restore_delivery_counts((e, qlog.counts[e.seq]) for e in entries if e.seq in qlog.counts)
        if held and hasattr(queue, "restore_dead_letters"):
            queue.reserve_seqs(max(entry.seq for entry in held) + 1)  # type: ignore[attr-defined]
            queue.restore_dead_letters((entry, qlog.held[entry.seq]) for entry in held)
        vhost.queues[old.name] = queue
        self._hand_over(old, queue)
        queue.recovered()  # type: ignore[attr-defined]
        log.info("%s: this node leads it, with %d messages", vhost._resource("queue", old.name), len(entries))

    def _follow(self, vhost_name: str, name: str, leader: str) -> None:
        """A fresh proxy towards ``leader`` replaces what was there (a proxy's delivery ids are
        its home node's: they must not reach another node)."""
        self._info(vhost_name, name).leader = leader
        vhost = self.broker.vhosts.get(vhost_name)
        old = vhost.queues.get(name) if vhost is not None else None
        if vhost is None or old is None or (old.is_remote and old.home_node == leader):
            return
        proxy = RemoteQueue(
            old.type_name, self.link, vhost.name, name, durable=old.durable, exclusive_owner=None,
            auto_delete=old.auto_delete, arguments=old.arguments, home_node=leader,
        )  # fmt: skip
        proxy.on_unused = vhost._queue_unused
        proxy.dead_letter = vhost._dead_letter
        _carry(old, proxy)
        vhost.queues[name] = proxy
        if not old.is_remote:  # this node led it: its queue stops
            store = getattr(old, "_store", None)
            if isinstance(store, ReplicatedStore):
                store.active = False
        self._hand_over(old, proxy)

    def _hand_over(self, old: QueueType, new: QueueType) -> None:
        """``new`` replaces ``old`` (the leadership moved): the clients' consumers of ``old``
        consume from ``new``, as RabbitMQ moves them to a new master, except those that asked
        for ``x-cancel-on-ha-failover``, which get basic.cancel. What they held unacked is
        delivered again by the new leader. Then ``old`` goes."""
        old.on_unused = None  # (its consumers leaving is no reason to delete the queue)
        consumers = getattr(old, "subscriptions", None) if old.is_remote else old.consumers  # type: ignore[attr-defined]
        for consumer in [*(consumers or ()), *self._parked.pop(old, ())]:
            arguments = getattr(consumer, "arguments", None)  # (None: another node's consumer)
            if arguments is None or arguments.get("x-cancel-on-ha-failover"):
                continue
            if consumer in self._moving:
                continue  # its move follows the queue object in place
            old.remove_consumer(consumer)
            if _alive(consumer):
                self._move(consumer)
        old.delete()  # the consumers left are cancelled

    def _park(self, proxy: QueueType, consumer: Any) -> bool:
        arguments = getattr(consumer, "arguments", None)
        if getattr(proxy, "replica_info", None) is None or arguments is None:
            return False
        if arguments.get("x-cancel-on-ha-failover"):
            return False
        self._parked.setdefault(proxy, []).append(consumer)
        return True

    def _move(self, consumer: Any) -> None:
        """``consumer`` subscribes at the queue object in its vhost now (``_subscribe``)."""
        self._moving[consumer] = self.broker.spawn(self._subscribe(consumer))

    async def _subscribe(self, consumer: Any) -> None:
        """Subscribe ``consumer`` at the queue object in place, asked again while the leader is
        still putting its queue in place, and again at the object that replaced it if one did
        meanwhile; cancelled if that does not happen within LEADER_WAIT."""
        deadline = asyncio.get_running_loop().time() + LEADER_WAIT
        name = consumer.queue.name
        vhost = self.broker.vhosts.get(consumer.queue.vhost)
        try:
            while _alive(consumer):
                queue = vhost.queues.get(name) if vhost is not None else None
                if queue is None or asyncio.get_running_loop().time() > deadline:
                    consumer.cancelled_by_server()  # the client is told
                    return
                consumer.queue = queue
                if not queue.is_remote:
                    queue.add_consumer(consumer)
                    return
                try:
                    await queue.add_consumer(consumer)
                except Exception:  # noqa: BLE001 - not in place yet, or the new leader went too
                    await asyncio.sleep(0.2)
                    continue
                if vhost.queues.get(name) is queue and _alive(consumer):  # type: ignore[union-attr]
                    queue.subscribed(consumer)  # type: ignore[attr-defined]
                    return
                queue.remove_consumer(consumer)  # replaced meanwhile (or the channel closed)
        finally:
            self._moving.pop(consumer, None)

    def _tell(self, peer: str, qlog: QueueLog) -> None:
        info = self._info(qlog.vhost, qlog.queue)
        self.link.send(peer, QueueLeader(qlog.vhost, qlog.queue, self.node, info.members, info.voters))

    def tell_members(self, qlog: QueueLog) -> None:
        """The group's members changed (or this node leads now): every node is told."""
        config = self.host.groups[qlog.group].node.config
        info = self._info(qlog.vhost, qlog.queue)
        info.leader = self.node
        info.voters = sorted(config.voters)
        info.members = sorted(config.voters | config.non_voters)
        for peer in self.service.peers():
            self._tell(peer, qlog)

    def _on_leader(self, node: str, told: QueueLeader) -> None:
        info = self._info(told.vhost, told.queue)
        info.leader, info.members, info.voters = told.leader, told.members, told.voters
        if (told.vhost, told.queue) in self.logs:
            return  # a member learns it from its group
        self._follow(told.vhost, told.queue, told.leader)
        self._changed.set()

    def _peer_up_too(self, node: str) -> None:
        if self._peer_up is not None:
            self._peer_up(node)
        for qlog in self.logs.values():
            if qlog.leader == self.node:
                self._tell(node, qlog)
        if self.on_node_up is not None:
            self.on_node_up(node)
        for proxy in [proxy for proxy in self._parked if proxy.home_node == node]:
            for consumer in self._parked.pop(proxy):  # the same leader is back
                if _alive(consumer) and consumer not in self._moving:
                    self._move(consumer)

    # -- membership (rabbitmq-queues add_member, delete_member, grow, shrink, quorum_status) --

    async def membership(self, vhost: str, name: str, action: str, node: str = "") -> Any:
        """``action`` (add, delete, status) on the queue's group, at its leader wherever it is.
        add and delete answer the group's size after the change (the leader may have moved)."""
        deadline = asyncio.get_running_loop().time() + LEADER_WAIT
        while True:
            queue = self.broker.vhosts[vhost].queue_or_404(name, reachable=False)
            if queue.type_name not in REPLICATED_TYPES:
                raise MembershipRefused("classic_queue_not_supported")
            try:
                if queue.is_remote:
                    if not queue.home_reachable:
                        raise MembershipRefused(NO_LEADER)
                    return await self.link.call(queue, "membership", action=action, node=node)  # type: ignore[arg-type]
                return await self._membership(queue, {"action": action, "node": node})
            except (MembershipRefused, ChannelError) as exc:
                # A leader that just left its group, or one being elected: asked again once
                # the new leader told this node.
                text = str(getattr(exc, "explanation", None) or exc)
                if NO_LEADER not in text or asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.1)

    async def _membership(self, queue: QueueType, args: dict[str, Any]) -> Any:
        """At the leader: what ``membership`` asked."""
        qlog = self.logs.get((queue.vhost, queue.name))
        if qlog is None:
            raise MembershipRefused(NO_LEADER)
        group = self.host.groups[qlog.group]
        config = group.node.config
        action, node = args["action"], args.get("node", "")
        if action == "status":  # with rabbitmq-queues' "undefined" snapshot and machine version
            return [[*row[:4], row[4] or None, row[5], MACHINE_VERSION] for row in self.host.status(qlog.group)]
        if action == "add":
            if node in config.voters or node in config.non_voters:
                raise MembershipRefused("already_a_member")
            if node not in self.service.peers():
                raise MembershipRefused(f"node {node} is not running")
            await self.add_member(qlog, node, voter=True)
            return len(group.node.config.voters) + len(group.node.config.non_voters)
        if action == "delete":
            if node not in config.voters and node not in config.non_voters:
                raise MembershipRefused("not_a_member")
            if len(config.voters) == 1 and node in config.voters:
                raise MembershipRefused("last_member")
            await self.remove_member(qlog, node)
            return len(group.node.config.voters) + len(group.node.config.non_voters)
        raise MembershipRefused(f"unknown membership action {action}")

    async def add_member(self, qlog: QueueLog, node: str, voter: bool) -> None:
        """At the leader: ``node`` joins the group, as a voter once it caught up if ``voter``."""
        self.link.send(node, JoinGroup(qlog.vhost, qlog.queue, qlog.group))
        await self.host.change_membership(qlog.group, MembershipOp.ADD_NON_VOTER, node)
        self.tell_members(qlog)
        if voter:
            await self.host.change_membership(qlog.group, MembershipOp.PROMOTE, node)
            self.tell_members(qlog)

    async def remove_member(self, qlog: QueueLog, node: str) -> None:
        """At the leader: ``node`` leaves the group (the leader itself: another one leads)."""
        await self.host.change_membership(qlog.group, MembershipOp.REMOVE, node)
        if node == self.node:
            self._leave(qlog)
        else:
            self.link.send(node, LeaveGroup(qlog.vhost, qlog.queue, qlog.group))
            self.tell_members(qlog)

    async def sync(self, vhost: str, name: str, cancel: bool) -> None:
        """sync_queue / cancel_sync_queue, at the queue's leader wherever it is."""
        queue = self.broker.vhosts[vhost].queue_or_404(name, reachable=False)
        if queue.type_name != "classic" or getattr(queue, "replica_info", None) is None:
            raise MembershipRefused("not_mirrored")
        if queue.is_remote:
            if not queue.home_reachable:
                raise MembershipRefused(NO_LEADER)
            await self.link.call(queue, "sync", cancel=cancel)  # type: ignore[arg-type]
            return
        await self.mirroring.sync(queue, {"cancel": cancel})

    def _on_join(self, node: str, join: JoinGroup) -> None:
        key = (join.vhost, join.queue)
        known = self.logs.get(key)
        if known is not None and known.group == join.group:
            return
        qlog = QueueLog(self, join.vhost, join.queue, join.group)
        self.logs[key] = qlog
        self.broker.spawn(self.host.open_group(join.group, qlog, []))  # empty: the leader adds it

    def _on_leave(self, node: str, leave: LeaveGroup) -> None:
        qlog = self.logs.get((leave.vhost, leave.queue))
        if qlog is not None and qlog.group == leave.group:
            self._leave(qlog)

    def _leave(self, qlog: QueueLog) -> None:
        """This node left the group: its log goes; a proxy towards the leader stays (towards
        none yet if this node led: the new leader tells every node)."""
        del self.logs[(qlog.vhost, qlog.queue)]
        self.broker.spawn(self.host.close_group(qlog.group))
        if qlog.leader == self.node:
            self._follow(qlog.vhost, qlog.queue, self.node)
            self._info(qlog.vhost, qlog.queue).leader = None


def _carry(old: QueueType, new: QueueType) -> None:
    """What a queue object in place passes to the one replacing it: its policies, settings,
    and what the group's record and info are."""
    for attribute in ("policy", "operator_policy", "effective_policy", "replica_record", "replica_info"):
        setattr(new, attribute, getattr(old, attribute, None))
    new.apply_settings(old.settings)


def _alive(consumer: Any) -> bool:
    """Whether a client's consumer is still subscribed on its channel (not cancelled, nor its
    channel closed)."""
    return consumer.channel.consumers.get(consumer.tag) is consumer  # type: ignore[no-any-return]
