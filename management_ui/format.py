"""Values between the broker and JSON, as rabbit_mgmt_format converts them.

- AMQP field values (arguments, client properties, headers) to JSON (``json_value``):
  strings that are not UTF-8 become ``"Not UTF-8, base64 is: ..."``, decimals floats,
  timestamps seconds;
- basic properties to and from JSON (``properties_json``, ``properties_from_json``), with
  RabbitMQ's names (``type``, not pamqp's ``message_type``);
- times as RabbitMQ prints them (``rfc3339``);
- a binding's ``properties_key`` (``binding_key``), the last segment of its URL.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from amqp_server.protocol.field_types import octets
from management_ui.errors import bad_request

#: Basic properties in RabbitMQ's order (the P_basic record), by RabbitMQ's names.
PROPERTIES = (
    "content_type", "content_encoding", "headers", "delivery_mode", "priority", "correlation_id", "reply_to",
    "expiration", "message_id", "timestamp", "type", "user_id", "app_id", "cluster_id",
)  # fmt: skip
_INTEGER_PROPERTIES = ("delivery_mode", "priority", "timestamp")
_PAMQP_NAMES = {"type": "message_type"}


def _utf8_safe(raw: bytes) -> str:
    """rabbit_misc:utf8_safe: the text, or its base64 (lines of 76) when it is not UTF-8."""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        encoded = base64.b64encode(raw).decode()
        return "Not UTF-8, base64 is: " + "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))


def json_value(value: Any) -> Any:
    """An AMQP field value (as the broker decodes it) as RabbitMQ's JSON shows it."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        try:
            value.encode()
            return value
        except UnicodeEncodeError:  # octets that were not UTF-8 (field_types.text)
            return _utf8_safe(octets(value))
    if isinstance(value, bytes | bytearray | memoryview):
        return _utf8_safe(bytes(value))
    if isinstance(value, Mapping):
        return {str(json_value(key)): json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(item) for item in value]
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime.datetime):
        return int(value.timestamp())
    if isinstance(value, time.struct_time):
        return int(time.mktime(value))
    return value


def table(value: Mapping[str, Any] | None) -> dict[str, Any]:
    """An arguments table as JSON (``{}`` when there is none)."""
    return {str(key): json_value(item) for key, item in value.items()} if value else {}


def parse_bool(value: Any) -> bool | None:
    """rabbit_mgmt_format:parse_bool: JSON booleans or the strings true/false (None: absent)."""
    if value is None or isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise bad_request(["not_boolean", value])


def rfc3339(ms: float) -> str:
    """rabbit_mgmt_format:now_to_str: ``2026-12-03T21:04:38.800+00:00``."""
    moment = datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+00:00"


def properties_json(properties: Mapping[str, Any]) -> dict[str, Any] | list[Any]:
    """A message's basic properties (decoded, pamqp's names) as rabbit_mgmt_format does: only
    those present, and ``[]`` (an empty proplist) when there are none."""
    out = {}
    for name in PROPERTIES:
        value = properties.get(_PAMQP_NAMES.get(name, name))
        if value is not None:
            out[name] = json_value(value)
    return out or []


def properties_from_json(value: Any) -> dict[str, Any]:
    """rabbit_mgmt_format:to_basic_properties: the properties of a publish through the API,
    by pamqp's names; ``{not_int, K}`` / ``{not_string, K}`` as 400s."""
    if not isinstance(value, Mapping):
        return {}
    out: dict[str, Any] = {}
    for name in PROPERTIES:
        if name not in value or value[name] is None:
            continue
        item = value[name]
        if name == "headers":
            out["headers"] = dict(item) if isinstance(item, Mapping) else {}
        elif name in _INTEGER_PROPERTIES:
            if isinstance(item, bool) or not isinstance(item, int):
                raise bad_request(["not_int", name])
            out[name] = (
                datetime.datetime.fromtimestamp(item, datetime.UTC) if name == "timestamp" else item
            )
        elif isinstance(item, str):
            out[_PAMQP_NAMES.get(name, name)] = item
        else:
            raise bad_request(["not_string", name])
    return out


def quote_plus(text: str) -> str:
    """rabbit_http_util:quote_plus: UTF-8 octets, upper-case hex, ``+`` for a space; letters,
    digits and ``.-~_`` as they are."""
    out = []
    for byte in text.encode("utf-8", "surrogateescape"):
        char = chr(byte)
        if char.isascii() and (char.isalnum() or char in ".-~_"):
            out.append(char)
        elif char == " ":
            out.append("+")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def quote_binding(text: str) -> str:
    """rabbit_mgmt_format:quote_binding: ``quote_plus`` with ``~`` written ``%7E`` (``~``
    separates the key from the arguments' hash)."""
    return quote_plus(text).replace("~", "%7E")


def args_hash(arguments: Mapping[str, Any]) -> str:
    """A short hash of a binding's arguments, base64url without padding as RabbitMQ's. RabbitMQ
    hashes the Erlang term (erlang:phash2); this hashes the arguments' JSON, so the key differs
    from RabbitMQ's for bindings with arguments (clients read it from the listing)."""
    canonical = json.dumps(table(arguments), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()[:4]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def binding_key(routing_key: str, arguments: Mapping[str, Any]) -> str:
    """rabbit_mgmt_format:pack_binding_props: ``~`` for no key and no arguments, else the
    quoted key, then ``~`` and the arguments' hash when there are arguments."""
    if not arguments:
        return quote_binding(routing_key) if routing_key else "~"
    return quote_binding(routing_key) + "~" + quote_binding(args_hash(arguments))
