"""rabbitmq_shovel through the wire: dynamic shovels between two brokers of ours (and RabbitMQ
3.10 on port 5672 when it runs), each ack mode, a destination restarting mid-shovel,
delete-after, the forward headers, validation texts (amqp-ctl and HTTP 400), shovel_status,
delete_shovel and restart_shovel (texts recorded against RabbitMQ 3.10.8)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pika
import pytest
from conftest import BrokerHandle, free_port, start_broker
from helpers import drain, wait_until

LIMIT = 10  # seconds a shovel gets to move what a test expects (reconnects take 1 s)


def ctl(data_dir: str, *args: str) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "amqp_server.ctl", "--data-dir", data_dir, *args],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    return done.returncode, done.stdout + done.stderr


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerHandle]:
    """The shovelling node: a known port (``amqp://`` is its own listener), the HTTP API, and
    a data directory for amqp-ctl."""
    data = tmp_path_factory.mktemp("shovel") / "data"
    handle = start_broker(listeners=[("127.0.0.1", free_port())], plugins=["rabbitmq_shovel"], data_dir=str(data),
                          management=True, management_port=0)  # fmt: skip
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def dest() -> Iterator[BrokerHandle]:
    handle = start_broker()
    yield handle
    handle.stop()


@pytest.fixture(autouse=True)
def no_shovels_left(source: BrokerHandle) -> Iterator[None]:
    """Each test's shovels end with it (a shovel to a stopped broker would keep reconnecting)."""
    yield
    for parameter in source.admin.list_parameters("shovel"):
        source.run(source.admin.clear_parameter(parameter["vhost"], "shovel", parameter["name"]))


def uri(handle: BrokerHandle | int) -> str:
    port = handle if isinstance(handle, int) else handle.port
    return f"amqp://guest:guest@127.0.0.1:{port}"


def set_shovel(source: BrokerHandle, name: str, value: dict[str, Any], vhost: str = "/") -> None:
    source.run(source.admin.set_parameter(vhost, "shovel", name, value))


def count(handle: BrokerHandle, queue: str) -> int:
    with handle.connect() as connection:
        try:
            return connection.channel().queue_declare(queue, passive=True).method.message_count
        except pika.exceptions.ChannelClosedByBroker:
            return -1  # not declared yet


def shovels(source: BrokerHandle) -> dict[str, dict[str, Any]]:
    rows = source.call(lambda: source.broker.plugin_commands["shovel_status"]({}))
    return {row["name"]: row for row in rows}


def publish(handle: BrokerHandle, queue: str, n: int, start: int = 0, **properties: Any) -> None:
    with handle.connect() as connection:
        channel = connection.channel()
        channel.queue_declare(queue, durable=True)
        for i in range(start, start + n):
            channel.basic_publish("", queue, f"m{i}".encode(), pika.BasicProperties(**properties))


@pytest.mark.parametrize("ack_mode", ["on-confirm", "on-publish", "no-ack"])
def test_moves_messages_in_each_ack_mode(source, dest, unique, ack_mode):
    publish(source, unique, 50)
    set_shovel(source, unique, {"src-uri": "amqp://", "src-queue": unique, "dest-uri": uri(dest),
                                "dest-queue": unique, "ack-mode": ack_mode})  # fmt: skip
    wait_until(None, lambda: count(dest, unique) == 50, LIMIT, "not all moved")
    wait_until(None, lambda: count(source, unique) == 0, LIMIT, "not all acked at the source")
    with dest.connect() as connection:
        assert drain(connection.channel(), unique) == [f"m{i}".encode() for i in range(50)]
    publish(source, unique, 5, start=50)  # it keeps running
    wait_until(None, lambda: count(dest, unique) == 5, LIMIT)


def test_forward_and_timestamp_headers(source, dest, unique):
    set_shovel(source, unique, {"src-uri": ["amqp://"], "src-exchange": "amq.topic", "src-exchange-key": "a.#",
                                "dest-uri": uri(dest), "dest-exchange": "amq.direct", "dest-exchange-key": unique,
                                "dest-add-forward-headers": True, "dest-add-timestamp-header": True})  # fmt: skip
    with dest.connect() as connection:
        channel = connection.channel()
        channel.queue_declare(unique)
        channel.queue_bind(unique, "amq.direct", unique)
    wait_until(None, lambda: shovels(source)[unique]["state"] == "running", LIMIT)
    with source.connect() as connection:
        props = pika.BasicProperties(headers={"mine": 1, "x-shovelled": [{"earlier": "hop"}]})
        connection.channel().basic_publish("amq.topic", "a.b", b"hello", props)
        connection.channel().basic_publish("amq.topic", "b.a", b"not bound")
    wait_until(None, lambda: count(dest, unique) == 1, LIMIT)
    with dest.connect() as connection:
        _method, properties, body = connection.channel().basic_get(unique, auto_ack=True)
    assert body == b"hello"
    headers = properties.headers
    assert headers["mine"] == 1 and isinstance(headers["x-shovelled-timestamp"], int)
    assert headers["x-shovelled"] == [
        {"shovelled-by": "rabbit@localhost", "shovel-type": "dynamic", "shovel-name": unique, "shovel-vhost": "/",
         "src-uri": "amqp://", "dest-uri": f"amqp://127.0.0.1:{dest.port}", "src-exchange": "amq.topic",
         "src-exchange-key": "a.#", "dest-exchange": "amq.direct", "dest-exchange-key": unique},
        {"earlier": "hop"},
    ]  # fmt: skip


def test_nothing_lost_when_the_destination_restarts(source, tmp_path, unique):
    """on-confirm: a message is acked at the source only once the destination confirmed it, so
    what was in flight when the destination went away is shovelled again after the reconnect."""
    port, data = free_port(), str(tmp_path / "dest")
    target = start_broker(listeners=[("127.0.0.1", port)], data_dir=data)
    try:
        set_shovel(source, unique, {"src-uri": "amqp://", "src-queue": unique, "dest-uri": uri(port),
                                    "dest-queue": unique, "reconnect-delay": 1, "src-prefetch-count": 20})  # fmt: skip
        publish(source, unique, 300, delivery_mode=2)
        wait_until(None, lambda: count(target, unique) > 0, LIMIT)
        target.stop()
        publish(source, unique, 100, start=300, delivery_mode=2)
        target = start_broker(listeners=[("127.0.0.1", port)], data_dir=data)
        wait_until(None, lambda: count(source, unique) == 0, LIMIT, "the source was not emptied")
        with target.connect() as connection:
            bodies = drain(connection.channel(), unique)
        assert set(bodies) == {f"m{i}".encode() for i in range(400)}  # duplicates allowed, losses not
    finally:
        target.stop()


def test_reconnects_after_the_destination_comes_up(source, unique):
    port = free_port()
    set_shovel(source, unique, {"src-uri": "amqp://", "src-queue": unique, "dest-uri": uri(port),
                                "dest-queue": unique, "reconnect-delay": 1})  # fmt: skip
    publish(source, unique, 3)
    assert shovels(source)[unique]["state"] == "starting"  # nothing listens there yet
    target = start_broker(listeners=[("127.0.0.1", port)])
    try:
        wait_until(None, lambda: count(target, unique) == 3, LIMIT)
        row = shovels(source)[unique]
        assert (row["state"], row["destination"], row["destination_queue"]) == (
            "running",
            f"amqp://127.0.0.1:{port}",
            unique,
        )
    finally:
        target.stop()


@pytest.mark.parametrize("delete_after", ["queue-length", 4])
def test_delete_after(source, dest, unique, delete_after):
    publish(source, unique, 6)
    set_shovel(source, unique, {"src-uri": "amqp://", "src-queue": unique, "dest-uri": uri(dest),
                                "dest-queue": unique, "src-delete-after": delete_after})  # fmt: skip
    moved = 6 if delete_after == "queue-length" else 4
    wait_until(None, lambda: unique not in shovels(source), LIMIT, "the shovel did not delete itself")
    assert [p for p in source.admin.list_parameters("shovel") if p["name"] == unique] == []
    assert (count(dest, unique), count(source, unique)) == (moved, 6 - moved)


VALIDATION = [
    ({"src-uri": "amqp://"}, "Must specify 'src-exchange' or 'src-queue'\nKey \"dest-uri\" not found in bad"),
    ({"src-uri": "amqp://", "src-queue": "a", "src-exchange": "b", "dest-uri": "amqp://", "dest-queue": "c",
      "dest-exchange": "d"}, "Cannot specify 'src-exchange' and 'src-queue'\nCannot specify 'dest-exchange' and 'dest-queue'"),
    ({"src-uri": "foo://x", "src-queue": "a", "dest-uri": 5, "ack-mode": "bad", "foo": 1},
     "Unrecognised terms [{<<\"foo\">>,1}] in bad\ndest-uri should be list, actually was 5\n"
     "\"foo://x\" not a valid URI: {{unexpected_uri_scheme,\"foo\"},\"foo://x\"}\n"
     "ack-mode should be one of [<<\"no-ack\">>,<<\"on-publish\">>,<<\"on-confirm\">>], actually was <<\"bad\">>"),
    ({"src-uri": "amqp://", "src-queue": "a", "dest-uri": "amqp://", "src-delete-after": 5, "ack-mode": "no-ack",
      "dest-add-forward-headers": "yes"},
     "Cannot specify 'no-ack' and numerical 'delete-after'\n"
     "dest-add-forward-headers should be boolean, actually was <<\"yes\">>"),
    ({"src-uri": "amqp://", "src-queue": "a", "dest-uri": "amqp://", "src-protocol": "amqp10"},
     "src-protocol should be one of [<<\"amqp091\">>], actually was <<\"amqp10\">>"),
]  # fmt: skip


@pytest.mark.parametrize(("value", "errors"), VALIDATION)
def test_validation_over_http(source, value, errors):
    """RabbitMQ's texts; AMQP 1.0 shovels are refused by the protocol key's validation."""
    url = f"http://127.0.0.1:{source.server.management_port}/api/parameters/shovel/%2F/bad"
    request = urllib.request.Request(url, json.dumps({"value": value}).encode(), method="PUT",
                                     headers={"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q=",
                                              "Content-Type": "application/json"})  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=10)
    assert raised.value.code == 400
    assert json.loads(raised.value.read()) == {
        "error": "bad_request",
        "reason": f"Validation failed\n\n{errors}\n",
    }


def test_ctl_validation_status_restart_and_delete(source, dest, unique):
    data = source.broker.config.data_dir
    code, out = ctl(data, "set_parameter", "shovel", "bad", '{"src-uri":"amqp://"}')
    assert (code, out) == (69, 'Setting runtime parameter "bad" for component "shovel" to "{"src-uri":"amqp://"}" '
                               'in vhost "/" ...\nError:\nValidation failed\n\nMust specify \'src-exchange\' or '
                               '\'src-queue\'\nKey "dest-uri" not found in bad\n\n')  # fmt: skip
    value = {"src-uri": "amqp://", "src-queue": unique, "dest-uri": uri(dest), "dest-exchange": "amq.fanout"}
    assert ctl(data, "set_parameter", "shovel", unique, json.dumps(value))[0] == 0
    wait_until(None, lambda: shovels(source)[unique]["state"] == "running", LIMIT)
    code, out = ctl(data, "shovel_status", "--formatter", "json")
    row = next(r for r in json.loads(out) if r["name"] == unique)
    assert code == 0 and row == {
        "destination": f"amqp://127.0.0.1:{dest.port}", "destination_exchange": "amq.fanout",
        "destination_protocol": "amqp091", "last_changed": row["last_changed"], "name": unique, "source": "amqp://",
        "source_protocol": "amqp091", "source_queue": unique, "state": "running", "termination_reason": "",
        "type": "dynamic", "vhost": "/"}  # fmt: skip
    code, out = ctl(data, "shovel_status")
    lines = out.splitlines()
    assert code == 0 and lines[0] == "Shovel status on node rabbit@localhost"
    assert lines[1] == "\t".join(json.loads(ctl(data, "shovel_status", "--formatter", "json")[1])[0])
    assert "\t".join(row.values()) in lines
    assert ctl(data, "restart_shovel", unique) == (
        0,
        f"Restarting dynamic Shovel {unique} in virtual host / on node rabbit@localhost\n",
    )
    wait_until(None, lambda: shovels(source)[unique]["state"] == "running", LIMIT)
    assert ctl(data, "delete_shovel", unique) == (0, f"Deleting shovel {unique} in vhost /\n")
    assert unique not in shovels(source)
    missing = ("Error:\nShovel with the given name was not found on the target node 'rabbit@localhost' and / or "
               "virtual host '/'\n")  # fmt: skip
    assert ctl(data, "delete_shovel", unique) == (70, f"Deleting shovel {unique} in vhost /\n{missing}")
    assert ctl(data, "restart_shovel", unique)[0] == 70


def get_json(handle: BrokerHandle, path: str) -> tuple[int, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{handle.server.management_port}/api{path}",
                                     headers={"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.load(reply)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_http_api_shovels(source, dest, unique):
    set_shovel(source, unique, {"src-uri": "amqp://", "src-exchange": "amq.topic", "dest-uri": uri(dest),
                                "dest-exchange": "amq.fanout", "dest-exchange-key": "k"})  # fmt: skip
    wait_until(None, lambda: shovels(source)[unique]["state"] == "running", LIMIT)
    row = shovels(source)[unique]
    code, found = get_json(source, "/shovels/%2F")
    assert code == 200 and found == [
        {"node": "rabbit@localhost", "timestamp": row["last_changed"], "name": unique, "vhost": "/",
         "type": "dynamic", "state": "running", "src_uri": "amqp://", "src_protocol": "amqp091",
         "dest_protocol": "amqp091", "dest_uri": f"amqp://127.0.0.1:{dest.port}", "src_exchange": "amq.topic",
         "src_exchange_key": "", "dest_exchange": "amq.fanout", "dest_exchange_key": "k"}
    ]  # fmt: skip
    assert get_json(source, "/shovels")[1] == found
    assert get_json(source, "/shovels/nope") == (404, {"error": "Object Not Found", "reason": "Not Found"})


def _rabbitmq_runs() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=0.5).close()
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _rabbitmq_runs(), reason="no RabbitMQ on port 5672")
def test_to_and_from_rabbitmq(source, unique):
    """RabbitMQ 3.10 as the destination, then as the source."""
    rabbit = "amqp://guest:guest@127.0.0.1:5672"
    publish(source, unique, 10)
    set_shovel(
        source, unique, {"src-uri": "amqp://", "src-queue": unique, "dest-uri": rabbit, "dest-queue": unique}
    )
    back = f"{unique}-back"
    set_shovel(
        source, back, {"src-uri": rabbit, "src-queue": unique, "dest-uri": "amqp://", "dest-queue": back}
    )
    wait_until(None, lambda: count(source, back) == 10, LIMIT)
    source.run(source.admin.clear_parameter("/", "shovel", unique))
    with pika.BlockingConnection(pika.URLParameters(rabbit)) as connection:
        assert connection.channel().queue_delete(unique).method.message_count == 0


def test_shovels_start_again_with_the_node(dest, tmp_path, unique):
    """The definition is a durable parameter: a node that boots with it starts the shovel."""
    port, data = free_port(), str(tmp_path / "node")
    node = start_broker(listeners=[("127.0.0.1", port)], data_dir=data, plugins=["rabbitmq_shovel"])
    set_shovel(
        node, unique, {"src-uri": "amqp://", "src-queue": unique, "dest-uri": uri(dest), "dest-queue": unique}
    )
    node.stop()
    node = start_broker(listeners=[("127.0.0.1", port)], data_dir=data, plugins=["rabbitmq_shovel"])
    try:
        publish(node, unique, 3)
        wait_until(None, lambda: count(dest, unique) == 3, LIMIT)
    finally:
        node.stop()
