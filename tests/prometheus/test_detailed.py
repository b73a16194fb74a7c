"""/metrics/detailed: the tables named by ``family``, per object under rabbitmq_detailed_, the
queue tables limited by ``vhost``, the rabbitmq_cluster_ tables, in RabbitMQ's order."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pika
import pytest
from conftest import BrokerHandle
from helpers import publish

if TYPE_CHECKING:
    from tests.prometheus.conftest import Client



@pytest.fixture
def vhost(broker: BrokerHandle, unique: str) -> Iterator[str]:
    """A vhost of its own for guest, with queue ``<vhost>-q`` holding two messages."""
    broker.run(broker.admin.add_vhost(unique))
    broker.run(broker.admin.set_permissions("guest", unique))
    connection = broker.connect(vhost=unique)
    try:
        channel = connection.channel()
        channel.queue_declare(f"{unique}-q")
        publish(channel, f"{unique}-q", b"1", b"2")
    finally:
        connection.close()
    yield unique
    broker.run(broker.admin.delete_vhost(unique))


def families(text: str) -> list[str]:
    return [line.split(" ")[2] for line in text.splitlines() if line.startswith("# TYPE ")]


async def test_family_and_vhost(prom: Client, vhost: str) -> None:
    scrape = await prom.get(f"/metrics/detailed?family=queue_coarse_metrics&vhost={vhost}")
    assert families(scrape.text)[:3] == [
        "rabbitmq_detailed_queue_messages_ready",
        "rabbitmq_detailed_queue_messages_unacked",
        "rabbitmq_detailed_queue_messages",
    ]
    assert families(scrape.text)[3:5] == ["rabbitmq_build_info", "rabbitmq_identity_info"]
    assert scrape.labelled("rabbitmq_detailed_queue_messages") == {(("queue", f"{vhost}-q"), ("vhost", vhost)): 2}
    assert scrape.labelled("rabbitmq_detailed_queue_messages_ready") == {
        (("queue", f"{vhost}-q"), ("vhost", vhost)): 2
    }


async def test_without_vhost_every_queue(prom: Client, broker: BrokerHandle, vhost: str) -> None:
    scrape = await prom.get("/metrics/detailed?family=queue_coarse_metrics")
    queues = broker.call(lambda: sum(len(v.queues) for v in broker.broker.vhosts.values()))
    assert len(scrape.labelled("rabbitmq_detailed_queue_messages")) == queues
    assert scrape.value("rabbitmq_detailed_queue_messages", vhost=vhost, queue=f"{vhost}-q") == 2


async def test_unknown_vhosts_and_families(prom: Client, vhost: str) -> None:
    """Unknown families are ignored; vhosts that do not exist match no queue (RabbitMQ keeps
    only existing vhosts in the filter), other tables are not filtered."""
    scrape = await prom.get("/metrics/detailed?family=nonesuch&family=queue_consumer_count&vhost=nonesuch")
    assert families(scrape.text)[:1] == ["rabbitmq_detailed_queue_consumers"]
    assert scrape.labelled("rabbitmq_detailed_queue_consumers") == {}
    scrape = await prom.get(f"/metrics/detailed?family=queue_consumer_count&vhost=nonesuch&vhost={vhost}")
    assert scrape.labelled("rabbitmq_detailed_queue_consumers") == {(("queue", f"{vhost}-q"), ("vhost", vhost)): 0}
    scrape = await prom.get("/metrics/detailed?family=nonesuch")
    assert [name for name in families(scrape.text) if not name.startswith("telemetry_")] == [
        "rabbitmq_build_info",
        "rabbitmq_identity_info",
    ]


async def test_order_and_overlap(prom: Client, broker: BrokerHandle, unique: str) -> None:
    """Tables come in RabbitMQ's order whatever the parameters' order; queue_consumer_count is
    left out when queue_metrics (which has the same family) is asked for; the channel and
    connection tables are per object under RabbitMQ's labels."""
    connection = broker.connect(client_properties={"connection_name": unique})
    try:
        connection.channel().basic_qos(prefetch_count=7)
        path = (
            "/metrics/detailed?family=connection_metrics&family=channel_metrics&family=queue_consumer_count"
            "&family=queue_metrics&family=connection_churn_metrics&vhost=/"
        )
        scrape = await prom.get(path)
    finally:
        connection.close()
    names = families(scrape.text)
    assert names.count("rabbitmq_detailed_queue_consumers") == 1
    starts = [names.index(name) for name in (
        "rabbitmq_detailed_connections_opened_total",
        "rabbitmq_detailed_queue_consumers",
        "rabbitmq_detailed_channel_consumers",
        "rabbitmq_detailed_connection_channels",
    )]  # fmt: skip
    assert starts == sorted(starts)
    prefetch = scrape.labelled("rabbitmq_detailed_consumer_prefetch")
    assert 7 in prefetch.values() and all(key == "channel" for labels in prefetch for key, _ in labels)
    assert all(labels[0][0] == "channel" for labels in scrape.labelled("rabbitmq_detailed_connection_channels"))


async def test_cluster_tables(prom: Client, broker: BrokerHandle, vhost: str) -> None:
    connection = broker.connect(vhost=vhost)
    try:
        channel = connection.channel()
        channel.exchange_declare(f"{vhost}-x", "fanout")
        channel.exchange_declare(f"{vhost}-internal", "topic", internal=True)
        channel.queue_declare(f"{vhost}-q2")
        channel.queue_bind(f"{vhost}-q", f"{vhost}-x")
        channel.queue_bind(f"{vhost}-q2", f"{vhost}-x")
        channel.queue_bind(f"{vhost}-q2", "amq.direct", "k")
    finally:
        connection.close()
    scrape = await prom.get(
        f"/metrics/detailed?family=exchange_names&family=exchange_bindings&family=vhost_status&vhost={vhost}"
    )
    assert families(scrape.text)[:3] == [
        "rabbitmq_cluster_vhost_status",
        "rabbitmq_cluster_exchange_bindings",
        "rabbitmq_cluster_exchange_name",
    ]
    assert scrape.value("rabbitmq_cluster_vhost_status", vhost=vhost) == 1
    assert scrape.value("rabbitmq_cluster_vhost_status", vhost="/") == 1  # never filtered by vhost

    def of_vhost(name: str) -> dict[tuple[str, str], float]:
        found = {}
        for labels, value in scrape.labelled(name).items():
            found_labels = dict(labels)
            if found_labels["vhost"] == vhost:
                found[found_labels["exchange"], found_labels["type"]] = value
        return found

    standard = {
        ("amq.direct", "direct"): 1,
        ("amq.fanout", "fanout"): 0,
        ("amq.headers", "headers"): 0,
        ("amq.match", "headers"): 0,
        ("amq.topic", "topic"): 0,
    }
    assert of_vhost("rabbitmq_cluster_exchange_bindings") == {**standard, (f"{vhost}-x", "fanout"): 2}
    assert of_vhost("rabbitmq_cluster_exchange_name") == dict.fromkeys({**standard, (f"{vhost}-x", "fanout"): 0}, 1)


async def test_detailed_queue_figures_match_per_object(prom: Client, broker: BrokerHandle, vhost: str) -> None:
    connection = broker.connect(vhost=vhost)
    try:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=1)
        got: list[pika.spec.Basic.Deliver] = []
        channel.basic_consume(f"{vhost}-q", lambda _ch, method, _p, _b: got.append(method))
        while not got:
            connection.process_data_events(time_limit=0.05)
        detailed = await prom.get(f"/metrics/detailed?family=queue_metrics&family=queue_coarse_metrics&vhost={vhost}")
        per_object = await prom.get("/metrics/per-object")
    finally:
        connection.close()
    compared = 0
    for (name, labels), value in detailed.samples.items():
        if name.startswith("rabbitmq_detailed_queue_"):
            assert per_object.samples[name.replace("_detailed", ""), labels] == value, name
            compared += 1
    assert compared == 11
    assert detailed.value("rabbitmq_detailed_queue_messages_unacked", vhost=vhost, queue=f"{vhost}-q") == 1
