"""Users, password hashing and permission checks, as RabbitMQ does them.

Passwords are stored with RabbitMQ's ``rabbit_password_hashing_sha256`` scheme:
``base64(salt + sha256(salt + password))`` with a 4-byte random salt, so hashes exported from
RabbitMQ's definitions import unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass, field

from amqp_server.errors import ACCESS_REFUSED, ChannelError

SHA256 = "rabbit_password_hashing_sha256"
SHA512 = "rabbit_password_hashing_sha512"
MD5 = "rabbit_password_hashing_md5"
_HASHES = {SHA256: hashlib.sha256, SHA512: hashlib.sha512, MD5: hashlib.md5}


def hash_password(password: str, algorithm: str = SHA256, salt: bytes | None = None) -> str:
    salt = os.urandom(4) if salt is None else salt
    digest = _HASHES[algorithm](salt + password.encode()).digest()
    return base64.b64encode(salt + digest).decode()


def check_password(password: str, password_hash: str, algorithm: str = SHA256) -> bool:
    if not password_hash:
        return False  # a user without a password cannot log in with one (RabbitMQ does the same)
    try:
        raw = base64.b64decode(password_hash)
    except ValueError:
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
        return self._compiled[kind].search(name) is not None


def check(permission: Permission | None, kind: str, resource: str, name: str, vhost: str, user: str) -> None:
    """Raise RabbitMQ's 403 unless ``user`` may ``kind`` ("configure"/"write"/"read") the resource."""
    if permission is None or not permission.allows(kind, name):
        raise ChannelError(
            ACCESS_REFUSED,
            f"{kind} access to {resource} '{name}' in vhost '{vhost}' refused for user '{user}'",
        )
