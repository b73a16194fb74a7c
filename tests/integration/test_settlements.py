"""Publisher confirms by correlation: a queue's publish may answer with a ``Settlement`` that is
settled later from any source (the message store's batch today, a replica majority tomorrow);
the channel confirms exactly then, in order, and a failed settlement is a nack. Shown with a
queue type registered in-process whose settlements the test settles by hand."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import BrokerHandle, start_broker

from queues.base import Settlement
from queues.classic import ClassicQueue
from queues.registry import register, unregister


class HeldQueue(ClassicQueue):
    """A classic queue that owes a settlement for every publish until told (as a replicated
    queue waits for its replicas)."""

    type_name = "x-test-held"
    held: list[Settlement] = []

    def publish(self, message):  # noqa: ANN001, ANN201
        result = super().publish(message)
        if result is False:
            return False
        settlement = Settlement()
        HeldQueue.held.append(settlement)
        return settlement


@pytest.fixture
def held() -> Iterator[BrokerHandle]:
    register(HeldQueue)
    handle = start_broker()
    HeldQueue.held = []
    yield handle
    handle.stop()
    unregister("x-test-held")


def test_confirms_wait_for_settlements_and_follow_their_outcome(held: BrokerHandle) -> None:
    connection = held.connect()
    channel = connection.channel()
    channel.queue_declare("held-q", arguments={"x-queue-type": "x-test-held"})
    impl = channel._impl
    got: list[tuple[str, int]] = []
    impl.confirm_delivery(lambda frame: got.append((type(frame.method).__name__, frame.method.delivery_tag)))
    connection.process_data_events(time_limit=0.2)
    for i in range(3):
        impl.basic_publish("", "held-q", b"m%d" % i)
    connection.process_data_events(time_limit=0.3)
    assert got == []  # nothing is confirmed while the queue owes its settlements
    first, second, third = held.call(lambda: list(HeldQueue.held))
    held.call(second.settle, True)
    connection.process_data_events(time_limit=0.3)
    assert got == []  # confirms go in order: the first still waits
    held.call(first.settle, True)
    held.call(third.settle, False)
    connection.process_data_events(time_limit=0.3)
    assert got == [("Ack", 2), ("Nack", 3)]  # 1 and 2 as one multiple ack; 3 failed
    assert held.call(lambda: held.broker.vhosts["/"].queues["held-q"].message_count) == 3
    connection.close()
