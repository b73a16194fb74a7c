"""The figures of /metrics and /metrics/per-object after driving the broker with pika:
queues, channels, connections, totals, the global counters, churn, the node and identity."""

from __future__ import annotations

import asyncio
import platform
from typing import TYPE_CHECKING, Any

import pika
import pytest
from conftest import BrokerHandle
from helpers import connect_named, publish, server_connection, wait_until
from pika.exceptions import UnroutableError

from amqp_server import __version__

if TYPE_CHECKING:
    from tests.prometheus.conftest import Client, Scrape


def label_of(broker: BrokerHandle, name: str) -> str:
    """The ``channel`` label of the connection pika opened as ``name`` (connect_named)."""
    connection = server_connection(broker, name)
    assert connection is not None
    return broker.call(lambda: connection.name)


def consume(connection: pika.BlockingConnection, channel: Any, queue: str, *, auto_ack: bool = False) -> list[Any]:
    """Start a consumer; the list its deliveries' methods go to."""
    got: list[Any] = []
    channel.basic_consume(queue, lambda _ch, method, _props, _body: got.append(method), auto_ack=auto_ack)
    return got


async def test_queue_figures(prom: Client, broker: BrokerHandle, unique: str) -> None:
    connection = connect_named(broker, unique)
    try:
        channel = connection.channel()
        channel.queue_declare(unique)
        publish(channel, unique, b"12345", b"12345", b"12345")
        consumer = connection.channel()
        consumer.basic_qos(prefetch_count=1)
        got = consume(connection, consumer, unique)
        wait_until(connection, lambda: got)
        scrape = await prom.get("/metrics/per-object")
        figures = {
            "rabbitmq_queue_messages_ready": 2,
            "rabbitmq_queue_messages_unacked": 1,
            "rabbitmq_queue_messages": 3,
            "rabbitmq_queue_consumers": 1,
            "rabbitmq_queue_messages_ram": 3,
            "rabbitmq_queue_messages_ready_ram": 2,
            "rabbitmq_queue_messages_unacked_ram": 1,
            "rabbitmq_queue_messages_bytes": 15,
            "rabbitmq_queue_messages_ready_bytes": 10,
            "rabbitmq_queue_messages_unacked_bytes": 5,
            "rabbitmq_queue_messages_paged_out": 0,
        }
        assert {name: scrape.value(name, vhost="/", queue=unique) for name in figures} == figures
        assert scrape.value("rabbitmq_queue_messages_published_total", queue_vhost="/", queue=unique) == 3
        consumer.basic_ack(got[0].delivery_tag)
        wait_until(connection, lambda: len(got) == 2)
        scrape = await prom.get("/metrics/per-object")
        assert scrape.value("rabbitmq_queue_messages", vhost="/", queue=unique) == 2
        assert scrape.value("rabbitmq_queue_messages_unacked", vhost="/", queue=unique) == 1
        channel.queue_delete(unique)
        scrape = await prom.get("/metrics/per-object")
        assert scrape.value("rabbitmq_queue_messages", vhost="/", queue=unique) is None
    finally:
        connection.close()


async def test_channel_figures(prom: Client, broker: BrokerHandle, unique: str) -> None:
    connection = connect_named(broker, unique)
    try:
        publisher = connection.channel()
        publisher.confirm_delivery()
        publisher.queue_declare(unique, exclusive=True)
        publisher.queue_declare(f"{unique}-auto", exclusive=True)
        publish(publisher, unique, b"a", b"b")
        with pytest.raises(UnroutableError):
            publisher.basic_publish("", f"{unique}-nowhere", b"c", mandatory=True)
        publisher.basic_publish("", f"{unique}-nowhere", b"d")
        publish(publisher, f"{unique}-auto", b"e")

        consumer = connection.channel()
        consumer.basic_qos(prefetch_count=5)
        method, _props, _body = consumer.basic_get(unique)
        consumer.basic_ack(method.delivery_tag)
        assert consumer.basic_get(unique, auto_ack=True)[0] is not None
        assert consumer.basic_get(unique)[0] is None
        publish(publisher, unique, b"f", b"g")
        got = consume(connection, consumer, unique)
        wait_until(connection, lambda: len(got) == 2)
        consumer.basic_nack(got[0].delivery_tag, requeue=True)
        wait_until(connection, lambda: len(got) == 3)
        consumer.basic_ack(got[1].delivery_tag)
        auto = consume(connection, consumer, f"{unique}-auto", auto_ack=True)
        wait_until(connection, lambda: auto)

        scrape = await prom.get("/metrics/per-object")
        name = label_of(broker, unique)
        pub = {"channel": f"{name} ({publisher.channel_number})", "vhost": "/"}
        con = {"channel": f"{name} ({consumer.channel_number})", "vhost": "/"}
        assert {
            family: scrape.value(f"rabbitmq_channel_messages_{family}_total", **pub)
            for family in ("published", "confirmed", "unroutable_returned", "unroutable_dropped")
        } == {"published": 7, "confirmed": 7, "unroutable_returned": 1, "unroutable_dropped": 1}
        assert scrape.value("rabbitmq_channel_messages_published_total", **con) == 0
        assert {
            family: scrape.value(f"rabbitmq_channel_{family}_total", **con)
            for family in (
                "get_ack",
                "get",
                "get_empty",
                "messages_delivered_ack",
                "messages_delivered",
                "messages_redelivered",
                "messages_acked",
            )
        } == {
            "get_ack": 1,
            "get": 1,
            "get_empty": 1,
            "messages_delivered_ack": 3,
            "messages_delivered": 1,
            "messages_redelivered": 1,
            "messages_acked": 2,
        }
        only = {"channel": con["channel"]}
        assert scrape.value("rabbitmq_channel_consumers", **only) == 2
        assert scrape.value("rabbitmq_channel_messages_unacked", **only) == 1
        assert scrape.value("rabbitmq_consumer_prefetch", **only) == 5
        assert scrape.value("rabbitmq_channel_prefetch", **only) == 0
        assert scrape.value("rabbitmq_channel_messages_unconfirmed", channel=pub["channel"]) == 0
        assert scrape.value("rabbitmq_channel_messages_uncommitted", channel=pub["channel"]) == 0
        assert scrape.value("rabbitmq_channel_acks_uncommitted", channel=pub["channel"]) == 0

        transactional = connection.channel()
        transactional.tx_select()
        publish(transactional, unique, b"h", b"i")
        consumer.basic_ack(got[2].delivery_tag)
        scrape = await prom.get("/metrics/per-object")
        tx = {"channel": f"{name} ({transactional.channel_number})"}
        assert scrape.value("rabbitmq_channel_messages_uncommitted", **tx) == 2
        transactional.tx_rollback()
    finally:
        connection.close()


async def test_connection_figures(prom: Client, broker: BrokerHandle, unique: str) -> None:
    connection = connect_named(broker, unique)
    try:
        connection.channel()
        connection.channel().queue_declare("", exclusive=True)
        scrape = await prom.get("/metrics/per-object")
        label = {"channel": label_of(broker, unique)}  # RabbitMQ's label name for a connection
        server = server_connection(broker, unique)
        counters = broker.call(lambda: (server.recv_oct, server.send_oct, server.recv_cnt, server.send_cnt))
        assert (
            scrape.value("rabbitmq_connection_incoming_bytes_total", **label),
            scrape.value("rabbitmq_connection_outgoing_bytes_total", **label),
            scrape.value("rabbitmq_connection_incoming_packets_total", **label),
            scrape.value("rabbitmq_connection_outgoing_packets_total", **label),
        ) == counters
        assert min(counters) > 0
        assert scrape.value("rabbitmq_connection_channels", **label) == 2
        assert scrape.value("rabbitmq_connection_pending_packets", **label) == 0
    finally:
        connection.close()


def sums(scrape: Scrape) -> dict[str, float]:
    """Per family, the sum of its labelled samples."""
    totals: dict[str, float] = {}
    for (name, labels), value in scrape.samples.items():
        if labels:
            totals[name] = totals.get(name, 0) + value
    return totals


TOTALS = ("rabbitmq_connections", "rabbitmq_channels", "rabbitmq_consumers", "rabbitmq_queues")


async def quiet_pair(prom: Client) -> tuple[Scrape, Scrape]:
    """A per-object and an aggregated scrape of one state: the broker is shared, and an earlier
    test's connection may still be closing, so scrape until the totals hold still across both."""
    for _ in range(50):
        per_object = await prom.get("/metrics/per-object")
        aggregated = await prom.get("/metrics")
        again = await prom.get("/metrics/per-object")
        if all(per_object.value(name) == again.value(name) for name in TOTALS):
            return per_object, aggregated
        await asyncio.sleep(0.1)
    raise AssertionError("the broker's totals did not hold still for three scrapes")


async def test_aggregates_are_sums_of_objects(prom: Client, broker: BrokerHandle, unique: str) -> None:
    """/metrics gives, for each queue and channel family, the sum of /metrics/per-object's
    samples; the totals and global counters are the same in both."""
    connection = connect_named(broker, unique)
    try:
        channel = connection.channel()
        channel.queue_declare(unique, exclusive=True)
        publish(channel, unique, b"x" * 10, b"y" * 20)
        consumer = connection.channel()
        got = consume(connection, consumer, unique)
        wait_until(connection, lambda: len(got) == 2)
        per_object, aggregated = await quiet_pair(prom)
    finally:
        connection.close()
    compared = 0
    for name, total in sums(per_object).items():
        if name.startswith(("rabbitmq_queue_", "rabbitmq_channel_", "rabbitmq_consumer_")):
            assert aggregated.value(name) == total, name
            compared += 1
        elif name.startswith("rabbitmq_global_"):
            assert aggregated.labelled(name) == per_object.labelled(name), name
    assert compared == 30  # every queue and channel family
    for name in TOTALS:
        assert aggregated.value(name) == per_object.value(name), name


async def test_totals(prom: Client, broker: BrokerHandle, unique: str) -> None:
    connection = connect_named(broker, unique)
    try:
        channel = connection.channel()
        channel.queue_declare(unique, exclusive=True)
        consume(connection, channel, unique)
        scrape = await prom.get("/metrics")

        def totals() -> tuple[int, int, int, int]:
            open_connections = [c for c in broker.broker.connections if c.vhost is not None]
            channels = [ch for c in open_connections for ch in c.channels.values()]
            queues = sum(len(v.queues) for v in broker.broker.vhosts.values())
            return len(open_connections), len(channels), sum(len(ch.consumers) for ch in channels), queues

        assert (
            scrape.value("rabbitmq_connections"),
            scrape.value("rabbitmq_channels"),
            scrape.value("rabbitmq_consumers"),
            scrape.value("rabbitmq_queues"),
        ) == broker.call(totals)
        assert scrape.value("rabbitmq_consumers") >= 1
    finally:
        connection.close()


def global_value(scrape: Scrape, name: str) -> float:
    """A rabbitmq_global_ counter: its amqp091 sample, the classic queues' for per-type ones."""
    full = f"rabbitmq_global_{name}"
    value = scrape.value(full, protocol="amqp091")
    if value is None:
        value = scrape.value(full, protocol="amqp091", queue_type="rabbit_classic_queue")
        assert scrape.value(full, protocol="amqp091", queue_type="rabbit_quorum_queue") == 0
        assert scrape.value(full, protocol="amqp091", queue_type="rabbit_stream_queue") == 0
    assert value is not None, name
    return value


async def test_global_counters(prom: Client, broker: BrokerHandle, unique: str) -> None:
    names = (
        "messages_received_total",
        "messages_received_confirm_total",
        "messages_confirmed_total",
        "messages_routed_total",
        "messages_unroutable_dropped_total",
        "messages_delivered_total",
        "messages_delivered_get_manual_ack_total",
        "messages_delivered_consume_auto_ack_total",
        "messages_acknowledged_total",
        "messages_get_empty_total",
        "consumers",
        "publishers",
    )
    before = await prom.get("/metrics")
    connection = connect_named(broker, unique)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare(unique, exclusive=True)
        publish(channel, unique, b"1", b"2", b"3")
        channel.basic_publish("", f"{unique}-nowhere", b"4")
        getter = connection.channel()
        method, _props, _body = getter.basic_get(unique)
        getter.basic_ack(method.delivery_tag)
        got = consume(connection, getter, unique, auto_ack=True)
        wait_until(connection, lambda: len(got) == 2)
        assert getter.basic_get(unique)[0] is None
        after = await prom.get("/metrics")
    finally:
        connection.close()
    delta = {name: global_value(after, name) - global_value(before, name) for name in names}
    assert delta == {
        "messages_received_total": 4,
        "messages_received_confirm_total": 4,
        "messages_confirmed_total": 4,
        "messages_routed_total": 3,
        "messages_unroutable_dropped_total": 1,
        "messages_delivered_total": 3,
        "messages_delivered_get_manual_ack_total": 1,
        "messages_delivered_consume_auto_ack_total": 2,
        "messages_acknowledged_total": 1,
        "messages_get_empty_total": 1,
        "consumers": 1,
        "publishers": 1,
    }


def emits(broker: BrokerHandle, *names: str) -> bool:
    """Whether opening and closing a connection with a channel emits the events ``names``."""
    seen: list[str] = []
    unsubscribe = broker.call(broker.broker.events.subscribe, lambda event: seen.append(event.name), *names)
    try:
        connection = broker.connect()
        connection.channel().close()
        connection.close()
        wait_until(None, lambda: len(seen) >= len(names), limit=0.5, message="")
    except AssertionError:
        pass
    finally:
        broker.call(unsubscribe)
    return set(names) <= set(seen)


async def test_queue_churn(prom: Client, broker: BrokerHandle, unique: str) -> None:
    keys = ("rabbitmq_queues_declared_total", "rabbitmq_queues_created_total", "rabbitmq_queues_deleted_total")
    before = await prom.get("/metrics")
    connection = broker.connect()
    try:
        channel = connection.channel()
        channel.queue_declare(unique)
        channel.queue_declare(f"{unique}-2", auto_delete=True)
        channel.queue_delete(unique)
        channel.basic_cancel(channel.basic_consume(f"{unique}-2", lambda *_: None))  # auto-deleted
        after = await prom.get("/metrics")
    finally:
        connection.close()
    assert [after.value(key) - before.value(key) for key in keys] == [2, 2, 2]


async def test_connection_and_channel_churn(prom: Client, broker: BrokerHandle, unique: str) -> None:
    """Counted from the connection.* and channel.* events, when the broker emits them; and a
    closed channel's message counters stay in the global ones."""
    if not emits(broker, "connection.created", "connection.closed", "channel.created", "channel.closed"):
        pytest.skip("the broker emits no connection.created/closed and channel.created/closed events")
    keys = (
        "rabbitmq_connections_opened_total",
        "rabbitmq_connections_closed_total",
        "rabbitmq_channels_opened_total",
        "rabbitmq_channels_closed_total",
    )
    before = await prom.get("/metrics")
    connection = connect_named(broker, unique)
    channel = connection.channel()
    channel.queue_declare(unique, exclusive=True)
    publish(channel, unique, b"1", b"2")
    connection.channel().close()
    connection.close()
    wait_until(None, lambda: server_connection(broker, unique) is None)
    after = await prom.get("/metrics")
    assert [after.value(key) - before.value(key) for key in keys] == [1, 1, 2, 2]
    assert global_value(after, "messages_received_total") - global_value(before, "messages_received_total") == 2


async def test_node_figures(prom: Client, broker: BrokerHandle) -> None:
    scrape = await prom.get("/metrics")
    alarms = broker.broker.alarms
    assert 0 < scrape.value("rabbitmq_process_open_fds") <= scrape.value("rabbitmq_process_max_fds")
    assert scrape.value("rabbitmq_process_open_tcp_sockets") >= scrape.value("rabbitmq_connections")
    assert scrape.value("rabbitmq_process_resident_memory_bytes") > 10_000_000
    assert scrape.value("rabbitmq_resident_memory_limit_bytes") == broker.call(lambda: alarms.memory_limit)
    assert scrape.value("rabbitmq_disk_space_available_bytes") > 0
    assert scrape.value("rabbitmq_disk_space_available_limit_bytes") == broker.call(lambda: alarms.disk_limit)
    assert scrape.value("process_start_time_seconds") > 1_600_000_000
    assert scrape.value("process_cpu_seconds_total") > 0
    for alarm in ("file_descriptor_limit", "free_disk_space_watermark", "memory_used_watermark"):
        assert scrape.value(f"rabbitmq_alarms_{alarm}") == 0


async def test_memory_alarm(prom: Client, broker: BrokerHandle) -> None:
    config = broker.broker.config
    relative, absolute = config.vm_memory_high_watermark, config.vm_memory_high_watermark_absolute
    alarms = broker.broker.alarms
    broker.call(lambda: alarms.set_memory_high_watermark(absolute=1))
    try:
        scrape = await prom.get("/metrics")
        assert scrape.value("rabbitmq_alarms_memory_used_watermark") == 1
        assert scrape.value("rabbitmq_resident_memory_limit_bytes") == 1
    finally:
        if absolute is None:
            broker.call(lambda: alarms.set_memory_high_watermark(relative=relative))
        else:
            broker.call(lambda: alarms.set_memory_high_watermark(absolute=absolute))
    assert (await prom.get("/metrics")).value("rabbitmq_alarms_memory_used_watermark") == 0


async def test_identity_and_build_info(prom: Client, broker: BrokerHandle) -> None:
    scrape = await prom.get("/metrics")
    node = broker.broker.node_name
    assert scrape.labelled("rabbitmq_identity_info") == {
        (("rabbitmq_cluster", broker.admin.cluster_name()), ("rabbitmq_node", node)): 1
    }
    [(labels, value)] = scrape.labelled("rabbitmq_build_info").items()
    assert value == 1
    assert dict(labels) == {
        "product_name": "amqp-server",
        "product_version": __version__,
        "rabbitmq_version": "3.10.8",
        "prometheus_plugin_version": "3.10.8",
        "erlang_version": platform.python_version(),
    }
    # The permanent id RabbitMQ keeps as a global parameter (a definitions import brings it).
    broker.run(broker.admin.set_global_parameter("internal_cluster_id", "rabbitmq-cluster-id-test"))
    try:
        scrape = await prom.get("/metrics/per-object")
        [labels] = scrape.labelled("rabbitmq_identity_info")
        assert dict(labels)["rabbitmq_cluster_permanent_id"] == "rabbitmq-cluster-id-test"
    finally:
        broker.run(broker.admin.clear_global_parameter("internal_cluster_id"))
