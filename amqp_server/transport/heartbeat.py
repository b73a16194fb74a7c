"""Heartbeats, as rabbit_heartbeat runs them from tune-ok on (when the client agreed to an
interval): a timer every heartbeat/2 s sends a heartbeat frame when nothing else went out, and
drops the connection when nothing came in for two whole intervals in a row.

The connection only marks that it read (``Connection._read``, in ``data_received``) or wrote
(``Connection._written``, in ``_flush``), since those run per read and per write.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from amqp_server.protocol.frame_codec import HEARTBEAT_FRAME
from amqp_server.transport.states import CLOSED, DEAD

if TYPE_CHECKING:
    from amqp_server.transport.connection import Connection

log = logging.getLogger("amqp_server.transport.connection")  # one logger for the connection's story


class Heartbeats:
    """rabbit_heartbeat's sender and receiver for one connection, started at tune-ok."""

    __slots__ = ("connection", "timer", "parity", "missed")

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.parity = 0  # the receiver looks every other tick, i.e. once an interval
        self.missed = 0  # intervals in a row with nothing read
        self.timer: asyncio.TimerHandle | None = connection.loop.call_later(connection.heartbeat / 2, self._tick)

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _tick(self) -> None:
        """Every heartbeat/2 s: send a heartbeat if nothing else went out (the sender); every
        heartbeat s: count a miss if nothing came in, and drop the connection at the second
        miss in a row (the receiver), i.e. 2-3 intervals after the last data."""
        connection = self.connection
        transport = connection.transport
        if transport is None or transport.is_closing() or connection.state == DEAD:
            self.timer = None
            return
        if not connection._written and not connection._out:
            connection.send_oct += len(HEARTBEAT_FRAME)
            connection.send_cnt += 1
            transport.write(HEARTBEAT_FRAME)
        connection._written = False
        self.parity ^= 1
        if not self.parity:
            # Reading paused or waiting for close-ok: the silence is ours, not the client's.
            if connection._read or connection._paused or connection.state == CLOSED:
                self.missed = 0
            else:
                self.missed += 1
                if self.missed >= 2:
                    log.warning(
                        "closing %s: missed heartbeats from client, timeout: %ss",
                        connection._describe(),
                        connection.heartbeat,
                    )
                    self.timer = None
                    connection._abort()
                    return
            connection._read = False
        self.timer = connection.loop.call_later(connection.heartbeat / 2, self._tick)
