"""``rabbitmq_event_exchange``: the broker's events (``queue.created``, ``connection.closed``,
``user.authentication.failure``, ...) published to the topic exchange ``amq.rabbitmq.event``,
as RabbitMQ's rabbit_exchange_type_event does: the event's name is the routing key, its fields
are the headers (typed as RabbitMQ types them: integers long, booleans bool, text longstr,
tables and arrays as such) followed by ``timestamp_in_ms``; the message is persistent, has the
``timestamp`` property (seconds) and an empty body.

Enabling the plugin declares the exchange (durable, internal) in the vhost ``event_exchange.vhost``
names (default: the default vhost); disabling it deletes the exchange, as RabbitMQ's cleanup step
does. Nothing is published per message: only events.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from amqp_server.plugin_api import (
    Event,
    NodeContext,
    Plugin,
    PluginContext,
    TypedTable,
    erlang_repr,
    new_message,
)

EXCHANGE = "amq.rabbitmq.event"
# Events RabbitMQ emits with a statistics reference, which the plugin does not publish.
UNPUBLISHED = frozenset(("channel.created", "channel.closed"))
# Fields that are AMQP tables in RabbitMQ's events, and those that are Erlang strings.
AMQP_TABLES = frozenset(("arguments", "client_properties"))
CHAR_LISTS = frozenset(("error",))


def event_vhost(node: NodeContext) -> str:
    """rabbit_exchange_type_event:get_vhost: ``event_exchange.vhost``, else the default vhost."""
    return node.config.event_exchange_vhost or node.config.default_vhost


async def start(node: NodeContext) -> None:
    vhost = event_vhost(node)
    await node.declare_exchange(vhost, EXCHANGE, "topic", durable=True, internal=True)
    context = node.vhost(vhost)
    node.subscribe(lambda event: publish(context, event))


async def stop(node: NodeContext) -> None:
    if not node.node_stopping:  # the exchange and its bindings stay across a restart
        await node.delete_exchange(event_vhost(node), EXCHANGE)


def publish(context: PluginContext, event: Event) -> None:
    """rabbit_exchange_type_event:handle_event for one event."""
    if event.name in UNPUBLISHED or event.name.endswith(".stats"):
        return
    # fmt_proplist folds the fields onto a list, so the headers come out last field first.
    headers = [*reversed(_fields(event.payload)), ("timestamp_in_ms", "l", event.timestamp_in_ms)]
    timestamp = datetime.datetime.fromtimestamp(event.timestamp_in_ms // 1000, datetime.UTC)
    message = new_message(EXCHANGE, event.name, b"", {"delivery_mode": 2, "timestamp": timestamp}, headers)
    context.publish(EXCHANGE, message)


def _fields(payload: Mapping[str, Any]) -> TypedTable:
    fields: TypedTable = []
    for key, value in payload.items():
        if key in AMQP_TABLES and isinstance(value, Mapping):
            # An AMQP table is no proplist to fmt/2: each entry is printed with ~p.
            fields.append(
                (key, "A", [("S", erlang_repr({name: item})[1:-1]) for name, item in value.items()])
            )
        elif key in CHAR_LISTS and isinstance(value, str):
            fields.append((key, "A", [("l", ord(char)) for char in value]))
        else:
            fields.append((key, *_typed(value)))
    return fields


def _typed(value: Any) -> tuple[str, Any]:
    """rabbit_exchange_type_event:fmt/1: a field value and the AMQP type RabbitMQ gives it."""
    if isinstance(value, bool):
        return "t", value
    if isinstance(value, int):
        return "l", value
    if isinstance(value, float):
        return "d", value
    if isinstance(value, str | bytes):
        return "S", value
    if isinstance(value, Mapping):  # a proplist: a table, last field first as in the headers
        return ("F", list(reversed(_fields(value)))) if value else ("A", [])
    if isinstance(value, list | tuple):
        return "A", [_typed(item) for item in value]
    return "S", "undefined" if value is None else erlang_repr(value)


PLUGIN = Plugin(
    "rabbitmq_event_exchange",
    description="Event Exchange Type",
    start=start,
    stop=stop,
)
