"""Publisher confirms (confirm.select): which publishes are acked or nacked, and when.

A publish is confirmed once every queue that took it has it: at once for most, or when the
queue's ``Settlement`` settles (a persistent message waits for the message store's batch).
Confirms are gathered during a tick and written, coalesced as rabbit_channel does, just before
the connection writes (``Connection._flush`` calls ``emit``), so a return precedes its confirm.

The channel's route step (``Channel._route``) records each outcome straight into the
tracker's ``acks``, ``nacks`` and ``pending``: those lists are bound on the channel and never
replaced, so a confirm costs no call and no attribute hop per message.
"""

from __future__ import annotations

import struct
from bisect import bisect_left
from collections import deque
from typing import TYPE_CHECKING

from pamqp import commands

from amqp_server.protocol.errors import PRECONDITION_FAILED, ChannelError
from amqp_server.protocol.frame_codec import BASIC_ACK, BASIC_NACK, FRAME_METHOD, encode_ack, frame
from queues.base import Settlement

if TYPE_CHECKING:
    from amqp_server.channel.channel import Channel

_NACK = struct.Struct(">IQB")  # basic.nack: class/method, delivery tag, bits (multiple=1, requeue=2)


class ConfirmTracker:
    """The confirms a channel owes its publisher."""

    __slots__ = ("channel", "acks", "nacks", "pending", "_sorted")

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.acks: list[int] = []  # publish seqs to confirm at the end of this tick
        self.nacks: list[int] = []
        # Confirms waiting for their queues to settle them: (settlement, seq) in seq order; the
        # settlement is a tuple when several queues each owe one. Nothing is allocated here for
        # a publish confirmed at once.
        self.pending: deque[tuple[Settlement | tuple[Settlement, ...], int]] = deque()
        self._sorted = True  # False once settled confirms joined ``acks`` out of order

    def settled(self, _settlement: Settlement) -> None:
        """A settlement some confirms wait for is settled: confirm the publishes at the head of
        the line whose queues have all settled them (an ack, or a nack when one failed)."""
        waits = self.pending
        channel = self.channel
        if not waits or channel.closing:
            return
        acks, nacks = self.acks, self.nacks
        moved = False
        while waits:
            pending, seq = waits[0]
            settlements = pending if isinstance(pending, tuple) else (pending,)
            if not all(s.done for s in settlements):
                break
            waits.popleft()
            (acks if all(s.ok for s in settlements) else nacks).append(seq)
            moved = True
        if moved:
            self._sorted = False
            channel.connection.confirms_pending(channel)

    def emit(self) -> None:
        """Write the confirms gathered this tick, coalesced as rabbit_channel does.

        Acks first, then nacks. A lone ack goes out with multiple=false; otherwise the seqs
        below the smallest seq of the other kind go as one multiple=true and the rest one by
        one (rabbit_channel:coalesce_and_send). Nacks carry requeue=true, RabbitMQ's default.
        A multiple=true never reaches a seq still waiting for its queues: the cutoff is also
        below the oldest such seq.
        """
        acks, nacks = self.acks, self.nacks
        if not acks and not nacks:
            return
        channel = self.channel
        if not channel.closing:  # RabbitMQ drops confirms of a closing channel
            if not self._sorted:
                self._sorted = True
                acks.sort()
                nacks.sort()
            self._write(acks, nacks)
        acks.clear()
        nacks.clear()

    def _write(self, acks: list[int], nacks: list[int]) -> None:
        waits = self.pending
        waiting = waits[0][1] if waits else None
        channel = self.channel
        write = channel.connection.write
        number = channel.number
        if len(acks) == 1:
            write(encode_ack(number, BASIC_ACK, acks[0], False))
        elif acks:
            cutoff = bisect_left(acks, nacks[0]) if nacks else len(acks)
            if waiting is not None:
                cutoff = min(cutoff, bisect_left(acks, waiting))
            if cutoff:
                write(encode_ack(number, BASIC_ACK, acks[cutoff - 1], True))
            for seq in acks[cutoff:]:
                write(encode_ack(number, BASIC_ACK, seq, False))
        if nacks:
            cutoff = bisect_left(nacks, acks[0]) if acks else len(nacks)
            if waiting is not None:
                cutoff = min(cutoff, bisect_left(nacks, waiting))
            if cutoff:
                write(frame(FRAME_METHOD, number, _NACK.pack(BASIC_NACK, nacks[cutoff - 1], 3)))
            for seq in nacks[cutoff:]:
                write(frame(FRAME_METHOD, number, _NACK.pack(BASIC_NACK, seq, 2)))

    def clear(self) -> None:
        """Forget every confirm owed (the channel is closing: RabbitMQ sends none)."""
        self.acks.clear()
        self.nacks.clear()
        self.pending.clear()


def select(channel: Channel, method: commands.Confirm.Select) -> None:
    """confirm.select: from now on every publish of the channel is confirmed."""
    if channel.tx:
        raise ChannelError(PRECONDITION_FAILED, "cannot switch from tx to confirm mode", (85, 10))
    channel.confirm_mode = True
    if not method.nowait:
        channel.reply(commands.Confirm.SelectOk())
