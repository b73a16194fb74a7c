"""The ``x-delay`` header as rabbitmq-delayed-message-exchange reads and rewrites it
(``rabbit_delayed_message_utils``), sans-IO.

Integer types are the delay in milliseconds; a longstr is read as an integer (Erlang's
``binary_to_integer``: anything else crashes the publishing channel, which the client sees as
``541 INTERNAL_ERROR``), a float or double is truncated, a decimal crashes as it does in Erlang,
and any other type means no delay. Only a delay in 1..2^32-1 ms delays the message (Erlang's
timer limit); anything else is routed at once. A delayed message leaves with ``x-delay`` set to
minus its delay (a signedint), so that it is not delayed again and consumers can tell it was.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from amqp_server.protocol.content import FLAG_HEADERS, join_properties, split_properties
from amqp_server.protocol.errors import INTERNAL_ERROR, ConnectionError
from amqp_server.protocol.tables import decode_entries, encode_entries, set_table_value

HEADER = "x-delay"
MAX_DELAY = 4_294_967_295  # ERL_MAX_T: the longest Erlang timer, in ms
_SIGNEDINT = ord("I")
_ERLANG_INTEGER = re.compile(r"[+-]?[0-9]+")


def _crash() -> ConnectionError:
    """What the client sees when the plugin's route crashes the channel (a non-AMQP exit)."""
    return ConnectionError(INTERNAL_ERROR, "")


def header_delay(value: Any) -> int | None:
    """The delay an ``x-delay`` value (as decoded from the headers table) asks for, or None."""
    if isinstance(value, bool):  # a bool is an int in Python, not in AMQP
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)  # trunc/1
    if isinstance(value, str | bytes):  # longstr: binary_to_integer/1
        text = value if isinstance(value, str) else value.decode("latin-1")
        if _ERLANG_INTEGER.fullmatch(text) is None:
            raise _crash()
        return int(text)
    if isinstance(value, Decimal):  # trunc/1 of {decimal, ...} is a badarg
        raise _crash()
    return None


def delay_of(headers: dict[str, Any] | None) -> int:
    """The delay in ms a message with ``headers`` is held for; 0 for none (route at once)."""
    if not headers or HEADER not in headers:
        return 0
    delay = header_delay(headers[HEADER])
    return delay if delay is not None and 0 < delay <= MAX_DELAY else 0


def swap_delay_header(header: bytes, delay: int) -> bytes:
    """``header`` (a content-header payload) with ``x-delay`` set to ``-delay`` as a signedint,
    the table then sorted by key (``rabbit_misc:set_table_value``), every other entry exactly as
    it was."""
    properties = split_properties(header)
    raw = properties[FLAG_HEADERS]
    entries = decode_entries(raw, 4, len(raw))
    wrapped = (-delay + 2**31) % 2**32 - 2**31  # Erlang's <<V:32/signed>> keeps the low 32 bits
    properties[FLAG_HEADERS] = encode_entries(set_table_value(entries, HEADER.encode(), _SIGNEDINT, wrapped))
    return join_properties(header, properties)
