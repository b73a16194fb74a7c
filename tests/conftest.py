"""Shared fixtures: a real broker on a free port, run in-process on its own event-loop thread.

Tests talk to it over TCP with real clients (pika, aio-pika, kombu) and may also look at its
internal state through ``BrokerHandle.broker``.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any

import pika
import pytest

from amqp_server.admin import Admin
from amqp_server.broker import Broker, BrokerConfig
from amqp_server.server import Server


class BrokerHandle:
    """A broker running on a background thread's event loop."""

    def __init__(self, config: BrokerConfig) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = Server(config)
        self._thread = threading.Thread(target=self.loop.run_forever, name="broker", daemon=True)
        self._thread.start()
        self.run(self.server.start())
        self.port = self.server.port
        self.admin = Admin(self.server.broker)

    @property
    def broker(self) -> Broker:
        return self.server.broker

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 10) -> Any:
        """Run a coroutine on the broker's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Any, *args: Any) -> Any:
        """Call a plain function on the broker's loop (to read state safely)."""

        async def wrapper() -> Any:
            return fn(*args)

        return self.run(wrapper())

    def params(self, user: str = "guest", password: str = "guest", vhost: str = "/", **kw: Any) -> pika.ConnectionParameters:
        return pika.ConnectionParameters(
            "127.0.0.1", self.port, vhost, pika.PlainCredentials(user, password), **kw
        )

    def connect(self, **kw: Any) -> pika.BlockingConnection:
        return pika.BlockingConnection(self.params(**kw))

    def stop(self) -> None:
        self.run(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


def start_broker(**overrides: Any) -> BrokerHandle:
    """A broker with ``overrides`` to BrokerConfig; metadata in memory unless ``data_dir`` is given."""
    overrides.setdefault("data_dir", None)
    config = BrokerConfig(host="127.0.0.1", port=0, **overrides)
    return BrokerHandle(config)


@pytest.fixture(scope="session")
def broker() -> Iterator[BrokerHandle]:
    """One broker for the session: tests use unique names (see ``unique``)."""
    handle = start_broker()
    yield handle
    handle.stop()


@pytest.fixture
def unique() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def connection(broker: BrokerHandle) -> Iterator[pika.BlockingConnection]:
    conn = broker.connect()
    yield conn
    if conn.is_open:
        conn.close()


@pytest.fixture
def channel(connection: pika.BlockingConnection) -> Any:
    return connection.channel()
