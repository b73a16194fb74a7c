"""The node-wide metadata outside the vhosts: users, permissions, topic permissions, limits and
runtime parameters, changed only by applying committed ``Change`` records.

Applying is deterministic and only changes these tables (then emits the event), so every node
that applies the same changes in the same order holds the same state; what follows from a
change elsewhere (closing a deleted user's connections) is an event subscriber's job.
``check`` holds what a stored record must satisfy for its apply to succeed.
"""

from __future__ import annotations

from typing import Any

from amqp_server.core.access import SHA256, Permission, User, validate_pattern
from amqp_server.core.events import EventBus
from amqp_server.metadata.store import Change
from queues.arguments import is_integer

#: Kinds of change this state applies.
KINDS = frozenset(
    ("user", "permission", "topic_permission", "vhost_limits", "user_limits", "parameter", "global_parameter")
)


def require(condition: bool, reason: str) -> None:
    if not condition:
        raise ValueError(reason)


def is_tags(tags: Any) -> bool:
    """Tags as stored: a list of strings, or one comma-separated string (vhosts)."""
    return isinstance(tags, str) or (isinstance(tags, list) and all(isinstance(tag, str) for tag in tags))


class MetadataState:
    def __init__(self, events: EventBus) -> None:
        self.events = events
        self.users: dict[str, User] = {}
        self.permissions: dict[tuple[str, str], Permission] = {}
        # (user, vhost, exchange) -> {"write": regex, "read": regex}
        self.topic_permissions: dict[tuple[str, str, str], dict[str, str]] = {}
        # {"max-connections", "max-queues"} per vhost, {"max-connections", "max-channels"} per
        # user; a negative value means no limit.
        self.vhost_limits: dict[str, dict[str, int]] = {}
        self.user_limits: dict[str, dict[str, int]] = {}
        # Runtime parameters of other components (federation, shovel, ...): stored and exported.
        self.parameters: dict[tuple[str, str, str], Any] = {}
        self.global_parameters: dict[str, Any] = {}

    def check(self, change: Change) -> None:
        """Raise ValueError if applying ``change`` could fail."""
        check = getattr(self, f"_check_{change.kind}_{change.op}", None)
        if check is None and not hasattr(self, f"_apply_{change.kind}_{change.op}"):
            raise ValueError(f"unknown change {change.kind} {change.op}")
        if check is not None:
            check(change.record)

    def apply(self, change: Change) -> None:
        getattr(self, f"_apply_{change.kind}_{change.op}")(change)

    def forget_vhost(self, vhost: str) -> None:
        """What goes with a deleted vhost (the store cascades the same way)."""
        for table in (self.permissions, self.topic_permissions):
            for key in [k for k in table if k[1] == vhost]:
                del table[key]
        for key in [k for k in self.parameters if k[0] == vhost]:
            del self.parameters[key]
        self.vhost_limits.pop(vhost, None)

    def snapshot(self) -> list[Change]:
        """Puts that rebuild this state (Broker.snapshot)."""
        changes = [
            Change("user", "put", None, u.name, {"password_hash": u.password_hash, "tags": list(u.tags),
                                                  "hashing_algorithm": u.hashing_algorithm})  # fmt: skip
            for u in self.users.values()
        ]
        changes += [
            Change("permission", "put", vhost, user, {"configure": p.configure, "write": p.write, "read": p.read})
            for (user, vhost), p in self.permissions.items()
        ]
        topic: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
        for (user, vhost, exchange), patterns in self.topic_permissions.items():
            topic.setdefault((user, vhost), {})[exchange] = dict(patterns)
        changes += [Change("topic_permission", "put", vhost, user, {"exchanges": exchanges})
                    for (user, vhost), exchanges in topic.items()]  # fmt: skip
        changes += [Change("vhost_limits", "put", v, v, {"limits": dict(limits)}) for v, limits in self.vhost_limits.items()]
        changes += [Change("user_limits", "put", None, u, {"limits": dict(limits)}) for u, limits in self.user_limits.items()]
        changes += [
            Change("parameter", "put", vhost, f"{component}/{name}", {"component": component, "name": name, "value": value})
            for (vhost, component, name), value in self.parameters.items()
        ]
        changes += [Change("global_parameter", "put", None, name, {"value": value})
                    for name, value in self.global_parameters.items()]  # fmt: skip
        return changes

    # -- checks -------------------------------------------------------------------------------

    @staticmethod
    def _check_user_put(record: dict[str, Any]) -> None:
        require(isinstance(record.get("password_hash", ""), str), "password_hash is not a string")
        require(is_tags(record.get("tags", [])) and not isinstance(record.get("tags"), str), "tags are not a list")
        require(isinstance(record.get("hashing_algorithm", ""), str), "hashing_algorithm is not a string")

    @staticmethod
    def _check_permission_put(record: dict[str, Any]) -> None:
        for kind in ("configure", "write", "read"):
            validate_pattern(record.get(kind, ".*"))

    @staticmethod
    def _check_topic_permission_put(record: dict[str, Any]) -> None:
        exchanges = record.get("exchanges", {})
        require(isinstance(exchanges, dict), "exchanges is not a table")
        for patterns in exchanges.values():
            require(isinstance(patterns, dict), "patterns are not a table")
            for kind in ("write", "read"):
                validate_pattern(patterns.get(kind, ""))

    @staticmethod
    def _check_vhost_limits_put(record: dict[str, Any]) -> None:
        limits = record.get("limits")
        require(isinstance(limits, dict) and all(is_integer(v) for v in limits.values()), "limits are not integers")

    _check_user_limits_put = _check_vhost_limits_put

    @staticmethod
    def _check_parameter_put(record: dict[str, Any]) -> None:
        require(all(isinstance(record.get(k), str) for k in ("component", "name")), "component or name missing")
        require("value" in record, "value missing")

    @staticmethod
    def _check_global_parameter_put(record: dict[str, Any]) -> None:
        require("value" in record, "value missing")

    # -- applying -----------------------------------------------------------------------------

    def _apply_user_put(self, change: Change) -> None:
        record = change.record
        previous = self.users.get(change.name)
        user = self.users[change.name] = User(
            change.name,
            record.get("password_hash", ""),
            list(record.get("tags", [])),
            record.get("hashing_algorithm", SHA256),
        )
        if previous is None:
            self.events.emit("user.created", user, name=user.name)
            return
        if previous.password_hash != user.password_hash:
            self.events.emit("user.password.changed", user, name=user.name)
        if previous.tags != user.tags:
            self.events.emit("user.tags.set", user, name=user.name, tags=list(user.tags))

    def _apply_user_delete(self, change: Change) -> None:
        if self.users.pop(change.name, None) is None:
            return
        for table in (self.permissions, self.topic_permissions):
            for key in [k for k in table if k[0] == change.name]:
                del table[key]
        self.user_limits.pop(change.name, None)
        self.events.emit("user.deleted", name=change.name)

    def _apply_permission_put(self, change: Change) -> None:
        record = change.record
        vhost = change.vhost or ""
        permission = self.permissions[(change.name, vhost)] = Permission(
            change.name,
            vhost,
            record.get("configure", ".*"),
            record.get("write", ".*"),
            record.get("read", ".*"),
        )
        self.events.emit("permission.created", user=change.name, vhost=vhost, configure=permission.configure,
                         write=permission.write, read=permission.read)  # fmt: skip

    def _apply_permission_delete(self, change: Change) -> None:
        if self.permissions.pop((change.name, change.vhost or ""), None) is not None:
            self.events.emit("permission.deleted", user=change.name, vhost=change.vhost or "")

    # Topic permissions: one change per (user, vhost), named after the user (so a user's deletion
    # cascades in the store), record {"exchanges": {exchange: {"write": re, "read": re}}}.
    def _apply_topic_permission_put(self, change: Change) -> None:
        self._apply_topic_permission_delete(change)
        vhost = change.vhost or ""
        for exchange, patterns in change.record.get("exchanges", {}).items():
            write, read = patterns.get("write", ""), patterns.get("read", "")
            self.topic_permissions[(change.name, vhost, exchange)] = {"write": write, "read": read}
            self.events.emit("topic.permission.created", user=change.name, vhost=vhost, exchange=exchange,
                             write=write, read=read)  # fmt: skip

    def _apply_topic_permission_delete(self, change: Change) -> None:
        user, vhost = change.name, change.vhost or ""
        for key in [k for k in self.topic_permissions if k[:2] == (user, vhost)]:
            del self.topic_permissions[key]
            self.events.emit("topic.permission.deleted", user=user, vhost=vhost, exchange=key[2])

    # Limits: record {"limits": {...}} replaces the whole set (callers merge when RabbitMQ merges).
    def _apply_vhost_limits_put(self, change: Change) -> None:
        limits = self.vhost_limits[change.name] = dict(change.record["limits"])
        self.events.emit("vhost.limits.set", name=change.name, vhost=change.name, value=dict(limits))

    def _apply_vhost_limits_delete(self, change: Change) -> None:
        if self.vhost_limits.pop(change.name, None) is not None:
            self.events.emit("vhost.limits.cleared", name=change.name, vhost=change.name)

    def _apply_user_limits_put(self, change: Change) -> None:
        limits = self.user_limits[change.name] = dict(change.record["limits"])
        self.events.emit("user.limits.set", name=change.name, user=change.name, value=dict(limits))

    def _apply_user_limits_delete(self, change: Change) -> None:
        if self.user_limits.pop(change.name, None) is not None:
            self.events.emit("user.limits.cleared", name=change.name, user=change.name)

    # Runtime parameters: Change name "component/name" (unique per vhost in the store), record
    # {"component", "name", "value"}; global ones: name, record {"value"}.
    def _apply_parameter_put(self, change: Change) -> None:
        record = change.record
        vhost = change.vhost or ""
        self.parameters[(vhost, record["component"], record["name"])] = record["value"]
        self.events.emit("parameter.set", vhost=vhost, component=record["component"], name=record["name"],
                         value=record["value"])  # fmt: skip

    def _apply_parameter_delete(self, change: Change) -> None:
        record = change.record
        key = (change.vhost or "", record["component"], record["name"])
        if key in self.parameters:
            del self.parameters[key]
            self.events.emit("parameter.cleared", vhost=key[0], component=record["component"], name=record["name"])

    def _apply_global_parameter_put(self, change: Change) -> None:
        self.global_parameters[change.name] = change.record["value"]
        self.events.emit("global.parameter.set", name=change.name, value=change.record["value"])

    def _apply_global_parameter_delete(self, change: Change) -> None:
        if change.name in self.global_parameters:
            del self.global_parameters[change.name]
            self.events.emit("global.parameter.cleared", name=change.name)
