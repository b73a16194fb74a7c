"""What shovels and federation links share: AMQP 0-9-1 client connections (aiormq) to an
endpoint, RabbitMQ's ``ensure_queue``, the status timestamps, and the restart loop of a link
that reconnects after ``reconnect-delay`` seconds."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiormq
from aiormq.abc import AbstractChannel, AbstractConnection, DeliveredMessage
from pamqp.commands import Basic, Queue

from amqp_server.plugin_api import NodeContext
from plugins.shovel.uri import Endpoint

CODES = {"ACCESS_REFUSED": 403, "NOT_FOUND": 404, "RESOURCE_LOCKED": 405, "PRECONDITION_FAILED": 406}
CONNECT_TIMEOUT = 10  # seconds
LOCAL_ATTEMPTS, LOCAL_RETRY = 50, 0.1  # the local node not listening yet: retried for 5 s


def timestamp() -> str:
    """The local time as RabbitMQ's status shows it (``2026-12-04 15:42:00``)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())


async def connect(endpoint: Endpoint, node: NodeContext, name: str) -> AbstractConnection:
    """An open connection to ``endpoint``, named ``name`` (the connection_name clients see).
    The local node is waited for a while: plugins start before it listens."""
    attempts_left = LOCAL_ATTEMPTS if endpoint.host is None else 1
    while True:
        attempts_left -= 1
        connection = aiormq.Connection(endpoint.url(node), client_properties={"connection_name": name})
        try:
            await asyncio.wait_for(connection.connect(), CONNECT_TIMEOUT)
            return connection
        except aiormq.exceptions.AMQPConnectionError as error:
            if not attempts_left or not isinstance(error.__cause__, ConnectionRefusedError):
                raise
        await asyncio.sleep(LOCAL_RETRY)


_UNCHECKED: dict[type[Any], type[Any]] = {}


def unchecked(method: type[Any], **fields: Any) -> Any:
    """A pamqp method that skips pamqp's name validation (ASCII letters, digits and ``-_.:``
    only), which RabbitMQ does not have: ``federation: x -> rabbit@host`` is a queue name."""
    cls = _UNCHECKED.get(method)
    if cls is None:
        cls = _UNCHECKED[method] = type(method.__name__, (method,), {"validate": lambda _self: None})
    return cls(**fields)


async def declare_queue(channel: AbstractChannel, queue: str, **fields: Any) -> Queue.DeclareOk:
    return await channel.rpc(unchecked(Queue.Declare, queue=queue, **fields))


async def bind_queue(channel: AbstractChannel, queue: str, exchange: str, routing_key: str,
                     arguments: dict[str, Any], bind: bool = True) -> None:  # fmt: skip
    method = Queue.Bind if bind else Queue.Unbind
    await channel.rpc(unchecked(method, queue=queue, exchange=exchange, routing_key=routing_key,
                                arguments=arguments or None))  # fmt: skip


async def consume(channel: AbstractChannel, queue: str, callback: Callable[[DeliveredMessage], Any], *,
                  no_ack: bool, consumer_tag: str = "", arguments: dict[str, Any] | None = None) -> str:  # fmt: skip
    """basic.consume (aiormq's checks the queue name as pamqp does); the consumer tag."""
    tag = consumer_tag or f"amq.ctag-{uuid.uuid4().hex}"
    channel.consumers[tag] = callback
    await channel.rpc(
        unchecked(Basic.Consume, queue=queue, consumer_tag=tag, no_ack=no_ack, arguments=arguments)
    )
    return tag


async def ensure_queue(connection: AbstractConnection, queue: str, arguments: dict[str, Any]) -> int:
    """rabbit_shovel_parameters:ensure_queue: a passive declare, or on 404 a durable queue with
    ``arguments``; the queue's message count."""
    channel = await connection.channel(publisher_confirms=False)
    try:
        return (await declare_queue(channel, queue, passive=True)).message_count or 0
    except aiormq.exceptions.ChannelNotFoundEntity:
        channel = await connection.channel(publisher_confirms=False)
        return (
            await declare_queue(channel, queue, durable=True, arguments=arguments or None)
        ).message_count or 0
    finally:
        if not channel.is_closed:
            await channel.close()


async def close_quietly(*connections: AbstractConnection | None) -> None:
    """Close what is still open, without waiting on a peer that is gone."""
    for connection in connections:
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(Exception):  # it is being dropped either way
                await asyncio.wait_for(connection.close(), 2)


async def first_failure(*waits: Awaitable[Any]) -> BaseException | None:
    """Wait for the first of ``waits`` to end; its exception (None when it ended cleanly). The
    others are cancelled."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
    finished = done.pop()
    return None if finished.cancelled() else finished.exception()


def reason_text(error: BaseException | None) -> str:
    """Why a link stopped, as a short term (``~p`` of RabbitMQ's is an Erlang term; ours
    names the error)."""
    if error is None:
        return "normal"
    if isinstance(error, aiormq.exceptions.ChannelClosed) and error.args:
        # (code, text), or (text,) for the codes aiormq has a class for
        code, text = (
            error.args[:2]
            if len(error.args) > 1
            else (CODES.get(str(error.args[0]).split(" ")[0]), error.args[0])
        )
        return f'{{shutdown,{{server_initiated_close,{code},<<"{text}">>}}}}'
    if isinstance(error, aiormq.exceptions.AMQPConnectionError) and isinstance(error.__cause__, OSError):
        error = error.__cause__
    if isinstance(error, OSError) and error.errno in errno.errorcode:
        return errno.errorcode[error.errno].lower()  # as Erlang's inet errors: econnrefused, ...
    if isinstance(error, TimeoutError):
        return "timeout"
    return str(error) or type(error).__name__


class Link:
    """A link's life (a shovel, a federation link): ``session()`` runs while the link is up
    (True: finished for good); a failure is logged and, after ``restart_delay()`` seconds,
    another session starts, as RabbitMQ's worker supervisors restart (None: the link stays
    down). ``status``, ``reason`` and ``last_changed`` are what the status commands show."""

    def __init__(self, log: logging.Logger, what: str) -> None:
        self.log = log
        self.what = what
        self.status = "starting"
        self.reason: BaseException | None = None
        self.last_changed = timestamp()
        self._task: asyncio.Task[None] | None = None

    def set_status(self, status: str, reason: BaseException | None = None) -> None:
        self.status, self.reason, self.last_changed = status, reason, timestamp()

    async def session(self) -> bool:
        raise NotImplementedError

    def restart_delay(self) -> float | None:
        raise NotImplementedError

    async def finished(self) -> None:
        """After a session that finished for good."""

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                if await self.session():
                    await self.finished()
                    return
                error: BaseException = ConnectionError("closed")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure restarts the link
                error = exc
            self.log.warning("%s failed: %s", self.what, reason_text(error))
            self.failed(error)
            delay = self.restart_delay()
            if delay is None:
                return
            await asyncio.sleep(delay)
            self.set_status("starting")

    def failed(self, error: BaseException) -> None:
        self.set_status("terminated", error)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # stopping
                await task
