"""A queue whose home is another node: what this node builds for it when applying its metadata.

Every node applies the same metadata; the queue's record names its home node, and only that
node builds the real queue (queues.registry's type). The others build this proxy. With no
cluster link to the home node (a single node started under a new name, or the home node is
down) the queue is absent, as RabbitMQ has it: declare, bind, consume, get, purge and delete
answer ``NOT_FOUND - home node 'N' of durable queue 'q' in vhost '/' is down or inaccessible``
(the vhost asks ``home_reachable``); unbinding, a metadata-only change, still works.

A publish routed to an absent queue is refused (a confirm is a nack). RabbitMQ 3.10 drops it
and still confirms it, which loses a confirmed message; here the publisher is told.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from queues.base import Consumer, QueueEntry, QueueType


class RemoteQueue(QueueType):
    """The proxy of a queue homed on another node (of the record's type, e.g. classic)."""

    home_reachable = False

    def __init__(self, queue_type: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.type_name = queue_type  # type: ignore[misc]  # the real queue's type, for the admin surfaces

    def stats(self) -> dict[str, Any]:
        return {"state": "down", "messages": 0, "messages_ready": 0, "messages_unacknowledged": 0, "consumers": 0}

    def publish(self, message: Any) -> bool:
        return False

    def get(self) -> QueueEntry | None:
        return None

    def add_consumer(self, consumer: Consumer) -> None:
        raise AssertionError("the vhost refuses consumers of an absent queue")

    def remove_consumer(self, consumer: Consumer) -> None:
        pass  # it never had any

    def dispatch(self) -> None:
        pass

    def settle(self, entry: QueueEntry) -> None:
        raise AssertionError("an absent queue delivers nothing to settle")

    def discard(self, entry: QueueEntry, reason: str) -> None:
        raise AssertionError("an absent queue delivers nothing to discard")

    def requeue(self, entries: Iterable[QueueEntry]) -> None:
        raise AssertionError("an absent queue delivers nothing to requeue")

    def purge(self) -> int:
        return 0

    def delete(self) -> int:
        return 0  # its messages stay with the home node

    @property
    def message_count(self) -> int:
        return 0

    @property
    def consumer_count(self) -> int:
        return 0

    @property
    def unacked_count(self) -> int:
        return 0
