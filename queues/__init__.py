"""Queue types: the queue contract and the classic queue."""

from queues.base import Consumer, QueueEntry, QueueType

__all__ = ["Consumer", "QueueEntry", "QueueType"]
