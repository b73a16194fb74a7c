"""RabbitMQ's runtime-parameter validation (rabbit_parameter_validation) and its texts, for the
parameters of the shovel and federation plugins.

A check is ``check(key, value) -> error text | None``; ``proplist`` runs the checks of a
definition's keys in RabbitMQ's order: one text per failing key, the last key's first, and the
unrecognised keys before them all (rabbit_parameter_validation:proplist folds into a list).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from amqp_server.protocol.rabbit_text import erlang_json

Check = Callable[[str, Any], "str | None"]
MANDATORY, OPTIONAL = True, False


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def number(key: str, value: Any) -> str | None:
    return None if is_number(value) else f"{key} should be a number, actually was {erlang_json(value)}"


def binary(key: str, value: Any) -> str | None:
    return None if isinstance(value, str) else f"{key} should be binary, actually was {erlang_json(value)}"


def boolean(key: str, value: Any) -> str | None:
    return None if isinstance(value, bool) else f"{key} should be boolean, actually was {erlang_json(value)}"


def queue_name(key: str, value: Any) -> str | None:
    """amqp091_queue_name: a string of at most 255 bytes."""
    if not isinstance(value, str):
        return binary(key, value)
    size = len(value.encode())
    return None if size <= 255 else f"{key} should be less than 255 bytes, actually was {size}"


def enum(*options: str) -> Check:
    shown = "[" + ",".join(erlang_json(option) for option in options) + "]"

    def check(key: str, value: Any) -> str | None:
        if not isinstance(value, str):
            return binary(key, value)
        return (
            None if value in options else f"{key} should be one of {shown}, actually was {erlang_json(value)}"
        )

    return check


def pairs(items: Iterable[tuple[Any, Any]]) -> str:
    """A proplist as ``~p`` prints it: ``[{<<"k">>,1}]``."""
    return "[" + ",".join(f"{{{erlang_json(k)},{erlang_json(v)}}}" for k, v in items) + "]"


def proplist(name: str, constraints: Iterable[tuple[str, Check, bool]], term: Any) -> list[str]:
    """The errors of ``term`` (a JSON object) against ``constraints`` (key, check, mandatory),
    in RabbitMQ's order."""
    if not isinstance(term, Mapping):
        if isinstance(term, list):  # a list of non-pairs: nothing matches, all is unrecognised
            return [f"Unrecognised terms {erlang_json(term)} in {name}"] + [
                f'Key "{key}" not found in {name}'
                for key, _check, needed in reversed(list(constraints))
                if needed
            ]
        return [f"{name} not a list {erlang_json(term)}"]
    remainder = dict(sorted(term.items()))  # maps:to_list: keys in order
    results: list[str] = []
    for key, check, needed in constraints:
        if key in remainder:
            error = check(key, remainder.pop(key))
            if error is not None:
                results.insert(0, error)
        elif needed:
            results.insert(0, f'Key "{key}" not found in {name}')
    if remainder:
        results.insert(0, f"Unrecognised terms {pairs(remainder.items())} in {name}")
    return results
