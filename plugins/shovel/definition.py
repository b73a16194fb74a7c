"""A dynamic shovel's definition (the value of runtime parameter ``shovel``/NAME): validated
with rabbit_shovel_parameters' checks and texts, then read into a ``ShovelSpec``.

Only AMQP 0-9-1 on both sides: ``src-protocol``/``dest-protocol`` other than ``amqp091`` are
refused by their validation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from amqp_server.protocol.rabbit_text import erlang_json
from plugins.shovel import uri
from plugins.shovel.validation import MANDATORY, OPTIONAL, binary, boolean, enum, number, proplist, queue_name

ACK_MODES = ("no-ack", "on-publish", "on-confirm")
DEFAULT_RECONNECT_DELAY = 5  # seconds, as ?DEFAULT_RECONNECT_DELAY
DEFAULT_PREFETCH = 1000


def _delete_after(key: str, value: Any) -> str | None:
    if value in ("never", "queue-length") or (
        isinstance(value, int) and not isinstance(value, bool) and value >= 0
    ):
        return None
    return (f'{key} should be a number greater than or equal to 0, "never" or "queue-length", actually was '
            f"{erlang_json(value)}")  # fmt: skip


def _table(key: str, value: Any) -> str | None:
    """Queue or consumer arguments: an object (what RabbitMQ's declare then checks)."""
    return None if isinstance(value, dict) else f"{key} not a list {erlang_json(value)}"


PROPERTY_KEYS = {
    "content_type": binary, "content_encoding": binary, "delivery_mode": number, "priority": number,
    "correlation_id": binary, "reply_to": binary, "expiration": binary, "message_id": binary,
    "timestamp": number, "type": binary, "user_id": binary, "app_id": binary, "cluster_id": binary,
}  # fmt: skip


def _properties(key: str, value: Any) -> str | None:
    errors = proplist(key, [(k, check, OPTIONAL) for k, check in PROPERTY_KEYS.items()], value)
    return errors[0] if errors else None


CONSTRAINTS = [
    ("reconnect-delay", number, OPTIONAL),
    ("ack-mode", enum(*ACK_MODES), OPTIONAL),
    ("src-protocol", enum("amqp091"), OPTIONAL),
    ("dest-protocol", enum("amqp091"), OPTIONAL),
    ("src-uri", uri.validate, MANDATORY),
    ("src-exchange", binary, OPTIONAL),
    ("src-exchange-key", binary, OPTIONAL),
    ("src-queue", binary, OPTIONAL),
    ("src-queue-args", _table, OPTIONAL),
    ("src-consumer-args", _table, OPTIONAL),
    ("prefetch-count", number, OPTIONAL),
    ("src-prefetch-count", number, OPTIONAL),
    ("delete-after", _delete_after, OPTIONAL),
    ("src-delete-after", _delete_after, OPTIONAL),
    ("dest-uri", uri.validate, MANDATORY),
    ("dest-exchange", binary, OPTIONAL),
    ("dest-exchange-key", binary, OPTIONAL),
    ("dest-queue", queue_name, OPTIONAL),
    ("dest-queue-args", _table, OPTIONAL),
    ("add-forward-headers", boolean, OPTIONAL),
    ("add-timestamp-header", boolean, OPTIONAL),
    ("dest-add-forward-headers", boolean, OPTIONAL),
    ("dest-add-timestamp-header", boolean, OPTIONAL),
    ("publish-properties", _properties, OPTIONAL),
    ("dest-publish-properties", _properties, OPTIONAL),
]


def validate(_vhost: str, name: str, value: Any) -> list[str]:
    """rabbit_shovel_parameters:validate: the source and destination rules, then each key."""
    definition = value if isinstance(value, dict) else {}
    errors = []
    src, dest = definition.get("src-exchange"), definition.get("src-queue")
    if src is None and dest is None:
        errors.append("Must specify 'src-exchange' or 'src-queue'")
    elif src is not None and dest is not None:
        errors.append("Cannot specify 'src-exchange' and 'src-queue'")
    delete_after = definition.get("src-delete-after", definition.get("delete-after"))
    if (
        isinstance(delete_after, int)
        and not isinstance(delete_after, bool)
        and definition.get("ack-mode") == "no-ack"
    ):
        errors.append("Cannot specify 'no-ack' and numerical 'delete-after'")
    if definition.get("dest-exchange") is not None and definition.get("dest-queue") is not None:
        errors.append("Cannot specify 'dest-exchange' and 'dest-queue'")
    return errors + proplist(name, CONSTRAINTS, value)


@dataclass(frozen=True)
class ShovelSpec:
    """What a valid definition asks for (rabbit_shovel_parameters:parse)."""

    vhost: str
    name: str
    src_uris: list[uri.Endpoint]
    dest_uris: list[uri.Endpoint]
    src_queue: str | None = None
    src_exchange: str | None = None
    src_exchange_key: str = ""
    src_queue_args: dict[str, Any] = field(default_factory=dict)
    src_consumer_args: dict[str, Any] = field(default_factory=dict)
    prefetch_count: int = DEFAULT_PREFETCH
    delete_after: str | int = "never"
    dest_queue: str | None = None
    dest_exchange: str | None = None
    dest_exchange_key: str | None = None
    dest_queue_args: dict[str, Any] = field(default_factory=dict)
    add_forward_headers: bool = False
    add_timestamp_header: bool = False
    publish_properties: dict[str, Any] = field(default_factory=dict)
    ack_mode: str = "on-confirm"
    reconnect_delay: float = DEFAULT_RECONNECT_DELAY

    @property
    def source_details(self) -> list[tuple[str, str]]:
        """The source's keys as the x-shovelled header and the status name them."""
        if self.src_queue is not None:
            return [("src-queue", self.src_queue)]
        return [("src-exchange", self.src_exchange or ""), ("src-exchange-key", self.src_exchange_key)]

    @property
    def dest_details(self) -> list[tuple[str, str]]:
        found = [("dest-exchange", self.dest_exchange), ("dest-exchange-key", self.dest_exchange_key),
                 ("dest-queue", self.dest_queue)]  # fmt: skip
        return [(key, value) for key, value in found if value is not None]


def parse(vhost: str, name: str, definition: dict[str, Any]) -> ShovelSpec:
    """A validated definition as a ``ShovelSpec``, with RabbitMQ's defaults and legacy keys."""
    get = definition.get
    return ShovelSpec(
        vhost=vhost,
        name=name,
        src_uris=uri.uris(definition["src-uri"]),
        dest_uris=uri.uris(definition["dest-uri"]),
        src_queue=get("src-queue"),
        src_exchange=get("src-exchange"),
        src_exchange_key=get("src-exchange-key", ""),
        src_queue_args=get("src-queue-args") or {},
        src_consumer_args=get("src-consumer-args") or {},
        prefetch_count=int(get("src-prefetch-count", get("prefetch-count", DEFAULT_PREFETCH))),
        delete_after=get("src-delete-after", get("delete-after", "never")),
        dest_queue=get("dest-queue"),
        dest_exchange=get("dest-exchange"),
        dest_exchange_key=get("dest-exchange-key"),
        dest_queue_args=get("dest-queue-args") or {},
        add_forward_headers=get("dest-add-forward-headers", get("add-forward-headers", False)),
        add_timestamp_header=get("dest-add-timestamp-header", get("add-timestamp-header", False)),
        publish_properties=get("dest-publish-properties", get("publish-properties")) or {},
        ack_mode=get("ack-mode", "on-confirm"),
        reconnect_delay=get("reconnect-delay", DEFAULT_RECONNECT_DELAY),
    )
