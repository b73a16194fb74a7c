"""Publisher confirms, transactions and the classic queue's length limits (which make a queue
refuse publishes, the case for basic.nack), with RabbitMQ 3.10's codes and texts.

Ordering checks (a basic.return before the ack of its message, tx.commit-ok before the
deliveries a commit causes) need every frame in arrival order, so they use the raw socket client
(``rawamqp.RawClient``); the rest use pika.
"""

from __future__ import annotations

from typing import Any

import pytest
from helpers import closes, get_messages, message_count, new_queue
from pamqp import commands
from pamqp.body import ContentBody
from pamqp.header import ContentHeader
from pika.exceptions import NackError, UnroutableError
from rawamqp import RawClient

# -- helpers ---------------------------------------------------------------------------------


def names(frames: list[Any]) -> list[str]:
    """Frames as short names: Ack(3,m), Nack(2), Return(body), Deliver(body), CommitOk..."""
    out = []
    pending = None
    for value in frames:
        if isinstance(value, commands.Basic.Ack):
            out.append(f"Ack({value.delivery_tag}{',m' if value.multiple else ''})")
        elif isinstance(value, commands.Basic.Nack):
            out.append(f"Nack({value.delivery_tag}{',m' if value.multiple else ''})")
        elif isinstance(value, commands.Basic.Return | commands.Basic.Deliver):
            pending = type(value).__name__
        elif isinstance(value, ContentHeader):
            if value.body_size == 0 and pending:
                out.append(f"{pending}()")
                pending = None
        elif isinstance(value, ContentBody):
            out.append(f"{pending}({value.value.decode()})")
            pending = None
        else:
            out.append(type(value).__name__)
    return out


class Confirms:
    """Publisher confirms as they arrive, expanded: seq -> 'ack' / 'nack', each seq once."""

    def __init__(self) -> None:
        self.outcome: dict[int, str] = {}
        self.order: list[tuple[int, str]] = []  # (seq, outcome) in arrival order

    def add(self, frame: Any, published: int) -> None:
        outcome = "ack" if isinstance(frame, commands.Basic.Ack) else "nack"
        tag = frame.delivery_tag
        if frame.multiple:
            seqs = [seq for seq in range(1, tag + 1) if seq not in self.outcome]
            assert seqs, f"multiple {outcome} {tag} confirms nothing new"
        else:
            assert tag not in self.outcome, f"seq {tag} confirmed twice"
            seqs = [tag]
        assert max(seqs) <= published
        for seq in seqs:
            self.outcome[seq] = outcome
            self.order.append((seq, outcome))


def drain(channel: Any, queue: str) -> list[tuple[bytes, bool]]:
    """(body, redelivered) of every ready message of ``queue``, taken with auto-ack."""
    return [(body, method.redelivered) for method, _props, body in get_messages(channel, queue)]


# -- publisher confirms ----------------------------------------------------------------------


def test_every_publish_is_confirmed_exactly_once(broker, unique):
    raw = RawClient.connected(broker.port)
    raw.rpc(1, commands.Queue.Declare(queue=unique, exclusive=True), commands.Queue.DeclareOk)
    raw.rpc(1, commands.Confirm.Select(), commands.Confirm.SelectOk)
    total = 300
    for seq in range(1, total + 1):
        if seq % 3 == 0:
            raw.publish(1, "amq.fanout", "", b"%d" % seq)  # routed nowhere, not mandatory: still acked
        else:
            raw.publish(1, "", unique, b"%d" % seq)
    confirms = Confirms()
    while len(confirms.outcome) < total:
        value = raw.next().value
        confirms.add(value, total)
    assert confirms.outcome == dict.fromkeys(range(1, total + 1), "ack")
    count = raw.rpc(1, commands.Queue.Declare(queue=unique, passive=True), commands.Queue.DeclareOk
    ).message_count
    assert count == 200
    raw.close()


def test_a_lone_confirm_is_not_multiple(broker, unique):
    raw = RawClient.connected(broker.port)
    raw.rpc(1, commands.Queue.Declare(queue=unique, exclusive=True), commands.Queue.DeclareOk)
    raw.rpc(1, commands.Confirm.Select(), commands.Confirm.SelectOk)
    raw.publish(1, "", unique)
    ack = raw.expect(1, commands.Basic.Ack)
    assert (ack.delivery_tag, ack.multiple) == (1, False)
    raw.close()


def test_mandatory_return_arrives_before_the_ack_of_its_message(broker, unique):
    raw = RawClient.connected(broker.port)
    raw.rpc(1, commands.Queue.Declare(queue=unique, exclusive=True), commands.Queue.DeclareOk)
    raw.rpc(1, commands.Confirm.Select(), commands.Confirm.SelectOk)
    raw.publish(1, "", unique, b"1", mandatory=True)
    raw.publish(1, "", unique + "-nowhere", b"2", mandatory=True)
    raw.publish(1, "", unique, b"3", mandatory=True)
    raw.publish(1, "amq.direct", "nowhere", b"4", mandatory=True)
    confirms = Confirms()
    returned_before_ack: dict[int, bool] = {}
    returns = []
    while len(confirms.outcome) < 4:
        value = raw.next().value
        if isinstance(value, commands.Basic.Return):
            returns.append((value.reply_code, value.reply_text, value.exchange, value.routing_key))
            raw.expect(1, ContentHeader)
            seq = int(raw.expect(1, ContentBody).value)
            returned_before_ack[seq] = seq not in confirms.outcome
        else:
            confirms.add(value, 4)
    assert confirms.outcome == {1: "ack", 2: "ack", 3: "ack", 4: "ack"}
    assert returned_before_ack == {2: True, 4: True}
    assert returns == [
        (312, "NO_ROUTE", "", unique + "-nowhere"),
        (312, "NO_ROUTE", "amq.direct", "nowhere"),
    ]
    raw.close()


def test_pika_confirms_report_unroutable_and_nacked_publishes(connection, unique):
    channel = connection.channel()
    channel.confirm_delivery()
    full = new_queue(channel, **{"x-max-length": 0, "x-overflow": "reject-publish"})
    ok = new_queue(channel)
    channel.basic_publish("", ok, b"fine", mandatory=True)
    with pytest.raises(UnroutableError):
        channel.basic_publish("", unique, b"nowhere", mandatory=True)
    with pytest.raises(NackError):
        channel.basic_publish("", full, b"refused")
    with pytest.raises(NackError):
        channel.basic_publish("", full, b"refused", mandatory=True)  # routed: no return, a nack
    assert drain(channel, ok) == [(b"fine", False)]


def test_nack_when_the_queue_refuses(broker, unique):
    raw = RawClient.connected(broker.port)
    arguments = {"x-max-length": 1, "x-overflow": "reject-publish"}
    raw.rpc(1, commands.Queue.Declare(queue=unique, exclusive=True, arguments=arguments), commands.Queue.DeclareOk
    )
    raw.rpc(1, commands.Confirm.Select(), commands.Confirm.SelectOk)
    for body in (b"a", b"b", b"c"):
        raw.publish(1, "", unique, body)
    confirms = Confirms()
    frames = []
    while len(confirms.outcome) < 3:
        value = raw.next().value
        frames.append(value)
        confirms.add(value, 3)
    assert confirms.outcome == {1: "ack", 2: "nack", 3: "nack"}
    assert all(frame.requeue for frame in frames if isinstance(frame, commands.Basic.Nack))  # as RabbitMQ
    raw.close()


def test_fanout_to_several_queues_is_confirmed_once(broker, connection, unique):
    channel = connection.channel()
    channel.exchange_declare(unique, "fanout", auto_delete=True)
    queues = [new_queue(channel) for _ in range(3)]
    for queue in queues:
        channel.queue_bind(queue, unique)
    raw = RawClient.connected(broker.port)
    raw.rpc(1, commands.Confirm.Select(), commands.Confirm.SelectOk)
    for body in (b"a", b"b", b"c", b"d", b"e"):
        raw.publish(1, unique, "", body)
    confirms = Confirms()
    while len(confirms.outcome) < 5:
        confirms.add(raw.next().value, 5)
    raw.rpc(1, commands.Basic.Qos(), commands.Basic.QosOk)  # no further confirm came before this
    raw.close()
    assert confirms.outcome == dict.fromkeys(range(1, 6), "ack")
    assert [message_count(channel, queue) for queue in queues] == [5, 5, 5]


def test_fanout_with_one_refusing_queue_is_nacked(broker, connection, unique):
    channel = connection.channel()
    channel.exchange_declare(unique, "fanout", auto_delete=True)
    accepting = new_queue(channel)
    refusing = new_queue(channel, **{"x-max-length": 0, "x-overflow": "reject-publish"})
    channel.queue_bind(accepting, unique)
    channel.queue_bind(refusing, unique)
    raw = RawClient.connected(broker.port)
    raw.rpc(1, commands.Confirm.Select(), commands.Confirm.SelectOk)
    raw.publish(1, unique, "", b"m")
    nack = raw.expect(1, commands.Basic.Nack)
    assert nack.delivery_tag == 1
    raw.close()
    assert (message_count(channel, accepting), message_count(channel, refusing)) == (1, 0)


def test_confirm_select_nowait(broker, unique):
    raw = RawClient.connected(broker.port)
    raw.rpc(1, commands.Queue.Declare(queue=unique, exclusive=True), commands.Queue.DeclareOk)
    raw.send(1, commands.Confirm.Select(nowait=True))
    raw.publish(1, "", unique)
    raw.publish(1, "", unique)
    confirms = Confirms()
    while len(confirms.outcome) < 2:
        confirms.add(raw.next().value, 2)
    assert confirms.outcome == {1: "ack", 2: "ack"}
    raw.close()


def test_confirm_select_twice_is_fine(broker):
    raw = RawClient.connected(broker.port)
    raw.rpc(1, commands.Confirm.Select(), commands.Confirm.SelectOk)
    raw.rpc(1, commands.Confirm.Select(), commands.Confirm.SelectOk)
    raw.close()


# -- switching modes and tx without select ---------------------------------------------------


def test_confirm_then_tx_is_406(broker):
    raw = RawClient.connected(broker.port)
    raw.rpc(1, commands.Confirm.Select(), commands.Confirm.SelectOk)
    close = raw.rpc(1, commands.Tx.Select(), commands.Channel.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        406,
        "PRECONDITION_FAILED - cannot switch from confirm to tx mode",
        90,
        10,
    )
    raw.close()


def test_tx_then_confirm_is_406(broker):
    raw = RawClient.connected(broker.port)
    raw.rpc(1, commands.Tx.Select(), commands.Tx.SelectOk)
    raw.rpc(1, commands.Tx.Select(), commands.Tx.SelectOk)  # twice is fine
    close = raw.rpc(1, commands.Confirm.Select(), commands.Channel.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        406,
        "PRECONDITION_FAILED - cannot switch from tx to confirm mode",
        85,
        10,
    )
    raw.close()


@pytest.mark.parametrize(("method", "method_id"), [(commands.Tx.Commit(), 20), (commands.Tx.Rollback(), 30)])
def test_commit_or_rollback_without_select_is_406(broker, method, method_id):
    raw = RawClient.connected(broker.port)
    close = raw.rpc(1, method, commands.Channel.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        406,
        "PRECONDITION_FAILED - channel is not transactional",
        90,
        method_id,
    )
    raw.close()


def test_pika_mode_switch_texts(connection):
    channel = connection.channel()
    channel.confirm_delivery()
    assert closes(channel, channel.tx_select) == (
        406,
        "PRECONDITION_FAILED - cannot switch from confirm to tx mode",
    )
    channel = connection.channel()
    assert closes(channel, channel.tx_commit) == (406, "PRECONDITION_FAILED - channel is not transactional")


# -- transactions: publishes -----------------------------------------------------------------


def test_tx_publishes_wait_for_commit_and_rollback_drops_them(connection, unique):
    channel = connection.channel()
    queue = new_queue(channel)
    channel.tx_select()
    channel.basic_publish("", queue, b"a")
    channel.basic_publish("", queue, b"b")
    assert message_count(channel, queue) == 0
    channel.tx_rollback()
    assert message_count(channel, queue) == 0
    channel.basic_publish("", queue, b"c")
    channel.basic_publish("", queue, b"d")
    channel.tx_commit()
    assert message_count(channel, queue) == 2
    channel.tx_commit()  # an empty transaction commits too
    assert drain(channel, queue) == [(b"c", False), (b"d", False)]


def test_tx_mandatory_unroutable_is_returned_at_commit(broker, unique):
    raw = RawClient.connected(broker.port)
    raw.rpc(1, commands.Tx.Select(), commands.Tx.SelectOk)
    raw.publish(1, "", unique, b"lost", mandatory=True)
    raw.rpc(1, commands.Basic.Qos(), commands.Basic.QosOk)  # nothing returned before the commit
    raw.send(1, commands.Tx.Commit())
    frames = [raw.next().value for _ in range(4)]
    assert names(frames) == ["Return(lost)", "CommitOk"]
    raw.publish(1, "", unique, b"lost", mandatory=True)
    raw.rpc(1, commands.Tx.Rollback(), commands.Tx.RollbackOk)  # rolled back: never returned
    raw.close()


def test_tx_commit_ok_follows_the_deliveries_of_its_publishes(broker, unique):
    raw = RawClient.connected(broker.port)
    raw.rpc(1, commands.Queue.Declare(queue=unique, exclusive=True), commands.Queue.DeclareOk)
    raw.rpc(1, commands.Basic.Consume(queue=unique, consumer_tag="c", no_ack=True), commands.Basic.ConsumeOk)
    raw.rpc(1, commands.Tx.Select(), commands.Tx.SelectOk)
    raw.publish(1, "", unique, b"a")
    raw.publish(1, "", unique, b"b")
    raw.send(1, commands.Tx.Commit())
    frames = [raw.next().value for _ in range(7)]
    assert names(frames) == ["Deliver(a)", "Deliver(b)", "CommitOk"]
    raw.close()


# -- transactions: acks ----------------------------------------------------------------------


def test_tx_acks_take_effect_at_commit(broker, connection, unique):
    channel = connection.channel()
    queue = new_queue(channel)
    for body in (b"a", b"b", b"c"):
        channel.basic_publish("", queue, body)
    channel.tx_select()
    for _ in range(3):
        channel.basic_get(queue)
    channel.basic_ack(2, multiple=True)
    channel.basic_reject(3, requeue=True)
    message_count(channel, queue)

    def unacked() -> int:
        return broker.broker.vhosts["/"].queues[queue].unacked_count

    assert (broker.call(unacked), message_count(channel, queue)) == (3, 0)
    channel.tx_commit()
    assert (broker.call(unacked), drain(channel, queue)) == (0, [(b"c", True)])


def test_tx_rolled_back_acks_leave_messages_unacked(connection, unique):
    keeper = connection.channel()
    queue = new_queue(keeper)
    for body in (b"a", b"b"):
        keeper.basic_publish("", queue, body)
    channel = connection.channel()
    channel.tx_select()
    channel.basic_get(queue)
    channel.basic_get(queue)
    channel.basic_ack(0, multiple=True)
    channel.tx_rollback()
    channel.tx_commit()  # nothing left to commit: the acks were rolled back
    assert message_count(keeper, queue) == 0
    channel.close()
    assert drain(keeper, queue) == [(b"a", True), (b"b", True)]


def test_tx_rolled_back_ack_can_be_made_again(connection, unique):
    channel = connection.channel()
    queue = new_queue(channel)
    channel.basic_publish("", queue, b"a")
    channel.tx_select()
    tag = channel.basic_get(queue)[0].delivery_tag
    channel.basic_ack(tag)
    channel.tx_rollback()
    channel.basic_ack(tag)  # known again after the rollback
    channel.tx_commit()
    channel.close()
    assert drain(connection.channel(), queue) == []


def test_tx_uncommitted_acks_are_requeued_when_the_channel_closes(connection, unique):
    keeper = connection.channel()
    queue = new_queue(keeper)
    for body in (b"a", b"b", b"c"):
        keeper.basic_publish("", queue, body)
    channel = connection.channel()
    channel.tx_select()
    for _ in range(3):
        channel.basic_get(queue)
    channel.basic_ack(1)
    channel.tx_commit()
    channel.basic_ack(2)  # never committed
    channel.close()
    assert drain(keeper, queue) == [(b"b", True), (b"c", True)]


def test_tx_double_ack_is_406(connection, unique):
    channel = connection.channel()
    queue = new_queue(channel)
    channel.basic_publish("", queue, b"a")
    channel.tx_select()
    channel.basic_get(queue)
    channel.basic_ack(1)
    assert closes(channel, lambda: channel.basic_ack(1)) == (
        406,
        "PRECONDITION_FAILED - unknown delivery tag 1",
    )


def test_tx_ack_frees_prefetch_only_at_commit(broker, unique):
    raw = RawClient.connected(broker.port)
    raw.rpc(1, commands.Queue.Declare(queue=unique, exclusive=True), commands.Queue.DeclareOk)
    for body in (b"a", b"b"):
        raw.publish(1, "", unique, body)
    raw.rpc(1, commands.Tx.Select(), commands.Tx.SelectOk)
    raw.rpc(1, commands.Basic.Qos(prefetch_count=1), commands.Basic.QosOk)
    raw.send(1, commands.Basic.Consume(queue=unique, consumer_tag="c"))
    assert names([raw.next().value for _ in range(4)]) == ["ConsumeOk", "Deliver(a)"]
    raw.send(1, commands.Basic.Ack(delivery_tag=1))
    raw.rpc(1, commands.Basic.Recover(requeue=True), commands.Basic.RecoverOk)  # nothing unacked outside the tx
    raw.send(1, commands.Tx.Commit())
    assert names([raw.next().value for _ in range(4)]) == ["CommitOk", "Deliver(b)"]
    raw.close()


def test_tx_nack_requeue_redelivers_after_commit_ok(broker, unique):
    raw = RawClient.connected(broker.port)
    raw.rpc(1, commands.Queue.Declare(queue=unique, exclusive=True), commands.Queue.DeclareOk)
    for body in (b"a", b"b", b"c"):
        raw.publish(1, "", unique, body)
    raw.rpc(1, commands.Tx.Select(), commands.Tx.SelectOk)
    raw.send(1, commands.Basic.Consume(queue=unique, consumer_tag="c"))
    assert names([raw.next().value for _ in range(10)]) == [
        "ConsumeOk",
        "Deliver(a)",
        "Deliver(b)",
        "Deliver(c)",
    ]
    raw.send(1, commands.Basic.Nack(delivery_tag=2, multiple=True, requeue=True))
    raw.send(1, commands.Tx.Commit())
    frames = [raw.next().value for _ in range(7)]
    assert names(frames) == ["CommitOk", "Deliver(a)", "Deliver(b)"]
    assert [frame.redelivered for frame in frames if isinstance(frame, commands.Basic.Deliver)] == [
        True,
        True,
    ]
    raw.close()


# -- length limits of the classic queue ------------------------------------------------------


def test_max_length_drops_the_head(connection, unique):
    channel = connection.channel()
    queue = new_queue(channel, **{"x-max-length": 2})
    for body in (b"a", b"b", b"c"):
        channel.basic_publish("", queue, body)
    assert drain(channel, queue) == [(b"b", False), (b"c", False)]


def test_max_length_bytes_drops_the_head(connection, unique):
    channel = connection.channel()
    queue = new_queue(channel, **{"x-max-length-bytes": 5})
    for body in (b"aa", b"bb", b"cc"):
        channel.basic_publish("", queue, body)
    assert drain(channel, queue) == [(b"bb", False), (b"cc", False)]


def test_max_length_bytes_rejects(connection, unique):
    channel = connection.channel()
    channel.confirm_delivery()
    queue = new_queue(channel, **{"x-max-length-bytes": 5, "x-overflow": "reject-publish"})
    channel.basic_publish("", queue, b"aa")
    channel.basic_publish("", queue, b"bbb")
    with pytest.raises(NackError):
        channel.basic_publish("", queue, b"c")
    assert drain(channel, queue) == [(b"aa", False), (b"bbb", False)]


def test_length_limit_counts_ready_messages_only(connection, unique):
    channel = connection.channel()
    channel.confirm_delivery()
    queue = new_queue(channel, **{"x-max-length": 1, "x-overflow": "reject-publish"})
    channel.basic_publish("", queue, b"a")
    channel.basic_get(queue)  # "a" is unacked: the queue has room again
    channel.basic_publish("", queue, b"b")
    with pytest.raises(NackError):
        channel.basic_publish("", queue, b"c")
    channel.basic_nack(1, requeue=True)  # a requeue is never refused
    assert drain(channel, queue) == [(b"a", True), (b"b", False)]


def test_drop_head_applies_to_requeued_messages(connection, unique):
    channel = connection.channel()
    queue = new_queue(channel, **{"x-max-length": 1})
    channel.basic_publish("", queue, b"a")
    channel.basic_get(queue)
    channel.basic_publish("", queue, b"b")
    channel.basic_reject(1, requeue=True)  # "a" goes back in front of "b", and is dropped
    assert drain(channel, queue) == [(b"b", False)]


def test_reject_publish_still_hands_to_a_consumer_with_room(broker, unique):
    raw = RawClient.connected(broker.port)
    arguments = {"x-max-length": 1, "x-overflow": "reject-publish"}
    raw.rpc(1, commands.Queue.Declare(queue=unique, exclusive=True, arguments=arguments), commands.Queue.DeclareOk
    )
    raw.rpc(1, commands.Confirm.Select(), commands.Confirm.SelectOk)
    raw.rpc(1, commands.Basic.Qos(prefetch_count=1), commands.Basic.QosOk)
    raw.rpc(1, commands.Basic.Consume(queue=unique, consumer_tag="c"), commands.Basic.ConsumeOk)
    for body in (b"a", b"b", b"c", b"d"):
        raw.publish(1, "", unique, body)
    confirms = Confirms()
    delivered = []
    while len(confirms.outcome) < 4:
        value = raw.next().value
        if isinstance(value, commands.Basic.Deliver):
            raw.next()
            delivered.append(raw.next().value.value)
        else:
            confirms.add(value, 4)
    assert (delivered, confirms.outcome) == ([b"a"], {1: "ack", 2: "ack", 3: "nack", 4: "nack"})
    raw.close()


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"x-max-length": -1}, "invalid arg 'x-max-length' for {q}: {{value_negative,-1}}"),
        ({"x-max-length": "x"}, "invalid arg 'x-max-length' for {q}: \"expected integer, got longstr\""),
        ({"x-max-length-bytes": -5}, "invalid arg 'x-max-length-bytes' for {q}: {{value_negative,-5}}"),
        ({"x-overflow": "foo"}, "invalid arg 'x-overflow' for {q}: invalid_overflow"),
        ({"x-overflow": True}, "invalid arg 'x-overflow' for {q}: {{unacceptable_type,bool}}"),
        ({"x-expires": 0}, "invalid arg 'x-expires' for {q}: {{value_zero,0}}"),
        ({"x-expires": 315360000001}, "invalid arg 'x-expires' for {q}: {{value_too_large,315360000001}}"),
        ({"x-message-ttl": -1}, "invalid arg 'x-message-ttl' for {q}: {{value_negative,-1}}"),
        ({"x-max-priority": 300}, "invalid arg 'x-max-priority' for {q}: {{max_value_exceeded,300}}"),
        ({"x-queue-mode": "foo"}, "invalid arg 'x-queue-mode' for {q}: \"unsupported queue mode 'foo'\""),
        ({"x-queue-type": "foo"}, "invalid arg 'x-queue-type' for {q}: \"unsupported queue type 'foo'\""),
        # A quorum queue must be durable (this declare is not).
        ({"x-queue-type": "quorum"}, "invalid property 'non-durable' for {q}"),
        # Not built yet: refused as RabbitMQ refuses a type it does not have, never made classic.
        ({"x-queue-type": "stream"}, "invalid arg 'x-queue-type' for {q}: \"unsupported queue type 'stream'\""),
        (
            {"x-single-active-consumer": "x"},
            "invalid arg 'x-single-active-consumer' for {q}: {{unacceptable_type,longstr}}",
        ),
        (
            {"x-dead-letter-routing-key": "k"},
            "invalid arg 'x-dead-letter-routing-key' for {q}: routing_key_but_no_dlx_defined",
        ),
        ({"x-max-age": "1D"}, "invalid arg 'x-max-age' for {q} of queue type rabbit_classic_queue"),
        (
            {"x-delivery-limit": 5},
            "invalid arg 'x-delivery-limit' for {q} of queue type rabbit_classic_queue",
        ),
        # The first bad argument in RabbitMQ's own order is the one reported.
        ({"x-max-length": -1, "x-expires": -1}, "invalid arg 'x-expires' for {q}: {{value_negative,-1}}"),
        (
            {"x-max-age": "1D", "x-max-length": -1},
            "invalid arg 'x-max-length' for {q}: {{value_negative,-1}}",
        ),
    ],
)
def test_invalid_queue_arguments(connection, unique, arguments, error):
    channel = connection.channel()
    code, text = closes(channel, lambda: channel.queue_declare(unique, arguments=arguments))
    assert (code, text) == (406, "PRECONDITION_FAILED - " + error.format(q=f"queue '{unique}' in vhost '/'"))


def test_valid_queue_arguments_are_accepted(connection, unique):
    channel = connection.channel()
    arguments = {
        "x-max-length": 10,
        "x-max-length-bytes": 1000,
        "x-overflow": "reject-publish-dlx",
        "x-message-ttl": 0,
        "x-expires": 315360000000,
        "x-max-priority": 255,
        "x-queue-mode": "lazy",
        "x-single-active-consumer": False,
        "x-queue-type": "classic",
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "k",
        "x-something-else": "ignored",
    }
    assert channel.queue_declare(unique, exclusive=True, arguments=arguments).method.queue == unique
