"""The queue.declare argument checks every queue type shares (rabbit_amqqueue's
check_declare_arguments); a type's own refusals are its ``QueueType.validate_arguments``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from amqp_server.protocol.errors import PRECONDITION_FAILED, ChannelError
from amqp_server.protocol.field_types import amqp_type_name, text

# rabbit_misc:check_expiry's ceiling for x-expires and x-message-ttl (ten years in ms).
MAX_EXPIRY = 315_360_000_000
MAX_PRIORITY = 255
OVERFLOW_MODES = ("drop-head", "reject-publish", "reject-publish-dlx")
QUEUE_MODES = ("default", "lazy")
DEAD_LETTER_STRATEGIES = ("at-most-once", "at-least-once")
LEADER_LOCATORS = ("client-local", "balanced", "random", "least-leaders")


def is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# Each checker returns None when the value is acceptable, else the error term as RabbitMQ's
# ``~p`` prints it (rabbit_amqqueue:declare_args/0).
Checker = Callable[[Any, Mapping[str, Any]], str | None]


def _expected_integer(value: Any) -> str | None:
    return None if is_integer(value) else f'"expected integer, got {amqp_type_name(value)}"'


def _check_expiry(value: Any) -> str | None:
    if value < 0:
        return f"{{value_negative,{value}}}"
    if value > MAX_EXPIRY:
        return f"{{value_too_large,{value}}}"
    return None


def _check_expires(value: Any, arguments: Mapping[str, Any]) -> str | None:
    error = _expected_integer(value)
    if error:
        return error
    if value == 0:
        return "{value_zero,0}"
    return _check_expiry(value)


def _check_message_ttl(value: Any, arguments: Mapping[str, Any]) -> str | None:
    return _expected_integer(value) or _check_expiry(value)


def _check_non_negative(value: Any, arguments: Mapping[str, Any]) -> str | None:
    error = _expected_integer(value)
    if error:
        return error
    return f"{{value_negative,{value}}}" if value < 0 else None


def _check_longstr(value: Any) -> str | None:
    return None if isinstance(value, str | bytes) else f"{{unacceptable_type,{amqp_type_name(value)}}}"


def _check_dlx(value: Any, arguments: Mapping[str, Any]) -> str | None:
    return _check_longstr(value)


def _check_dlx_routing_key(value: Any, arguments: Mapping[str, Any]) -> str | None:
    error = _check_longstr(value)
    if error:
        return error
    return "routing_key_but_no_dlx_defined" if "x-dead-letter-exchange" not in arguments else None


def _check_max_priority(value: Any, arguments: Mapping[str, Any]) -> str | None:
    error = _check_non_negative(value, arguments)
    if error:
        return error
    return f"{{max_value_exceeded,{value}}}" if value > MAX_PRIORITY else None


def _check_overflow(value: Any, arguments: Mapping[str, Any]) -> str | None:
    error = _check_longstr(value)
    if error:
        return error
    return None if text(value) in OVERFLOW_MODES else "invalid_overflow"


def _check_queue_mode(value: Any, arguments: Mapping[str, Any]) -> str | None:
    error = _check_longstr(value)
    if error:
        return error
    return None if text(value) in QUEUE_MODES else f"\"unsupported queue mode '{text(value)}'\""


def _check_single_active_consumer(value: Any, arguments: Mapping[str, Any]) -> str | None:
    return None if isinstance(value, bool) else f"{{unacceptable_type,{amqp_type_name(value)}}}"


def _check_dlx_strategy(value: Any, arguments: Mapping[str, Any]) -> str | None:
    error = _check_longstr(value)
    if error:
        return error
    return None if text(value) in DEAD_LETTER_STRATEGIES else "invalid_dlx_strategy"


def _check_group_size(value: Any, arguments: Mapping[str, Any]) -> str | None:
    error = _check_non_negative(value, arguments)
    if error:
        return error
    return "{value_zero,0}" if value == 0 else None


def _check_leader_locator(value: Any, arguments: Mapping[str, Any]) -> str | None:
    error = _check_longstr(value)
    if error:
        return error
    return None if text(value) in LEADER_LOCATORS else "invalid_queue_locator_arg"


def _check_queue_type(value: Any, arguments: Mapping[str, Any]) -> str | None:
    # Whether the type exists is the registry's to say (check_declare_arguments).
    return _check_longstr(value)


# In RabbitMQ's order: when several arguments are bad, the first in this list is reported.
DECLARE_ARGS: tuple[tuple[str, Checker], ...] = (
    ("x-expires", _check_expires),
    ("x-message-ttl", _check_message_ttl),
    ("x-dead-letter-exchange", _check_dlx),
    ("x-dead-letter-routing-key", _check_dlx_routing_key),
    ("x-dead-letter-strategy", _check_dlx_strategy),
    ("x-max-length", _check_non_negative),
    ("x-max-length-bytes", _check_non_negative),
    ("x-max-in-memory-length", _check_non_negative),
    ("x-max-in-memory-bytes", _check_non_negative),
    ("x-max-priority", _check_max_priority),
    ("x-overflow", _check_overflow),
    ("x-queue-mode", _check_queue_mode),
    ("x-single-active-consumer", _check_single_active_consumer),
    ("x-queue-type", _check_queue_type),
    ("x-quorum-initial-group-size", _check_group_size),
    ("x-queue-leader-locator", _check_leader_locator),
)
# Checked only for a type that takes them (``QueueType.type_arguments``); a type that does not
# refuses them itself (its ``validate_arguments``), as RabbitMQ does.
TYPE_ARGS = frozenset(
    (
        "x-dead-letter-strategy",
        "x-max-in-memory-length",
        "x-max-in-memory-bytes",
        "x-quorum-initial-group-size",
        "x-queue-leader-locator",
    )
)


def queue_type_of(arguments: Mapping[str, Any]) -> str:
    """The queue type the arguments ask for ("classic" without x-queue-type)."""
    value = arguments.get("x-queue-type")
    return text(value) if isinstance(value, str | bytes) else "classic"


def check_declare_arguments(arguments: Mapping[str, Any], where: str, known_types: Mapping[str, Any]) -> None:
    """Refuse the first bad argument in RabbitMQ's order, as ``406 PRECONDITION_FAILED - invalid arg
    'x-...' for queue 'q' in vhost '/': ...``; a type that is not installed (``known_types``: the
    installed type classes by name) is unsupported, as in RabbitMQ (``stream`` too, until it is
    built)."""
    queue_type = known_types.get(queue_type_of(arguments))
    takes = queue_type.type_arguments if queue_type is not None else frozenset()
    for key, checker in DECLARE_ARGS:
        if key in arguments and (key not in TYPE_ARGS or key in takes):
            error = checker(arguments[key], arguments)
            if error is None and key == "x-queue-type" and queue_type is None:
                error = f"\"unsupported queue type '{queue_type_of(arguments)}'\""
            if error is not None:
                raise ChannelError(PRECONDITION_FAILED, f"invalid arg '{key}' for {where}: {error}")
