"""Dead-lettering, as RabbitMQ 3.10's ``rabbit_dead_letter`` does it.

A queue hands messages that leave it by rejection (reason ``rejected``), expiry (``expired``)
or overflow (``maxlen``) to ``dead_letter``. Each is republished, at most once and without
publisher confirms, to the queue's dead-letter exchange with:

* the routing key ``x-dead-letter-routing-key`` when set (the CC header is then removed),
  else the message's own routing keys (publish key, CC and BCC keys);
* its headers table decoded, the ``x-death`` entry for (queue, reason) added or updated,
  ``x-first-death-*`` added on the first death, and the table re-sorted by key, each step as
  RabbitMQ's Erlang code does it (see ``update_x_death``), then re-encoded with the exact
  AMQP field types (``count`` a 64-bit ``l``, ``time`` a ``T`` timestamp, ``routing-keys`` an
  ``A`` array of ``S`` longstrs), so a client sees the same bytes RabbitMQ would send;
* the ``expiration`` property removed (kept as ``original-expiration`` in the x-death entry).

A missing dead-letter exchange drops the message silently. For reasons other than
``rejected`` a target queue the message already died in is skipped unless a rejection lies
in between (RabbitMQ's cycle detection), so a queue whose dead-letter exchange routes back
to itself drops an expired message at its first expiry.

Headers are read and written as kind-preserving entries (see protocol.tables), which keep the
AMQP type of every value that decoding to Python values loses.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from amqp_server.core.message import Message
from amqp_server.protocol.content import FLAG_EXPIRATION, FLAG_HEADERS, join_properties, split_properties
from amqp_server.protocol.errors import ChannelError
from amqp_server.protocol.tables import (
    L_LONG,
    A,
    Array,
    F,
    S,
    T,
    Table,
    decode_entries,
    delete_key,
    encode_entries,
    set_table_value,
    sort_table,
    table_lookup,
)

if TYPE_CHECKING:
    from amqp_server.core.vhost import VirtualHost
    from queues.base import QueueType, Settlement

REJECTED = b"rejected"
ROUTING_HEADERS = (b"CC", b"BCC")


# ---------------------------------------------------------------------------------------------
# The hook


def dead_letter(
    vhost: VirtualHost, queue: QueueType, messages: list[Any], reason: str
) -> list[bool | Settlement] | None:
    """Republish ``messages`` that left ``queue`` for ``reason`` to its dead-letter exchange:
    the target queues' publish results (what an at-least-once queue waits for), None when
    nothing was routed.

    The vhost installs this (bound to itself) as every queue's ``dead_letter`` hook.
    """
    settings = queue.settings
    exchange_name = settings.dead_letter_exchange
    if exchange_name is None or not messages:
        return None
    if vhost.queues.get(queue.name) is not queue:
        return None  # a deleted queue's process is gone in RabbitMQ: nothing dead-letters from it
    exchange = vhost.exchanges.get(exchange_name)
    if exchange is None:
        return None  # rabbit_amqqueue_process:with_dlx: no such exchange, the message is dropped
    results: list[bool | Settlement] = []
    routing_key = settings.dead_letter_routing_key
    reason_bytes = reason.encode()
    queue_name = queue.name.encode()
    for message in messages:
        dead = make_message(message, reason_bytes, exchange_name, routing_key, queue_name)
        if dead is None:
            continue
        try:
            targets = vhost.route(exchange, dead)
        except ChannelError:  # e.g. an exchange whose type's plugin is gone: nowhere to go
            continue
        if reason_bytes != REJECTED and targets:
            deaths = _x_death(dead)
            if deaths is not None:
                targets = [target for target in targets if not is_cycle(target.name.encode(), deaths)]
        for target in targets:
            results.append(target.publish(dead))
    return results or None


def dead_letter_hook(vhost: VirtualHost) -> Callable[[QueueType, list[Any], str], list[bool | Settlement] | None]:
    """``dead_letter`` bound to ``vhost``: what the vhost sets as ``queue.dead_letter``."""

    def hook(queue: QueueType, messages: list[Any], reason: str) -> list[bool | Settlement] | None:
        return dead_letter(vhost, queue, messages, reason)

    return hook


# ---------------------------------------------------------------------------------------------
# Building the dead-lettered message (rabbit_dead_letter:make_msg)


def make_message(
    message: Any, reason: bytes, exchange_name: str, routing_key: str | None, queue_name: bytes
) -> Message | None:
    """The message as it leaves for the dead-letter exchange, or None if it cannot be sent."""
    header = message.header
    properties = split_properties(header)
    raw_headers = properties.get(FLAG_HEADERS)
    headers: Table = decode_entries(raw_headers, 4, len(raw_headers)) if raw_headers is not None else []
    old_exchange, first_key = split_exchange_and_key(message.exchange_and_key)

    # Without a dead-letter routing key: the publish key, CC and BCC keys (rabbit_basic:message).
    death_keys = tuple(message.routing_keys) if routing_key is None else (routing_key,)
    info: Table = [
        (b"reason", S, reason),
        (b"queue", S, queue_name),
        (b"time", T, int(time.time())),
        (b"exchange", S, old_exchange),
        (b"routing-keys", A, [(S, key) for key in [first_key, *header_routes(headers)]]),
    ]
    expiration = properties.get(FLAG_EXPIRATION)
    if expiration is not None:
        info.append((b"original-expiration", S, expiration[1:]))
    headers = update_x_death(info, headers)
    if routing_key is not None:
        headers = delete_key(headers, b"CC")

    properties[FLAG_HEADERS] = encode_entries(headers)
    properties.pop(FLAG_EXPIRATION, None)
    new_header = join_properties(header, properties)

    exchange_raw = exchange_name.encode("utf-8", "surrogateescape")  # see field_types.text
    key_raw = death_keys[0].encode("utf-8", "surrogateescape")
    if len(exchange_raw) > 255 or len(key_raw) > 255:
        return None  # a routing key longer than a shortstr cannot be delivered
    dead = Message(
        exchange_name,
        death_keys[0],
        bytes((len(exchange_raw),)) + exchange_raw + bytes((len(key_raw),)) + key_raw,
        new_header,
        message.body,
    )
    # The message's routing keys are the dead-letter keys, whatever its CC header says now
    # (RabbitMQ keeps them in #basic_message.routing_keys; BCC keys included).
    dead._keys = death_keys  # noqa: SLF001
    return dead


def split_exchange_and_key(exchange_and_key: bytes) -> tuple[bytes, bytes]:
    """The raw exchange name and routing key of basic.publish (two shortstrs)."""
    size = exchange_and_key[0]
    exchange = exchange_and_key[1 : 1 + size]
    key_size = exchange_and_key[1 + size]
    return exchange, exchange_and_key[2 + size : 2 + size + key_size]


def header_routes(headers: Table) -> list[bytes]:
    """rabbit_basic:header_routes: the longstr elements of the CC and BCC arrays."""
    keys: list[bytes] = []
    for name in ROUTING_HEADERS:
        found = table_lookup(headers, name)
        if found is not None and found[0] == A:
            keys.extend(value for kind, value in found[1] if kind == S)
    return keys


# ---------------------------------------------------------------------------------------------
# x-death (rabbit_dead_letter:update_x_death_header and friends)


def update_x_death(info: Table, headers: Table) -> Table:
    """Add the death described by ``info`` to ``headers`` exactly as RabbitMQ 3.10 does."""
    exchange = _event_key(info, b"exchange")
    queue = _event_key(info, b"queue")
    reason = _event_key(info, b"reason")
    found = table_lookup(headers, b"x-death")
    if found is None:
        # The first death also gets top-level headers (rabbitmq-server#1332).
        headers = set_table_value(headers, b"x-first-death-reason", S, reason)
        headers = set_table_value(headers, b"x-first-death-queue", S, queue)
        headers = set_table_value(headers, b"x-first-death-exchange", S, exchange)
        return set_table_value(headers, b"x-death", A, [(F, [(b"count", L_LONG, 1), *info])])
    kind, deaths = found
    if kind != A:
        # Not an array (a client re-published it as something else): start again, without
        # x-first-death-* (rabbitmq-server#767).
        return set_table_value(headers, b"x-death", A, [(F, [(b"count", L_LONG, 1), *info])])
    grouped = _group_by_queue_and_reason(deaths)
    matches = [death for death in grouped if _matches(death, queue, reason)]
    others = [death for death in grouped if not _matches(death, queue, reason)]
    updated = _increment_count(matches[0][1]) if matches else [(b"count", L_LONG, 1), *info]
    return set_table_value(headers, b"x-death", A, [(F, sort_table(updated)), *others])


def _group_by_queue_and_reason(deaths: Array) -> Array:
    """Merge entries for the same (queue, reason), left by brokers before rabbitmq-server#78.

    As RabbitMQ's fold: each first-seen key's first entry (given ``count`` = how many there
    were, if it had none) is prepended, so with two or more entries the result comes out in
    reverse order. One entry or none are returned as they are.
    """
    if len(deaths) < 2:
        return deaths
    seen: list[tuple[Any, Any]] = []
    grouped: Array = []
    for kind, info in deaths:
        if kind != F:
            continue  # RabbitMQ's fold crashes on these; keep the tables only
        key = (_event_key(info, b"queue"), _event_key(info, b"reason"))
        same = [death for death in deaths if _matches(death, *key)]
        first_kind, first_info = same[0]
        if _event_key(first_info, b"count") is None:
            first_info = [(b"count", L_LONG, len(same)), *first_info]
        if not grouped:
            grouped = [(first_kind, first_info)]
        elif key not in seen:
            grouped.insert(0, (first_kind, first_info))
        seen.append(key)
    return grouped


def _matches(death: tuple[int, Any], queue: Any, reason: Any) -> bool:
    kind, info = death
    return kind == F and _event_key(info, b"queue") == queue and _event_key(info, b"reason") == reason


def _increment_count(info: Table) -> Table:
    count = _event_key(info, b"count")
    if count is None:
        return [(b"count", L_LONG, 1), *info]
    new_count = count + 1 if isinstance(count, int) and not isinstance(count, bool) else 1
    out = list(info)
    for index, (key, _kind, _value) in enumerate(out):
        if key == b"count":
            out[index] = (b"count", L_LONG, new_count)
            break
    return out


def _event_key(info: Table, key: bytes) -> Any:
    """x_death_event_key: the value (any type) of the first entry named ``key``."""
    for name, _kind, value in info:
        if name == key:
            return value
    return None


def is_cycle(queue: bytes, deaths: Array) -> bool:
    """rabbit_dead_letter:is_cycle: ``queue`` already appears in ``deaths`` (newest first)
    and no entry up to and including that one has reason ``rejected``."""
    for kind, info in deaths:
        if kind != F:
            return False  # a client put something odd there: not "fully automatic"
        if table_lookup(info, b"reason") == (S, REJECTED):
            return False
        if table_lookup(info, b"queue") == (S, queue):
            return True
    return False


def _x_death(message: Message) -> Array | None:
    raw = split_properties(message.header).get(FLAG_HEADERS)
    if raw is None:
        return None
    found = table_lookup(decode_entries(raw, 4, len(raw)), b"x-death")
    return found[1] if found is not None and found[0] == A else None
