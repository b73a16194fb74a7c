"""Health checks and the aliveness test (200 ``{"status": "ok"}`` or 503 with RabbitMQ's
``reason``), and how the HTTP API starts and stops with the broker."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp
import pytest
from conftest import BrokerHandle, start_broker

from amqp_server.cli import parse_args
from amqp_server.core.broker import BrokerConfig
from amqp_server.server import Server, StartError
from management.conftest import Api


async def test_health_checks(api: Api, managed_broker: BrokerHandle, unique: str) -> None:
    assert (await api.get("/health/checks/alarms")).body == {"status": "ok"}
    assert (await api.get("/health/checks/local-alarms")).body == {"status": "ok"}
    assert (await api.get("/health/checks/virtual-hosts")).body == {"status": "ok"}
    assert (await api.get("/healthchecks/node")).body == {"status": "ok"}
    for port in (managed_broker.port, managed_broker.server.management_port):
        assert (await api.get(f"/health/checks/port-listener/{port}")).body == {"status": "ok", "port": port}
    reply = await api.get("/health/checks/port-listener/1")
    assert reply.status == 503
    assert reply.body == {"status": "failed", "reason": "No active listener", "missing": 1,
                          "ports": [managed_broker.port, managed_broker.server.management_port]}  # fmt: skip
    reply = await api.get("/health/checks/port-listener/x")
    assert (reply.status, reply.body) == (400, {"error": "bad_request", "reason": "Invalid port"})


async def test_alarm_fails_the_check() -> None:
    handle = start_broker(management=True, management_port=0, vm_memory_high_watermark_absolute=1)
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{handle.server.management_port}") as session:
            reply = await Api(session).get("/health/checks/alarms")
        assert reply.status == 503
        assert reply.body == {"status": "failed", "reason": "There are alarms in effect in the cluster",
                              "alarms": [{"resource": "memory", "node": handle.broker.node_name}]}  # fmt: skip
    finally:
        handle.stop()


async def test_aliveness(api: Api, unique: str) -> None:
    assert (await api.get("/aliveness-test/%2F")).body == {"status": "ok"}
    assert (await api.get("/queues/%2F/aliveness-test")).body["messages"] == 0  # the queue stays, empty
    assert (await api.get(f"/aliveness-test/{unique}")).status == 404


def test_port_zero_takes_a_free_port_and_stop_closes_it() -> None:
    handle = start_broker(management=True, management_port=0)
    port = handle.server.management_port
    assert port > 0
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
    handle.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_a_taken_port_stops_the_start() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = Server(BrokerConfig(host="127.0.0.1", port=0, data_dir=None, management=True, management_port=port))
        with pytest.raises(StartError, match=f"port {port} on 127.0.0.1 is in use"):
            asyncio.run(server.start())


def test_without_management_nothing_listens(broker: BrokerHandle) -> None:
    assert broker.server.management is None


def test_command_line_and_config_file(tmp_path: Path) -> None:
    config = parse_args(["--management-port", "15999"])
    assert (config.management, config.management_port) == (True, 15999)
    path = f"{tmp_path}/rabbitmq.conf"
    with open(path, "w") as handle:
        handle.write("management.tcp.port = 15998\nmanagement.tcp.ip = 127.0.0.1\ncollect_statistics_interval = 1000\n")
    config = parse_args(["--config", path])
    assert (config.management_port, config.management_host, config.collect_statistics_interval) == (15998, "127.0.0.1", 1000)
