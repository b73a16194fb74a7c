"""The backend chain (rabbit_access_control) and the user a login makes.

``Chain.login`` tries the entries of ``auth_backends`` in order: an entry with one backend
authenticates and authorises; one with two (``.authn`` / ``.authz``) authenticates with the
first and then asks the second for the user's authorisation state, adding its tags. The first
entry that accepts the user wins; a refusal passes the login on to the next entry, and the last
refusal is the answer.

A ``Login`` is RabbitMQ's #user{}: a name, tags, and the backends that authorise it with their
state. Every check must be granted by each of them. A user authorised by the internal backend
alone is ``internal``: channels then check it exactly as before the chain existed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any

from amqp_server.auth.backend import AuthUser, Backend, ConnectionInfo, Decision, LoginResult, Refusal, drive
from amqp_server.auth.cache import CacheBackend
from amqp_server.auth.config import CACHE, HTTP, INTERNAL, OAUTH2, AuthConfig
from amqp_server.auth.internal import InternalBackend
from amqp_server.core.access import resource_name

if TYPE_CHECKING:
    from amqp_server.core.broker import Broker

Grant = tuple[Backend, AuthUser]


class BackendTopics(dict[Any, Any]):
    """What a channel of a user not authorised internally has for the topic permission table:
    never empty, so that every routing key of a topic exchange is checked (by the backends)."""

    def __bool__(self) -> bool:
        return True


BACKEND_TOPICS = BackendTopics()


class Login:
    __slots__ = ("name", "tags", "grants", "internal")

    def __init__(self, name: str, tags: list[str], grants: list[Grant]) -> None:
        self.name = name
        self.tags = tags
        self.grants = grants
        self.internal = len(grants) == 1 and grants[0][0].name == INTERNAL

    def check_vhost(self, vhost: str, ip: str) -> Decision:
        return self._all(lambda backend, user: backend.check_vhost(user, vhost, ip))

    def check_resource(self, vhost: str, resource: str, name: str, permission: str) -> Decision:
        name = resource_name(resource, name)  # '' is amq.default, for every backend
        return self._all(
            lambda backend, user: backend.check_resource(user, vhost, resource, name, permission)
        )

    def check_topic(self, vhost: str, exchange: str, routing_key: str, permission: str) -> Decision:
        variables = {"username": self.name, "vhost": vhost}
        return self._all(
            lambda backend, user: backend.check_topic(
                user, vhost, exchange, routing_key, permission, variables
            )
        )

    def expires_at(self) -> float | None:
        """When the first of its credentials expires (rabbit_access_control:expiry_timestamp)."""
        times = [t for backend, user in self.grants if (t := backend.expires_at(user)) is not None]
        return min(times) if times else None

    def update_secret(self, secret: str) -> Login | Refusal | Awaitable[Login | Refusal]:
        """update_state: each backend whose state can expire takes the new secret."""
        return drive(self._update(secret))

    def _update(self, secret: str) -> Generator[Any, Any, Login | Refusal]:
        grants = []
        for backend, user in self.grants:
            updated = yield backend.update_secret(user, secret)
            if isinstance(updated, Refusal):
                return updated
            grants.append((backend, user if updated is None else updated))
        tags = (
            sorted({tag for _backend, user in grants for tag in user.tags})
            if grants != self.grants
            else self.tags
        )
        return Login(self.name, tags, grants)

    def _all(self, ask: Callable[[Backend, AuthUser], Decision]) -> Decision:
        if len(self.grants) == 1:
            return ask(*self.grants[0])
        return drive(self._each(ask))

    def _each(self, ask: Callable[[Backend, AuthUser], Decision]) -> Generator[Decision, bool, bool]:
        for grant in self.grants:
            if not (yield ask(*grant)):
                return False
        return True


class Chain:
    def __init__(self, broker: Broker, config: AuthConfig) -> None:
        self.config = config
        self._backends: dict[str, Backend] = {}
        self.entries = [(self._backend(broker, n), self._backend(broker, z)) for n, z in config.backends]

    def _backend(self, broker: Broker, name: str) -> Backend:
        """One instance per module, shared by the entries naming it."""
        backend = self._backends.get(name)
        if backend is None:
            config = self.config
            if name == INTERNAL:
                backend = InternalBackend(broker)
            elif name == HTTP:
                from amqp_server.auth.http import HttpBackend  # (imported only when configured)
                from amqp_server.tls import TlsError

                try:
                    backend = HttpBackend(config)
                except TlsError as exc:  # (its text names the ssl_options key): one line, no traceback
                    from amqp_server.server import StartError

                    raise StartError(f"auth_http.{exc}") from None
            elif name == OAUTH2:
                from amqp_server.auth.oauth2 import OAuth2Backend  # (PyJWT only when configured)

                try:
                    backend = OAuth2Backend(config)
                except (OSError, ValueError) as exc:  # a key file: one line, no traceback
                    from amqp_server.server import StartError

                    raise StartError(f"auth_oauth2.signing_keys: cannot load {exc}") from None
            elif name == CACHE:
                authn, authz = config.cache_backend or (INTERNAL, INTERNAL)
                backend = CacheBackend(
                    self._backend(broker, authn),
                    self._backend(broker, authz),
                    config.cache_ttl,
                    config.cache_refusals,
                )
            else:
                raise ValueError(f"unsupported auth backend {name}")
            self._backends[name] = backend
        return backend

    @property
    def internal_only(self) -> bool:
        return all(n.name == INTERNAL and z.name == INTERNAL for n, z in self.entries)

    def login(
        self, username: str, password: str | None, info: ConnectionInfo
    ) -> Login | Refusal | Awaitable[Login | Refusal]:
        """check_user_login; immediate when every backend asked answers at once."""
        return drive(self._login(username, password, info))

    def _login(
        self, username: str, password: str | None, info: ConnectionInfo
    ) -> Generator[Any, Any, Login | Refusal]:
        refusal = Refusal(f"No modules checked '{username}'")
        for authn, authz in self.entries:
            result: LoginResult = yield authn.authenticate(username, password, info)
            if isinstance(result, Refusal):
                refusal = result
                continue
            if authn is authz and authn.name != CACHE:
                return Login(result.name, list(result.tags), [(authn, result)])
            # Authenticated by one backend; the other authorises the (pre-authenticated) user.
            state: LoginResult = yield authz.authorize(result.name, password, info)
            if isinstance(state, Refusal):
                refusal = state
                continue
            tags = list(dict.fromkeys([*result.tags, *state.tags]))
            return Login(result.name, tags, [(authz, state)])
        return refusal
