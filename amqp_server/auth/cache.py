"""rabbit_auth_backend_cache: the answers of another backend (``auth_cache.cached_backend``),
kept for ``auth_cache.cache_ttl`` ms, refusals only with ``auth_cache.cache_refusals``; the key
is the question, the user's name and tags included (an HTTP service is asked once per TTL)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from amqp_server.auth.backend import AuthUser, Backend, ConnectionInfo, LoginResult, Refusal
from amqp_server.auth.config import CACHE


class CacheBackend:
    name = CACHE

    def __init__(self, authn: Backend, authz: Backend, ttl_ms: int, refusals: bool) -> None:
        self.authn = authn
        self.authz = authz
        self.ttl = ttl_ms / 1000
        self.refusals = refusals
        self._answers: dict[tuple[Any, ...], tuple[float, Any]] = {}

    def authenticate(
        self, username: str, password: str | None, info: ConnectionInfo
    ) -> LoginResult | Awaitable[LoginResult]:
        return self._cached(
            ("authn", username, password), lambda: self.authn.authenticate(username, password, info)
        )

    def authorize(
        self, username: str, password: str | None, info: ConnectionInfo
    ) -> LoginResult | Awaitable[LoginResult]:
        return self._cached(
            ("authz", username, password), lambda: self.authz.authorize(username, password, info)
        )

    def check_vhost(self, user: AuthUser, vhost: str, ip: str) -> bool | Awaitable[bool]:
        return self._cached(
            ("vhost", *_who(user), vhost, ip), lambda: self.authz.check_vhost(user, vhost, ip)
        )

    def check_resource(
        self, user: AuthUser, vhost: str, resource: str, name: str, permission: str
    ) -> bool | Awaitable[bool]:
        key = ("resource", *_who(user), vhost, resource, name, permission)
        return self._cached(key, lambda: self.authz.check_resource(user, vhost, resource, name, permission))

    def check_topic(
        self,
        user: AuthUser,
        vhost: str,
        exchange: str,
        routing_key: str,
        permission: str,
        variables: dict[str, str],
    ) -> bool | Awaitable[bool]:
        key = (
            "topic",
            *_who(user),
            vhost,
            exchange,
            routing_key,
            permission,
            tuple(sorted(variables.items())),
        )
        return self._cached(
            key, lambda: self.authz.check_topic(user, vhost, exchange, routing_key, permission, variables)
        )

    def expires_at(self, user: AuthUser) -> float | None:
        return None

    def update_secret(self, user: AuthUser, secret: str) -> None:
        return None  # state_can_expire() -> false

    def _cached(self, key: tuple[Any, ...], ask: Callable[[], Any]) -> Any:
        now = time.monotonic()
        found = self._answers.get(key)
        if found is not None and found[0] > now:
            return found[1]
        answer = ask()
        if isinstance(answer, Awaitable):
            return self._keep_later(key, answer)
        self._keep(key, answer)
        return answer

    async def _keep_later(self, key: tuple[Any, ...], answer: Awaitable[Any]) -> Any:
        result = await answer
        self._keep(key, result)
        return result

    def _keep(self, key: tuple[Any, ...], answer: Any) -> None:
        if (answer is False or isinstance(answer, Refusal)) and not self.refusals:
            return
        now = time.monotonic()
        self._answers[key] = (now + self.ttl, answer)
        if len(self._answers) > 10_000:  # a bound, like RabbitMQ's periodic cleanup of expired entries
            self._answers = {k: v for k, v in self._answers.items() if v[0] > now}


def _who(user: AuthUser) -> tuple[str, tuple[str, ...]]:
    return user.name, tuple(user.tags)
