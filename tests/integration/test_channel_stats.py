"""Per-channel and per-connection counters (``Channel.stats()``, ``Connection.stats()``), named
as RabbitMQ's management API names them (recorded against RabbitMQ 3.10.8). They are plain counters kept on the message path; octets are
counted per socket read and write."""

from __future__ import annotations

from typing import Any

from helpers import read_message, server_connection
from pamqp import commands
from pamqp import frame as pframe
from rawamqp import RawClient


def channel_stats(broker: Any, client: RawClient, number: int) -> dict[str, Any]:
    connection = server_connection(broker, client)
    return broker.call(lambda: connection.channels[number].stats())


def test_channel_counters(broker, unique):
    raw = RawClient.connected(broker.port)
    raw.rpc(1, commands.Queue.Declare(queue=unique, exclusive=True), commands.Queue.DeclareOk)
    raw.rpc(1, commands.Confirm.Select(), commands.Confirm.SelectOk)
    raw.rpc(1, commands.Basic.Qos(prefetch_count=5), commands.Basic.QosOk)
    for n in range(4):
        raw.publish(1, "", unique, b"m%d" % n)
        raw.expect(1, commands.Basic.Ack)
    raw.publish(1, "", unique + "-nowhere", b"lost")  # unroutable: dropped
    raw.expect(1, commands.Basic.Ack)
    raw.publish(1, "", unique + "-nowhere", b"back", mandatory=True)  # unroutable: returned
    read_message(raw, 1, commands.Basic.Return)
    raw.expect(1, commands.Basic.Ack)
    raw.send(1, commands.Basic.Get(queue=unique, no_ack=True))
    read_message(raw, 1, commands.Basic.GetOk)  # m0, no ack
    raw.send(1, commands.Basic.Get(queue=unique, no_ack=False))
    got = read_message(raw, 1, commands.Basic.GetOk)  # m1, to be nacked back
    raw.send(1, commands.Basic.Nack(delivery_tag=got.delivery_tag, requeue=True))
    raw.rpc(1, commands.Basic.Consume(queue=unique, consumer_tag="c"), commands.Basic.ConsumeOk)
    tags = [read_message(raw, 1, commands.Basic.Deliver) for _ in range(3)]  # m1 (redelivered), m2, m3
    assert [d.redelivered for d in tags] == [True, False, False]
    raw.send(1, commands.Basic.Ack(delivery_tag=tags[1].delivery_tag, multiple=True))  # acks 2
    raw.rpc(1, commands.Basic.Cancel(consumer_tag="c"), commands.Basic.CancelOk)
    raw.rpc(1, commands.Basic.Get(queue=unique), commands.Basic.GetEmpty)
    stats = channel_stats(broker, raw, 1)
    assert stats["message_stats"] == {
        "publish": 6,
        "confirm": 6,
        "return_unroutable": 1,
        "drop_unroutable": 1,
        "deliver": 3,
        "deliver_no_ack": 0,
        "get": 1,
        "get_no_ack": 1,
        "get_empty": 1,
        "deliver_get": 5,
        "redeliver": 1,
        "ack": 2,
    }
    assert {k: v for k, v in stats.items() if k != "message_stats"} == {
        "number": 1,
        "consumer_count": 0,
        "messages_unacknowledged": 1,
        "messages_unconfirmed": 0,
        "messages_uncommitted": 0,
        "acks_uncommitted": 0,
        "prefetch_count": 5,
        "global_prefetch_count": 0,
        "confirm": True,
        "transactional": False,
    }
    raw.close()


def test_consumers_no_ack_deliveries_and_transactions(broker, unique):
    raw = RawClient.connected(broker.port)
    raw.rpc(1, commands.Queue.Declare(queue=unique, exclusive=True), commands.Queue.DeclareOk)
    raw.rpc(1, commands.Basic.Consume(queue=unique, consumer_tag="a", no_ack=True), commands.Basic.ConsumeOk)
    raw.rpc(1, commands.Basic.Consume(queue="amq.rabbitmq.reply-to", no_ack=True), commands.Basic.ConsumeOk)
    raw.rpc(1, commands.Tx.Select(), commands.Tx.SelectOk)
    raw.publish(1, "", unique, b"m")
    raw.publish(1, "", unique, b"m")
    raw.rpc(1, commands.Basic.Qos(), commands.Basic.QosOk)  # the publishes are in
    stats = channel_stats(broker, raw, 1)
    # The direct reply-to consumer is not counted (rabbit_channel counts its consumer mapping).
    assert (stats["consumer_count"], stats["messages_uncommitted"], stats["transactional"]) == (1, 2, True)
    assert stats["message_stats"]["publish"] == 2 and stats["message_stats"]["deliver_no_ack"] == 0
    raw.send(1, commands.Tx.Commit())
    read_message(raw, 1, commands.Basic.Deliver)
    read_message(raw, 1, commands.Basic.Deliver)
    raw.expect(1, commands.Tx.CommitOk)
    stats = channel_stats(broker, raw, 1)
    assert stats["messages_uncommitted"] == 0
    assert (stats["message_stats"]["deliver_no_ack"], stats["message_stats"]["deliver_get"]) == (2, 2)
    raw.close()


def test_connection_octets_are_exact(broker):
    raw = RawClient.connected(broker.port)
    connection = server_connection(broker, raw)
    before = broker.call(connection.stats)
    request = pframe.marshal(commands.Basic.Qos(prefetch_count=3), 1)
    raw.send_raw(request)
    raw.expect(1, commands.Basic.QosOk)
    after = broker.call(connection.stats)
    assert after["recv_oct"] - before["recv_oct"] == len(request)
    assert after["send_oct"] - before["send_oct"] == len(pframe.marshal(commands.Basic.QosOk(), 1))
    assert after["recv_cnt"] > before["recv_cnt"] and after["send_cnt"] == before["send_cnt"] + 1
    assert (after["user"], after["vhost"], after["state"], after["channels"], after["auth_mechanism"]) == (
        "guest",
        "/",
        "running",
        1,
        "PLAIN",
    )
    raw.close()


def test_connection_totals_include_closed_channels(broker, unique):
    raw = RawClient.connected(broker.port)
    raw.rpc(1, commands.Queue.Declare(queue=unique, exclusive=True), commands.Queue.DeclareOk)
    raw.open_channel(2)
    for channel in (1, 2):
        raw.publish(channel, "", unique, b"m")
    raw.rpc(2, commands.Channel.Close(200, "bye", 0, 0), commands.Channel.CloseOk)
    raw.send(1, commands.Basic.Get(queue=unique, no_ack=False))
    read_message(raw, 1, commands.Basic.GetOk)
    stats = broker.call(server_connection(broker, raw).stats)
    assert stats["channels"] == 1 and stats["messages_unacknowledged"] == 1
    assert (stats["message_stats"]["publish"], stats["message_stats"]["get"]) == (2, 1)
    raw.close()
