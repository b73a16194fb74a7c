"""What stops a connection taking input: the read gate and resource alarms.

The read gate: reading the socket stops for named reasons (``pause_reading(reason)``), each
lifted on its own (``resume_reading(reason)``), and resumes once none is left: "alarm" (blocked
by a resource alarm), "closing" (a close waiting for the channels), "store" (message store
congestion), "output" (unsent output over the bound), "dead".

Resource alarms: as in RabbitMQ, an alarm (``block``) blocks a connection only when it next
publishes; then connection.blocked goes out (to clients with that capability), reading stops,
and the frames already read past that publish are held (``Connection._held``, which a closing
connection also fills) until ``unblock``.

These functions are ``Connection`` methods (bound in its class body); they keep their state on
the connection, because ``Connection._take`` reads ``_held`` and ``_alarm`` on every read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pamqp import commands

from amqp_server.protocol.frame_codec import FRAME_BODY, FRAME_HEADER
from amqp_server.transport.states import BLOCKED, CLOSING, DEAD, RUNNING

if TYPE_CHECKING:
    from amqp_server.transport.connection import Connection


def pause_reading(connection: Connection, reason: str) -> None:
    """Stop reading the socket for ``reason`` ("alarm", "closing", "store", "output",
    "dead") until ``resume_reading(reason)``; reading resumes once no reason is left."""
    if not connection._paused and connection.transport is not None:
        connection.transport.pause_reading()
    connection._paused.add(reason)


def resume_reading(connection: Connection, reason: str) -> None:
    paused = connection._paused
    if reason in paused:
        paused.discard(reason)
        if not paused and connection.transport is not None and connection.state != DEAD:
            connection.transport.resume_reading()


def paused_for(connection: Connection) -> frozenset[str]:
    """Why reading is paused (empty: reading)."""
    return frozenset(connection._paused)


def block(connection: Connection, reason: str = "low on memory") -> None:
    """A resource alarm. As in RabbitMQ, the connection is blocked (connection.blocked
    sent, reading stopped) only when it next publishes; consumers carry on."""
    connection._alarm = reason


def unblock(connection: Connection) -> None:
    """The alarm cleared: send connection.unblocked if blocked was sent, read again."""
    connection._alarm = None
    if connection.state != BLOCKED:
        return
    connection.state = RUNNING
    if connection._blocked_sent:
        connection._blocked_sent = False
        if connection.capabilities.get("connection.blocked") is True:
            connection.write_method(0, commands.Connection.Unblocked())
    held, connection._held = connection._held, None
    if held:
        connection._dispatch(held)
    resume_reading(connection, "alarm")


def dispatch_throttled(connection: Connection, frames: list[tuple[int, int, bytes]]) -> None:
    """Dispatch while an alarm is on: stop right after the first content frame."""
    start = 0
    for index, (frame_type, number, _payload) in enumerate(frames):
        if number and frame_type in (FRAME_HEADER, FRAME_BODY):
            connection._dispatch(frames[start : index + 1])
            start = index + 1
            if connection.state == RUNNING and connection._alarm is not None:
                _enter_blocked(connection)
                connection._held = frames[start:]
                return
            if connection.state == CLOSING:  # _dispatch held the rest of its part
                connection._held += frames[start:]
                return
    connection._dispatch(frames[start:])


def _enter_blocked(connection: Connection) -> None:
    connection.state = BLOCKED
    connection._blocked_sent = True
    if connection.capabilities.get("connection.blocked") is True:
        connection.write_method(0, commands.Connection.Blocked(reason=connection._alarm or ""))
    pause_reading(connection, "alarm")
