"""In-process administration: vhosts, users, permissions, policies, limits and definitions.
The CLI and the HTTP API call this.

Every operation goes through ``Broker.change`` and so through the metadata store.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from amqp_server.admin.definitions import export_definitions, import_definitions, import_parameter
from amqp_server.admin.errors import AdminError
from amqp_server.core.access import SHA256, check_password, hash_password, validate_pattern
from amqp_server.core.broker import Broker
from amqp_server.core.policy import PolicyError
from amqp_server.core.policy import validate as validate_policy
from amqp_server.core.topology import delete_queue
from amqp_server.core.trace import set_tracing
from amqp_server.metadata.store import Change
from amqp_server.protocol.rabbit_text import erlang_json

VHOST_LIMITS = ("max-connections", "max-queues")
# The runtime-parameter components this broker acts on (RabbitMQ refuses unknown components).
PARAMETER_COMPONENTS = ("policy", "operator_policy", "vhost-limits")
# What a definitions document of one vhost holds.
VHOST_SECTIONS = ("parameters", "policies", "queues", "exchanges", "bindings")
USER_LIMITS = ("max-connections", "max-channels")
# The queue counters rabbitmqctl list_queues shows, as the queue type's stats() names them.
QUEUE_COUNTERS = ("messages", "messages_ready", "messages_unacknowledged", "consumers", "message_bytes",
                  "message_bytes_ready", "message_bytes_unacknowledged", "messages_ready_ram")  # fmt: skip


class Admin:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    # -- vhosts --------------------------------------------------------------------------

    async def add_vhost(self, name: str, description: str = "", tags: list[str] | None = None) -> None:
        if name in self.broker.vhosts:
            return  # rabbitmqctl add_vhost of an existing vhost succeeds and changes nothing
        await self.broker.change(
            Change("vhost", "put", None, name, {"description": description, "tags": tags or []})
        )

    async def put_vhost(self, name: str, description: str = "", tags: list[str] | None = None) -> bool:
        """Create the vhost, or replace the description and tags of the one there (the HTTP
        API's PUT); True when it was created."""
        created = name not in self.broker.vhosts
        await self.broker.change(
            Change("vhost", "put", None, name, {"description": description, "tags": list(tags or [])})
        )
        return created

    async def delete_vhost(self, name: str) -> None:
        if name not in self.broker.vhosts:
            raise AdminError(f"Virtual host '{name}' does not exist")
        await self.broker.change(Change("vhost", "delete", None, name))

    def list_vhosts(self) -> list[str]:
        return sorted(self.broker.vhosts)

    def vhost_info(self) -> list[dict[str, Any]]:
        """The vhosts with what ``list_vhosts`` can show of them (rabbit_vhost's info keys)."""
        return [
            {"name": name, "description": vhost.description, "tags": vhost.tags, "tracing": vhost.tracer is not None}
            for name, vhost in sorted(self.broker.vhosts.items())
        ]

    def set_tracing(self, name: str, on: bool) -> None:
        """trace_on / trace_off (rabbit_trace:start/stop): a vhost that does not exist is no
        error, as in RabbitMQ."""
        vhost = self.broker.vhosts.get(name)
        if vhost is not None:
            set_tracing(vhost, on)

    # -- users ---------------------------------------------------------------------------

    async def add_user(self, name: str, password: str | None, tags: list[str] | None = None) -> None:
        if name in self.broker.users:
            raise AdminError(f'User "{name}" already exists')
        await self._put_user(name, hash_password(password) if password else "", tags or [])

    async def put_user(
        self,
        name: str,
        tags: list[str],
        *,
        password: str | None = None,
        password_hash: str | None = None,
        hashing_algorithm: str = SHA256,
    ) -> bool:
        """Create or replace a user (rabbit_auth_backend_internal:put_user, the HTTP API's PUT):
        with ``password`` it is hashed, with ``password_hash`` (base64, as definitions hold it)
        it is taken as is; with neither a new user gets no password and an existing one loses
        its password. True when the user was created."""
        if password is not None and password_hash is not None:
            raise AdminError("both_password_and_password_hash_are_provided")
        if password_hash is not None:
            try:
                base64.b64decode(password_hash, validate=True)
            except (binascii.Error, ValueError):
                raise AdminError(f"password_hash is not base64: {password_hash}") from None
        created = name not in self.broker.users
        if password is not None:
            stored, algorithm = (hash_password(password) if password else ""), SHA256
        elif password_hash is not None:
            stored, algorithm = password_hash, hashing_algorithm
        else:
            stored, algorithm = "", SHA256
        await self._put_user(name, stored, tags, algorithm)
        return created

    async def delete_users(self, names: list[str]) -> None:
        """Delete users in order; stops at the first that does not exist (as RabbitMQ's
        bulk delete, which keeps the deletions made before it)."""
        for name in names:
            await self.delete_user(name)

    def users_without_permissions(self) -> list[str]:
        """Names of users with no permissions on any vhost, sorted."""
        with_permissions = {user for user, _vhost in self.broker.permissions}
        return sorted(name for name in self.broker.users if name not in with_permissions)

    async def change_password(self, name: str, password: str) -> None:
        user = self._user(name)
        await self._put_user(name, hash_password(password), user.tags)

    async def clear_password(self, name: str) -> None:
        user = self._user(name)
        await self._put_user(name, "", user.tags)

    async def set_user_tags(self, name: str, tags: list[str]) -> None:
        user = self._user(name)
        await self._put_user(name, user.password_hash, tags, user.hashing_algorithm)

    async def delete_user(self, name: str) -> None:
        self._user(name)
        if name in self.broker.user_limits:
            await self.broker.change(Change("user_limits", "delete", None, name))
        await self.broker.change(Change("user", "delete", None, name))

    def list_users(self) -> list[dict[str, Any]]:
        return [{"name": u.name, "tags": list(u.tags)} for u in sorted(self.broker.users.values(), key=_name)]

    async def _put_user(self, name: str, password_hash: str, tags: list[str], algorithm: str = SHA256) -> None:
        await self.broker.change(
            Change(
                "user",
                "put",
                None,
                name,
                {"password_hash": password_hash, "tags": list(tags), "hashing_algorithm": algorithm},
            )
        )

    def _user(self, name: str) -> Any:
        user = self.broker.users.get(name)
        if user is None:
            raise AdminError(f'User "{name}" does not exist')
        return user

    # -- permissions ---------------------------------------------------------------------

    async def set_permissions(
        self, user: str, vhost: str, configure: str = ".*", write: str = ".*", read: str = ".*"
    ) -> None:
        # rabbitmqctl's words, unquoted here; the user is checked first.
        if user not in self.broker.users:
            raise AdminError(f"User {user} does not exist")
        if vhost not in self.broker.vhosts:
            raise AdminError(f"Virtual host {vhost} does not exist")
        try:
            for pattern in (configure, write, read):
                if not isinstance(pattern, str):
                    raise ValueError(f"a permission pattern must be a string, not {pattern!r}")
                validate_pattern(pattern)
        except ValueError as exc:
            raise AdminError(str(exc)) from exc
        await self.broker.change(
            Change("permission", "put", vhost, user, {"configure": configure, "write": write, "read": read})
        )

    async def clear_permissions(self, user: str, vhost: str) -> None:
        if user not in self.broker.users:
            raise AdminError(f"User {user} does not exist")
        if vhost not in self.broker.vhosts:
            raise AdminError(f"Virtual host {vhost} does not exist")
        await self.broker.change(Change("permission", "delete", vhost, user))

    def list_permissions(self, vhost: str | None = None) -> list[dict[str, str]]:
        return [
            {"user": p.user, "vhost": p.vhost, "configure": p.configure, "write": p.write, "read": p.read}
            for (_user, host), p in sorted(self.broker.permissions.items())
            if vhost is None or host == vhost
        ]

    # -- topic permissions -------------------------------------------------------------------

    async def set_topic_permissions(self, user: str, vhost: str, exchange: str, write: str, read: str) -> None:
        """rabbitmqctl set_topic_permissions: the patterns for one exchange (others stay)."""
        if user not in self.broker.users:
            raise AdminError(f"User {user} does not exist")
        if vhost not in self.broker.vhosts:
            raise AdminError(f"Virtual host {vhost} does not exist")
        try:
            for pattern in (write, read):
                if not isinstance(pattern, str):
                    raise ValueError(f"a permission pattern must be a string, not {pattern!r}")
                validate_pattern(pattern)
        except ValueError as exc:
            raise AdminError(str(exc)) from exc
        exchanges = self._topic_exchanges(user, vhost)
        exchanges[exchange] = {"write": write, "read": read}
        await self.broker.change(Change("topic_permission", "put", vhost, user, {"exchanges": exchanges}))

    async def clear_topic_permissions(self, user: str, vhost: str, exchange: str | None = None) -> None:
        """rabbitmqctl clear_topic_permissions: one exchange's patterns, or all of the vhost's."""
        if user not in self.broker.users:
            raise AdminError(f"User {user} does not exist")
        if vhost not in self.broker.vhosts:
            raise AdminError(f"Virtual host {vhost} does not exist")
        exchanges = self._topic_exchanges(user, vhost)
        if exchange is not None:
            exchanges.pop(exchange, None)
        if exchanges and exchange is not None:
            await self.broker.change(Change("topic_permission", "put", vhost, user, {"exchanges": exchanges}))
        else:
            await self.broker.change(Change("topic_permission", "delete", vhost, user))

    def list_topic_permissions(self, vhost: str | None = None, user: str | None = None) -> list[dict[str, str]]:
        return [
            {"user": name, "vhost": host, "exchange": exchange, "write": p["write"], "read": p["read"]}
            for (name, host, exchange), p in sorted(self.broker.topic_permissions.items())
            if (vhost is None or host == vhost) and (user is None or name == user)
        ]

    def _topic_exchanges(self, user: str, vhost: str) -> dict[str, dict[str, str]]:
        return {k[2]: dict(v) for k, v in self.broker.topic_permissions.items() if k[:2] == (user, vhost)}

    # -- policies --------------------------------------------------------------------------

    async def set_policy(
        self,
        vhost: str,
        name: str,
        pattern: str,
        definition: dict[str, Any],
        priority: int = 0,
        apply_to: str = "all",
    ) -> None:
        """rabbitmqctl set_policy: replaces a policy of that name; applies at once."""
        await self._set_policy("policy", vhost, name, pattern, definition, priority, apply_to)

    async def clear_policy(self, vhost: str, name: str) -> None:
        await self._clear_policy("policy", vhost, name)

    def list_policies(self, vhost: str | None = None) -> list[dict[str, Any]]:
        return self._list_policies("policies", vhost)

    async def set_operator_policy(
        self,
        vhost: str,
        name: str,
        pattern: str,
        definition: dict[str, Any],
        priority: int = 0,
        apply_to: str = "all",
    ) -> None:
        """rabbitmqctl set_operator_policy: only numeric caps (expires, message-ttl, max-length,
        max-length-bytes, delivery-limit, ...); the lower of policy and operator policy wins."""
        await self._set_policy("operator_policy", vhost, name, pattern, definition, priority, apply_to)

    async def clear_operator_policy(self, vhost: str, name: str) -> None:
        await self._clear_policy("operator_policy", vhost, name)

    def list_operator_policies(self, vhost: str | None = None) -> list[dict[str, Any]]:
        return self._list_policies("operator_policies", vhost)

    async def _set_policy(
        self, kind: str, vhost: str, name: str, pattern: str, definition: Any, priority: Any, apply_to: str
    ) -> None:
        try:
            validate_policy(pattern, definition, priority, apply_to, operator=kind == "operator_policy",
                            plugin_keys=self.broker.plugins.policy_keys)  # fmt: skip
        except PolicyError as exc:
            raise AdminError(str(exc)) from None
        self._vhost(vhost)
        record = {"pattern": pattern, "definition": dict(definition), "priority": priority, "apply-to": apply_to}
        await self.broker.change(Change(kind, "put", vhost, name, record))

    async def _clear_policy(self, kind: str, vhost: str, name: str) -> None:
        host = self.broker.vhosts.get(vhost)
        table = getattr(host, "policies" if kind == "policy" else "operator_policies", {})
        if name not in table:
            raise AdminError("Parameter does not exist")
        await self.broker.change(Change(kind, "delete", vhost, name))

    def _list_policies(self, attribute: str, vhost: str | None) -> list[dict[str, Any]]:
        hosts = [self.broker.vhosts[vhost]] if vhost in self.broker.vhosts else []
        if vhost is None:
            hosts = [self.broker.vhosts[v] for v in sorted(self.broker.vhosts)]
        return [p.as_dict() for host in hosts for _, p in sorted(getattr(host, attribute).items())]

    def _vhost(self, name: str) -> Any:
        vhost = self.broker.vhosts.get(name)
        if vhost is None:
            raise AdminError(f"Virtual host '{name}' does not exist")
        return vhost

    # -- limits ------------------------------------------------------------------------------

    async def set_vhost_limits(self, vhost: str, limits: dict[str, Any]) -> None:
        """rabbitmqctl set_vhost_limits: replaces the vhost's limits (negative: unlimited)."""
        errors = _limit_errors("limits", VHOST_LIMITS, limits)
        if errors:
            raise AdminError("Validation failed\n\n" + "\n".join(errors))
        self._vhost(vhost)
        await self.broker.change(Change("vhost_limits", "put", vhost, vhost, {"limits": dict(limits)}))

    async def clear_vhost_limits(self, vhost: str) -> None:
        if vhost not in self.broker.vhosts:
            raise AdminError("Parameter does not exist")
        if vhost in self.broker.vhost_limits:
            await self.broker.change(Change("vhost_limits", "delete", vhost, vhost))

    async def set_vhost_limit(self, vhost: str, name: str, value: Any) -> None:
        """One limit of a vhost, the others kept (the HTTP API's PUT /api/vhost-limits/V/NAME)."""
        self._vhost(vhost)
        await self.set_vhost_limits(vhost, {**self.broker.vhost_limits.get(vhost, {}), name: value})

    async def clear_vhost_limit(self, vhost: str, name: str) -> None:
        """One limit of a vhost; the vhost's limits go when none is left."""
        current = self.broker.vhost_limits.get(vhost)
        if current is None or name not in current:
            return
        remaining = {k: v for k, v in current.items() if k != name}
        if remaining:
            await self.broker.change(Change("vhost_limits", "put", vhost, vhost, {"limits": remaining}))
        else:
            await self.broker.change(Change("vhost_limits", "delete", vhost, vhost))

    def list_vhost_limits(self, vhost: str | None = None) -> list[dict[str, Any]]:
        """As the HTTP API's /api/vhost-limits: [{"vhost": ..., "value": {...}}]."""
        return [
            {"vhost": name, "value": dict(sorted(value.items()))}
            for name, value in sorted(self.broker.vhost_limits.items())
            if vhost is None or name == vhost
        ]

    async def set_user_limits(self, user: str, limits: dict[str, Any]) -> None:
        """rabbitmqctl set_user_limits: merged into the user's limits (as RabbitMQ 3.10)."""
        errors = _limit_errors("user-limits", USER_LIMITS, limits)
        if errors:
            raise AdminError(errors[0])
        if user not in self.broker.users:
            raise AdminError(f'{{:no_such_user, "{user}"}}')
        merged = {**self.broker.user_limits.get(user, {}), **limits}
        await self.broker.change(Change("user_limits", "put", None, user, {"limits": merged}))

    async def clear_user_limits(self, user: str, limit: str = "all") -> None:
        """rabbitmqctl clear_user_limits USER all|max-connections|max-channels."""
        if user not in self.broker.users:
            raise AdminError(f'{{:no_such_user, "{user}"}}')
        current = self.broker.user_limits.get(user)
        if current is None:
            return
        remaining = {} if limit == "all" else {k: v for k, v in current.items() if k != limit}
        if remaining:
            await self.broker.change(Change("user_limits", "put", None, user, {"limits": remaining}))
        else:
            await self.broker.change(Change("user_limits", "delete", None, user))

    def list_user_limits(self, user: str | None = None) -> list[dict[str, Any]]:
        """As the HTTP API's /api/user-limits: [{"user": ..., "value": {...}}]."""
        return [
            {"user": name, "value": dict(sorted(value.items()))}
            for name, value in sorted(self.broker.user_limits.items())
            if user is None or name == user
        ]

    # -- runtime parameters ------------------------------------------------------------------

    async def set_parameter(self, vhost: str, component: str, name: str, value: Any) -> None:
        """rabbitmqctl set_parameter. Only the components this broker acts on are known
        (policy, operator_policy, vhost-limits), as a RabbitMQ node without plugins knows only
        its own: any other is refused."""
        validator = self.broker.parameter_components.get(component)
        if component not in PARAMETER_COMPONENTS and validator is None:
            raise AdminError(f"Validation failed\n\ncomponent {component} not found\n")
        self._vhost(vhost)
        errors = validator(vhost, name, value) if validator is not None else []
        if errors:  # a plugin's component (rabbit_runtime_parameters:format_error)
            raise AdminError("Validation failed\n\n" + "".join(error + "\n" for error in errors))
        await import_parameter(self, vhost, component, name, value)

    async def clear_parameter(self, vhost: str, component: str, name: str) -> None:
        """rabbitmqctl clear_parameter."""
        if component == "policy":
            await self.clear_policy(vhost, name)
        elif component == "operator_policy":
            await self.clear_operator_policy(vhost, name)
        elif component == "vhost-limits":
            await self.clear_vhost_limits(vhost)
        elif (vhost, component, name) in self.broker.parameters:
            record = {"component": component, "name": name}
            await self.broker.change(Change("parameter", "delete", vhost, f"{component}/{name}", record))
        else:
            raise AdminError("Parameter does not exist")

    def list_parameters(self, component: str | None = None, vhost: str | None = None) -> list[dict[str, Any]]:
        """Runtime parameters as rabbitmqctl list_parameters and the HTTP API show them:
        stored ones, operator policies and vhost limits (policies are listed apart)."""
        found = [
            {"value": value, "vhost": host, "component": kind, "name": name}
            for (host, kind, name), value in sorted(self.broker.parameters.items())
        ]
        for host in sorted(self.broker.vhosts):
            for policy in sorted(self.broker.vhosts[host].operator_policies.values(), key=_name):
                value = {k: v for k, v in policy.as_dict().items() if k not in ("vhost", "name")}
                found.append({"value": value, "vhost": host, "component": "operator_policy", "name": policy.name})
            if host in self.broker.vhost_limits:
                limits = dict(self.broker.vhost_limits[host])
                found.append({"value": limits, "vhost": host, "component": "vhost-limits", "name": "limits"})
        return [
            p for p in found if (component is None or p["component"] == component) and (vhost is None or p["vhost"] == vhost)
        ]

    async def set_global_parameter(self, name: str, value: Any) -> None:
        await self.broker.change(Change("global_parameter", "put", None, name, {"value": value}))

    async def clear_global_parameter(self, name: str) -> None:
        if name not in self.broker.global_parameters:
            raise AdminError("Parameter does not exist")
        await self.broker.change(Change("global_parameter", "delete", None, name))

    def list_global_parameters(self) -> list[dict[str, Any]]:
        return [{"name": name, "value": value} for name, value in sorted(self.broker.global_parameters.items())]

    # -- cluster name ------------------------------------------------------------------------

    def cluster_name(self) -> str:
        """The ``cluster_name`` global parameter when set (rabbitmqctl set_cluster_name),
        else the configured name."""
        value = self.broker.global_parameters.get("cluster_name")
        return value if isinstance(value, str) else self.broker.cluster_name

    async def set_cluster_name(self, name: str) -> None:
        """rabbitmqctl set_cluster_name: stored as RabbitMQ stores it, a global parameter;
        connections opened from now on are told the new name."""
        await self.set_global_parameter("cluster_name", name)
        self.broker.cluster_name = name

    # -- definitions -------------------------------------------------------------------------

    async def import_definitions(self, document: dict[str, Any], vhost: str | None = None) -> None:
        """Import RabbitMQ's definitions JSON (as rabbitmqctl import_definitions). With ``vhost``,
        only its exchanges, queues, bindings, policies and parameters, all into that vhost
        (the HTTP API's POST /api/definitions/{vhost})."""
        if vhost is None:
            await import_definitions(self, document)
            return
        self._vhost(vhost)
        if not isinstance(document, dict):
            raise AdminError("definitions must be a JSON object")
        scoped: dict[str, Any] = {
            key: document[key] for key in ("rabbit_version", "rabbitmq_version") if key in document
        }
        for section in VHOST_SECTIONS:
            items = document.get(section) or []
            if not isinstance(items, list):
                raise AdminError(f"'{section}' must be a list")
            scoped[section] = [{**item, "vhost": vhost} if isinstance(item, dict) else item for item in items]
        await import_definitions(self, scoped)

    def export_definitions(self, vhost: str | None = None) -> dict[str, Any]:
        """RabbitMQ's definitions JSON for the whole broker (rabbitmqctl export_definitions);
        with ``vhost``, that vhost's exchanges, queues, bindings, policies and parameters,
        without their ``vhost`` keys (GET /api/definitions/{vhost})."""
        document = export_definitions(self.broker)
        if vhost is None:
            return document
        scoped: dict[str, Any] = {"rabbit_version": document["rabbit_version"]}
        for section in VHOST_SECTIONS:
            scoped[section] = [
                {k: v for k, v in item.items() if k != "vhost"}
                for item in document[section]
                if item.get("vhost") == vhost
            ]
        return scoped

    # -- live state (rabbitmqctl list_* and the operations on queues and connections) --------

    def authenticate_user(self, name: str, password: str) -> bool:
        """rabbitmqctl authenticate_user: the internal backend's password check."""
        user = self.broker.users.get(name)
        return (
            user is not None
            and bool(user.password_hash)
            and check_password(password, user.password_hash, user.hashing_algorithm)
        )

    def list_queues(self, vhost: str) -> list[dict[str, Any]]:
        """Every queue of the vhost with the info keys rabbitmqctl list_queues knows."""
        return [_queue_info(queue) for queue in self._vhost(vhost).queues.values()]

    def list_exchanges(self, vhost: str) -> list[dict[str, Any]]:
        return [
            {
                "name": exchange.name,
                "type": exchange.type_name,
                "durable": exchange.durable,
                "auto_delete": exchange.auto_delete,
                "internal": exchange.internal,
                "arguments": dict(exchange.arguments),
                "policy": getattr(exchange, "policy", None) or "",
            }
            for exchange in self._vhost(vhost).exchanges.values()
        ]

    def list_bindings(self, vhost: str) -> list[dict[str, Any]]:
        """Bindings as rabbitmqctl list_bindings: the default exchange's implicit ones first."""
        host = self._vhost(vhost)
        implicit = [
            {"source_name": "", "source_kind": "exchange", "destination_name": name,
             "destination_kind": "queue", "routing_key": name, "arguments": {}}
            for name in host.queues
        ]  # fmt: skip
        explicit = [
            {"source_name": binding.source, "source_kind": "exchange",
             "destination_name": binding.destination.name, "destination_kind": binding.destination.kind,
             "routing_key": binding.routing_key, "arguments": dict(binding.arguments)}
            for binding in host.bindings.values()
        ]  # fmt: skip
        return implicit + sorted(
            explicit, key=lambda b: (b["source_name"], b["destination_name"], b["routing_key"])
        )

    def list_connections(self) -> list[dict[str, Any]]:
        return [
            {**{k: v for k, v in connection.stats().items() if k != "message_stats"}, "name": connection.name,
             "peer_host": connection.peer[0], "peer_port": connection.peer[1] if len(connection.peer) > 1 else 0,
             "host": connection.sockname[0], "port": connection.sockname[1] if len(connection.sockname) > 1 else 0}
            for connection in self.broker.connections
            if connection.open
        ]  # fmt: skip

    def list_channels(self) -> list[dict[str, Any]]:
        return [
            {**{k: v for k, v in channel.stats().items() if k != "message_stats"},
             "name": channel.name, "connection": connection.name, "user": connection.username,
             "vhost": connection.vhost.name if connection.vhost is not None else None}
            for connection in self.broker.connections
            for _, channel in sorted(connection.channels.items())
        ]  # fmt: skip

    def list_consumers(self, vhost: str) -> list[dict[str, Any]]:
        return [
            {"queue_name": consumer.queue.name, "channel_pid": channel.name, "consumer_tag": consumer.tag,
             "ack_required": not consumer.no_ack, "prefetch_count": consumer.prefetch,
             "arguments": dict(consumer.arguments), **_activity(consumer)}
            for channel in self._channels_of(vhost)
            for consumer in channel.consumers.values()
        ]  # fmt: skip

    def _channels_of(self, vhost: str) -> list[Any]:
        return [
            channel
            for connection in self.broker.connections
            if connection.vhost is not None and connection.vhost.name == vhost
            for _, channel in sorted(connection.channels.items())
        ]

    def purge_queue(self, vhost: str, name: str) -> int:
        queue = self._vhost(vhost).queues.get(name)
        if queue is None:
            raise AdminError("not_found")
        return queue.purge()

    async def delete_queue(
        self, vhost: str, name: str, if_unused: bool = False, if_empty: bool = False
    ) -> int:
        """rabbitmqctl delete_queue: the ready messages it held."""
        host = self._vhost(vhost)
        if name not in host.queues:
            raise AdminError("Queue not found")
        return await delete_queue(host, name, if_unused, if_empty)

    def close_connection(self, name: str, reason: str) -> None:
        """rabbitmqctl close_connection: silently nothing when no connection has that name."""
        for connection in list(self.broker.connections):
            if connection.name == name:
                connection.force_close(reason)

    def close_all_connections(self, reason: str, vhost: str | None = None) -> int:
        closing = [c for c in self.broker.connections if vhost is None or (c.vhost and c.vhost.name == vhost)]
        for connection in closing:
            connection.force_close(reason)
        return len(closing)

    async def reset(self) -> None:
        """rabbitmqctl reset (with the application stopped): every vhost with what it holds,
        every user and global parameter goes, and the node is as on a first start: the
        default vhost, and the default user with its tags and permissions there."""
        for vhost in list(self.broker.vhosts):
            await self.delete_vhost(vhost)
        for user in list(self.broker.users):
            await self.delete_user(user)
        for name in list(self.broker.global_parameters):
            await self.clear_global_parameter(name)
        config = self.broker.config
        await self.add_vhost(config.default_vhost)
        await self._put_user(config.default_user, hash_password(config.default_pass), list(config.default_user_tags))
        permissions = config.default_permissions
        await self.set_permissions(
            config.default_user, config.default_vhost, permissions["configure"], permissions["write"], permissions["read"]
        )


def _limit_errors(name: str, keys: tuple[str, ...], limits: Any) -> list[str]:
    """rabbit_parameter_validation:proplist: unknown terms first, then the values, last key first."""
    if not isinstance(limits, dict):
        return [f"{name} should be a dictionary, actually was {erlang_json(limits)}"]
    errors = []
    unknown = [(key, value) for key, value in limits.items() if key not in keys]
    if unknown:
        shown = ",".join(f"{{{erlang_json(key)},{erlang_json(value)}}}" for key, value in unknown)
        errors.append(f"Unrecognised terms [{shown}] in {name}")
    for key in reversed(keys):
        value = limits.get(key)
        if key in limits and (isinstance(value, bool) or not isinstance(value, int)):
            errors.append(f"{key} should be a number, actually was {erlang_json(value)}")
    return errors


def _queue_info(queue: Any) -> dict[str, Any]:
    """A queue's rabbitmqctl list_queues info keys. ``memory`` is the bytes of the message
    bodies it holds (the broker does not account a queue's memory apart)."""
    stats = queue.stats()
    counters = {key: stats.get(key, 0) for key in QUEUE_COUNTERS}
    unacked = counters["messages_unacknowledged"]
    return {
        "name": queue.name,
        **counters,
        "messages_unacknowledged_ram": unacked,
        "messages_ram": counters["messages_ready_ram"] + unacked,
        "memory": counters["message_bytes"],
        "durable": queue.durable,
        "auto_delete": queue.auto_delete,
        "exclusive": queue.exclusive_owner is not None,
        "arguments": dict(queue.arguments),
        "policy": getattr(queue, "policy", None) or "",
        "type": queue.type_name,
        "state": stats.get("state", "running"),
        **_mirrors(queue),
    }


def _mirrors(queue: Any) -> dict[str, Any]:
    """slave_pids and synchronised_slave_pids: a mirrored queue's mirrors by node name (RabbitMQ
    lists their Erlang pids), '' for another queue, as rabbitmqctl shows them."""
    info = getattr(queue, "replica_info", None)
    if info is None or queue.type_name != "classic":
        return {"slave_pids": "", "synchronised_slave_pids": ""}
    mirrors, synchronised = info.mirrors()
    return {"slave_pids": mirrors, "synchronised_slave_pids": synchronised}


def _activity(consumer: Any) -> dict[str, Any]:
    """A consumer's ``active`` and ``activity_status``: with single active consumer only one is."""
    queue = consumer.queue
    single_active = getattr(queue.settings, "single_active_consumer", False)
    active = not single_active or getattr(queue, "active_consumer", None) is consumer
    status = ("single_active" if active else "waiting") if single_active else "up"
    return {"active": active, "activity_status": status}


def _name(item: Any) -> str:
    return item.name
