"""A queue's effective settings: its x-arguments, its policy and its operator policy combined
as RabbitMQ combines them.

The queue reads only a ``QueueSettings``; it never looks at arguments or policies itself, so
a policy change is ``queue.apply_settings(QueueSettings.resolve(...))`` and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from amqp_server.protocol.field_types import text


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return text(value) if isinstance(value, str | bytes) else str(value)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class QueueSettings:
    message_ttl: int | None = None  # ms
    expires: int | None = None  # ms
    max_length: int | None = None
    max_length_bytes: int | None = None
    overflow: str = "drop-head"  # drop-head | reject-publish | reject-publish-dlx
    dead_letter_exchange: str | None = None
    dead_letter_routing_key: str | None = None
    max_priority: int | None = None
    single_active_consumer: bool = False
    delivery_limit: int | None = None
    dead_letter_strategy: str = "at-most-once"  # or at-least-once (quorum queues)

    @classmethod
    def resolve(
        cls,
        arguments: Mapping[str, Any],
        policy: Mapping[str, Any] | None = None,
        operator_policy: Mapping[str, Any] | None = None,
    ) -> QueueSettings:
        """Combine as RabbitMQ 3.10 does.

        Numeric limits (message-ttl, expires, max-length, max-length-bytes, delivery-limit):
        the lowest of argument, policy and operator policy. dead-letter-exchange,
        dead-letter-routing-key, dead-letter-strategy and overflow: the argument if given, else
        the policy.
        """
        policy = policy or {}
        operator_policy = operator_policy or {}

        def lowest(argument: str, key: str) -> int | None:
            values = [
                v
                for v in (_int(arguments.get(argument)), _int(policy.get(key)), _int(operator_policy.get(key)))
                if v is not None
            ]
            return min(values) if values else None

        def argument_first(argument: str, key: str) -> Any:
            value = arguments.get(argument)
            return value if value is not None else policy.get(key)

        max_priority = _int(arguments.get("x-max-priority"))
        return cls(
            message_ttl=lowest("x-message-ttl", "message-ttl"),
            expires=lowest("x-expires", "expires"),
            max_length=lowest("x-max-length", "max-length"),
            max_length_bytes=lowest("x-max-length-bytes", "max-length-bytes"),
            overflow=_text(argument_first("x-overflow", "overflow")) or "drop-head",
            dead_letter_exchange=_text(argument_first("x-dead-letter-exchange", "dead-letter-exchange")),
            dead_letter_routing_key=_text(argument_first("x-dead-letter-routing-key", "dead-letter-routing-key")),
            max_priority=max_priority if max_priority else None,
            single_active_consumer=arguments.get("x-single-active-consumer") is True,
            delivery_limit=lowest("x-delivery-limit", "delivery-limit"),
            dead_letter_strategy=_text(argument_first("x-dead-letter-strategy", "dead-letter-strategy"))
            or "at-most-once",
        )
