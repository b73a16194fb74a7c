"""Connection and channel limits, refused as RabbitMQ 3.10.8 refuses them (recorded against it):
vhost max-connections and user max-connections at
connection.open (530, class 10 method 40), user max-channels at the first frame of a new
channel (connection.close 530, class 0 method 0). Checks run in RabbitMQ's order: vhost
exists, vhost limit, user limit, then permissions. Limits are set through the admin API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pamqp import commands
from rawamqp import RawClient

PASSWORD = "pw"


@pytest.fixture
def place(broker: Any, unique: str) -> Iterator[tuple[str, str]]:
    """A fresh vhost and user (with permissions on it, as guest has), removed afterwards."""
    vhost, user = unique + "-vh", unique + "-user"
    admin = broker.admin
    broker.run(admin.add_vhost(vhost))
    broker.run(admin.add_user(user, PASSWORD))
    broker.run(admin.set_permissions(user, vhost))
    broker.run(admin.set_permissions("guest", vhost))
    yield vhost, user
    broker.run(admin.delete_vhost(vhost))
    broker.run(admin.delete_user(user))


def refusal(reply: Any) -> tuple[int, str, int, int]:
    assert isinstance(reply, commands.Connection.Close), reply
    return reply.reply_code, reply.reply_text, reply.class_id, reply.method_id


def connect(broker: Any, vhost: str, user: str = "guest", password: str = "guest") -> tuple[RawClient, Any]:
    client = RawClient(broker.port)
    return client, client.handshake(user, password, vhost)


def test_vhost_max_connections(broker, place):
    vhost, _user = place
    broker.run(broker.admin.set_vhost_limits(vhost, {"max-connections": 1}))
    first, opened = connect(broker, vhost)
    assert isinstance(opened, commands.Connection.OpenOk)
    second, refused = connect(broker, vhost)
    assert refusal(refused) == (
        530,
        f"NOT_ALLOWED - access to vhost '{vhost}' refused for user 'guest': connection limit (1) is reached",
        10,
        40,
    )
    assert second.wait_eof()
    other, opened = connect(broker, "/")  # other vhosts are not counted
    assert isinstance(opened, commands.Connection.OpenOk)
    first.send(0, commands.Connection.Close(200, "bye", 0, 0))
    first.expect(0, commands.Connection.CloseOk)
    first.close()
    broker.run(broker.admin.set_vhost_limits(vhost, {"max-connections": 0}))
    third, refused = connect(broker, vhost)
    assert refusal(refused)[1] == (
        f"NOT_ALLOWED - access to vhost '{vhost}' refused for user 'guest': connection limit (0) is reached"
    )
    broker.run(broker.admin.set_vhost_limits(vhost, {"max-connections": -1}))  # negative: no limit
    clients = [connect(broker, vhost) for _ in range(3)]
    assert all(isinstance(opened, commands.Connection.OpenOk) for _client, opened in clients)
    for client in (second, other, third, *(c for c, _ in clients)):
        client.close()


def test_vhost_limit_comes_after_vhost_not_found_and_before_permissions(broker, place, unique):
    vhost, _user = place
    broker.run(broker.admin.set_user_limits("guest", {"max-connections": 0}))
    try:
        client, refused = connect(broker, unique + "-missing")
        assert refusal(refused)[1] == f"NOT_ALLOWED - vhost {unique}-missing not found"
        client.close()
    finally:
        broker.run(broker.admin.clear_user_limits("guest"))
    broker.run(broker.admin.clear_permissions("guest", vhost))
    broker.run(broker.admin.set_vhost_limits(vhost, {"max-connections": 0}))
    client, refused = connect(broker, vhost)  # no permission, but the limit speaks first
    assert refusal(refused)[1] == (
        f"NOT_ALLOWED - access to vhost '{vhost}' refused for user 'guest': connection limit (0) is reached"
    )
    client.close()


def test_user_max_connections(broker, place):
    vhost, user = place
    broker.run(broker.admin.set_user_limits(user, {"max-connections": 1}))
    first, opened = connect(broker, vhost, user, PASSWORD)
    assert isinstance(opened, commands.Connection.OpenOk)
    second, refused = connect(broker, "/", user, PASSWORD)  # any vhost: the user is counted
    assert refusal(refused) == (
        530,
        f"NOT_ALLOWED - connection refused for user '{user}': user connection limit (1) is reached",
        10,
        40,
    )
    guest, opened = connect(broker, vhost)  # other users are not counted
    assert isinstance(opened, commands.Connection.OpenOk)
    for client in (first, second, guest):
        client.close()


def test_user_limit_comes_before_permissions(broker, place):
    _vhost, user = place
    broker.run(broker.admin.set_user_limits(user, {"max-connections": 0}))
    client, refused = connect(broker, "/", user, PASSWORD)  # no permission on "/"
    assert refusal(refused)[1] == (
        f"NOT_ALLOWED - connection refused for user '{user}': user connection limit (0) is reached"
    )
    client.close()


def test_user_max_channels_counts_every_connection_of_the_user(broker, place):
    vhost, user = place
    broker.run(broker.admin.set_user_limits(user, {"max-channels": 2}))
    first, _ = connect(broker, vhost, user, PASSWORD)
    assert isinstance(first.open_channel(1), commands.Channel.OpenOk)
    second, _ = connect(broker, vhost, user, PASSWORD)
    assert isinstance(second.open_channel(1), commands.Channel.OpenOk)
    refused = second.open_channel(2)
    assert refusal(refused) == (
        530,
        f"NOT_ALLOWED - number of channels opened for user '{user}' has reached the maximum allowed user limit of (2)",
        0,
        0,
    )
    second.send(0, commands.Connection.CloseOk())
    assert second.wait_eof()
    # The refused connection's channel is gone, so the first connection may open one more.
    assert isinstance(first.open_channel(2), commands.Channel.OpenOk)
    first.close()


def test_user_max_channels_zero_refuses_any_first_frame_on_a_channel(broker, place):
    vhost, user = place
    broker.run(broker.admin.set_user_limits(user, {"max-channels": 0}))
    client, opened = connect(broker, vhost, user, PASSWORD)
    assert isinstance(opened, commands.Connection.OpenOk)
    client.send(1, commands.Basic.Qos())
    assert refusal(client.expect(0, commands.Connection.Close)) == (
        530,
        f"NOT_ALLOWED - number of channels opened for user '{user}' has reached the maximum allowed user limit of (0)",
        0,
        0,
    )
    client.close()
