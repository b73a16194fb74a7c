"""The backend interface: RabbitMQ's rabbit_authn_backend and rabbit_authz_backend in one.

A backend answers a login with an ``AuthUser`` or a ``Refusal``, and an authorisation check with
True or False. An answer it has at hand is returned as is; one it has to wait for (an HTTP
request) is returned as an awaitable, so that the internal backend costs no task and no await
(``drive`` runs a sequence of such answers synchronously for as long as they are immediate).
"""

from __future__ import annotations

from collections.abc import Awaitable, Generator
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
#: A check's answer: now, or to be awaited.
Decision = bool | Awaitable[bool]


@dataclass
class AuthUser:
    """What a backend knows of a user it authenticated (RabbitMQ's #auth_user{})."""

    name: str
    tags: list[str] = field(default_factory=list)
    impl: Any = None  # the backend's own state: a decoded token, say


@dataclass
class Refusal:
    """A login the backend refuses; ``reason`` goes to the log only, as in RabbitMQ."""

    reason: str


LoginResult = AuthUser | Refusal


@dataclass(frozen=True)
class ConnectionInfo:
    """What a backend may learn of the client logging in."""

    peer_host: str = ""
    protocol: str = "AMQP 0-9-1"


class Backend(Protocol):
    """One entry of ``auth_backends``; ``name`` is RabbitMQ's module name."""

    name: str

    def authenticate(
        self, username: str, password: str | None, info: ConnectionInfo
    ) -> LoginResult | Awaitable[LoginResult]:
        """A login (``password`` None: already authenticated, EXTERNAL or by another backend)."""
        ...

    def authorize(
        self, username: str, password: str | None, info: ConnectionInfo
    ) -> LoginResult | Awaitable[LoginResult]:
        """user_login_authorization: the state to authorise a user another backend authenticated."""
        ...

    def check_vhost(self, user: AuthUser, vhost: str, ip: str) -> Decision: ...

    def check_resource(
        self, user: AuthUser, vhost: str, resource: str, name: str, permission: str
    ) -> Decision:
        """``resource`` is ``exchange`` or ``queue``, ``permission`` configure, write or read."""
        ...

    def check_topic(
        self,
        user: AuthUser,
        vhost: str,
        exchange: str,
        routing_key: str,
        permission: str,
        variables: dict[str, str],
    ) -> Decision: ...

    def expires_at(self, user: AuthUser) -> float | None:
        """When the user's credential expires (seconds since the epoch), or None: never."""
        ...

    def update_secret(self, user: AuthUser, secret: str) -> LoginResult | Awaitable[LoginResult] | None:
        """connection.update-secret; None when the backend's state cannot expire (kept as is)."""
        ...


def drive(steps: Generator[Any, Any, T]) -> T | Awaitable[T]:
    """Run ``steps``, which yields backend answers and is sent them back: synchronously while
    they are immediate; from the first awaitable on, as a coroutine returned to be awaited."""
    try:
        answer = next(steps)
        while not isinstance(answer, Awaitable):
            answer = steps.send(answer)
    except StopIteration as done:
        return done.value
    return _finish(steps, answer)


async def _finish(steps: Generator[Any, Any, T], answer: Awaitable[Any]) -> T:
    try:
        while True:
            answer = steps.send(await answer if isinstance(answer, Awaitable) else answer)
    except StopIteration as done:
        return done.value
