"""Connections, channels and consumers through the API: what pika opened, by RabbitMQ's names
("<peer> -> <us>", "<connection> (<n>)"), who sees whose, and DELETE closing a connection with
320 CONNECTION_FORCED and the X-Reason text."""

from __future__ import annotations

import pika
import pytest
from conftest import BrokerHandle
from pika.exceptions import ConnectionClosedByBroker

from management.conftest import Api, q


def _mine(items: list[dict], tag: str) -> list[dict]:
    return [c for c in items if c.get("client_properties", {}).get("connection_name") == tag]


async def test_connection_channels_and_consumers(api: Api, managed_broker: BrokerHandle, unique: str) -> None:
    params = managed_broker.params(client_properties={"connection_name": unique})
    with pika.BlockingConnection(params) as connection:
        channel = connection.channel()
        channel.queue_declare(unique)
        channel.basic_qos(prefetch_count=5)
        tag = channel.basic_consume(unique, lambda *args: None)
        confirming = connection.channel()
        confirming.confirm_delivery()
        confirming.basic_publish("", unique, b"x")
        [item] = _mine((await api.get("/connections")).body, unique)
        local, peer = managed_broker.port, item["peer_port"]
        assert item["name"] == f"127.0.0.1:{peer} -> 127.0.0.1:{local}"
        assert {k: item[k] for k in ("user", "vhost", "channels", "state", "protocol", "type", "host", "port",
                                     "auth_mechanism", "user_provided_name", "ssl")} == {
            "user": "guest", "vhost": "/", "channels": 2, "state": "running", "protocol": "AMQP 0-9-1",
            "type": "network", "host": "127.0.0.1", "port": local, "auth_mechanism": "PLAIN",
            "user_provided_name": unique, "ssl": False,
        }  # fmt: skip
        assert item["recv_oct"] > 0 and "rate" in item["recv_oct_details"] and item["connected_at"] > 0
        name = item["name"]
        assert (await api.get(f"/connections/{q(name)}")).body["name"] == name
        channels = (await api.get(f"/connections/{q(name)}/channels")).body
        assert [c["name"] for c in channels] == [f"{name} (1)", f"{name} (2)"]
        assert [(c["prefetch_count"], c["consumer_count"], c["confirm"]) for c in channels] == [(5, 1, False), (0, 0, True)]
        assert channels[1]["message_stats"]["publish"] == 1
        assert {c["name"] for c in (await api.get("/channels")).body} >= {f"{name} (1)", f"{name} (2)"}
        one = (await api.get(f"/channels/{q(name + ' (1)')}")).body
        assert one["connection_details"] == {"name": name, "peer_host": "127.0.0.1", "peer_port": peer}
        assert [c["consumer_tag"] for c in one["consumer_details"]] == [tag]
        consumers = [c for c in (await api.get("/consumers/%2F")).body if c["consumer_tag"] == tag]
        assert consumers[0]["channel_details"]["name"] == f"{name} (1)"
        assert consumers[0]["queue"] == {"name": unique, "vhost": "/"}
        assert any(c["name"] == name for c in (await api.get("/vhosts/%2F/connections")).body)
        assert any(c["name"] == f"{name} (2)" for c in (await api.get("/vhosts/%2F/channels")).body)
        page = (await api.get(f"/connections?page=1&page_size=100&name={peer}")).body
        assert [c["name"] for c in page["items"]] == [name]
        channel.queue_delete(unique)
    assert _mine((await api.get("/connections")).body, unique) == []
    assert (await api.get(f"/connections/{q(name)}")).status == 404
    assert (await api.get(f"/channels/{q(name + ' (1)')}")).status == 404


async def test_users_see_their_own_connections(
    api: Api, managed_broker: BrokerHandle, tagged: dict[str, tuple[str, str]], unique: str
) -> None:
    management, password = tagged["management"]
    params = managed_broker.params(user=management, password=password, client_properties={"connection_name": unique})
    with pika.BlockingConnection(params) as own, managed_broker.connect() as guests:
        guests.channel()
        seen = {c["user"] for c in (await api.get("/connections", user=tagged["management"])).body}
        assert seen == {management}
        assert "guest" in {c["user"] for c in (await api.get("/connections", user=tagged["monitoring"])).body}
        [item] = _mine((await api.get("/connections", user=tagged["management"])).body, unique)
        assert (await api.get(f"/connections/{q(item['name'])}", user=tagged["management"])).status == 200
        guest_name = next(c["name"] for c in (await api.get("/connections")).body if c["user"] == "guest")
        reply = await api.get(f"/connections/{q(guest_name)}", user=tagged["management"])
        assert (reply.status, reply.body["reason"]) == (401, "User not authorised to access object")
        assert (await api.get(f"/connections/{q(guest_name)}", user=tagged["monitoring"])).status == 200
        reply = await api.delete(f"/connections/{q(guest_name)}", user=tagged["monitoring"])
        assert reply.status == 401  # closing another user's connection takes an administrator
        assert {c["channel_details"]["user"] for c in (await api.get("/consumers", user=tagged["management"])).body} <= {management}
        own.channel()


async def test_delete_closes_with_the_reason(api: Api, managed_broker: BrokerHandle, unique: str) -> None:
    params = managed_broker.params(client_properties={"connection_name": unique})
    connection = pika.BlockingConnection(params)
    [item] = _mine((await api.get("/connections")).body, unique)
    reply = await api.delete(f"/connections/{q(item['name'])}", headers={"X-Reason": "maintenance window"})
    assert reply.status == 204
    with pytest.raises(ConnectionClosedByBroker) as closed:
        connection.process_data_events(2)
    assert (closed.value.reply_code, closed.value.reply_text) == (320, "CONNECTION_FORCED - maintenance window")
    connection = pika.BlockingConnection(params)
    [item] = _mine((await api.get("/connections")).body, unique)
    await api.delete(f"/connections/{q(item['name'])}")
    with pytest.raises(ConnectionClosedByBroker) as closed:
        connection.process_data_events(2)
    assert closed.value.reply_text == "CONNECTION_FORCED - Closed via management plugin"
