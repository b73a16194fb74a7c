"""RabbitMQ's definitions JSON: import (at boot from ``load_definitions``, or through the admin
API) and export, in the format ``rabbitmqctl export_definitions`` and ``GET /api/definitions``
write.

Import order is rabbit_definitions': users, vhosts, permissions, topic permissions, parameters,
global parameters, policies, queues, exchanges, bindings. Everything goes through the admin API
and so through ``Broker.change``. Existing queues and exchanges are left as they are (as RabbitMQ
does); users, permissions, policies and parameters are replaced. Password hashes import
unchanged, so users log in with the password they had on RabbitMQ.
"""

from __future__ import annotations

import base64
import datetime
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from amqp_server import __version__
from amqp_server.admin.errors import AdminError
from amqp_server.core.access import MD5, SHA256, hash_password, validate_pattern
from amqp_server.metadata.store import Change
from amqp_server.protocol.errors import ChannelError, ConnectionError
from exchanges.base import Destination

if TYPE_CHECKING:
    from amqp_server.admin.operations import Admin
    from amqp_server.core.broker import Broker

RABBIT_VERSION = "3.10.8"  # the RabbitMQ whose behaviour and formats this broker matches


class DefinitionsError(Exception):
    """A definitions file that cannot be imported; the message says which item and why."""


async def load_file(admin: Admin, path: str) -> None:
    """Import a definitions file at boot; an unreadable or invalid file stops the start."""
    try:
        with open(path, encoding="utf-8") as handle:
            definitions = json.load(handle)
    except (OSError, ValueError) as exc:
        raise DefinitionsError(f"cannot read definitions file {path}: {exc}") from exc
    await import_definitions(admin, definitions)


def _hashing_algorithm(user: Mapping[str, Any], version: str) -> str:
    """rabbit_auth_backend_internal:hashing_algorithm: files from before 3.6 used MD5."""
    algorithm = user.get("hashing_algorithm")
    if algorithm:
        return str(algorithm)
    if version.startswith(("3.5.", "3.4.", "3.3.", "3.2.", "3.1.", "3.0.", "2.")):
        return MD5
    return SHA256


def _tags(tags: Any) -> list[str]:
    # 3.10 writes a list; older versions a comma-separated string.
    if isinstance(tags, str):
        return [tag.strip() for tag in tags.split(",") if tag.strip()]
    if not isinstance(tags, list | None):
        raise AdminError(f"tags must be a list or a string, not {tags!r}")
    return [str(tag) for tag in tags or []]


# What each item of a section must hold: field -> (required, accepted types). Names are
# checked apart (_check_name). Anything else in an item is ignored, as RabbitMQ ignores it.
_STR, _BOOL, _TABLE, _ANY = (str,), (bool,), (dict,), (object,)
_TAGS = (str, list)
SCHEMAS: dict[str, dict[str, tuple[bool, tuple[type, ...]]]] = {
    "users": {"name": (True, _STR), "password_hash": (False, (str, type(None))), "password": (False, _STR),
              "tags": (False, _TAGS), "hashing_algorithm": (False, _STR), "limits": (False, (dict, list))},
    "vhosts": {"name": (True, _STR), "metadata": (False, _TABLE), "description": (False, _STR),
               "tags": (False, _TAGS), "limits": (False, (dict, list))},
    "permissions": {"user": (True, _STR), "vhost": (False, _STR), "configure": (False, _STR),
                    "write": (False, _STR), "read": (False, _STR)},
    "topic_permissions": {"user": (True, _STR), "vhost": (False, _STR), "exchange": (True, _STR),
                          "write": (False, _STR), "read": (False, _STR)},
    "parameters": {"vhost": (False, _STR), "component": (True, _STR), "name": (True, _STR), "value": (True, _ANY)},
    "global_parameters": {"name": (True, _STR), "value": (True, _ANY)},
    "policies": {"vhost": (False, _STR), "name": (True, _STR), "pattern": (True, _ANY), "definition": (True, _ANY),
                 "priority": (False, _ANY), "apply-to": (False, _ANY)},
    "queues": {"name": (True, _STR), "vhost": (False, _STR), "durable": (False, _BOOL),
               "auto_delete": (False, _BOOL), "arguments": (False, _TABLE)},
    "exchanges": {"name": (True, _STR), "vhost": (False, _STR), "type": (False, _STR), "durable": (False, _BOOL),
                  "auto_delete": (False, _BOOL), "internal": (False, _BOOL), "arguments": (False, _TABLE)},
    "bindings": {"source": (True, _STR), "vhost": (False, _STR), "destination": (True, _STR),
                 "destination_type": (False, _STR), "routing_key": (False, _STR), "arguments": (False, _TABLE)},
}  # fmt: skip
# Fields that name an exchange, a queue or a routing key: a shortstr on the wire.
_SHORTSTR_FIELDS = {"queues": ("name",), "exchanges": ("name",), "topic_permissions": ("exchange",),
                    "bindings": ("source", "destination", "routing_key")}  # fmt: skip


def _check_sections(definitions: Mapping[str, Any]) -> dict[str, list[Mapping[str, Any]]]:
    """Every section's items, checked against SCHEMAS before anything is imported: a document
    that fails here changes nothing."""
    sections: dict[str, list[Mapping[str, Any]]] = {}
    for section, schema in SCHEMAS.items():
        items = definitions.get(section) or []
        if not isinstance(items, list):
            raise AdminError(f"'{section}' must be a list")
        for index, item in enumerate(items):
            where = f"{section}[{index}]"
            if not isinstance(item, Mapping):
                raise AdminError(f"{where} must be an object")
            if not _is_unicode(item):
                raise AdminError(f"{where} holds a string that is not valid Unicode")
            for field, (required, types) in schema.items():
                if field not in item:
                    if required:
                        raise AdminError(f"{where} has no '{field}'")
                    continue
                if not isinstance(item[field], types):
                    raise AdminError(f"{where}: '{field}' has the wrong type")
                if isinstance(item[field], str):
                    _check_text(where, field, item[field], field in _SHORTSTR_FIELDS.get(section, ()))
        sections[section] = items
    return sections


def _is_unicode(value: Any) -> bool:
    """No lone surrogates (JSON's \\ud800 escapes) anywhere in the value: such a string has no
    UTF-8 form to store, compare or send."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, Mapping):
        return all(_is_unicode(k) and _is_unicode(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_is_unicode(v) for v in value)
    return True


def _check_text(where: str, field: str, value: str, shortstr: bool) -> None:
    if shortstr and len(value.encode()) > 255:
        raise AdminError(f"{where}: '{field}' is longer than 255 bytes")


async def import_definitions(admin: Admin, definitions: Mapping[str, Any]) -> None:
    """Apply a definitions document; raise ``AdminError`` naming the first item that fails.
    Items are checked first (``_check_sections``), then imported one by one."""
    if not isinstance(definitions, Mapping):
        raise AdminError("definitions must be a JSON object")
    sections = _check_sections(definitions)
    broker = admin.broker
    default_vhost = broker.config.default_vhost
    version = str(definitions.get("rabbit_version") or definitions.get("rabbitmq_version") or "")

    def vhost_of(item: Mapping[str, Any]) -> str:
        return str(item.get("vhost", default_vhost))

    for user in sections["users"]:
        name = user["name"]
        if "password_hash" in user:
            password_hash, algorithm = user["password_hash"] or "", _hashing_algorithm(user, version)
        elif user.get("password"):
            password_hash, algorithm = hash_password(user["password"]), SHA256
        else:
            password_hash, algorithm = "", SHA256
        await admin._put_user(name, password_hash, _tags(user.get("tags")), algorithm)
        limits = user.get("limits")
        if isinstance(limits, Mapping) and limits:
            await admin.set_user_limits(name, dict(limits))
    for vhost in sections["vhosts"]:
        name = vhost["name"]
        metadata = vhost.get("metadata") or {}
        description = metadata.get("description", vhost.get("description", ""))
        tags = _tags(metadata.get("tags", vhost.get("tags", [])))
        if not isinstance(description, str):
            raise AdminError(f"vhost '{name}': description must be a string")
        await broker.change(Change("vhost", "put", None, name, {"description": description, "tags": tags}))
        limits = vhost.get("limits")
        if isinstance(limits, Mapping) and limits:
            await admin.set_vhost_limits(name, dict(limits))
    for permission in sections["permissions"]:
        await admin.set_permissions(
            permission["user"],
            vhost_of(permission),
            permission.get("configure", ""),
            permission.get("write", ""),
            permission.get("read", ""),
        )
    topic: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
    for permission in sections["topic_permissions"]:
        key = (permission["user"], vhost_of(permission))
        exchanges = topic.setdefault(key, _current_topic_permissions(broker, *key))
        patterns = {"write": permission.get("write", ""), "read": permission.get("read", "")}
        for pattern in patterns.values():
            try:
                validate_pattern(pattern)
            except ValueError as exc:
                raise AdminError(str(exc)) from None
        exchanges[permission["exchange"]] = patterns
    for (user, vhost), exchanges in topic.items():
        if user not in broker.users:
            raise AdminError(f"User {user} does not exist")
        admin._vhost(vhost)
        await broker.change(Change("topic_permission", "put", vhost, user, {"exchanges": exchanges}))
    for parameter in sections["parameters"]:
        await import_parameter(admin, vhost_of(parameter), parameter["component"], parameter["name"],
                               parameter["value"])  # fmt: skip
    for parameter in sections["global_parameters"]:
        await broker.change(Change("global_parameter", "put", None, parameter["name"], {"value": parameter["value"]}))
    for policy in sections["policies"]:
        await admin.set_policy(
            vhost_of(policy),
            policy["name"],
            policy["pattern"],
            policy["definition"],
            policy.get("priority", 0),
            policy.get("apply-to", "all"),
        )
    for queue in sections["queues"]:
        vhost = admin._vhost(vhost_of(queue))
        if queue["name"] in vhost.queues:
            continue
        await _declare(
            f"queue '{queue['name']}' in vhost '{vhost.name}'",
            vhost.declare_queue(
                queue["name"],
                durable=queue.get("durable", True),
                auto_delete=queue.get("auto_delete", False),
                arguments=dict(queue.get("arguments") or {}),
            ),
        )
    for exchange in sections["exchanges"]:
        vhost = admin._vhost(vhost_of(exchange))
        if exchange["name"] in vhost.exchanges:
            continue
        await _declare(
            f"exchange '{exchange['name']}' in vhost '{vhost.name}'",
            vhost.declare_exchange(
                exchange["name"],
                exchange.get("type", "direct"),
                durable=exchange.get("durable", True),
                auto_delete=exchange.get("auto_delete", False),
                internal=exchange.get("internal", False),
                arguments=dict(exchange.get("arguments") or {}),
            ),
        )
    for binding in sections["bindings"]:
        vhost = admin._vhost(vhost_of(binding))
        kind = binding.get("destination_type", "queue")
        if kind not in ("queue", "exchange"):
            raise AdminError(f"binding destination_type must be 'queue' or 'exchange', not '{kind}'")
        await _declare(
            f"binding from '{binding['source']}' to '{binding['destination']}' in vhost '{vhost.name}'",
            vhost.bind(
                binding["source"],
                Destination(kind, binding["destination"]),
                binding.get("routing_key", ""),
                dict(binding.get("arguments") or {}),
            ),
        )


async def import_parameter(admin: Admin, vhost: str, component: str, name: str, value: Any) -> None:
    """A vhost-scoped runtime parameter: policies and limits go where they act, others are kept."""
    if component in ("policy", "operator_policy", "vhost-limits") and not isinstance(value, Mapping):
        raise AdminError(f"{component} parameter '{name}': value must be an object")
    if component in ("policy", "operator_policy"):
        for field in ("pattern", "definition"):
            if field not in value:
                raise AdminError(f"{component} parameter '{name}' has no '{field}'")
        setter = admin.set_policy if component == "policy" else admin.set_operator_policy
        await setter(
            vhost, name, value["pattern"], value["definition"], value.get("priority", 0), value.get("apply-to", "all")
        )
    elif component == "vhost-limits":
        await admin.set_vhost_limits(vhost, dict(value))
    else:
        admin._vhost(vhost)
        record = {"component": component, "name": name, "value": value}
        await admin.broker.change(Change("parameter", "put", vhost, f"{component}/{name}", record))


async def _declare(what: str, operation: Any) -> None:
    try:
        await operation
    except (ChannelError, ConnectionError) as exc:
        raise AdminError(f"cannot import {what}: {exc.code} {exc.reply_text}") from None


def _current_topic_permissions(broker: Broker, user: str, vhost: str) -> dict[str, dict[str, str]]:
    return {k[2]: dict(v) for k, v in broker.topic_permissions.items() if k[:2] == (user, vhost)}


# -- export -------------------------------------------------------------------------------------


def _json(value: Any) -> Any:
    """An AMQP field value as JSON (as RabbitMQ's export: strings, numbers, booleans, ...)."""
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        try:
            return data.decode()
        except UnicodeDecodeError:
            return base64.b64encode(data).decode()
    if isinstance(value, Mapping):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime.datetime):
        return int(value.timestamp())
    return value


def export_definitions(broker: Broker) -> dict[str, Any]:
    """Everything a definitions file holds, in RabbitMQ 3.10's shape (lists sorted by name)."""
    vhosts = [broker.vhosts[name] for name in sorted(broker.vhosts)]
    parameters = [
        {"value": value, "vhost": vhost, "component": component, "name": name}
        for (vhost, component, name), value in sorted(broker.parameters.items())
    ]
    for vhost in vhosts:
        for policy in sorted(vhost.operator_policies.values(), key=lambda p: p.name):
            value = {k: v for k, v in policy.as_dict().items() if k not in ("vhost", "name")}
            parameters.append({"value": value, "vhost": vhost.name, "component": "operator_policy",
                               "name": policy.name})  # fmt: skip
        if vhost.name in broker.vhost_limits:
            parameters.append(
                {"value": dict(broker.vhost_limits[vhost.name]), "vhost": vhost.name, "component": "vhost-limits",
                 "name": "limits"}  # fmt: skip
            )
    return {
        "rabbit_version": RABBIT_VERSION,
        "rabbitmq_version": RABBIT_VERSION,
        "product_name": "amqp-server",
        "product_version": __version__,
        "users": [
            {
                "name": user.name,
                "password_hash": user.password_hash,
                "hashing_algorithm": user.hashing_algorithm,
                "tags": list(user.tags),
                "limits": dict(broker.user_limits.get(user.name, {})),
            }
            for user in sorted(broker.users.values(), key=lambda u: u.name)
        ],
        "vhosts": [
            {"name": v.name, "limits": [], "metadata": {"description": v.description, "tags": list(v.tags)}}
            for v in vhosts
        ],
        "permissions": [
            {"user": p.user, "vhost": p.vhost, "configure": p.configure, "write": p.write, "read": p.read}
            for _, p in sorted(broker.permissions.items())
        ],
        "topic_permissions": [
            {"user": user, "vhost": vhost, "exchange": exchange, "write": p["write"], "read": p["read"]}
            for (user, vhost, exchange), p in sorted(broker.topic_permissions.items())
        ],
        "parameters": parameters,
        "global_parameters": [{"name": k, "value": v} for k, v in sorted(broker.global_parameters.items())],
        "policies": [p.as_dict() for v in vhosts for _, p in sorted(v.policies.items())],
        "queues": [
            {
                "name": q.name,
                "vhost": v.name,
                "durable": q.durable,
                "auto_delete": q.auto_delete,
                "arguments": _json(q.arguments),
                "type": getattr(q, "type_name", "classic"),
            }
            for v in vhosts
            for _, q in sorted(v.queues.items())
            if q.exclusive_owner is None  # exclusive queues belong to their connection
        ],
        "exchanges": [
            {
                "name": x.name,
                "vhost": v.name,
                "type": x.type_name,
                "durable": x.durable,
                "auto_delete": x.auto_delete,
                "internal": x.internal,
                "arguments": _json(x.arguments),
            }
            for v in vhosts
            for _, x in sorted(v.exchanges.items())
            if x.name and not x.name.startswith("amq.")
        ],
        "bindings": [
            {
                "source": b.source,
                "vhost": v.name,
                "destination": b.destination.name,
                "destination_type": b.destination.kind,
                "routing_key": b.routing_key,
                "arguments": _json(b.arguments),
            }
            for v in vhosts
            for b in sorted(v.bindings.values(), key=lambda b: (b.source, b.destination, b.routing_key))
        ],
    }
