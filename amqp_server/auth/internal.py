"""rabbit_auth_backend_internal: the node's users, password hashes and permission tables
(``core.access``). Every answer is immediate; the channel keeps its own fast path for users this
backend authorises (``Login.internal``), so this class serves the chain's other uses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from amqp_server.auth.backend import AuthUser, ConnectionInfo, LoginResult, Refusal
from amqp_server.core.access import check_password, resource_name, topic_allowed

if TYPE_CHECKING:
    from amqp_server.core.broker import Broker

NAME = "rabbit_auth_backend_internal"


class InternalBackend:
    name = NAME

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def authenticate(self, username: str, password: str | None, info: ConnectionInfo) -> LoginResult:
        user = self.broker.users.get(username)
        if password is None:  # pre-authenticated (EXTERNAL, or another backend): the user must exist
            return (
                Refusal(f"user '{username}' - invalid credentials")
                if user is None
                else AuthUser(username, list(user.tags))
            )
        if user is None or not check_password(password, user.password_hash, user.hashing_algorithm):
            return Refusal("invalid credentials")
        return AuthUser(username, list(user.tags))

    def authorize(self, username: str, password: str | None, info: ConnectionInfo) -> LoginResult:
        return self.authenticate(username, None, info)

    def check_vhost(self, user: AuthUser, vhost: str, ip: str) -> bool:
        return (user.name, vhost) in self.broker.permissions

    def check_resource(self, user: AuthUser, vhost: str, resource: str, name: str, permission: str) -> bool:
        granted = self.broker.permissions.get((user.name, vhost))
        return granted is not None and granted.allows(permission, resource_name(resource, name))

    def check_topic(
        self,
        user: AuthUser,
        vhost: str,
        exchange: str,
        routing_key: str,
        permission: str,
        variables: dict[str, str],
    ) -> bool:
        patterns = self.broker.topic_permissions.get((user.name, vhost, exchange))
        return patterns is None or topic_allowed(patterns.get(permission) or "^$", routing_key, variables)

    def expires_at(self, user: AuthUser) -> float | None:
        return None

    def update_secret(self, user: AuthUser, secret: str) -> None:
        return None
