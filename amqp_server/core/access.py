"""Users, password hashing and permission checks, as RabbitMQ does them.

Passwords are stored with RabbitMQ's ``rabbit_password_hashing_sha256`` scheme:
``base64(salt + sha256(salt + password))`` with a 4-byte random salt, so hashes exported from
RabbitMQ's definitions import unchanged.

Permissions follow rabbit_auth_backend_internal: per user and vhost, three regular expressions
(configure, write, read) searched (unanchored) in the resource name; the empty pattern stands for
``^$``; the default exchange is named ``amq.default`` for the check and in the refusal text.
A refused check is ``403 ACCESS_REFUSED - access to exchange 'x' in vhost '/' refused for user 'u'``
(RabbitMQ does not say which of the three permissions was missing).

Which operation needs which permission (rabbit_channel):

=====================  ===========================================================
exchange.declare       configure on the exchange (new exchange with an alternate
                       exchange: also read on it and write on the alternate)
exchange.delete        configure on the exchange
queue.declare          configure on the queue (new queue with a dead-letter exchange:
                       also read on the queue and write on the dead-letter exchange)
queue.delete           configure on the queue
queue.bind/unbind      write on the queue, read on the exchange
exchange.bind/unbind   write on the destination, read on the source
basic.publish          write on the exchange
basic.get/consume      read on the queue
queue.purge            read on the queue
=====================  ===========================================================

Passive declares need no permission. A channel remembers the checks it passed (``PermissionCache``)
and does not repeat them, so a permission change reaches open channels only for resources they
have not used yet, exactly as in RabbitMQ.

Topic permissions (rabbit_auth_backend_internal:check_topic_access) apply to exchanges of type
topic only: basic.publish needs write, queue.bind/unbind and exchange.bind/unbind need read on
the source's routing key. With no topic permission for the user, vhost and exchange, everything
is allowed; otherwise the pattern (empty: ``^$``), with ``{username}`` and ``{vhost}`` replaced by
their values as they are (not escaped), is searched in the routing key. A refusal is
``403 ACCESS_REFUSED - access to topic 'key' in exchange 'x' in vhost '/' refused for user 'u'``;
a pattern that the values spliced in make invalid crashes RabbitMQ's channel: ``541 INTERNAL_ERROR``
closes the connection. A channel keeps its own cache of passed topic checks (exchange, routing
key, kind), also 12 long.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field

from amqp_server.protocol.errors import ACCESS_REFUSED, INTERNAL_ERROR, ChannelError, ConnectionError

SHA256 = "rabbit_password_hashing_sha256"
SHA512 = "rabbit_password_hashing_sha512"
MD5 = "rabbit_password_hashing_md5"
_HASHES = {SHA256: hashlib.sha256, SHA512: hashlib.sha512, MD5: hashlib.md5}

DEFAULT_EXCHANGE = "amq.default"  # how permissions name the exchange ''
PERMISSION_CACHE_SIZE = 12  # rabbit_channel's ?MAX_PERMISSION_CACHE_SIZE


def hash_password(password: str, algorithm: str = SHA256, salt: bytes | None = None) -> str:
    """RabbitMQ's salted hash: ``base64(salt + H(salt + utf8(password)))``."""
    salt = os.urandom(4) if salt is None else salt
    digest = _HASHES[algorithm](salt + password.encode()).digest()
    return base64.b64encode(salt + digest).decode()


def check_password(password: str, password_hash: str, algorithm: str = SHA256) -> bool:
    """Whether ``password`` matches a hash made by ``hash_password`` or by RabbitMQ."""
    if not password_hash or algorithm not in _HASHES:
        return False  # a user without a password cannot log in with one (RabbitMQ does the same)
    try:
        raw = base64.b64decode(password_hash, validate=True)
    except (ValueError, binascii.Error):
        return False
    salt = raw[:4]
    return hmac.compare_digest(hash_password(password, algorithm, salt), password_hash)


@dataclass
class User:
    name: str
    password_hash: str
    tags: list[str] = field(default_factory=list)
    hashing_algorithm: str = SHA256


def _compile(pattern: str) -> re.Pattern[str]:
    # RabbitMQ treats the empty pattern as '^$' (matches nothing but the empty name).
    return re.compile(pattern or "^$")


@dataclass
class Permission:
    """A user's configure/write/read regexes on one vhost (unanchored search, as RabbitMQ)."""

    user: str
    vhost: str
    configure: str = ".*"
    write: str = ".*"
    read: str = ".*"

    def __post_init__(self) -> None:
        self._compiled = {
            "configure": _compile(self.configure),
            "write": _compile(self.write),
            "read": _compile(self.read),
        }

    def allows(self, kind: str, name: str) -> bool:
        """``name`` is the resource's name as permissions see it (see ``resource_name``)."""
        return self._compiled[kind].search(name) is not None


def validate_pattern(pattern: str) -> None:
    """Refuse a permission pattern that is not a regular expression, before it is stored."""
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"regular expression '{pattern}' is invalid") from exc


def resource_name(resource: str, name: str) -> str:
    """The name a permission regex is matched against: '' is ``amq.default`` for exchanges."""
    return DEFAULT_EXCHANGE if resource == "exchange" and name == "" else name


def refused(resource: str, name: str, vhost: str, user: str) -> ChannelError:
    """RabbitMQ's refusal (rabbit_access_control:check_resource_access)."""
    return ChannelError(
        ACCESS_REFUSED,
        f"access to {resource} '{resource_name(resource, name)}' in vhost '{vhost}' refused for user '{user}'",
    )


def check(permission: Permission | None, kind: str, resource: str, name: str, vhost: str, user: str) -> None:
    """Raise RabbitMQ's 403 unless ``user`` may ``kind`` ("configure"/"write"/"read") the resource."""
    if permission is None or not permission.allows(kind, resource_name(resource, name)):
        raise refused(resource, name, vhost, user)


def check_topic(
    patterns: Mapping[str, str] | None, kind: str, exchange: str, routing_key: str, vhost: str, user: str
) -> None:
    """Raise RabbitMQ's 403 unless ``user`` may ``kind`` ("write"/"read") ``routing_key`` on the
    topic exchange, given the user's topic permission patterns for it (None: allowed)."""
    if patterns is not None and not topic_allowed(
        patterns.get(kind) or "^$", routing_key, {"username": user, "vhost": vhost}
    ):
        raise topic_refused(exchange, routing_key, vhost, user)


def topic_allowed(pattern: str, routing_key: str, variables: Mapping[str, str]) -> bool:
    """Whether the topic ``pattern``, ``{name}`` replaced by each variable, is found in the key."""
    for name, value in variables.items():
        pattern = pattern.replace("{" + name + "}", value)
    try:
        return re.search(pattern, routing_key) is not None
    except re.error:
        # A value spliced in made it no regular expression: RabbitMQ's channel crashes.
        raise ConnectionError(INTERNAL_ERROR, "") from None


def topic_refused(exchange: str, routing_key: str, vhost: str, user: str) -> ChannelError:
    """RabbitMQ's refusal of a routing key (rabbit_access_control:check_topic_access)."""
    return ChannelError(
        ACCESS_REFUSED,
        f"access to topic '{routing_key}' in exchange '{exchange}' in vhost '{vhost}' refused for user '{user}'",
    )


class PendingCheck(Exception):  # noqa: N818 - not an error: the command waits for the answer
    """A check whose answer a backend has to wait for (``PermissionCache.decide``): the
    channel runs ``wait()`` (which grants or raises the refusal) and the command again."""

    def __init__(self, wait: Awaitable[None]) -> None:
        self.wait = wait


class PermissionCache:
    """The checks one channel passed, as rabbit_channel's ``permission_cache``.

    RabbitMQ keeps the last ``PERMISSION_CACHE_SIZE`` granted checks per channel and skips the
    authorisation backend for them; refusals are not kept (they close the channel anyway).
    ``granted`` is a dict in insertion order so that the publish path can test membership with
    one lookup: ``("write", "exchange", name) in cache.granted``.
    """

    __slots__ = ("granted",)

    def __init__(self) -> None:
        self.granted: dict[tuple[str, str, str], None] = {}

    def check(
        self, permission: Permission | None, kind: str, resource: str, name: str, vhost: str, user: str
    ) -> None:
        key = (kind, resource, name)
        if key not in self.granted:
            check(permission, kind, resource, name, vhost, user)
            self._grant(key)

    def check_topic(
        self,
        topic_permissions: Mapping[tuple[str, str, str], Mapping[str, str]],
        kind: str,
        exchange: str,
        routing_key: str,
        vhost: str,
        user: str,
    ) -> None:
        """``check_topic`` through this cache (a channel keeps a second one for topics)."""
        key = (kind, exchange, routing_key)
        if key not in self.granted:
            check_topic(topic_permissions.get((user, vhost, exchange)), kind, exchange, routing_key, vhost, user)
            self._grant(key)

    def decide(self, key: tuple[str, str, str], decision: bool | Awaitable[bool], refusal: ChannelError) -> None:
        """Take a backend's answer to the check ``key``: granted, ``refusal`` raised, or
        ``PendingCheck`` while the answer is awaited (not ``granted`` yet)."""
        if decision is True:
            self._grant(key)
        elif decision is False:
            raise refusal
        else:
            raise PendingCheck(self._await(key, decision, refusal))

    async def _await(self, key: tuple[str, str, str], decision: Awaitable[bool], refusal: ChannelError) -> None:
        if not await decision:
            raise refusal
        self._grant(key)

    def _grant(self, key: tuple[str, str, str]) -> None:
        granted = self.granted
        granted[key] = None
        if len(granted) > PERMISSION_CACHE_SIZE:
            del granted[next(iter(granted))]  # the oldest grant goes first, as RabbitMQ's list
