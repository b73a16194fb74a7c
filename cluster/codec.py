"""What the metadata group's Raft carries, in forms that travel (``cluster.wire``) and store
(SQLite): Raft messages as one wire message, log commands as JSON text, metadata changes as
JSON objects (their records in the lossless encoding of the SQLite metadata store).

A command is a JSON object: ``{"change": ...}`` (a metadata ``Change`` every node applies) or
``{"member": node, "address": [host, port]}`` (where a member listens, which every node learns).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from amqp_server.metadata.sqlite import decode_value, encode_value
from amqp_server.metadata.store import Change
from cluster.raft import messages
from cluster.raft.log import Entry, EntryKind
from cluster.raft.membership import Membership
from cluster.wire import message

# -- Raft messages on the wire ----------------------------------------------------------------

_RAFT_TYPES = {cls.__name__: cls for cls in (
    messages.RequestVote, messages.RequestVoteReply, messages.AppendEntries, messages.AppendEntriesReply,
    messages.Heartbeat, messages.HeartbeatReply, messages.InstallSnapshot, messages.InstallSnapshotReply,
    messages.TimeoutNow,
)}  # fmt: skip


@message(200)
@dataclass(slots=True)
class RaftEnvelope:
    """A Raft message: its class name and its fields in order (entries and configurations as
    plain lists)."""

    name: str
    values: list[Any]


@message(201)
@dataclass(slots=True)
class Request:
    """A request to another member (to the leader, mostly): ``op`` with ``args``."""

    id: int
    op: str
    args: dict[str, Any]


@message(202)
@dataclass(slots=True)
class Reply:
    id: int
    ok: bool
    result: Any = None
    error: str = ""
    leader: str | None = None  # when refused for not leading: the leader known


def config_plain(config: Membership) -> list[list[str]]:
    return [sorted(config.voters), sorted(config.non_voters)]


def config_from(plain: list[list[str]]) -> Membership:
    return Membership(frozenset(plain[0]), frozenset(plain[1]))


def command_plain(entry: Entry) -> Any:
    return config_plain(entry.command) if entry.kind is EntryKind.CONFIG else entry.command


def entry_from(term: int, index: int, kind: str, command: Any) -> Entry:
    entry_kind = EntryKind(kind)
    return Entry(term, index, entry_kind, config_from(command) if entry_kind is EntryKind.CONFIG else command)


def _plain(value: Any) -> Any:
    if isinstance(value, Membership):
        return config_plain(value)
    if isinstance(value, list):
        return [[e.term, e.index, e.kind.value, command_plain(e)] for e in value]
    return value


def envelope(msg: messages.Message) -> RaftEnvelope:
    return RaftEnvelope(type(msg).__name__, [_plain(getattr(msg, f.name)) for f in dataclasses.fields(msg)])


def open_envelope(env: RaftEnvelope) -> messages.Message:
    """The Raft message; ``ValueError`` (or ``TypeError``) for one that is not."""
    cls = _RAFT_TYPES.get(env.name)
    if cls is None:
        raise ValueError(f"unknown Raft message {env.name!r}")
    values = []
    for f, value in zip(dataclasses.fields(cls), env.values, strict=True):
        if f.name == "entries":
            value = [entry_from(*item) for item in value]
        elif f.name == "config":
            value = config_from(value)
        values.append(value)
    return cls(*values)


# -- commands ---------------------------------------------------------------------------------


def change_plain(change: Change) -> dict[str, Any]:
    return {
        "kind": change.kind, "op": change.op, "vhost": change.vhost, "name": change.name,
        "record": encode_value(change.record), "persisted": change.persisted, "create": change.create,
    }  # fmt: skip


def change_from(plain: dict[str, Any]) -> Change:
    return Change(
        plain["kind"], plain["op"], plain["vhost"], plain["name"], decode_value(plain["record"]),
        persisted=plain["persisted"], create=plain["create"],
    )  # fmt: skip


def change_command(change: Change) -> str:
    return json.dumps({"change": change_plain(change)}, separators=(",", ":"))


def member_command(node: str, address: tuple[str, int]) -> str:
    return json.dumps({"member": node, "address": list(address)}, separators=(",", ":"))


def snapshot_data(changes: list[Change], addresses: dict[str, tuple[str, int]]) -> bytes:
    document = {
        "changes": [change_plain(c) for c in changes],
        "addresses": {k: list(v) for k, v in addresses.items()},
    }
    return json.dumps(document, separators=(",", ":")).encode()


def snapshot_from(data: bytes) -> tuple[list[Change], dict[str, tuple[str, int]]]:
    if not data:
        return [], {}
    document = json.loads(data)
    addresses = {node: (host, port) for node, (host, port) in document["addresses"].items()}
    return [change_from(c) for c in document["changes"]], addresses
