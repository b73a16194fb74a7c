"""OAuth 2.0 scopes as RabbitMQ reads them (rabbit_oauth2_scope, wildcard).

A scope, once the resource server id and its dot are taken off, is ``read:``, ``write:`` or
``configure:`` followed by ``VHOST/NAME`` or ``VHOST/NAME/ROUTING_KEY`` patterns, or
``tag:TAG``. Patterns are RabbitMQ's wildcards: ``*`` stands for any text, the rest is matched
literally after URL-decoding (``%2F`` is ``/``), scanning left to right without backtracking
exactly as wildcard.erl does.
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import unquote_plus

PERMISSIONS = ("read", "write", "configure")
TAG_PREFIX = "tag:"


class ScopePermission(NamedTuple):
    vhost: str
    name: str
    routing_key: str | None  # only scopes with three parts grant topic access
    permission: str


def parse(scope: str) -> ScopePermission | None:
    """rabbit_oauth2_scope:parse_permission_pattern; None for any other scope."""
    permission, colon, pattern = scope.partition(":")
    if not colon or permission not in PERMISSIONS:
        return None
    parts = pattern.split("/")
    if len(parts) == 2:
        return ScopePermission(parts[0], parts[1], None, permission)
    if len(parts) == 3:
        return ScopePermission(parts[0], parts[1], parts[2], permission)
    return None


def without_prefix(scopes: list[str], prefix: str) -> list[str]:
    """The scopes that start with ``prefix``, without it (matching_scopes_without_prefix)."""
    return [scope[len(prefix) :] for scope in scopes if scope.startswith(prefix)]


def tags(scopes: list[str]) -> list[str]:
    return sorted(set(without_prefix(scopes, TAG_PREFIX)))


def wildcard_match(subject: str, pattern: str) -> bool:
    """wildcard:match/2."""
    try:
        parts = [_urldecode(part) for part in pattern.split("*")]
    except ValueError:
        return False  # RabbitMQ logs "Invalid pattern" and refuses
    first, rest = parts[0], parts[1:]
    if not subject.startswith(first):
        return False
    position, length = len(first), len(subject)
    while True:
        if rest == [""]:
            return True  # ends with a wildcard
        if not rest:
            return position == length
        if position == length:
            return False
        part = rest.pop(0)
        if part:
            found = subject.find(part, position)
            if found < 0:
                return False
            position = found + len(part)


def _urldecode(text: str) -> str:
    """cow_qs:urldecode: ``+`` is a space, ``%XX`` an octet; a bad escape is an error."""
    index = text.find("%")
    while index >= 0:
        if len(text) < index + 3 or any(
            c not in "0123456789abcdefABCDEF" for c in text[index + 1 : index + 3]
        ):
            raise ValueError(text)
        index = text.find("%", index + 3)
    return unquote_plus(text)


def vhost_access(vhost: str, scopes: list[str]) -> bool:
    return any(wildcard_match(vhost, p.vhost) for p in _permissions(scopes))


def resource_access(vhost: str, name: str, permission: str, scopes: list[str]) -> bool:
    return any(
        p.permission == permission and wildcard_match(vhost, p.vhost) and wildcard_match(name, p.name)
        for p in _permissions(scopes)
    )


def topic_access(vhost: str, exchange: str, routing_key: str, permission: str, scopes: list[str]) -> bool:
    return any(
        p.routing_key is not None
        and p.permission == permission
        and wildcard_match(vhost, p.vhost)
        and wildcard_match(exchange, p.name)
        and wildcard_match(routing_key, p.routing_key)
        for p in _permissions(scopes)
    )


def _permissions(scopes: list[str]) -> list[ScopePermission]:
    return [p for p in map(parse, scopes) if p is not None]
