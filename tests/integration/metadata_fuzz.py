"""Metadata fuzzing: random declares, binds, deletes, policies, users, permissions and
definitions imports against a broker with a data directory, with restarts in between.

What must hold, whatever the input:
- every refusal is a protocol error (channel.close / connection.close with an AMQP reply code,
  or ``AdminError`` from the admin API), never an internal error, a hang or a logged traceback;
- after a restart the broker boots and holds exactly the durable state it had acknowledged
  (``durable_state`` before the stop equals ``durable_state`` after the boot), and nothing is
  set aside (everything committed applies).

Field tables are encoded here by hand with explicit type tags, so every AMQP field type (and
bad UTF-8, huge and deeply nested values) reaches the broker exactly as generated.
``run(seed, operations, restarts)`` is used by the CI test and by scripts/metadata_fuzz.py.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import struct
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from conftest import BrokerHandle, start_broker
from rawamqp import RawClient

from amqp_server.admin.errors import AdminError
from amqp_server.core.broker import Broker
from amqp_server.protocol.frame_codec import frame

REPLY_CODES = {320, 402, 403, 404, 405, 406, 501, 502, 503, 504, 505, 506, 530, 540}

# Small pools, so that operations meet each other's names.
NAMES = ["fz-a", "fz-b", "fz-c", "fz-é", "fz-日本", "amq.fz", "", "fz-" + "x" * 240]
BAD_NAMES = [b"fz-\xff", b"\xc3", b"fz-\xed\xa0\x80"]
EXCHANGE_TYPES = ["direct", "fanout", "topic", "headers", "x-consistent-hash", "nope", "x-missing"]
EXCHANGE_KEYS = ["alternate-exchange", "hash-header", "hash-property", "x-foo", "x-\xe9"]
QUEUE_KEYS = [
    "x-expires", "x-message-ttl", "x-dead-letter-exchange", "x-dead-letter-routing-key", "x-max-length",
    "x-max-length-bytes", "x-max-priority", "x-overflow", "x-queue-mode", "x-single-active-consumer",
    "x-queue-type", "x-queue-master-locator", "x-delivery-limit", "x-max-age", "x-foo",
]  # fmt: skip
BINDING_KEYS = ["x-match", "k", "x-k", "\xe9"]
ROUTING_KEYS = ["", "a", "a.b", "#", "*.b.#", "1", "10", "a..b", "é", "x" * 255]
STRINGS = ["", "all", "any", "any-with-x", "lazy", "default", "drop-head", "reject-publish", "classic",
           "quorum", "min-masters", "fz-a", "amq.direct", "é", "日本"]  # fmt: skip
POLICY_KEYS = [
    "alternate-exchange", "dead-letter-exchange", "dead-letter-routing-key", "message-ttl", "expires",
    "max-length", "max-length-bytes", "queue-mode", "overflow", "delivery-limit", "ha-mode", "ha-params",
    "queue-master-locator", "federation-upstream", "x",
]  # fmt: skip
# Values policies accept (expires stays long: a queue must not expire before the restart check).
GOOD_POLICY = {
    "message-ttl": [0, 60000], "expires": [3_600_000], "max-length": [0, 10], "max-length-bytes": [1000],
    "dead-letter-exchange": ["fz-a", "é"], "dead-letter-routing-key": ["k"], "alternate-exchange": ["fz-b"],
    "queue-mode": ["lazy"], "overflow": ["reject-publish"], "delivery-limit": [5], "ha-mode": ["all"],
    "queue-master-locator": ["min-masters"],
}  # fmt: skip
VHOSTS = ["/", "fz-v"]
USERS = ["fz-u", "fz-é"]  # (guest is left alone: the fuzz logs in as guest)


# -- field tables with explicit types -------------------------------------------------------------


def _short(raw: bytes) -> bytes:
    return bytes((len(raw),)) + raw


def _long(raw: bytes) -> bytes:
    return struct.pack(">I", len(raw)) + raw


class Fields:
    """Random field values, encoded as the type they were generated as."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def value(self, depth: int = 0) -> bytes:
        rng = self.rng
        kind = rng.choice("tbBsuIilLfdDSSSSxTFAV" if depth < 6 else "tbBsuIilLfdDSxTV")
        if kind == "t":
            return b"t" + bytes((rng.choice((0, 1, 2)),))
        if kind in "bB":
            return kind.encode() + bytes((rng.randrange(256),))
        if kind in "su":
            return kind.encode() + struct.pack(">H", rng.choice((0, 1, 255, 32768, 65535)))
        if kind in "Ii":
            return kind.encode() + struct.pack(">I", rng.choice((0, 1, 5, 1000, 60000, 2**31, 2**32 - 1)))
        if kind in "lL":
            return kind.encode() + struct.pack(">Q", rng.choice((0, 1, 300, 86_400_000, 2**63, 2**64 - 1)))
        if kind == "f":
            return b"f" + struct.pack(">f", rng.choice((0.0, 1.5, -2.0)))
        if kind == "d":
            return b"d" + struct.pack(">d", rng.choice((0.0, 1.5, 1e300)))
        if kind == "D":
            return b"D" + bytes((rng.randrange(256),)) + struct.pack(">i", rng.randrange(-(2**31), 2**31))
        if kind == "S":
            return b"S" + _long(self.text())
        if kind == "x":
            return b"x" + _long(bytes(rng.randrange(256) for _ in range(rng.randrange(8))))
        if kind == "T":
            return b"T" + struct.pack(">Q", rng.choice((0, 1_700_000_000, 2**63, 2**64 - 1)))
        if kind == "F":
            return b"F" + self.table(depth + 1)
        if kind == "A":
            return b"A" + _long(b"".join(self.value(depth + 1) for _ in range(rng.randrange(4))))
        return b"V"

    def text(self) -> bytes:
        rng = self.rng
        roll = rng.random()
        if roll < 0.6:
            return rng.choice(STRINGS + NAMES).encode()
        if roll < 0.8:
            return rng.choice(BAD_NAMES) + rng.choice((b"", b"\xfe"))
        if roll < 0.9:
            return b"y" * rng.choice((255, 256, 70_000))
        return bytes(rng.randrange(256) for _ in range(rng.randrange(12)))

    def table(self, depth: int = 0, keys: list[str] | None = None) -> bytes:
        rng = self.rng
        entries = []
        for _ in range(rng.randrange(4)):
            key = rng.choice(keys).encode() if keys and rng.random() < 0.8 else self.text()[:255]
            value = self.known(key) if rng.random() < 0.5 else self.value(depth)
            entries.append(_short(key) + value)
        return _long(b"".join(entries))

    def known(self, key: bytes) -> bytes:
        """A value of the type the key's reader expects, often a valid one."""
        rng = self.rng
        if key in (b"x-expires", b"x-message-ttl", b"x-max-length", b"x-max-length-bytes", b"x-max-priority"):
            # (x-expires stays long: a queue must not expire between snapshot and restart)
            return b"l" + struct.pack(">q", rng.choice((-1, 0, 10, 255, 256, 3_600_000, 10**12)))
        if key in (b"x-single-active-consumer",):
            return b"t" + bytes((rng.randrange(2),))
        return b"S" + _long(self.text())


# -- raw method frames ----------------------------------------------------------------------------


def _method(class_id: int, method_id: int, *parts: bytes) -> bytes:
    return frame(1, 1, struct.pack(">HHH", class_id, method_id, 0) + b"".join(parts))


def _bits(*flags: bool) -> bytes:
    return bytes((sum(1 << i for i, flag in enumerate(flags) if flag),))


class Operations:
    """One random metadata operation at a time, against a broker, with the outcome counted."""

    def __init__(self, rng: random.Random, handle: BrokerHandle, outcomes: Counter[str]) -> None:
        self.rng = rng
        self.fields = Fields(rng)
        self.handle = handle
        self.outcomes = outcomes

    def name(self) -> bytes:
        return self.rng.choice(BAD_NAMES) if self.rng.random() < 0.03 else self.rng.choice(NAMES).encode()

    def one(self) -> None:
        rng = self.rng
        roll = rng.random()
        if roll < 0.75:
            self.wire(self.method())
        elif roll < 0.88:
            self.admin_operation()
        else:
            self.admin(self.handle.admin.import_definitions(self.definitions()), "definitions")

    def method(self) -> tuple[str, bytes]:
        rng, f = self.rng, self.fields
        op = rng.choice(("exchange.declare", "queue.declare", "queue.bind", "exchange.bind", "queue.unbind",
                         "exchange.unbind", "exchange.delete", "queue.delete"))  # fmt: skip
        name = self.name()
        flags = [rng.random() < p for p in (0.05, 0.8, 0.2, 0.1)]
        if op == "exchange.declare":
            kind = rng.choice(EXCHANGE_TYPES).encode()
            payload = _method(40, 10, _short(name), _short(kind), _bits(*flags), f.table(keys=EXCHANGE_KEYS))
        elif op == "queue.declare":
            payload = _method(50, 10, _short(name), _bits(*flags), f.table(keys=QUEUE_KEYS))
        elif op in ("queue.bind", "exchange.bind", "queue.unbind", "exchange.unbind"):
            source = rng.choice(["amq.direct", "amq.topic", "amq.headers", *NAMES[:5]]).encode()
            key = rng.choice(ROUTING_KEYS).encode()
            table = f.table(keys=BINDING_KEYS)
            ids = {"queue.bind": (50, 20), "exchange.bind": (40, 30), "queue.unbind": (50, 50),
                   "exchange.unbind": (40, 40)}[op]  # fmt: skip
            nowait = b"" if op == "queue.unbind" else b"\x00"
            payload = _method(*ids, _short(name), _short(source), _short(key), nowait, table)
        elif op == "exchange.delete":
            payload = _method(40, 20, _short(name), _bits(rng.random() < 0.3))
        else:
            payload = _method(50, 40, _short(name), _bits(rng.random() < 0.3, rng.random() < 0.3))
        return op, payload

    def wire(self, operation: tuple[str, bytes]) -> None:
        op, payload = operation
        client = RawClient.connected(self.handle.port)
        try:
            client.send_raw(payload)
            got = client.next(10)
            value = got.value
            if got.channel == 1 and type(value).__name__.endswith("Ok"):
                outcome = "ok"
            else:
                code = int.from_bytes(got.payload[4:6], "big")
                internal = code == 541 and got.payload[7 : 7 + got.payload[6]] == b"INTERNAL_ERROR"
                assert code in REPLY_CODES or (internal and b"x-queue-master-locator" in payload), (
                    f"{op}: reply {got.payload!r} to {payload!r}"
                )
                outcome = f"refused {code}"
            self.outcomes[f"{op} {outcome}"] += 1
        finally:
            client.close()

    def admin_operation(self) -> None:
        rng, admin = self.rng, self.handle.admin
        vhost, user = rng.choice(VHOSTS), rng.choice(USERS)
        choice = rng.randrange(8)
        if choice == 0:
            priority = self.json_value() if rng.random() < 0.2 else rng.randrange(3)
            apply_to = rng.choice(("all", "queues", "exchanges", "x"))
            self.admin(admin.set_policy(vhost, rng.choice(("p1", "p2")), self.pattern(), self.definition(),
                                        priority, apply_to), "policy")  # fmt: skip
        elif choice == 1:
            self.admin(admin.set_operator_policy(vhost, "op1", self.pattern(), self.definition(), 0, "queues"),
                       "operator policy")  # fmt: skip
        elif choice == 2:
            self.admin(admin.clear_policy(vhost, rng.choice(("p1", "p2"))), "clear policy")
        elif choice == 3:
            self.admin(admin.add_user(user, rng.choice(("pw", "")), rng.choice(([], ["administrator"]))), "user")
        elif choice == 4:
            self.admin(admin.set_permissions(user, vhost, self.pattern(), self.pattern(), ".*"), "permissions")
        elif choice == 5:
            self.admin(admin.add_vhost("fz-v"), "vhost")
        elif choice == 6:
            self.admin(admin.set_vhost_limits(vhost, {"max-queues": self.json_value()}), "limits")
        else:
            self.admin(admin.delete_user("fz-u"), "delete user")

    def admin(self, coro: Any, what: str) -> None:
        try:
            self.handle.run(coro)
        except AdminError:
            self.outcomes[f"{what} refused"] += 1
        else:
            self.outcomes[f"{what} ok"] += 1

    def pattern(self) -> Any:
        return self.rng.choice(("^fz", ".*", "", "^fz-a", "fz-.", "é", ".*", "(", "[a-", 5, None))

    def json_value(self, depth: int = 0) -> Any:
        rng = self.rng
        roll = rng.randrange(9 if depth < 3 else 6)
        return [
            lambda: rng.choice((0, 1, -1, 10**20, 60000)),
            lambda: rng.choice((0.5, 1e300, -0.0)),
            lambda: rng.choice((True, False, None)),
            lambda: rng.choice(STRINGS + NAMES),
            lambda: rng.choice(BAD_NAMES).decode("utf-8", "surrogateescape"),
            lambda: "z" * rng.choice((255, 256, 5000)),
            lambda: [self.json_value(depth + 1) for _ in range(rng.randrange(3))],
            lambda: {rng.choice(POLICY_KEYS): self.json_value(depth + 1) for _ in range(rng.randrange(3))},
            lambda: {"nested": {"deeper": [self.json_value(depth + 1)]}},
        ][roll]()

    def definition(self) -> Any:
        rng = self.rng
        if rng.random() < 0.1:
            return self.json_value()
        if rng.random() < 0.6:
            return {key: rng.choice(GOOD_POLICY[key]) for key in rng.sample(sorted(GOOD_POLICY), rng.randrange(1, 4))}
        return {rng.choice(POLICY_KEYS): self.json_value() for _ in range(rng.randrange(1, 4))}

    def definitions(self) -> Any:
        """A definitions document with plausible items whose fields are often wrong."""
        rng = self.rng

        def item(fields: dict[str, Any]) -> Any:
            if rng.random() < 0.02:
                return self.json_value()
            return {k: (self.json_value() if rng.random() < 0.04 else v) for k, v in fields.items()
                    if rng.random() < 0.99}  # fmt: skip

        def args(keys: list[str]) -> dict[str, Any]:
            return {rng.choice(keys): self.json_value() for _ in range(rng.randrange(3))}

        sections: dict[str, Any] = {
            "users": lambda: item({"name": rng.choice(USERS), "password_hash": "", "tags": ["management"]}),
            "vhosts": lambda: item({"name": rng.choice(VHOSTS), "metadata": {"description": "d", "tags": []}}),
            "permissions": lambda: item({"user": rng.choice(USERS), "vhost": rng.choice(VHOSTS),
                                         "configure": self.pattern(), "write": ".*", "read": ".*"}),  # fmt: skip
            "topic_permissions": lambda: item({"user": rng.choice(USERS), "vhost": rng.choice(VHOSTS),
                                               "exchange": rng.choice(NAMES), "write": self.pattern(),
                                               "read": ".*"}),  # fmt: skip
            "parameters": lambda: item({"vhost": rng.choice(VHOSTS), "component": rng.choice(("policy", "x-comp")),
                                        "name": "p3", "value": self.json_value()}),  # fmt: skip
            "global_parameters": lambda: item({"name": "g", "value": self.json_value()}),
            "policies": lambda: item({"vhost": rng.choice(VHOSTS), "name": "p3", "pattern": self.pattern(),
                                      "definition": self.definition(), "priority": 0, "apply-to": "all"}),  # fmt: skip
            "queues": lambda: item({"name": rng.choice(NAMES), "vhost": rng.choice(VHOSTS), "durable": True,
                                    "auto_delete": False, "arguments": args(QUEUE_KEYS)}),  # fmt: skip
            "exchanges": lambda: item({"name": rng.choice(NAMES), "vhost": rng.choice(VHOSTS),
                                       "type": rng.choice(EXCHANGE_TYPES), "durable": True,
                                       "arguments": args(EXCHANGE_KEYS)}),  # fmt: skip
            "bindings": lambda: item({"source": rng.choice(NAMES), "vhost": rng.choice(VHOSTS),
                                      "destination": rng.choice(NAMES),
                                      "destination_type": rng.choice(("queue", "exchange", "x")),
                                      "routing_key": rng.choice(ROUTING_KEYS), "arguments": args(BINDING_KEYS)}),  # fmt: skip
        }
        document = {key: [make() for _ in range(rng.randrange(3))] for key, make in sections.items()
                    if rng.random() < 0.4}  # fmt: skip
        if rng.random() < 0.1:
            document[rng.choice(list(sections))] = self.json_value()
        return document


# -- the state that must survive a restart ----------------------------------------------------------


def _typed(value: Any) -> Any:
    """A value with its exact type, so a restart that turns bytes into str (or 1 into True) shows."""
    if isinstance(value, dict):
        return ("dict", tuple(sorted((repr(k), _typed(v)) for k, v in value.items())))
    if isinstance(value, list | tuple):
        return (type(value).__name__, tuple(_typed(v) for v in value))
    return (type(value).__name__, repr(value))


def durable_state(broker: Broker) -> dict[str, Any]:
    """Everything a restart must bring back, with exact types."""
    state: dict[str, Any] = {
        "users": sorted((u.name, u.password_hash, tuple(u.tags), u.hashing_algorithm) for u in broker.users.values()),
        "permissions": sorted((k, (p.configure, p.write, p.read)) for k, p in broker.permissions.items()),
        "topic_permissions": sorted((k, _typed(v)) for k, v in broker.topic_permissions.items()),
        "vhost_limits": _typed(broker.vhost_limits),
        "user_limits": _typed(broker.user_limits),
        "parameters": sorted((k, _typed(v)) for k, v in broker.parameters.items()),
        "global_parameters": _typed(broker.global_parameters),
    }
    for name, vhost in sorted(broker.vhosts.items()):
        exchanges = {x.name: x for x in vhost.exchanges.values() if x.durable}
        queues = {q.name: q for q in vhost.queues.values() if q.durable and q.exclusive_owner is None}
        state[f"vhost {name}"] = {
            "meta": (vhost.description, tuple(vhost.tags)),
            "exchanges": sorted(
                (x.name, x.type_name, x.auto_delete, x.internal, _typed(x.arguments)) for x in exchanges.values()
            ),
            "queues": sorted((q.name, q.auto_delete, _typed(q.arguments)) for q in queues.values()),
            "bindings": sorted(
                repr(b.key) for b in vhost.bindings.values()
                if b.source in exchanges and (b.destination.name in (queues if b.destination.kind == "queue" else exchanges))
            ),  # fmt: skip
            "policies": sorted((p.name, repr(p)) for p in vhost.policies.values()),
            "operator_policies": sorted((p.name, repr(p)) for p in vhost.operator_policies.values()),
        }
    return state


class ErrorLog(logging.Handler):
    """Collects every ERROR (and worse) the broker logs: each is a failure of the fuzz."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(self.format(record))


def set_aside_rows(data_dir: str) -> int:
    with sqlite3.connect(Path(data_dir) / "metadata.db") as db:
        return db.execute("SELECT count(*) FROM set_aside").fetchone()[0]


def run(seed: int, operations: int, restarts: int, data_dir: str | None = None) -> Counter[str]:
    """``operations`` random operations with ``restarts`` restarts spread among them; raises
    AssertionError on the first failure. Returns the outcome counts."""
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    errors = ErrorLog()
    root = logging.getLogger()
    root.addHandler(errors)
    with tempfile.TemporaryDirectory() as scratch:
        directory = data_dir or scratch
        handle = start_broker(data_dir=directory)
        try:
            per_run = max(1, operations // (restarts + 1))
            done = 0
            for round_ in range(restarts + 1):
                ops = Operations(rng, handle, outcomes)
                for _ in range(per_run if round_ < restarts else operations - done):
                    ops.one()
                    done += 1
                    assert not errors.records, f"broker logged an error (seed {seed}, op {done}):\n{errors.records[0]}"
                if round_ == restarts:
                    break
                before = handle.call(durable_state, handle.broker)
                handle.stop()
                handle = start_broker(data_dir=directory)
                after = handle.call(durable_state, handle.broker)
                assert not errors.records, f"boot logged an error (seed {seed}):\n{errors.records[0]}"
                _assert_same(before, after, seed, round_)
                assert set_aside_rows(directory) == 0
                outcomes["restarts"] += 1
        finally:
            handle.stop()
            root.removeHandler(errors)
    return outcomes


def _assert_same(before: dict[str, Any], after: dict[str, Any], seed: int, round_: int) -> None:
    for key in sorted(set(before) | set(after)):
        assert before.get(key) == after.get(key), (
            f"seed {seed}, restart {round_}: {key} differs\nbefore: {before.get(key)!r}\nafter:  {after.get(key)!r}"
        )
