"""Transactions (tx.select, tx.commit, tx.rollback): a transactional channel's publishes and
acks are held until tx.commit, which routes and settles them, then waits for its queues
before tx.commit-ok; tx.rollback drops them.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from pamqp import commands

from amqp_server.channel.deliveries import REQUEUED, settle_entries
from amqp_server.protocol.errors import PRECONDITION_FAILED, ChannelError
from queues.base import QueueEntry, Settlement, all_settled

if TYPE_CHECKING:
    from amqp_server.channel.channel import Channel


class Transaction:
    """What a transactional channel holds until tx.commit (``Channel.tx`` after tx.select)."""

    __slots__ = ("publishes", "acks", "committing")

    def __init__(self) -> None:
        # Publishes to route at tx.commit, each a call of Channel._route: None when no queue
        # took it, else whether every queue accepted it, or the Settlement(s) it waits for.
        self.publishes: list[Callable[[], Any]] = []
        # basic.ack/nack/reject: the (delivery tag, entry) pairs taken from ``Channel.unacked``
        # and what to do with them (deliveries.ACKED ...); they take effect at tx.commit.
        self.acks: list[tuple[list[tuple[int, QueueEntry]], int]] = []
        # A tx.commit routed messages and its reply is not out yet: the channel refuses other
        # commands meanwhile (Channel._command).
        self.committing = False

    @property
    def acked_count(self) -> int:
        """Messages acked, nacked or rejected in the transaction, not committed yet."""
        return sum(len(taken) for taken, _outcome in self.acks)

    def release(self) -> list[QueueEntry]:
        """Drop the transaction (its channel closes); the messages it acked, to requeue."""
        entries = [entry for taken, _outcome in self.acks for _tag, entry in taken]
        self.publishes = []
        self.acks = []
        return entries


def select(channel: Channel, method: commands.Tx.Select) -> None:
    if channel.confirm_mode:
        raise ChannelError(PRECONDITION_FAILED, "cannot switch from confirm to tx mode", (90, 10))
    if channel.tx is None:
        channel.tx = Transaction()
    channel.reply(commands.Tx.SelectOk())


def commit(channel: Channel, method: commands.Tx.Commit) -> Coroutine[Any, Any, None] | None:
    """Route the transaction's publishes, then settle its acks, then reply.

    As in RabbitMQ, tx.commit-ok follows the deliveries of the committed publishes but
    precedes the redeliveries of messages the transaction requeued, held back until it is
    out. It goes out later (``_commit_ok_later``) when:

    - the commit routed messages to queues: RabbitMQ replies once those queues confirmed
      them and refuses any other command of the channel meanwhile (``committing``, see
      ``Channel._command``); here that wait is one turn of the event loop, so a command sent
      along with the commit is refused. A message a queue refused fails the commit.
    - the commit stored or removed persistent messages: the reply waits for the message
      store to commit the batch holding those changes, and later commands wait with it.
    """
    tx = channel.tx
    if tx is None:
        raise ChannelError(PRECONDITION_FAILED, "channel is not transactional", (90, 20))
    publishes, acks = tx.publishes, tx.acks
    tx.publishes = []
    tx.acks = []
    store = channel.connection.broker.message_store
    routed, accepted = False, True
    settlements: set[Settlement] = set()  # what the commit's queues owe it
    for publish in publishes:
        result = publish()
        if result is None:
            continue
        routed = True
        if result is False:
            accepted = False
        elif result is not True:
            settlements.update(result if isinstance(result, tuple) else (result,))
    stored = False  # a persistent message left a durable queue for good
    if acks:
        # Deliveries stop until tx.commit-ok is out, so that it precedes the redeliveries.
        channel.flow_active = False
        channel.revoke_credit()
        try:
            for taken, outcome in acks:
                entries = [entry for _tag, entry in taken]
                if store is not None and outcome != REQUEUED and not stored:
                    stored = any(entry.stored is not None for entry in entries)
                settle_entries(channel, entries, outcome)
        except BaseException:
            channel.flow_active = True
            raise
    if store is not None and stored:
        settlements.add(store.pending())  # the removals are in the batch now gathering
    if not settlements and not routed:
        _commit_ok(channel, bool(acks))
        return None
    tx.committing = routed
    return _commit_ok_later(channel, tx, settlements, bool(acks), accepted)


async def _commit_ok_later(
    channel: Channel, tx: Transaction, settlements: set[Settlement], acks: bool, accepted: bool
) -> None:
    """tx.commit-ok once the commit is complete: when its queues settled what they owe
    (the message store's batch on disk), else on the next turn of the event loop. A refused
    publish or a failed write fails the commit as a nacked publish does in RabbitMQ
    ("partial tx completion"); a channel closed meanwhile gets nothing.
    """
    try:
        written = await all_settled(settlements)
    finally:
        tx.committing = False
        channel.flow_active = True
    if channel.closing or channel.connection.channels.get(channel.number) is not channel:
        return
    if not (written and accepted):
        raise ChannelError(PRECONDITION_FAILED, "partial tx completion", (90, 20))
    _commit_ok(channel, acks)


def _commit_ok(channel: Channel, acks: bool) -> None:
    channel.flow_active = True
    channel.reply(commands.Tx.CommitOk())
    if acks:
        channel.grant_credit()  # the redeliveries held back by flow_active


def rollback(channel: Channel, method: commands.Tx.Rollback) -> None:
    """Drop the transaction's publishes; its acked messages become unacked again."""
    tx = channel.tx
    if tx is None:
        raise ChannelError(PRECONDITION_FAILED, "channel is not transactional", (90, 30))
    acks = tx.acks
    tx.publishes = []
    tx.acks = []
    if acks:
        unacked = dict(channel.unacked)
        for taken, _outcome in acks:
            unacked.update(taken)
        channel.unacked = dict(sorted(unacked.items()))
    channel.reply(commands.Tx.RollbackOk())
