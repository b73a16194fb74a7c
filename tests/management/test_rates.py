"""Rates and samples (``*_details``) from the statistics sampler, and the overview's totals.
Rounds are taken by hand here (``Sampler.sample``) rather than waited for."""

from __future__ import annotations

from conftest import BrokerHandle

from management.conftest import Api


def _round(handle: BrokerHandle) -> None:
    handle.run(handle.server.management.sampler.sample())


async def test_rates_of_a_queue_and_the_overview(api: Api, managed_broker: BrokerHandle, unique: str) -> None:
    await api.put(f"/queues/%2F/{unique}")
    _round(managed_broker)
    before = (await api.get("/overview")).body
    with managed_broker.connect() as connection:
        channel = connection.channel()
        for _ in range(10):
            channel.basic_publish("", unique, b"0123456789")
        channel.queue_declare(unique, passive=True)
        _round(managed_broker)
        queue = (await api.get(f"/queues/%2F/{unique}")).body
        assert (queue["messages"], queue["message_stats"]["publish"], queue["message_bytes"]) == (10, 10, 100)
        assert queue["messages_details"]["rate"] > 0
        assert queue["message_stats"]["publish_details"]["rate"] > 0
        overview = (await api.get("/overview")).body
        assert overview["queue_totals"]["messages"] >= 10
        assert overview["message_stats"]["publish"] >= before["message_stats"]["publish"] + 10
        assert overview["message_stats"]["publish_details"]["rate"] > 0
        assert overview["object_totals"]["connections"] >= 1
        assert overview["object_totals"]["queues"] >= 1
        assert overview["churn_rates"]["queue_created"] > before["churn_rates"]["queue_created"] - 1
        vhost = (await api.get("/vhosts/%2F")).body
        assert vhost["messages"] >= 10 and vhost["message_stats"]["publish"] >= 10
        channel.queue_delete(unique)
    _round(managed_broker)
    # The connection is gone: its messages stay counted in the node's totals.
    after = (await api.get("/overview")).body
    assert after["message_stats"]["publish"] >= before["message_stats"]["publish"] + 10
    assert after["churn_rates"]["connection_closed"] >= 1


async def test_samples_with_a_range(api: Api, managed_broker: BrokerHandle, unique: str) -> None:
    await api.put(f"/queues/%2F/{unique}")
    _round(managed_broker)
    reply = await api.get(f"/queues/%2F/{unique}?lengths_age=60&lengths_incr=5&msg_rates_age=60&msg_rates_incr=5")
    details = reply.body["messages_details"]
    assert set(details) == {"rate", "samples", "avg", "avg_rate"}
    assert len(details["samples"]) == 13
    stamps = [s["timestamp"] for s in details["samples"]]
    assert stamps == sorted(stamps, reverse=True) and all(t % 5000 == 0 for t in stamps)
    assert set(reply.body["message_stats"]["publish_details"]) == {"rate", "samples", "avg", "avg_rate"}
    overview = (await api.get("/overview?lengths_age=30&lengths_incr=10")).body
    assert len(overview["queue_totals"]["messages_details"]["samples"]) == 4
    assert "samples" not in overview["message_stats"]["publish_details"]  # only the lengths were asked for
    node = (await api.get(f"/nodes/{managed_broker.broker.node_name}?node_stats_age=10&node_stats_incr=5")).body
    assert len(node["mem_used_details"]["samples"]) == 3
    await api.delete(f"/queues/%2F/{unique}")


async def test_nodes(api: Api, managed_broker: BrokerHandle) -> None:
    [node] = (await api.get("/nodes")).body
    name = managed_broker.broker.node_name
    assert (node["name"], node["running"], node["mem_alarm"], node["disk_free_alarm"]) == (name, True, False, False)
    assert node["mem_used"] > 0 and node["mem_limit"] > 0 and node["disk_free"] > 0
    assert {"name": "direct", "description": "AMQP direct exchange, as per the AMQP specification", "enabled": True} in node["exchange_types"]
    assert (await api.get(f"/nodes/{name}")).body["name"] == name
    assert (await api.get("/nodes/rabbit@elsewhere")).status == 404
