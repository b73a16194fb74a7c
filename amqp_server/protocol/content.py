"""Basic-class content-header properties: the flag bits, the raw property fields, decoding.

A content-header payload is class id (short), weight (short), body size (longlong), the
property flags (short, bytes 12-13), then each property present in flag order. One parser
reads the properties two ways: decoded values (``decode_properties``), or where each raw
field lies (``split_properties``, ``property_span``) for re-encoding a header with a
property changed while all else stays byte-exact.
"""

from __future__ import annotations

import struct
from typing import Any

from amqp_server.protocol.errors import INTERNAL_ERROR, ConnectionError
from amqp_server.protocol.field_types import lenient_str
from amqp_server.protocol.tables import Malformed, decode_values, timestamp

FLAG_CONTENT_TYPE = 0x8000
FLAG_CONTENT_ENCODING = 0x4000
FLAG_HEADERS = 0x2000
FLAG_DELIVERY_MODE = 0x1000
FLAG_PRIORITY = 0x0800
FLAG_CORRELATION_ID = 0x0400
FLAG_REPLY_TO = 0x0200
FLAG_EXPIRATION = 0x0100
FLAG_MESSAGE_ID = 0x0080
FLAG_TIMESTAMP = 0x0040
FLAG_TYPE = 0x0020
FLAG_USER_ID = 0x0010
FLAG_APP_ID = 0x0008
FLAG_CLUSTER_ID = 0x0004

_SHORTSTR, _OCTET, _TIMESTAMP, _TABLE = range(4)
# In flag order: (pamqp's name, flag bit, field type). pamqp says message_type for AMQP's type.
PROPERTIES = (
    ("content_type", FLAG_CONTENT_TYPE, _SHORTSTR),
    ("content_encoding", FLAG_CONTENT_ENCODING, _SHORTSTR),
    ("headers", FLAG_HEADERS, _TABLE),
    ("delivery_mode", FLAG_DELIVERY_MODE, _OCTET),
    ("priority", FLAG_PRIORITY, _OCTET),
    ("correlation_id", FLAG_CORRELATION_ID, _SHORTSTR),
    ("reply_to", FLAG_REPLY_TO, _SHORTSTR),
    ("expiration", FLAG_EXPIRATION, _SHORTSTR),
    ("message_id", FLAG_MESSAGE_ID, _SHORTSTR),
    ("timestamp", FLAG_TIMESTAMP, _TIMESTAMP),
    ("message_type", FLAG_TYPE, _SHORTSTR),
    ("user_id", FLAG_USER_ID, _SHORTSTR),
    ("app_id", FLAG_APP_ID, _SHORTSTR),
    ("cluster_id", FLAG_CLUSTER_ID, _SHORTSTR),
)

_long = struct.Struct(">I")
_timestamp = struct.Struct(">Q")
_flags = struct.Struct(">H")


def bad_properties() -> ConnectionError:
    """RabbitMQ's reply to properties that do not decode."""
    return ConnectionError(INTERNAL_ERROR, "could not decode the content header properties")


def _read(header: bytes, decode: bool) -> dict[Any, Any]:
    """The properties present: ``{name: value}`` when ``decode``, else ``{flag bit: (start,
    end)}`` of each raw field (a shortstr with its length octet, the headers table with its
    4-octet length).

    As strict as RabbitMQ, which refuses a published message whose properties do not parse
    with ``541 INTERNAL_ERROR``: missing flags, the flag-continuation bit (RabbitMQ does not
    support it), a truncated value, a bad field table or octets after the last property.
    Shortstr properties are not checked for UTF-8 (RabbitMQ does not either).
    """
    size = len(header)
    if size < 14:
        raise bad_properties()
    flags = header[12] << 8 | header[13]
    if not flags:
        if size != 14:
            raise bad_properties()
        return {}
    if flags & 1:
        raise bad_properties()
    out: dict[Any, Any] = {}
    pos = 14
    try:
        for name, bit, kind in PROPERTIES:
            if not flags & bit:
                continue
            if kind == _SHORTSTR:
                end = pos + 1 + header[pos]
                if end > size:
                    raise Malformed("shortstr truncated")
                if decode:
                    out[name] = lenient_str(header[pos + 1 : end])
            elif kind == _OCTET:
                end = pos + 1
                if decode:
                    out[name] = header[pos]
            elif kind == _TIMESTAMP:
                end = pos + 8
                if end > size:
                    raise Malformed("timestamp truncated")
                if decode:
                    out[name] = timestamp(_timestamp.unpack_from(header, pos)[0])
            else:
                end = pos + 4 + _long.unpack_from(header, pos)[0]
                if end > size:
                    raise Malformed("table truncated")
                if decode:
                    out[name] = decode_values(header, pos + 4, end)
            if not decode:
                out[bit] = (pos, end)
            pos = end
    except (Malformed, IndexError, struct.error) as exc:
        raise bad_properties() from exc
    if pos != size:
        raise bad_properties()
    return out


def decode_properties(header: bytes) -> dict[str, Any]:
    """All properties of a content-header payload, as a dict of the ones present, by pamqp's
    names and value types; ConnectionError(541) if they do not decode."""
    return _read(header, True)


def split_properties(header: bytes) -> dict[int, bytes]:
    """The raw field of each property present, by flag bit; joined in flag order (see
    ``join_properties``) they re-encode the properties."""
    return {bit: header[start:end] for bit, (start, end) in _read(header, False).items()}


def join_properties(header: bytes, fields: dict[int, bytes]) -> bytes:
    """``header``'s class, weight and body size with ``fields`` (raw, by flag bit) as its
    properties."""
    flags = 0
    for bit in fields:
        flags |= bit
    return header[:12] + _flags.pack(flags) + b"".join(fields[bit] for _, bit, _ in PROPERTIES if bit in fields)


def property_span(header: bytes, bit: int) -> tuple[int, int] | None:
    """``(start, end)`` of one property's raw field in a content-header payload, if present."""
    return _read(header, False).get(bit)
