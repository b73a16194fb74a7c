"""The cluster's metadata store: every metadata ``Change`` is a command of one Raft group
(``cluster.raft``) whose voters are the disc nodes and whose non-voters the RAM nodes; every
node applies the committed commands in log order through the broker's own apply path.

``commit(change)`` proposes the change to the leader (this node, or the one it forwards the
change to over the link) and returns once the entry is committed (on a majority of the voters'
disks) and applied here, answering whether a creation took effect. A node that cannot reach a
leader (a minority) refuses the change as RabbitMQ 4 with Khepri does: 541 INTERNAL_ERROR,
"failed to declare queue 'q' in vhost '/' because the operation timed out".

The driver follows ``cluster.raft.output``'s contract: writes go to ``cluster.raft_storage``
(one transaction for every Output that piled up while the previous one ran), messages wait for
the writes before them, committed entries are applied at once. Joining nodes start from a
snapshot of the metadata (``Broker.snapshot``) the leader takes when it adds them, then the log.
docs/clustering.md, "Metadata on Raft", has the design.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import random
from typing import TYPE_CHECKING, Any

from amqp_server.metadata.sqlite import lock_directory, read_changes, unlock_directory
from amqp_server.metadata.store import Change, MetadataStore
from amqp_server.protocol.errors import INTERNAL_ERROR, ConnectionError
from amqp_server.storage.sqlite_db import StoreError
from cluster.codec import (
    RaftEnvelope,
    Reply,
    Request,
    change_command,
    change_from,
    envelope,
    member_command,
    open_envelope,
    snapshot_data,
    snapshot_from,
)
from cluster.link import LinkDown
from cluster.raft import (
    DurableState,
    EntryKind,
    MembershipError,
    MembershipOp,
    NotLeader,
    Output,
    RaftNode,
    RaftOptions,
    Role,
    bootstrap,
)
from cluster.raft.log import Entry
from cluster.raft.snapshot import Snapshot
from cluster.raft_storage import MemoryRaftStorage, SqliteRaftStorage
from cluster.service import ClusterService, peer_address
from cluster.wire import new_incarnation

if TYPE_CHECKING:
    from amqp_server.core.broker import Broker

log = logging.getLogger(__name__)

MEMBERS_FILE = "cluster_nodes.json"  # who to rejoin: a RAM node keeps nothing else
TICK = 0.05  # seconds between RaftNode.tick calls
RECOVERY_WAIT = 30.0  # seconds a restarting node waits for its log's entries to be committed
OPTIONS = RaftOptions(election_timeout=1.0, heartbeat_interval=0.1)
# MembershipError texts that mean "not now": the change is tried again until the timeout.
_RETRY = ("in progress", "has not committed", "has not caught up")


class Unavailable(ConnectionError):
    """No leader can be reached: the change is refused (541, as Khepri's timeout)."""

    http_status = 503


def node_of(member: str) -> str:
    """A member's node name (a RAM node's member id is ``name#incarnation``)."""
    return member.partition("#")[0]


def unavailable(change: Change | None) -> Unavailable:
    if change is None:
        return Unavailable(INTERNAL_ERROR, "the cluster's metadata store is unavailable (no quorum)")
    verb = "declare" if change.op == "put" else "delete"
    where = f" in vhost '{change.vhost}'" if change.vhost is not None and change.kind != "vhost" else ""
    kind = change.kind.replace("_", " ")
    return Unavailable(
        INTERNAL_ERROR, f"failed to {verb} {kind} '{change.name}'{where} because the operation timed out"
    )


def read_members_file(data_dir: str) -> dict[str, Any]:
    """``<data dir>/cluster_nodes.json``: the node's type and the other members it last knew
    (``{"type": "disc", "nodes": {node: [host, port]}}``), or {} without one."""
    path = os.path.join(data_dir, MEMBERS_FILE)
    with contextlib.suppress(OSError, ValueError), open(path, encoding="utf-8") as handle:
        return json.load(handle)
    return {}


def write_members_file(data_dir: str, document: dict[str, Any]) -> None:
    path = os.path.join(data_dir, MEMBERS_FILE)
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(document, handle)
    os.replace(path + ".tmp", path)


class ClusterError(StoreError):
    """A cluster operation refused, or a start that cannot join; the text is for the operator."""


class RaftMetadataStore(MetadataStore):
    applies = True

    def __init__(
        self, service: ClusterService, data_dir: str | None, *, ram: bool = False, timeout: float = 30.0
    ) -> None:
        self.service = service
        self.data_dir = data_dir
        # The type it last had in a cluster wins over the configured one (it may have changed).
        self.ram = self._members_file().get("type", "ram" if ram else "disc") == "ram"
        self.timeout = timeout  # Khepri's default: 30 s
        self.leader_wait = 3 * OPTIONS.election_timeout  # without a leader that long: a minority
        self.broker: Broker | None = None  # set by the server before the boot
        self.storage: MemoryRaftStorage | SqliteRaftStorage = (
            MemoryRaftStorage() if self.ram or not data_dir else SqliteRaftStorage(data_dir)
        )
        self.member_id = self._new_member_id()
        self.node: RaftNode | None = None
        self.applied = 0
        self.addresses: dict[str, tuple[str, int]] = {}  # node -> cluster address (replicated)
        self._lock_fd: int | None = None
        self._rng = random.Random()
        self._waiters: dict[int, tuple[int, asyncio.Future[Any]]] = {}  # index -> (term, answer)
        self._applied_event = asyncio.Event()
        self._leader_event = asyncio.Event()
        self._pending_writes: list[Output] = []
        self._held: list[tuple[int, list[Any]]] = []  # (seq, messages) waiting for their write
        self._wake_writer = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._requests: dict[int, tuple[str, asyncio.Future[Reply]]] = {}  # id -> (member, reply)
        self._ids = itertools.count(1)
        self._peers: set[str] = set()
        self._config_seen: Any = None
        self._stored: tuple[DurableState | None, int] = (None, 0)
        self._imported: list[Change] | None = None  # what the node stored while it ran alone
        service.handlers[RaftEnvelope] = self._raft_message
        service.handlers[Request] = self._request_message
        service.handlers[Reply] = self._reply_message

    def _new_member_id(self) -> str:
        node = self.service.node
        return f"{node}#{new_incarnation()}" if self.ram else node

    # -- MetadataStore ------------------------------------------------------------------------

    async def load(self) -> list[Change]:
        """Lock the data directory and open the Raft state; the node starts in ``start``."""
        if self.data_dir:
            os.makedirs(self.data_dir, exist_ok=True)
            self._lock_fd = lock_directory(self.data_dir)
        self._stored = await self.storage.open()
        state = self._stored[0]
        if state is not None and not state.snapshot.config.ordered_members and not state.entries:
            self._stored = (None, 0)  # a join that got nowhere before its start failed: join again
        if self._stored[0] is None and self.data_dir and not self.ram and not self._members_file():
            self._imported = await read_changes(self.data_dir)
        self.first_start = self._stored[0] is None and self._founder() and self._imported is None
        return []

    async def start(self) -> None:
        """Start the Raft node: from its stored state, as the founding node of a cluster of
        one (the lowest name of the configured nodes: the others join it), or by joining."""
        state, commit = self._stored
        if state is not None:
            self._start(state, commit)
            await self._recover_log(state)
        elif self._founder():
            await self._found(self._imported)
            self._imported = None
        else:
            await self._join(self._rejoin_targets())

    async def _recover_log(self, state: DurableState) -> None:
        """Wait (up to RECOVERY_WAIT) until the entries of this node's log are applied: the
        commit index stored with them may lag (it is written with the next entries), and the
        message store's recovery, which comes next, keeps the messages of the queues the
        metadata has then. Without a leader in time (no majority up yet) the node starts
        with what it knew committed, and says so."""
        last = state.entries[-1].index if state.entries else 0
        if self.applied >= last:
            return
        try:
            await self._caught_up(last, asyncio.get_running_loop().time() + RECOVERY_WAIT)
        except Unavailable:
            log.warning(
                "no leader within %s s: starting with the metadata applied up to entry %d of %d (queues declared "
                "after it recover no messages)", RECOVERY_WAIT, self.applied, last,
            )  # fmt: skip

    async def _found(self, imported: list[Change] | None = None) -> None:
        """Start as the only member (the voter) of a new cluster; with the metadata it had
        alone (``imported``) as the snapshot the cluster starts from."""
        state = bootstrap(frozenset({self.member_id}))
        if imported is not None:
            state.snapshot = Snapshot(0, 0, state.snapshot.config, self._import(imported))
        await self.storage.bootstrap(state)
        self._start(state, 0, restore=imported is None)
        await self._wait_leader(self.timeout)
        await self._propose(member_command(self.service.node, self._own_address()), None)

    def _founder(self) -> bool:
        """Whether this node founds the cluster: a disc node never in one before (no members
        file: a member that lost its state rejoins) that has metadata of its own (peer
        discovery is for blank nodes, as RabbitMQ's) or the lowest name of its peers'."""
        if self.ram or self._members_file():
            return False
        if self._imported is not None:
            return True
        return min([self.service.node, *self._rejoin_targets()]) == self.service.node

    def _import(self, changes: list[Change]) -> bytes:
        """Apply the metadata this node stored while it ran alone, as a boot replays it, and
        answer the snapshot of it the new cluster starts from. Its queues are homed here
        whatever name the node had: their messages are in this directory's message store,
        claimed by (vhost, name) when the queues come back."""
        broker = self.broker
        assert broker is not None
        for change in changes:
            if change.kind == "queue":
                home = {**change.record, "home_node": self.service.node}
                change = dataclasses.replace(change, record=home)
            try:
                broker.apply(change, broker.prepare(change))
            except Exception as exc:  # noqa: BLE001 - as a boot: the rest is imported
                reason = getattr(exc, "reply_text", None) or f"{type(exc).__name__}: {exc}"
                log.error(
                    "not importing %s %r in vhost %r: %s", change.kind, change.name, change.vhost, reason
                )
        peers = ", ".join(self.service.configured)
        log.warning(
            "node %s founds a cluster with the metadata it had alone%s", self.service.node,
            f" (its peers {peers} are not asked: to join their cluster instead, join_cluster resets it)"
            if peers else "",
        )  # fmt: skip
        return snapshot_data(broker.snapshot(), {})

    async def commit(self, change: Change) -> bool | None:
        if not change.replicated:
            return None
        result = await self._propose(change_command(change), change)
        if isinstance(result, str):  # it could not apply when its turn came
            assert self.broker is not None
            self.broker.prepare(change)  # raises the error it meets now, if any
            return False
        return result

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        # Writes not done yet are lost as in a crash: nothing that depends on them was sent.
        await self.storage.close()
        if self._lock_fd is not None:
            unlock_directory(self._lock_fd)
            self._lock_fd = None

    # -- what the cluster looks like ----------------------------------------------------------

    @property
    def leader(self) -> str | None:
        return self.node.leader if self.node is not None else None

    def members(self) -> dict[str, str]:
        """Each member's node name -> "disc" or "ram" (voter or not)."""
        if self.node is None:
            return {}
        config = self.node.config
        found = {node_of(m): "disc" for m in config.voters}
        found.update({node_of(m): "ram" for m in config.non_voters})
        return dict(sorted(found.items()))

    def _own_address(self) -> tuple[str, int]:
        return self.service.node.partition("@")[2], self.service.port

    # -- the driver -----------------------------------------------------------------------------

    def _start(self, state: DurableState, commit: int, restore: bool = True) -> None:
        """Run the Raft node from ``state``; ``restore``: its snapshot is not applied yet."""
        loop = asyncio.get_running_loop()
        self.node = RaftNode(self.member_id, state, OPTIONS, self._rng, loop.time())
        if restore:
            self._restore(state.snapshot.data, state.snapshot.index)
        # Entries up to the commit index stored last time are committed: applied now.
        for entry in state.entries:
            if entry.index <= commit:
                self._apply(entry)
        self._sync_peers()
        self._tasks.append(loop.create_task(self._tick_loop(), name="raft tick"))
        self._tasks.append(loop.create_task(self._write_loop(), name="raft writer"))

    async def _stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self.node = None
        for _term, future in self._waiters.values():
            if not future.done():
                future.set_exception(unavailable(None))
        self._waiters.clear()

    async def _tick_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(TICK)
            if self.node is not None:
                self._handle(self.node.tick(loop.time()))

    def _handle(self, out: Output) -> None:
        node = self.node
        assert node is not None
        if out.has_write:
            if self.storage.durable:
                self._pending_writes.append(out)
                self._held.append((out.seq, out.messages))
                self._wake_writer.set()
            else:
                self._send(out.send_now)
                self._apply_output(out)
                self._send(out.messages)
                self._handle(node.persisted(out.seq))
                return
        elif out.messages:
            if self._held:
                self._held.append((self._held[-1][0], out.messages))
            else:
                self._send(out.messages)
        self._send(out.send_now)
        self._apply_output(out)

    def _apply_output(self, out: Output) -> None:
        if out.restore is not None:
            self._restore(out.restore.data, out.restore.index)
        for entry in out.committed:
            self._apply(entry)
        if out.committed or out.restore is not None:
            self._applied_event.set()
            self._applied_event = asyncio.Event()
        if out.changes:
            self._state_changed()
        if out.want_snapshot:
            self._snapshot()
        if self.node is not None and self.node.config is not self._config_seen:
            self._sync_peers()

    def _send(self, messages: list[Any]) -> None:
        for msg in messages:
            node = node_of(msg.dst)
            # A full buffer loses the message as the network would: Raft sends again.
            with contextlib.suppress(LinkDown):
                self.service.try_send(node, envelope(msg))

    async def _write_loop(self) -> None:
        while True:
            await self._wake_writer.wait()
            self._wake_writer.clear()
            await self._flush_writes()

    async def _flush_writes(self) -> None:
        if not self._pending_writes or self.node is None:
            return
        outputs, self._pending_writes = self._pending_writes, []
        await self.storage.write(outputs, self.applied)
        seq = outputs[-1].seq
        assert seq is not None
        released = [m for s, messages in self._held if s <= seq for m in messages]
        self._held = [(s, m) for s, m in self._held if s > seq]
        self._send(released)
        if self.node is not None:
            self._handle(self.node.persisted(seq))

    # -- the state machine ----------------------------------------------------------------------

    def _apply(self, entry: Entry) -> None:
        if entry.index <= self.applied:
            return
        self.applied = entry.index
        result: Any = None
        if entry.kind is EntryKind.COMMAND:
            result = self._apply_command(json.loads(entry.command))
        waiter = self._waiters.pop(entry.index, None)
        if waiter is not None and not waiter[1].done():
            if waiter[0] == entry.term:
                waiter[1].set_result(result)
            else:  # another leader's entry took its place
                waiter[1].set_exception(unavailable(None))

    def _apply_command(self, command: dict[str, Any]) -> Any:
        if "member" in command:
            self.addresses[command["member"]] = tuple(command["address"])  # type: ignore[assignment]
            self._config_seen = None  # peers to sync
            return None
        broker = self.broker
        assert broker is not None
        change = change_from(command["change"])
        if change.create and broker.exists(change):
            return False
        try:
            prepared = broker.prepare(change)
        except Exception as exc:  # noqa: BLE001 - the same on every node: nothing changes
            reason = getattr(exc, "reply_text", None) or f"{type(exc).__name__}: {exc}"
            log.warning("committed %s %s %r not applied: %s", change.op, change.kind, change.name, reason)
            return reason
        broker.apply(change, prepared)
        return True

    def _restore(self, data: bytes, index: int) -> None:
        broker = self.broker
        assert broker is not None
        changes, addresses = snapshot_from(data)
        if data or broker.vhosts or broker.users:
            broker.clear()
            broker.restore(changes)
        self.addresses = addresses
        self.applied = index
        self._config_seen = None

    def _snapshot(self) -> None:
        node, broker = self.node, self.broker
        assert node is not None and broker is not None
        if self.applied > node.log.snapshot_index:
            self._handle(node.snapshot_taken(self.applied, snapshot_data(broker.snapshot(), self.addresses)))

    def _state_changed(self) -> None:
        assert self.node is not None
        if self.node.leader is not None:
            self._leader_event.set()
        else:
            self._leader_event.clear()
        # Requests forwarded to a leader that is no longer the one: it may never answer.
        for member, future in self._requests.values():
            if member != self.node.leader and not future.done():
                future.set_exception(unavailable(None))
        if self.node.role != Role.LEADER:
            # Proposals this node made as leader: their fate is unknown here now.
            for index, (_term, future) in list(self._waiters.items()):
                if not future.done():
                    future.set_exception(unavailable(None))
                del self._waiters[index]

    def _sync_peers(self) -> None:
        """Link to every member (where it says it listens); unlink from those gone."""
        node = self.node
        if node is None:
            return
        self._config_seen = node.config
        wanted = {node_of(m) for m in node.config.ordered_members} - {self.service.node}
        for peer in wanted:
            address = self.service.configured.get(peer) or self.addresses.get(peer)
            if address is not None and peer not in self._peers:
                self.service.add_peer(peer, address)
                self._peers.add(peer)
        for peer in self._peers - wanted - set(self.service.configured):
            self.service.remove_peer(peer)
            self._peers.discard(peer)
        self._write_members_file()

    def _write_members_file(self) -> None:
        if not self.data_dir or self.node is None:
            return
        members = {node_of(m): (self.service.configured.get(node_of(m)) or self.addresses.get(node_of(m)))
                   for m in self.node.config.ordered_members}  # fmt: skip
        members.pop(self.service.node, None)
        if not members:
            return
        document = {"type": "ram" if self.ram else "disc",
                    "nodes": {n: list(a) if a else None for n, a in members.items()}}  # fmt: skip
        write_members_file(self.data_dir, document)

    def _rejoin_targets(self) -> list[str]:
        """The peers a node without Raft state joins: the configured ones and, after a
        restart, those its members file names."""
        targets = [node for node in self.service.configured if node != self.service.node]
        for node, address in self._members_file().get("nodes", {}).items():
            if node not in targets and node != self.service.node:
                targets.append(node)
                if address and node not in self.service.configured:
                    self.addresses[node] = tuple(address)  # type: ignore[assignment]
        return targets

    def _members_file(self) -> dict[str, Any]:
        return read_members_file(self.data_dir) if self.data_dir else {}

    # -- proposing ------------------------------------------------------------------------------

    async def _wait_leader(self, timeout: float) -> str:
        if self.leader is None:
            try:
                async with asyncio.timeout(timeout):
                    while self.leader is None:
                        self._leader_event.clear()  # (set for a node stopped since)
                        await self._leader_event.wait()
            except TimeoutError:
                pass
        if self.leader is None:
            raise unavailable(None)
        return self.leader

    async def _propose(self, command: str, change: Change | None) -> Any:
        """Commit ``command`` through the leader; its result once applied here."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while True:
            try:
                leader = await self._wait_leader(min(self.leader_wait, deadline - loop.time()))
            except Unavailable:
                raise unavailable(change) from None
            try:
                if leader == self.member_id:
                    return await self._await_entry(self._propose_here(command), deadline)
                reply = await self._call(leader, "propose", {"command": command}, deadline)
                await self._caught_up(reply["index"], deadline)
                return reply["result"]
            except (NotLeader, Unavailable, ClusterError):
                # The leadership moved on the way. Proposed again to the next leader: the entry
                # may have been committed all the same, and applying a change twice changes
                # nothing more (a creation finds the thing existing).
                if loop.time() >= deadline:
                    raise unavailable(change) from None
                await asyncio.sleep(TICK)

    def _propose_here(self, command: str) -> asyncio.Future[Any]:
        assert self.node is not None
        out = self.node.propose(command)
        index, term = out.proposed[0]
        return self._wait_entry(index, term, out)

    def _wait_entry(self, index: int, term: int, out: Output) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[index] = (term, future)
        self._handle(out)
        return future

    async def _await_entry(self, future: asyncio.Future[Any], deadline: float) -> Any:
        try:
            async with asyncio.timeout_at(deadline):
                return await future
        except TimeoutError:
            raise unavailable(None) from None

    async def _caught_up(self, index: int, deadline: float) -> None:
        """Wait until this node has applied ``index`` (a change made through the leader is
        visible here when ``commit`` returns)."""
        try:
            async with asyncio.timeout_at(deadline):
                while self.applied < index:
                    await self._applied_event.wait()
        except TimeoutError:
            raise unavailable(None) from None

    # -- requests between members -----------------------------------------------------------

    async def _call(self, member: str, op: str, args: dict[str, Any], deadline: float) -> dict[str, Any]:
        """``op`` on ``member``; its result, or ``NotLeader`` with the leader it knows."""
        request_id = next(self._ids)
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._requests[request_id] = (member, future)
        try:
            try:
                await self.service.send(node_of(member), Request(request_id, op, args))
                async with asyncio.timeout_at(deadline):
                    reply = await future
            except (LinkDown, TimeoutError):
                raise unavailable(None) from None
        finally:
            self._requests.pop(request_id, None)
        if not reply.ok:
            if reply.error == "not_leader":
                raise NotLeader(reply.leader)
            raise ClusterError(reply.error)
        return reply.result

    def _reply_message(self, node: str, reply: Reply) -> None:
        request = self._requests.get(reply.id)
        if request is not None and not request[1].done():
            request[1].set_result(reply)

    def _request_message(self, node: str, request: Request) -> None:
        asyncio.get_running_loop().create_task(self._serve(node, request))

    async def _serve(self, node: str, request: Request) -> None:
        handler = getattr(self, f"_op_{request.op}", None)
        try:
            if self.node is None or self.node.role != Role.LEADER:
                raise NotLeader(self.leader)
            if handler is None:
                raise ClusterError(f"unknown request {request.op}")
            reply = Reply(request.id, True, await handler(**request.args))
        except NotLeader as exc:
            reply = Reply(request.id, False, error="not_leader", leader=exc.leader)
        except (ClusterError, MembershipError, Unavailable) as exc:
            reply = Reply(request.id, False, error=str(exc))
        with contextlib.suppress(LinkDown):
            await self.service.send(node, reply)

    def _raft_message(self, node: str, env: RaftEnvelope) -> None:
        if self.node is None:
            return
        try:
            msg = open_envelope(env)
        except (ValueError, TypeError) as exc:
            log.warning("node %s sent a malformed Raft message: %s", node, exc)
            return
        if msg.dst != self.member_id:
            return  # for an identity of this node's before it restarted
        self._handle(self.node.receive(msg))

    # -- the leader's operations ----------------------------------------------------------------

    async def _op_propose(self, command: str) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        future = self._propose_here(command)
        result = await self._await_entry(future, loop.time() + self.timeout)
        assert self.node is not None
        index = self.applied
        # The asking follower waits to have applied the entry: a heartbeat round (a read-index
        # read, its answer unused) tells it the commit now rather than a heartbeat later.
        with contextlib.suppress(NotLeader):
            self._handle(self.node.read(None))
        return {"result": result, "index": index}

    async def _op_join(self, member: str, address: list[Any], ram: bool) -> dict[str, Any]:
        node = self.node
        assert node is not None
        name = node_of(member)
        await self._op_propose(member_command(name, (address[0], address[1])))
        for old in node.config.ordered_members:
            if old != member and node_of(old) == name:  # a RAM node's identity before its restart
                await self._change(MembershipOp.REMOVE, old)
        if member not in node.config:
            self._snapshot()  # it starts from the metadata as it is now
            await self._change(MembershipOp.ADD_NON_VOTER, member)
        if not ram and member not in node.config.voters:
            await self._change(MembershipOp.PROMOTE, member)
        return {"index": self.applied}

    async def _op_change_type(self, node_name: str, disc: bool) -> None:
        member = self._member(node_name)
        assert self.node is not None
        if disc and member not in self.node.config.voters:
            await self._change(MembershipOp.PROMOTE, member)
        elif not disc and member in self.node.config.voters:
            await self._change(MembershipOp.DEMOTE, member)

    async def _op_forget(self, node_name: str) -> None:
        await self._change(MembershipOp.REMOVE, self._member(node_name))

    def _member(self, node_name: str) -> str:
        assert self.node is not None
        for member in self.node.config.ordered_members:
            if node_of(member) == node_name:
                return member
        raise ClusterError(f"The node selected is not in the cluster: {node_name}")

    async def _change(self, op: MembershipOp, member: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while True:
            node = self.node
            if node is None:
                raise NotLeader(None)
            try:
                out = node.change_membership(op, member)
            except MembershipError as exc:
                if any(text in str(exc) for text in _RETRY) and loop.time() < deadline:
                    await asyncio.sleep(TICK)
                    continue
                raise
            await self._await_entry(self._wait_entry(node.log.last_index, node.term, out), deadline)
            return

    # -- operations for amqp-ctl ----------------------------------------------------------------

    async def leader_call(self, op: str, **args: Any) -> Any:
        """``op`` on the leader, wherever it is."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while True:
            leader = await self._wait_leader(min(self.leader_wait, deadline - loop.time()))
            try:
                if leader == self.member_id:
                    return await getattr(self, f"_op_{op}")(**args)
                return await self._call(leader, op, args, deadline)
            except NotLeader:
                if loop.time() >= deadline:
                    raise unavailable(None) from None
                await asyncio.sleep(TICK)

    async def _join(self, targets: list[str]) -> None:
        """Join the cluster of the first of ``targets`` that answers (retrying for the timeout),
        and catch up with it."""
        if not targets:
            raise ClusterError("no node to join")
        loop = asyncio.get_running_loop()
        state = bootstrap()
        await self.storage.bootstrap(state)
        if self.node is None:
            self._start(state, 0)
        deadline = loop.time() + self.timeout
        while True:
            for target in targets:
                address = self.service.configured.get(target) or self.addresses.get(target)
                if address is not None:
                    self.service.add_peer(target, address)
                    self._peers.add(target)
            for target in targets:
                member: str | None = target
                try:
                    for _ in range(3):  # the target, then the leader it names
                        try:
                            await self._wait_linked(node_of(member), min(deadline, loop.time() + 1))
                            result = await self._call(member, "join", {"member": self.member_id,
                                                      "address": list(self._own_address()), "ram": self.ram},
                                                      min(deadline, loop.time() + 10))  # fmt: skip
                            await self._caught_up(result["index"], deadline)
                            log.info("node %s joined the cluster of %s", self.service.node, target)
                            return
                        except NotLeader as exc:
                            member = exc.leader
                            if member is None:
                                break
                except (Unavailable, ClusterError) as exc:
                    log.info("joining node %s: %s", target, exc)
            if loop.time() >= deadline:
                raise ClusterError(f"could not join any of {', '.join(targets)}")
            await asyncio.sleep(0.5)

    async def _wait_linked(self, node: str, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while not self.service.linked(node):
            if loop.time() >= deadline:
                raise unavailable(None)
            await asyncio.sleep(0.02)

    async def leave(self) -> None:
        """amqp-ctl reset on a member: the cluster forgets this node, which goes on as a disc
        node alone, with nothing (the reset then makes the defaults)."""
        if len(self.members()) > 1:
            await self.leader_call("forget", node_name=self.service.node)
        await self._reset_state(ram=False)
        if self.data_dir:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.data_dir, MEMBERS_FILE))
        await self._found()

    async def _reset_state(self, ram: bool) -> None:
        """Stop the Raft node and forget its state and the metadata, under a new identity of
        the type ``ram`` says."""
        await self._stop()
        self._pending_writes, self._held, self.applied = [], [], 0
        self.ram = ram
        if ram and isinstance(self.storage, SqliteRaftStorage):
            await self.storage.wipe()
            await self.storage.close()
            self.storage = MemoryRaftStorage()
        elif not ram and isinstance(self.storage, MemoryRaftStorage) and self.data_dir:
            self.storage = SqliteRaftStorage(self.data_dir)
            await self.storage.open()
        await self.storage.wipe()
        self.member_id = self._new_member_id()
        assert self.broker is not None
        self.broker.clear()

    async def join_cluster(self, target: str, ram: bool) -> None:
        """amqp-ctl join_cluster (the application stopped): forget this node's metadata and
        cluster, and join ``target``'s as a disc or RAM node."""
        node_name, address = peer_address(target)
        if node_name == self.service.node:
            raise ClusterError(f"Error: cannot cluster node with itself: {node_name}")
        if node_name not in self.service.configured:
            self.service.configured[node_name] = address
        await self._reset_state(ram)
        await self._join([node_name])
