"""Policies and operator policies, validated, matched and merged as RabbitMQ 3.10 does.

A policy is a vhost-scoped runtime parameter: a regular expression searched (unanchored, as
``re:run``) in a queue's or exchange's name, what it applies to (queues, exchanges or all), a
priority and a definition. Of the policies matching a resource only the one with the highest
priority applies (no merging); on equal priorities the name that sorts first wins (observed on
3.10: ``alpha`` beats ``zeta``, ``A`` beats ``all``). Operator policies are chosen the same way
among themselves; their definition may hold only the numeric caps below and, where both set a
key, the lower value goes into the effective definition (rabbit_policy:merge_policy_value).

Validation follows rabbit_policy / rabbit_policies / rabbit_mirror_queue_misc: each known key is
checked by its validator, unknown keys are reported only when every known one passed, and the
error texts are rabbitmqctl's, after its ``Error:`` line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from amqp_server.protocol.field_types import octets
from amqp_server.protocol.rabbit_text import erlang_json, erlang_term

APPLY_TO = ("queues", "exchanges", "all")
# Keys an operator policy may set; all are numeric and merge with the policy's by taking the minimum.
OPERATOR_KEYS = frozenset(
    ("expires", "message-ttl", "max-length", "max-length-bytes", "max-in-memory-length", "max-in-memory-bytes",
     "delivery-limit")
)  # fmt: skip


class PolicyError(ValueError):
    """A refused policy; the message is what rabbitmqctl prints after ``Error:``."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_at_least(minimum: int, what: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if _is_int(value) and value >= minimum else f"{erlang_json(value)} is not a valid {what}"

    return check


def _binary(what: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if isinstance(value, str) else f"{erlang_json(value)} is not a valid {what}"

    return check


def _one_of(values: tuple[Any, ...], what: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        ok = value in values and type(value) in {type(v) for v in values}
        return None if ok else f"{erlang_json(value)} is not a valid {what}"

    return check


# rabbit_policies:validate_policy0, key by key.
VALIDATORS: dict[str, Callable[[Any], str | None]] = {
    "alternate-exchange": _binary("alternate exchange name"),
    "dead-letter-exchange": _binary("dead letter exchange name"),
    "dead-letter-routing-key": _binary("dead letter routing key"),
    "dead-letter-strategy": _one_of(("at-most-once", "at-least-once"), "dead letter strategy"),
    "message-ttl": _int_at_least(0, "message TTL"),
    "expires": _int_at_least(1, "queue expiry"),
    "max-length": _int_at_least(0, "maximum length"),
    "max-length-bytes": _int_at_least(0, "maximum length in bytes"),
    "max-in-memory-length": _int_at_least(0, "maximum memory in bytes"),
    "max-in-memory-bytes": _int_at_least(0, "maximum memory in bytes"),
    "queue-mode": _one_of(("default", "lazy"), "queue-mode value"),
    "queue-version": _one_of((1, 2), "queue-version value"),
    "overflow": _one_of(("drop-head", "reject-publish", "reject-publish-dlx"), "overflow value"),
    "delivery-limit": _int_at_least(0, "delivery limit"),
    "max-age": lambda v: None if _valid_max_age(v) else f"{erlang_json(v)} is not a valid max age",
    "stream-max-segment-size-bytes": lambda v: (
        None if _is_int(v) and 0 <= v <= 3_000_000_000 else f"{erlang_json(v)} is not a valid segment size"
    ),
    "queue-leader-locator": _one_of(("client-local", "random", "least-leaders"), "queue leader locator value"),
    "initial-cluster-size": _int_at_least(0, "cluster size"),
    "queue-master-locator": _one_of(("min-masters", "client-local", "random"), "queue-master-locator"),
}
HA_KEYS = ("ha-mode", "ha-params", "ha-sync-mode", "ha-sync-batch-size", "ha-promote-on-shutdown",
           "ha-promote-on-failure")  # fmt: skip


def _valid_max_age(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(r"[0-9]+(Y|M|D|h|m|s)", value) is not None


def _validate_ha(definition: Mapping[str, Any]) -> str | None:
    """rabbit_mirror_queue_misc:validate_policy, for the cases people meet."""
    present = [key for key in HA_KEYS if key in definition]
    if not present:
        return None
    mode = definition.get("ha-mode")
    if mode is None:
        return "ha-mode must be specified to specify ha-params, ha-sync-mode or ha-promote-on-shutdown"
    if mode not in ("all", "exactly", "nodes"):
        return f"{erlang_json(mode)} is not a valid ha-mode value"
    params = definition.get("ha-params")
    if mode == "all" and params is not None:
        return f"ha-mode=\"all\" does not take parameters, got {erlang_json(params)}"
    if mode == "exactly" and not (_is_int(params) and params > 0):
        return f"ha-mode=\"exactly\" takes an integer, {erlang_json(params)} given"
    if mode == "nodes" and not (isinstance(params, list) and params and all(isinstance(p, str) for p in params)):
        return f"ha-mode=\"nodes\" takes a list of strings, {erlang_json(params)} given"
    sync = definition.get("ha-sync-mode")
    if sync is not None and sync not in ("automatic", "manual"):
        return f"ha-sync-mode must be \"manual\" or \"automatic\", got {erlang_json(sync)}"
    return None


def _regex_error(pattern: str) -> str | None:
    try:
        re.compile(pattern)
    except re.error as exc:
        # PCRE's words for the common mistake; Python's otherwise. rabbitmqctl's ~p wraps the
        # tuple only past column 80 (measured), the rest under its first element (column 54).
        message = exc.msg
        if message.startswith("unterminated character set"):
            message = "missing terminating ] for character class"
        elif message.startswith("missing ), unterminated subpattern"):
            message = "missing )"
        elif message.startswith("nothing to repeat"):
            message = "nothing to repeat"
        offset = len(octets(pattern))
        prefix = "pattern should be regular expression but is invalid: "
        return prefix + erlang_term((f'"{message}"', offset), len(prefix), last_column=80)
    return None


def validate_definition(
    definition: Any, operator: bool = False, plugin_keys: Mapping[str, Callable[[Any], str | None]] | None = None
) -> str | None:
    """rabbit_policy:validation/2: the first failing validator's text, else the unknown keys.
    ``plugin_keys``: the keys enabled plugins validate (Plugin.policy_keys), for policies."""
    if not isinstance(definition, Mapping):
        return f"definition must be a dictionary: {erlang_json(definition)}"
    if not definition:
        return "no policy provided"
    validators = VALIDATORS if operator or not plugin_keys else {**VALIDATORS, **plugin_keys}
    allowed = OPERATOR_KEYS if operator else validators.keys()
    for key in sorted(definition):
        if key in allowed:
            error = validators[key](definition[key])
            if error is not None:
                return error
    if not operator:
        error = _validate_ha(definition)
        if error is not None:
            return error
    known = set(allowed) | (set() if operator else set(HA_KEYS))
    unknown = [(key, definition[key]) for key in sorted(definition) if key not in known]
    if unknown:
        shown = ",".join(f"{{{erlang_json(key)},{erlang_json(value)}}}" for key, value in unknown)
        return f"[{shown}] are not recognised policy settings"
    return None


def validate(
    pattern: Any, definition: Any, priority: Any, apply_to: Any, operator: bool = False,
    plugin_keys: Mapping[str, Callable[[Any], str | None]] | None = None,
) -> None:  # fmt: skip
    """Every check of rabbit_policy:policy_validation, errors in the order rabbitmqctl lists them."""
    errors = []
    error = validate_definition(definition, operator, plugin_keys)
    if error is not None:
        errors.append(error)
    if apply_to not in APPLY_TO:
        errors.append(f"apply-to '{apply_to}' unrecognised; should be 'queues', 'exchanges' or 'all'")
    if not isinstance(pattern, str):
        errors.append(f"pattern should be a string, actually was {erlang_json(pattern)}")
    else:
        error = _regex_error(pattern)
        if error is not None:
            errors.append(error)
    if isinstance(priority, bool) or not isinstance(priority, int | float):
        errors.append(f"priority should be a number, actually was {erlang_json(priority)}")
    if errors:
        raise PolicyError("Validation failed\n\n" + "\n".join(errors))


@dataclass(frozen=True)
class Policy:
    vhost: str
    name: str
    pattern: str
    definition: dict[str, Any]
    priority: int | float = 0
    apply_to: str = "all"
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_regex", re.compile(self.pattern))

    def matches(self, kind: str, name: str) -> bool:
        """``kind`` is "queue" or "exchange"."""
        if self.apply_to != "all" and self.apply_to != kind + "s":
            return False
        return self._regex.search(name) is not None

    def as_dict(self) -> dict[str, Any]:
        """As ``rabbitmqctl list_policies`` / the HTTP API / definitions show it."""
        return {
            "vhost": self.vhost,
            "name": self.name,
            "pattern": self.pattern,
            "apply-to": self.apply_to,
            "definition": dict(self.definition),
            "priority": self.priority,
        }

    @classmethod
    def from_record(cls, vhost: str, name: str, record: Mapping[str, Any]) -> Policy:
        return cls(
            vhost,
            name,
            record["pattern"],
            dict(record["definition"]),
            record.get("priority", 0),
            record.get("apply-to", "all"),
        )


def select(policies: Iterable[Policy], kind: str, name: str) -> Policy | None:
    """The policy that applies: highest priority, then the first name (rabbit_policy:match)."""
    best: Policy | None = None
    for policy in sorted(policies, key=_policy_name):
        if policy.matches(kind, name) and (best is None or policy.priority > best.priority):
            best = policy
    return best


def _policy_name(policy: Policy) -> bytes:
    return octets(policy.name)


def effective_definition(policy: Policy | None, operator: Policy | None) -> dict[str, Any]:
    """rabbit_policy:effective_definition: the policy's keys, the operator policy's, and for keys
    both set the lower value (all operator keys are numeric caps)."""
    merged = dict(policy.definition) if policy is not None else {}
    if operator is not None:
        for key, value in operator.definition.items():
            current = merged.get(key)
            merged[key] = value if current is None else min(current, value)
    return merged
