"""Fixtures of the management API tests: an aiohttp client of the session's ``managed_broker``
and users with each management tag.

``Api.call`` answers (status, parsed JSON or None, headers) and never raises on an error status,
so a test states the status it expects, as the RabbitMQ answers recorded against 3.10.8 do.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from conftest import BrokerHandle

PASSWORD = "pw"


def q(name: str) -> str:
    """A name as a path segment ("/" is %2F)."""
    return quote(name, safe="")


@dataclass
class Reply:
    status: int
    body: Any
    headers: Any


class Api:
    """Requests to /api of one broker, as guest unless ``user`` is given."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        user: tuple[str, str] | None = ("guest", "guest"),
        raw: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        headers = dict(headers or {})
        if user is not None:
            headers["Authorization"] = "Basic " + base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
        kwargs: dict[str, Any] = {"headers": headers}
        if body is not None:
            kwargs["json"] = body
        elif raw is not None:
            kwargs["data"] = raw
        async with self.session.request(method, "/api" + path, **kwargs) as response:
            text = await response.text()
            parsed = None
            if text and response.content_type == "application/json":
                parsed = await response.json()
            return Reply(response.status, parsed, response.headers)

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.call("GET", path, **kw)

    async def put(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.call("PUT", path, body, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.call("POST", path, body, **kw)

    async def delete(self, path: str, **kw: Any) -> Reply:
        return await self.call("DELETE", path, **kw)


@pytest.fixture
async def api(managed_broker: BrokerHandle) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession(f"http://127.0.0.1:{managed_broker.server.management_port}") as session:
        yield Api(session)


@pytest.fixture(scope="session")
def tagged(managed_broker: BrokerHandle) -> Iterator[dict[str, tuple[str, str]]]:
    """Users by tag (administrator, monitoring, policymaker, management, none), password
    ``PASSWORD``, each with full permissions on "/" except ``none``."""
    suffix = uuid.uuid4().hex[:6]
    users = {}
    admin = managed_broker.admin
    for tag in ("administrator", "monitoring", "policymaker", "management", "none"):
        name = f"t-{tag}-{suffix}"
        managed_broker.run(admin.add_user(name, PASSWORD, [] if tag == "none" else [tag]))
        managed_broker.run(admin.set_permissions(name, "/"))
        users[tag] = (name, PASSWORD)
    yield users
    for name, _password in users.values():
        managed_broker.run(admin.delete_user(name))
