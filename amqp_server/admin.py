"""In-process administration: vhosts, users, permissions. The CLI and the HTTP API call this.

Every operation goes through ``Broker.change`` and so through the metadata store.
"""

from __future__ import annotations

from typing import Any

from amqp_server.access import SHA256, hash_password, validate_pattern
from amqp_server.broker import Broker
from amqp_server.metadata import Change


class AdminError(Exception):
    """A refused administrative operation; the message is what rabbitmqctl would print."""


class Admin:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    # -- vhosts --------------------------------------------------------------------------

    async def add_vhost(self, name: str, description: str = "", tags: list[str] | None = None) -> None:
        if name in self.broker.vhosts:
            return  # rabbitmqctl add_vhost of an existing vhost succeeds and changes nothing
        await self.broker.change(
            Change("vhost", "put", None, name, {"description": description, "tags": tags or []})
        )

    async def delete_vhost(self, name: str) -> None:
        if name not in self.broker.vhosts:
            raise AdminError(f"Virtual host '{name}' does not exist")
        await self.broker.change(Change("vhost", "delete", None, name))

    def list_vhosts(self) -> list[str]:
        return sorted(self.broker.vhosts)

    # -- users ---------------------------------------------------------------------------

    async def add_user(self, name: str, password: str | None, tags: list[str] | None = None) -> None:
        if name in self.broker.users:
            raise AdminError(f'User "{name}" already exists')
        await self._put_user(name, hash_password(password) if password else "", tags or [])

    async def change_password(self, name: str, password: str) -> None:
        user = self._user(name)
        await self._put_user(name, hash_password(password), user.tags)

    async def clear_password(self, name: str) -> None:
        user = self._user(name)
        await self._put_user(name, "", user.tags)

    async def set_user_tags(self, name: str, tags: list[str]) -> None:
        user = self._user(name)
        await self._put_user(name, user.password_hash, tags, user.hashing_algorithm)

    async def delete_user(self, name: str) -> None:
        self._user(name)
        await self.broker.change(Change("user", "delete", None, name))

    def list_users(self) -> list[dict[str, Any]]:
        return [{"name": u.name, "tags": list(u.tags)} for u in sorted(self.broker.users.values(), key=_name)]

    async def _put_user(self, name: str, password_hash: str, tags: list[str], algorithm: str = SHA256) -> None:
        await self.broker.change(
            Change(
                "user",
                "put",
                None,
                name,
                {"password_hash": password_hash, "tags": list(tags), "hashing_algorithm": algorithm},
            )
        )

    def _user(self, name: str) -> Any:
        user = self.broker.users.get(name)
        if user is None:
            raise AdminError(f'User "{name}" does not exist')
        return user

    # -- permissions ---------------------------------------------------------------------

    async def set_permissions(
        self, user: str, vhost: str, configure: str = ".*", write: str = ".*", read: str = ".*"
    ) -> None:
        # rabbitmqctl's words, unquoted here; the user is checked first.
        if user not in self.broker.users:
            raise AdminError(f"User {user} does not exist")
        if vhost not in self.broker.vhosts:
            raise AdminError(f"Virtual host {vhost} does not exist")
        try:
            for pattern in (configure, write, read):
                validate_pattern(pattern)
        except ValueError as exc:
            raise AdminError(str(exc)) from exc
        await self.broker.change(
            Change("permission", "put", vhost, user, {"configure": configure, "write": write, "read": read})
        )

    async def clear_permissions(self, user: str, vhost: str) -> None:
        if user not in self.broker.users:
            raise AdminError(f"User {user} does not exist")
        if vhost not in self.broker.vhosts:
            raise AdminError(f"Virtual host {vhost} does not exist")
        await self.broker.change(Change("permission", "delete", vhost, user))

    def list_permissions(self, vhost: str | None = None) -> list[dict[str, str]]:
        return [
            {"user": p.user, "vhost": p.vhost, "configure": p.configure, "write": p.write, "read": p.read}
            for (_user, host), p in sorted(self.broker.permissions.items())
            if vhost is None or host == vhost
        ]


def _name(user: Any) -> str:
    return user.name
