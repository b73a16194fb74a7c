"""Classic mirrored queues: what RabbitMQ 3.10's ``ha-mode`` policies ask, on the replicated
queues' Raft groups (``cluster.replicated_queues``) instead of RabbitMQ's mirror chains.

A classic queue an ha-mode policy matches is a replicated queue whose members are its master
(the group's leader) and its mirrors. Where it differs from RabbitMQ, it is so that a confirmed
message is never lost:

* a confirm waits for a majority of the synchronised members (the group's voters), and only a
  synchronised member can take over (``ha-promote-on-shutdown`` / ``ha-promote-on-failure``
  are accepted, and act as ``when-synced`` always: promoting an unsynchronised mirror is how
  RabbitMQ loses messages);
* a new mirror catches up in the background (a non-voting member receiving the log) and the
  queue serves on meanwhile; ``ha-sync-mode: automatic`` makes it a voter once it caught up,
  ``manual`` leaves that to ``amqp-ctl sync_queue`` (``cancel_sync_queue`` stops waiting);
* a policy that comes to an existing classic queue turns it into a group: the queue record
  gets a group (every node then holds the replicated queue in its place) and the old queue's
  messages move into it, each removed from the old one once the group has it; its consumers
  are cancelled (basic.cancel: unlike a failover's, they were the old queue's, on every node).
  A node stopped mid-way moves the rest when it starts again.

Mirrors are placed as ``rabbit_mirror_queue_misc:suggested_queue_nodes``: ``all`` every node
(running ones at once, the others when they come up), ``exactly`` N members (kept ones first,
then running nodes by name), ``nodes`` the listed ones that run. The leader stays where it is.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from amqp_server.core.changes import queue_record
from amqp_server.core.events import Event
from amqp_server.core.policy import effective_definition, select
from amqp_server.metadata.store import Change
from cluster.raft import MembershipOp
from queues.base import QueueEntry, QueueType, Settlement, all_settled

if TYPE_CHECKING:
    from amqp_server.core.vhost import VirtualHost
    from cluster.replicated_queues import QueueLog, ReplicatedQueues

log = logging.getLogger(__name__)

MOVE_BATCH = 256  # messages moved into the group at a time when a queue becomes mirrored
RETRY = 1.0  # seconds between tries of a conversion or a move that could not go on
LEADER_WAIT = 10.0  # how long a declare waits for its queue's mirrors


def ha_definition(vhost: VirtualHost, name: str) -> Mapping[str, Any]:
    """The queue's effective policy definition (ha keys are refused in operator policies)."""
    policy = select(vhost.policies.values(), "queue", name) if vhost.policies else None
    return effective_definition(policy, None)


def mirror_nodes(definition: Mapping[str, Any], leader: str, running: list[str], members: list[str]) -> list[str] | None:
    """The members a mirrored queue led by ``leader`` should have (leader first), None when no
    ha-mode applies. Members not running are kept by ``all`` and ``nodes`` (they come back),
    replaced by ``exactly``."""
    mode = definition.get("ha-mode")
    if mode is None:
        return None
    params = definition.get("ha-params")
    wanted = [leader]
    if mode == "all":
        wanted += sorted((set(running) | set(members)) - {leader})
    elif mode == "exactly":
        count = params if isinstance(params, int) and params > 0 else 1
        kept = [node for node in sorted(members) if node != leader and node in running]
        wanted += (kept + sorted(set(running) - {leader, *kept}))[: count - 1]
    elif mode == "nodes":
        listed = [node for node in params or [] if isinstance(node, str)]
        wanted += [node for node in listed if node != leader and (node in running or node in members)]
    return wanted


class Mirroring:
    """This node's part in mirroring: turning its classic queues into groups when a policy
    asks, and, for the groups it leads, adding and removing mirrors as the policy and the
    running nodes change."""

    def __init__(self, replicas: ReplicatedQueues) -> None:
        self.replicas = replicas
        self.broker = replicas.broker
        self._busy: dict[tuple[str, str], asyncio.Task[None]] = {}  # a reconcile at a time per queue
        self._again: set[tuple[str, str]] = set()  # asked again while busy
        self._syncs: dict[tuple[str, str], asyncio.Task[None]] = {}  # sync_queue in progress
        events = self.broker.events
        events.subscribe(self._policies_changed, "policy.set", "policy.cleared")
        events.subscribe(self._queue_created, "queue.created")
        replicas.on_lead = self._leading
        replicas.on_node_up = self._node_up

    # -- members at declare ----------------------------------------------------------------

    def initial_members(self, vhost: VirtualHost, name: str, exclusive: bool) -> list[str] | None:
        """A classic queue declared now: if a policy mirrors it (exclusive queues never are),
        the declaring node alone founds its group, so that it leads (it is the master, as in
        RabbitMQ); its mirrors join next (``_adjust``) and the declare waits for them."""
        if exclusive or "ha-mode" not in ha_definition(vhost, name):
            return None
        return [self.broker.node_name]

    async def settled(self, vhost: str, name: str) -> None:
        """Once the mirrors a queue's policy asks for have joined (or failed to, for now)."""
        task = self._busy.get((vhost, name))
        if task is not None:
            await asyncio.wait([task], timeout=LEADER_WAIT)

    # -- what sets a reconcile off -----------------------------------------------------------

    def _queue_created(self, event: Event) -> None:
        queue = event.subject
        if queue.type_name != "classic" or queue.exclusive_owner is not None:
            return
        if getattr(queue, "replica_info", None) is None:
            if not queue.is_remote and "ha-mode" in (getattr(queue, "effective_policy", None) or {}):
                self._schedule(queue.vhost, queue.name)
            return
        store = self.broker.message_store
        if queue.home_node == self.broker.node_name and store is not None and store.holds(queue.vhost, queue.name):
            self._recover_leftover(queue)

    def _policies_changed(self, event: Event) -> None:
        vhost = self.broker.vhosts.get(event.payload.get("vhost", ""))
        if vhost is None:
            return
        for queue in list(vhost.queues.values()):
            if queue.type_name == "classic" and queue.exclusive_owner is None:
                self._schedule(vhost.name, queue.name)

    def _leading(self, qlog: QueueLog) -> None:
        self._schedule(qlog.vhost, qlog.queue)

    def _node_up(self, node: str) -> None:
        for qlog in list(self.replicas.logs.values()):
            if qlog.leader == self.broker.node_name:
                self._schedule(qlog.vhost, qlog.queue)

    def _schedule(self, vhost: str, name: str) -> None:
        key = (vhost, name)
        if key in self._busy:
            self._again.add(key)
            return
        self._busy[key] = self.broker.spawn(self._reconcile(key))

    async def _reconcile(self, key: tuple[str, str]) -> None:
        try:
            while True:
                self._again.discard(key)
                try:
                    await self._reconcile_once(*key)
                except Exception as exc:  # noqa: BLE001 - a minority, a member down: tried again
                    log.info("mirrors of queue '%s' in vhost '%s' not changed yet: %s", key[1], key[0], exc)
                    await asyncio.sleep(RETRY)
                    self._again.add(key)
                if key not in self._again:
                    return
        finally:
            del self._busy[key]

    async def _reconcile_once(self, vhost_name: str, name: str) -> None:
        vhost = self.broker.vhosts.get(vhost_name)
        queue = vhost.queues.get(name) if vhost is not None else None
        if vhost is None or queue is None or queue.type_name != "classic":
            return
        definition = ha_definition(vhost, name)
        if getattr(queue, "replica_info", None) is None:
            if not queue.is_remote and "ha-mode" in definition:
                await self._convert(vhost, queue, definition)
            return
        qlog = self.replicas.logs.get((vhost_name, name))
        if qlog is None or qlog.leader != self.broker.node_name:
            return  # the leader does it
        await self._adjust(qlog, definition)

    # -- a classic queue becomes a group -----------------------------------------------------

    async def _convert(self, vhost: VirtualHost, old: QueueType, definition: Mapping[str, Any]) -> None:
        members = [self.broker.node_name]  # (it leads at once; mirrors join then: _adjust)
        record = {**queue_record(old), "members": members, "group": uuid.uuid4().hex}
        await self.broker.change(Change("queue", "put", vhost.name, old.name, record, persisted=old.durable))
        log.info("queue '%s' in vhost '%s' is mirrored on %s", old.name, vhost.name, ", ".join(members))
        old.cancel_consumers()  # type: ignore[attr-defined]
        self.broker.spawn(self._move_messages(vhost.name, old))

    def _recover_leftover(self, queue: QueueType) -> None:
        """The node stopped while moving a queue's messages into its group: the rest, still in
        the message store, is loaded into a classic queue of its own and moved on."""
        vhost = self.broker.vhosts[queue.vhost]
        old = self.broker.queue_types["classic"](
            queue.vhost, queue.name, durable=True, exclusive_owner=None, auto_delete=False,
            arguments=queue.arguments, home_node=queue.home_node,
        )  # fmt: skip
        store = self.broker.message_store
        assert store is not None
        store.attach(old)
        old.enable_paging(store, self.broker.config.queue_memory_window)  # type: ignore[attr-defined]
        self.broker.spawn(self._move_messages(vhost.name, old))

    async def _move_messages(self, vhost_name: str, old: QueueType) -> None:
        """``old``'s messages into the queue in its place, in order, each settled in ``old``
        once the group has it; done when ``old`` holds none (its unacked ones come back to it
        when they are returned)."""
        while True:
            vhost = self.broker.vhosts.get(vhost_name)
            target = vhost.queues.get(old.name) if vhost is not None else None
            if target is None or getattr(target, "replica_info", None) is None:
                old.delete()  # the queue was deleted meanwhile: its messages go with it
                return
            if not old.message_count:
                if not old.unacked_count:
                    old.delete()
                    return
                await asyncio.sleep(RETRY / 4)
                continue
            if not target.home_reachable:
                await asyncio.sleep(RETRY)
                continue
            entries: list[QueueEntry] = []
            while len(entries) < MOVE_BATCH and (entry := old.get()) is not None:
                entries.append(entry)
            results = [target.publish(entry.message) for entry in entries]
            settlements = {result for result in results if isinstance(result, Settlement)}
            if not all(results) or not await all_settled(settlements):
                old.requeue(entries)  # again, after a pause (duplicates rather than a loss)
                await asyncio.sleep(RETRY)
                continue
            for entry in entries:
                old.settle(entry)

    # -- members of a group this node leads ----------------------------------------------------

    async def _adjust(self, qlog: QueueLog, definition: Mapping[str, Any]) -> None:
        replicas = self.replicas
        group = replicas.host.groups[qlog.group]
        config = group.node.config
        members = sorted(config.voters | config.non_voters)
        leader = self.broker.node_name
        wanted = mirror_nodes(definition, leader, replicas.running_nodes(), members) or [leader]
        running = set(replicas.running_nodes())
        # A mirror of an empty queue is synchronised at once (RabbitMQ's too): it votes.
        voter = definition.get("ha-sync-mode") == "automatic" or not qlog.entries
        for node in wanted:
            if node not in members and node in running:
                await replicas.add_member(qlog, node, voter=voter)
        for node in members:
            if node not in wanted:
                await replicas.remove_member(qlog, node)
        if definition.get("ha-sync-mode") == "automatic":
            for node in sorted(group.node.config.non_voters):
                await replicas.host.change_membership(qlog.group, MembershipOp.PROMOTE, node, timeout=3600)
                replicas.tell_members(qlog)

    # -- sync_queue / cancel_sync_queue -----------------------------------------------------------

    async def sync(self, queue: QueueType, args: dict[str, Any]) -> None:
        """At the leader: sync_queue (every mirror a voter once caught up) or, with
        ``cancel``, cancel_sync_queue."""
        key = (queue.vhost, queue.name)
        qlog = self.replicas.logs.get(key)
        if qlog is None or qlog.leader != self.broker.node_name:
            raise RuntimeError("not_mirrored")
        if args.get("cancel"):
            task = self._syncs.pop(key, None)
            if task is None:
                raise RuntimeError("not_syncing")
            task.cancel()
            return
        if key not in self._syncs:
            self._syncs[key] = self.broker.spawn(self._sync(qlog))
        await asyncio.shield(self._syncs[key])

    async def _sync(self, qlog: QueueLog) -> None:
        key = (qlog.vhost, qlog.queue)
        try:
            for node in sorted(self.replicas.host.groups[qlog.group].node.config.non_voters):
                await self.replicas.host.change_membership(qlog.group, MembershipOp.PROMOTE, node, timeout=3600)
                self.replicas.tell_members(qlog)
        finally:
            self._syncs.pop(key, None)

