"""Consumer (delivery acknowledgement) timeout: a channel holding a delivery unacked for longer
than ``consumer_timeout`` is closed with RabbitMQ 3.10's 406 (class 0, method 0) and its
unacked messages are requeued; the connection and its other channels stay open (recorded against RabbitMQ 3.10.8)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from helpers import read_message
from pamqp import commands
from rawamqp import RawClient

from tests.conftest import BrokerHandle, start_broker

TIMEOUT_MS = 500


def timed_out_text(channel: int) -> str:
    return (
        f"PRECONDITION_FAILED - delivery acknowledgement on channel {channel} timed out. Timeout value used: "
        f"{TIMEOUT_MS} ms. This timeout value can be configured, see consumers doc guide to learn more"
    )


@pytest.fixture(scope="module")
def timeout_broker() -> Iterator[BrokerHandle]:
    handle = start_broker(consumer_timeout_ms=TIMEOUT_MS)
    yield handle
    handle.stop()


def test_default_is_thirty_minutes(broker):
    assert broker.broker.config.consumer_timeout_ms == 1_800_000


def test_unacked_delivery_closes_the_channel(timeout_broker, unique):
    raw = RawClient.connected(timeout_broker.port)
    raw.rpc(1, commands.Queue.Declare(queue=unique, exclusive=True), commands.Queue.DeclareOk)
    raw.publish(1, "", unique, b"m0")
    raw.publish(1, "", unique, b"m1")
    raw.rpc(1, commands.Basic.Consume(queue=unique, consumer_tag="slow"), commands.Basic.ConsumeOk)
    assert read_message(raw, 1, commands.Basic.Deliver).delivery_tag == 1
    assert read_message(raw, 1, commands.Basic.Deliver).delivery_tag == 2
    raw.send(1, commands.Basic.Ack(delivery_tag=1))  # one acked, the other left unacked
    close = raw.expect(1, commands.Channel.Close, timeout=5)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        406,
        timed_out_text(1),
        0,
        0,
    )
    raw.send(1, commands.Channel.CloseOk())
    # The connection stays; the unacked message went back to the queue.
    raw.open_channel(2)
    ok = raw.rpc(2, commands.Queue.Declare(queue=unique, passive=True), commands.Queue.DeclareOk)
    assert (ok.message_count, ok.consumer_count) == (1, 0)
    raw.close()


def test_unacked_basic_get_closes_the_channel(timeout_broker, unique):
    raw = RawClient.connected(timeout_broker.port)
    raw.open_channel(3)
    raw.rpc(3, commands.Queue.Declare(queue=unique, exclusive=True), commands.Queue.DeclareOk)
    raw.publish(3, "", unique, b"m")
    raw.send(3, commands.Basic.Get(queue=unique, no_ack=False))
    read_message(raw, 3, commands.Basic.GetOk)
    close = raw.expect(3, commands.Channel.Close, timeout=5)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        406,
        timed_out_text(3),
        0,
        0,
    )
    raw.send(3, commands.Channel.CloseOk())
    ok = raw.rpc(1, commands.Queue.Declare(queue=unique, passive=True), commands.Queue.DeclareOk)
    assert ok.message_count == 1  # channel 1 was untouched and the message is back
    raw.close()


def test_channels_that_ack_or_hold_nothing_stay_open(timeout_broker, unique):
    """Channels with prompt acks, no-ack consumers or nothing unacked are never closed."""
    raw = RawClient.connected(timeout_broker.port)
    raw.rpc(1, commands.Queue.Declare(queue=unique, exclusive=True), commands.Queue.DeclareOk)
    raw.open_channel(2)
    raw.rpc(2, commands.Basic.Consume(queue=unique, consumer_tag="fast"), commands.Basic.ConsumeOk)
    raw.open_channel(3)
    raw.rpc(3, commands.Queue.Declare(queue=unique + "-n", exclusive=True), commands.Queue.DeclareOk)
    raw.rpc(3, commands.Basic.Consume(queue=unique + "-n", no_ack=True), commands.Basic.ConsumeOk)
    deadline = time.monotonic() + 3 * TIMEOUT_MS / 1000
    n = 0
    while time.monotonic() < deadline:
        raw.publish(1, "", unique, b"m")
        tag = read_message(raw, 2, commands.Basic.Deliver).delivery_tag
        raw.send(2, commands.Basic.Ack(delivery_tag=tag))
        raw.publish(1, "", unique + "-n", b"n")
        read_message(raw, 3, commands.Basic.Deliver)
        n += 1
        time.sleep(0.1)
    # Every channel is still open: each answers a round trip (a channel.close would come first).
    for number in (1, 2, 3):
        raw.rpc(number, commands.Basic.Qos(), commands.Basic.QosOk)
    assert n >= 5
    raw.close()
