"""Vhost and user limits through the admin API; max-queues enforced at queue.declare with
RabbitMQ 3.10's code and text (recorded against RabbitMQ 3.10.8)."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import closes

from amqp_server.admin.errors import AdminError


@pytest.fixture
def vhost(broker: Any, unique: str) -> Any:
    broker.run(broker.admin.add_vhost(unique))
    broker.run(broker.admin.set_permissions("guest", unique))
    yield unique
    broker.run(broker.admin.delete_vhost(unique))


def test_max_queues(broker: Any, vhost: str, unique: str) -> None:
    broker.run(broker.admin.set_vhost_limits(vhost, {"max-queues": 2}))
    assert broker.broker.vhost_limits[vhost] == {"max-queues": 2}
    connection = broker.connect(vhost=vhost)
    channel = connection.channel()
    channel.queue_declare("q1")
    channel.queue_declare("q2")
    channel.queue_declare("q1")  # redeclaring an existing queue is fine at the limit
    assert closes(channel, lambda: channel.queue_declare("q3")) == (
        406,
        f"PRECONDITION_FAILED - cannot declare queue 'q3': queue limit in vhost '{vhost}' (2) is reached",
    )
    channel = connection.channel()
    code, text = closes(channel, lambda: channel.queue_declare(""))
    assert code == 406
    assert text.startswith("PRECONDITION_FAILED - cannot declare queue 'amq.gen-")
    assert text.endswith(f"': queue limit in vhost '{vhost}' (2) is reached")
    channel = connection.channel()
    assert closes(channel, lambda: channel.queue_declare("q9", passive=True)) == (
        404,
        f"NOT_FOUND - no queue 'q9' in vhost '{vhost}'",
    )
    broker.run(broker.admin.set_vhost_limits(vhost, {"max-queues": 0}))
    channel = connection.channel()
    channel.queue_declare("q1")
    assert closes(channel, lambda: channel.queue_declare("q4"))[1] == (
        f"PRECONDITION_FAILED - cannot declare queue 'q4': queue limit in vhost '{vhost}' (0) is reached"
    )
    broker.run(broker.admin.set_vhost_limits(vhost, {"max-queues": -1}))  # negative: unlimited
    channel = connection.channel()
    channel.queue_declare("q4")
    broker.run(broker.admin.set_vhost_limits(vhost, {"max-queues": 3}))
    broker.run(broker.admin.clear_vhost_limits(vhost))
    assert vhost not in broker.broker.vhost_limits
    channel.queue_declare("q5")
    connection.close()


def test_vhost_limit_listing_and_validation(broker: Any, vhost: str) -> None:
    broker.run(broker.admin.set_vhost_limits(vhost, {"max-queues": 0, "max-connections": 4}))
    assert broker.admin.list_vhost_limits(vhost) == [
        {"vhost": vhost, "value": {"max-connections": 4, "max-queues": 0}}
    ]
    broker.run(broker.admin.set_vhost_limits(vhost, {"max-queues": 7}))  # replaces, not merges
    assert broker.broker.vhost_limits[vhost] == {"max-queues": 7}
    for limits, error in (
        ({"foo": 1}, 'Unrecognised terms [{<<"foo">>,1}] in limits'),
        ({"max-channels": 1}, 'Unrecognised terms [{<<"max-channels">>,1}] in limits'),
        ({"max-queues": "a"}, 'max-queues should be a number, actually was <<"a">>'),
        ({"max-queues": 1.5}, "max-queues should be a number, actually was 1.5"),
    ):
        with pytest.raises(AdminError) as info:
            broker.run(broker.admin.set_vhost_limits(vhost, limits))
        assert str(info.value) == "Validation failed\n\n" + error
    with pytest.raises(AdminError) as info:
        broker.run(broker.admin.set_vhost_limits(vhost + "-missing", {"max-queues": 1}))
    assert str(info.value) == f"Virtual host '{vhost}-missing' does not exist"
    with pytest.raises(AdminError, match="^Parameter does not exist$"):
        broker.run(broker.admin.clear_vhost_limits(vhost + "-missing"))


def test_vhost_deletion_drops_its_limits(broker: Any, unique: str) -> None:
    broker.run(broker.admin.add_vhost(unique))
    broker.run(broker.admin.set_vhost_limits(unique, {"max-connections": 1}))
    broker.run(broker.admin.delete_vhost(unique))
    assert unique not in broker.broker.vhost_limits


def test_user_limits_merge_clear_and_validation(broker: Any, unique: str) -> None:
    broker.run(broker.admin.add_user(unique, "pw"))
    broker.run(broker.admin.set_user_limits(unique, {"max-connections": 1}))
    broker.run(broker.admin.set_user_limits(unique, {"max-channels": 2}))
    assert broker.broker.user_limits[unique] == {"max-connections": 1, "max-channels": 2}
    assert broker.admin.list_user_limits(unique) == [
        {"user": unique, "value": {"max-channels": 2, "max-connections": 1}}
    ]
    broker.run(broker.admin.clear_user_limits(unique, "max-channels"))
    assert broker.broker.user_limits[unique] == {"max-connections": 1}
    broker.run(broker.admin.clear_user_limits(unique, "all"))
    assert unique not in broker.broker.user_limits
    with pytest.raises(AdminError) as info:
        broker.run(broker.admin.set_user_limits(unique, {"foo": 1}))
    assert str(info.value) == 'Unrecognised terms [{<<"foo">>,1}] in user-limits'
    with pytest.raises(AdminError) as info:
        broker.run(broker.admin.set_user_limits(unique, {"max-channels": "x"}))
    assert str(info.value) == 'max-channels should be a number, actually was <<"x">>'
    with pytest.raises(AdminError) as info:
        broker.run(broker.admin.set_user_limits(unique + "-missing", {"max-channels": 1}))
    assert str(info.value) == f'{{:no_such_user, "{unique}-missing"}}'
    broker.run(broker.admin.set_user_limits(unique, {"max-channels": -1}))
    broker.run(broker.admin.delete_user(unique))
    assert unique not in broker.broker.user_limits
