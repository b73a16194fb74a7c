"""Shared fixtures: a real broker on a free port, run in-process on its own event-loop thread.

Tests talk to it over TCP with real clients (pika, aio-pika, kombu) and may also look at its
state through ``BrokerHandle.broker`` and ``BrokerHandle.admin``: public attributes and ``stats()``
only, never private ones, so that the tests survive refactors. Helpers the tests share (publish,
count, drain, wait, expect a channel error, ...) are in ``helpers.py``.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from amqp_server.admin.operations import Admin
from amqp_server.core.broker import Broker, BrokerConfig
from amqp_server.server import Server


def connection_params(
    port: int, user: str = "guest", password: str = "guest", vhost: str = "/", **kw: Any
) -> pika.ConnectionParameters:
    """pika's parameters for a broker on 127.0.0.1:``port``, as ``user`` on ``vhost``."""
    return pika.ConnectionParameters("127.0.0.1", port, vhost, pika.PlainCredentials(user, password), **kw)


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

    @property
    def running(self) -> bool:
        """Not stopped yet."""
        return self._thread.is_alive()

    def params(self, user: str = "guest", password: str = "guest", vhost: str = "/", **kw: Any) -> pika.ConnectionParameters:
        return connection_params(self.port, user, password, vhost, **kw)

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


@pytest.fixture(scope="session")
def managed_broker() -> Iterator[BrokerHandle]:
    """A broker that also serves the management HTTP API, on a free port
    (``handle.server.management_port``); tests use unique names, as with ``broker``."""
    handle = start_broker(management=True, management_port=0)
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Node:
    """A broker in its own process (``python -m amqp_server``, or the console script), stderr
    captured: for restarts, kills and signals, which an in-process broker cannot show."""

    def __init__(
        self, data_dir: Path | None, cwd: Path, *args: str, script: bool = False, port: int | None = None
    ) -> None:
        """``port``: the port the arguments (e.g. a --config file) make it listen on; by default
        a free one is passed with --port."""
        command = [str(Path(sys.executable).with_name("amqp-server"))] if script else [sys.executable, "-m", "amqp_server"]
        if port is None:
            port = free_port()
            command += ["--host", "127.0.0.1", "--port", str(port)]
        self.port = port
        command += ["--management-port", str(free_port()), "--prometheus-port", "0"]
        if data_dir is not None:
            command += ["--data-dir", str(data_dir)]
        command += args
        self.process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait_listening(self, timeout: float = 15.0) -> Node:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(self.process.stderr.read().decode() if self.process.stderr else "exited")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.02)
        raise AssertionError(f"broker did not listen on {self.port}")

    def exit_status(self, timeout: float = 15.0) -> tuple[int, str]:
        _out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, err.decode()

    def stop(self, sig: int) -> tuple[int, str]:
        self.process.send_signal(sig)
        return self.exit_status()

    def connect(self, user: str = "guest", password: str = "guest", vhost: str = "/", **kw: Any) -> pika.BlockingConnection:
        return pika.BlockingConnection(connection_params(self.port, user, password, vhost, **kw))

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


@pytest.fixture
def nodes() -> Iterator[list[Node]]:
    """Broker processes a test started; killed at the end whatever happened."""
    started: list[Node] = []
    yield started
    for node in started:
        node.kill()


@pytest.fixture
def handles() -> Iterator[list[BrokerHandle]]:
    """In-process brokers a test started; stopped at the end."""
    started: list[BrokerHandle] = []
    yield started
    for handle in started:
        if handle.running:
            handle.stop()
