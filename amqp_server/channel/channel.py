"""An AMQP channel: frames in, commands run, the publish and delivery hot path, closing.

Hot-path frames (basic.publish with its content, a single basic.ack) are handled synchronously
as they are read, here. Frames are always assembled into commands at once (content through
``assembler``); methods that change metadata run as one task each, and while one runs, later
commands of the channel wait in ``_backlog`` so that the channel's order holds (a publish
after queue.declare reaches the new queue).

The rest is split by concern: ``confirms`` (publisher confirms), ``transactions`` (tx.*),
``deliveries`` (consumers, basic.get/qos/recover, settling acks), ``consumer_timeout``,
``publish`` (publish checks off the hot path), ``entities`` (exchange.* and queue.*) and
``direct_reply_to``. Their method handlers are functions of ``(channel, method)``, in the
table at the end of this module with the channel.* ones.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pamqp import commands
from pamqp.base import Frame as PamqpMethod

from amqp_server.auth.chain import BACKEND_TOPICS
from amqp_server.channel import confirms, deliveries, direct_reply_to, entities, transactions
from amqp_server.channel.assembler import ContentAssembler, method_expected
from amqp_server.channel.confirms import ConfirmTracker
from amqp_server.channel.consumer_timeout import ConsumerTimeout
from amqp_server.channel.deliveries import (
    ACKED,
    ChannelConsumer,
    release_counts,
    requeue,
    settle,
    settle_entries,
)
from amqp_server.channel.direct_reply_to import PREFIX as REPLY_TO_PREFIX
from amqp_server.channel.publish import check_properties, run_publish
from amqp_server.channel.transactions import Transaction
from amqp_server.core import access
from amqp_server.core.message import FLAG_DELIVERY_MODE, Message
from amqp_server.protocol.errors import (
    ACCESS_REFUSED,
    CHANNEL_ERROR,
    COMMAND_INVALID,
    INTERNAL_ERROR,
    NO_ROUTE,
    NOT_FOUND,
    NOT_IMPLEMENTED,
    UNEXPECTED_FRAME,
    AMQPError,
    ChannelError,
    ConnectionError,
)
from amqp_server.protocol.frame_codec import (
    ACK_FIELDS,
    BASIC_ACK,
    BASIC_CLASS,
    BASIC_PUBLISH,
    CONTENT_HEADER_FIXED,
    FRAME_BODY,
    FRAME_HEADER,
    FRAME_METHOD,
    Ack,
    Publish,
    build,
    decode_method,
    decode_publish,
    encode_deliver,
    encode_return,
    method_id,
    publish_cache,
)
from queues.base import QueueEntry

if TYPE_CHECKING:
    from amqp_server.core.changes import Exchange
    from amqp_server.transport.connection import Connection

log = logging.getLogger(__name__)

# A complete command of a channel: a decoded method, or a basic.publish with its content
# header and body (None when over the size limit, dropped as it arrived).
Command = PamqpMethod | Ack | tuple[Publish, bytes, bytes | None]
# What a channel takes while closing or while a tx.commit waits (rabbit_channel handles these
# first): channel.close and close-ok, and channel.open, always an error on an open channel.
_CHANNEL_METHODS = (commands.Channel.Close, commands.Channel.CloseOk, commands.Channel.Open)


def _ids(command: Command) -> tuple[int, int]:
    """The class and method ids of a command."""
    index = BASIC_PUBLISH if isinstance(command, tuple) else command.method_id if isinstance(command, Ack) else command.index
    return index >> 16, index & 0xFFFF


class Channel:
    # The last queue.declare given a server-made name (``server_queue_name``). A class default,
    # set on the instance only by such a declare: one more instance attribute made every
    # publish measurably slower (about 230 instructions per message in hot_path's S1).
    _server_named: tuple[Any, str] | None = None

    def __init__(self, connection: Connection, number: int) -> None:
        self.connection = connection
        self.number = number
        self.name = f"{connection.name} ({number})"  # RabbitMQ's channel name
        self.vhost = connection.vhost
        self.closing = False  # we sent channel.close and wait for close-ok
        self.consumers: dict[str, ChannelConsumer] = {}
        self.unacked: dict[int, QueueEntry] = {}  # delivery tag -> entry, in tag order
        # Unacked deliveries to consumers (not basic.get), counted against basic.qos global=true.
        self.consumer_unacked = 0
        self.next_delivery_tag = 0
        self.consumer_prefetch = 0  # basic.qos global=false: applies to consumers made later
        self.global_prefetch = 0  # basic.qos global=true: shared by the channel's consumers
        # False while tx.commit settles acks, so that tx.commit-ok precedes the redeliveries.
        self.flow_active = True
        self.confirm_mode = False
        self.publish_seq = 0
        # Publisher confirms. ``_route`` records outcomes straight into the tracker's lists,
        # bound here (never replaced) so that a confirm costs no hop per message.
        self.confirms = tracker = ConfirmTracker(self)
        self._acks = tracker.acks
        self._nacks = tracker.nacks
        self._pending = tracker.pending
        self._settled = tracker.settled  # one bound method for every Settlement.watch
        self.emit_confirms = tracker.emit  # what Connection._flush calls
        self.tx: Transaction | None = None  # the transaction, once tx.select is seen
        self._content: ContentAssembler | None = None  # a publish whose content is due, frame by frame
        self.max_message_size = connection.broker.config.max_message_size
        self._backlog: deque[Command] | None = None  # commands held while a metadata method runs
        self.task: asyncio.Task[None] | None = None  # the running metadata method, if any
        self._permissions = access.PermissionCache()  # checks passed, as RabbitMQ's permission_cache
        self._topic_grants = access.PermissionCache()  # and its topic_permission_cache
        # The live table (changed in place); for a user other backends authorise, a stand-in
        # that makes every topic routing key checked (by them).
        user = connection.user
        self.topic_permissions = connection.broker.topic_permissions if user is None or user.internal else BACKEND_TOPICS
        self.reply_consumer: direct_reply_to.ReplyConsumer | None = None
        # Counters for stats(): plain integer increments on the message path, nothing else.
        self.stat_publish = 0
        self.stat_confirm = 0
        self.stat_return = 0
        self.stat_drop_unroutable = 0
        self.stat_deliver = 0
        self.stat_deliver_no_ack = 0
        self.stat_get = 0
        self.stat_get_no_ack = 0
        self.stat_get_empty = 0
        self.stat_redeliver = 0
        self.stat_ack = 0
        # The delivery acknowledgement timeout, read at channel open as RabbitMQ reads it.
        timeout_ms = connection.broker.config.consumer_timeout_ms
        self._timeout = ConsumerTimeout(self, timeout_ms) if timeout_ms > 0 else None

    # -- frame intake --------------------------------------------------------------------

    @property
    def deliverable(self) -> bool:
        return self.flow_active and not self.closing and self.connection.writable

    @property
    def unacked_count(self) -> int:
        tx = self.tx
        return len(self.unacked) + (tx.acked_count if tx else 0)

    def handle_frame(self, frame_type: int, payload: bytes) -> None:
        """Assemble the channel's frames into commands at once, whatever the channel is doing
        (RabbitMQ's reader does, so a bad frame is refused before anything after it is
        answered), and run each complete command (see ``_command``)."""
        if frame_type == FRAME_METHOD:
            if self._content is not None:
                raise self._content.expected()
            mid = method_id(payload)
            if mid == BASIC_PUBLISH:
                # Its content follows: the command is not complete yet.
                self._content = ContentAssembler(decode_publish(payload), BASIC_PUBLISH, max_size=self.max_message_size)
                return
            if mid == BASIC_ACK and len(payload) == 13 and not self.tx and self._backlog is None:
                # A single basic.ack of a known tag, the common case, settled straight away (a
                # closing channel has no unacked messages).
                tag, bits = ACK_FIELDS.unpack_from(payload, 4)
                if not bits & 1:
                    entry = self.unacked.pop(tag, None)
                    if entry is not None:
                        settle_entries(self, [entry], ACKED)
                        return
            self._command(decode_method(payload))
        elif frame_type in (FRAME_HEADER, FRAME_BODY):
            content = self._content
            if content is None:
                raise method_expected()
            command = content.header(payload) if frame_type == FRAME_HEADER else content.body(payload)
            if command is not None:
                self._content = None
                self._command(command)
        else:  # an empty heartbeat (all the frame reader lets through) belongs on channel 0
            raise ConnectionError(UNEXPECTED_FRAME, f"type {frame_type}, all octets = <<>>")

    def _command(self, command: Command) -> None:
        """A complete command: a decoded method, or a publish with its content. It runs now,
        or waits while a metadata method runs. While a tx.commit waits for its queues, RabbitMQ
        refuses any command but channel.open/close/close-ok ("it could wreak havoc")."""
        backlog = self._backlog
        if backlog is None:
            self._execute(command)
        elif not (self.tx and self.tx.committing) or self.closing:
            backlog.append(command)
        elif isinstance(command, _CHANNEL_METHODS):
            self._execute(command)
        else:
            self._stop()
            raise ConnectionError(CHANNEL_ERROR, "unexpected command while processing 'tx.commit'", _ids(command))

    def _stop(self) -> None:
        """A connection-level error of this channel's own commands: as RabbitMQ's channel
        process exits on one, nothing it still held runs and nothing more of it goes out (no
        tx.commit-ok, no confirm; the connection's close drops the channel)."""
        self._backlog = None
        self.closing = True
        self.revoke_credit()

    def _execute(self, command: Command) -> None:
        """Run a complete command (rabbit_channel's handle_method)."""
        if self.closing:
            # Until close-ok only channel.close and close-ok count; channel.open is an error still.
            if isinstance(command, _CHANNEL_METHODS):
                self._handle_method(command)
        elif isinstance(command, tuple):
            run_publish(self, *command)
        else:
            self._handle_method(command)

    def _await_check(self, pending: access.PendingCheck, command: Command) -> None:
        """A check a backend has to wait for: the command runs again once it is granted (its
        checks come before anything it changes); later commands wait meanwhile."""
        self._backlog = deque()
        self.task = self.connection.broker.spawn(self._run(pending.wait, command, retry=True))

    def _handle_method(self, method: Any) -> None:
        if isinstance(method, Ack):
            settle(self, method)
            return
        handler = _HANDLERS.get(type(method))
        if handler is None:  # a connection.* method on a channel: rabbit_channel's catch-all
            raise ConnectionError(COMMAND_INVALID, "unimplemented method", (method.index >> 16, method.index & 0xFFFF))
        try:
            result = handler(self, method)
        except ChannelError as error:
            if error.method == (0, 0):
                error.method = (method.index >> 16, method.index & 0xFFFF)
            self.close_with(error)
            return
        except access.PendingCheck as pending:
            self._await_check(pending, method)
            return
        if asyncio.iscoroutine(result):
            self._backlog = deque()
            self.task = self.connection.broker.spawn(self._run(result, method))

    async def _run(self, coro: Any, method: Command, retry: bool = False) -> None:
        try:
            try:
                await coro
            except access.PendingCheck as pending:  # raised by an asynchronous handler
                await pending.wait
                retry = True
            if retry and self._backlog is not None:
                self._backlog.appendleft(method)  # granted: the command runs again, first
        except ChannelError as error:
            if error.method == (0, 0):
                error.method = _ids(method)
            self.close_with(error)
        except Exception as exc:
            if not isinstance(exc, ConnectionError):
                log.exception("%s failed", getattr(method, "name", "basic.publish"))
                exc = ConnectionError(INTERNAL_ERROR, f"internal error: {exc}")
            self._stop()
            self.connection.close_with(exc)
            return
        backlog, self._backlog = self._backlog, None
        self._replay(backlog or deque())

    @property
    def busy(self) -> bool:
        """A metadata method is still running (its reply and later commands are pending)."""
        return self._backlog is not None

    def _replay(self, backlog: deque[Command]) -> None:
        """Run the commands held while a metadata method ran (those after another one wait again)."""
        connection = self.connection
        while backlog and not connection.closed:
            try:
                self._command(backlog.popleft())
            except ChannelError as error:
                self.close_with(error)
            except ConnectionError as error:
                self._stop()
                connection.close_with(error)
                return

    # -- publish -------------------------------------------------------------------------

    def publish_whole(self, method: bytes, header: bytes, body: bytes) -> bool:
        """basic.publish with its header and single body frame, all at once; False (having
        done nothing) when anything needs the frame-by-frame path, which then runs instead
        and reports what is wrong exactly as it would have."""
        if self._backlog is not None or self._content is not None or self.closing:
            return False
        publish = publish_cache.get(method)
        if publish is None:
            if method_id(method) != BASIC_PUBLISH:
                return False
            try:
                publish = decode_publish(method)
            except ConnectionError:
                return False
        if publish.immediate or len(header) < 14:
            return False
        class_id, weight, body_size = CONTENT_HEADER_FIXED.unpack_from(header)
        if class_id != BASIC_CLASS or weight or not body_size or body_size != len(body) or body_size > self.max_message_size:
            return False
        self._publish_message(publish, header, body)
        return True

    def _publish_message(self, publish: Publish, header: bytes, body: bytes) -> None:
        """Check, route and confirm a complete publish; its channel errors carry basic.publish's ids."""
        message = Message(publish.exchange, publish.routing_key, publish.exchange_and_key, header, body)
        try:
            vhost = self.vhost
            name = publish.exchange
            if ("write", "exchange", name) not in self._permissions.granted:
                self.check("write", "exchange", name)
            exchange = vhost.exchanges.get(name)
            if exchange is None:
                raise ChannelError(NOT_FOUND, f"no exchange '{name}' in vhost '{vhost.name}'")
            if exchange.internal:
                raise ChannelError(
                    ACCESS_REFUSED, f"cannot publish to internal exchange '{name}' in vhost '{vhost.name}'"
                )
            if self.topic_permissions and exchange.type_name == "topic":  # none anywhere: no cost
                self.check_topic("write", name, publish.routing_key)
            # Any property present: RabbitMQ's publish-time checks; none are needed for a valid
            # delivery_mode alone (what persistent publishers send).
            flags = header[12] << 8 | header[13]
            if flags and (flags != FLAG_DELIVERY_MODE or len(header) != 15 or header[14] not in (1, 2)):
                check_properties(self, message)
            self.stat_publish += 1
            if self.confirm_mode:
                self.publish_seq += 1
            if self.tx:
                seq = self.publish_seq
                self.tx.publishes.append(lambda: self._route(exchange, publish.mandatory, message, seq))
                return
            self._route(exchange, publish.mandatory, message, self.publish_seq)
        except ChannelError as error:
            error.method = (60, 40)
            raise
        except access.PendingCheck as pending:  # (an exception clause: nothing on the hot path)
            self._await_check(pending, (publish, header, body))

    def _route(self, exchange: Exchange, mandatory: bool, message: Message, seq: int) -> bool | None:
        """Route, return or confirm one publish. None: no queue took it; else whether every
        queue that took it accepted it (what a transaction's commit needs)."""
        vhost = self.vhost
        queues = vhost.route(exchange, message)
        if vhost.tracer is not None:  # before the queues take it, so a trace's publish precedes its deliver
            vhost.tracer.published(self, message, queues)
        # Direct replies go straight to the requesting channel and do not count as routed. A
        # reply-to key names no queue (amq.* names are reserved), so a key that found a queue
        # is not one, unless CC keys (a headers property) add others.
        if (
            exchange.router is None
            and (not queues or message.header[12] & 0x20)
            and (
                message.routing_key.startswith(REPLY_TO_PREFIX)
                or (message.header[12] & 0x20 and len(message.routing_keys) > 1)  # CC keys
            )
        ):
            direct_reply_to.deliver_replies(self.connection.broker, message, message.routing_keys)
        accepted = True
        pending: Any = None  # what the queues owe: a Settlement, or a tuple of several
        for queue in queues:
            result = queue.publish(message)
            if result is not True:
                if result is False:
                    accepted = False
                elif pending is None or pending is result:
                    pending = result
                elif result not in (pending if isinstance(pending, tuple) else (pending,)):
                    pending = (*pending, result) if isinstance(pending, tuple) else (pending, result)
        if not queues:
            # A type that keeps messages back (a delayed exchange) may hold it: routed then,
            # answered as a queue's publish is. Only unroutable publishes pay for asking.
            held = exchange.router.hold(message, mandatory) if exchange.router is not None else None
            if held is not None:
                if held is False:
                    accepted = False
                elif held is not True:
                    pending = held
            elif mandatory:
                self.stat_return += 1
                connection = self.connection
                connection.write_chunks(
                    encode_return(
                        self.number,
                        NO_ROUTE,
                        "NO_ROUTE",
                        message.exchange_and_key,
                        message.header,
                        message.body,
                        connection.frame_max,
                    )
                )
            else:
                self.stat_drop_unroutable += 1
        if self.confirm_mode:
            self.stat_confirm += 1
            if not accepted:
                self._nacks.append(seq)
            elif pending is not None:
                # Confirmed when the queues settle it (``ConfirmTracker.settled``).
                self._pending.append((pending, seq))
                for settlement in pending if isinstance(pending, tuple) else (pending,):
                    settlement.watch(self._settled)
                return pending
            else:
                self._acks.append(seq)
            self.connection.confirms_pending(self)
        if pending is None or not accepted:
            return accepted if queues else None
        return pending

    # -- delivery ------------------------------------------------------------------------

    def deliver(self, consumer: ChannelConsumer, entry: QueueEntry) -> None:
        self.next_delivery_tag = tag = self.next_delivery_tag + 1
        if not consumer.no_ack:
            self.unacked[tag] = entry
            consumer.unacked += 1
            self.consumer_unacked += 1
            self.stat_deliver += 1
            if self.global_prefetch:
                self._spend_global_window(consumer)
        else:
            self.stat_deliver_no_ack += 1
        if entry.redelivered:
            self.stat_redeliver += 1
        message = entry.message
        tracer = self.vhost.tracer
        if tracer is not None:
            tracer.delivered(self, consumer.queue.name, message, entry.redelivered)
        connection = self.connection
        connection.write_chunks(
            encode_deliver(
                self.number,
                consumer.prefix,
                tag,
                entry.redelivered,
                message.exchange_and_key,
                message.header,
                message.body,
                connection.frame_max,
            )
        )

    def _spend_global_window(self, consumer: ChannelConsumer) -> None:
        """A delivery used one of the window the channel's consumers share: no other consumer
        may hold more credit than what is left of it."""
        left = max(self.global_prefetch - self.consumer_unacked, 0)
        for other in self.consumers.values():
            if other is not consumer and other.credit > left and not other.no_ack:
                other.credit = left

    def deliver_reply(self, consumer: direct_reply_to.ReplyConsumer, message: Message) -> None:
        """A direct reply for this channel's reply consumer (no-ack, no queue)."""
        self.stat_deliver_no_ack += 1
        self.connection.write_chunks(direct_reply_to.encode_reply(self, consumer, message))

    def grant_credit(self) -> None:
        """Windows opened (basic.qos, tx.commit-ok, the socket drained): every consumer gets
        the credit they now allow, and the queues deliver what it covers."""
        consumers = self.consumers.values()
        for consumer in consumers:
            consumer.refresh_credit()
        for queue in {c.queue for c in consumers}:
            queue.dispatch()

    def revoke_credit(self) -> None:
        """Deliveries stop at once (the socket is full, tx.commit settles, closing)."""
        for consumer in self.consumers.values():
            consumer.credit = 0

    # -- stats ---------------------------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        """Who the channel is, as RabbitMQ's channel events carry it."""
        connection = self.connection
        return {"name": self.name, "number": self.number, "connection": connection.name,
                "user": connection.username, "vhost": self.vhost.name if self.vhost is not None else None}  # fmt: skip

    def stats(self) -> dict[str, Any]:
        """The channel's counters, named as RabbitMQ's management API names them."""
        tx = self.tx
        deliver_get = self.stat_deliver + self.stat_deliver_no_ack + self.stat_get + self.stat_get_no_ack
        return {
            "number": self.number,
            "consumer_count": len(self.consumers),  # as RabbitMQ: the reply consumer is not one
            "messages_unacknowledged": self.unacked_count,
            "messages_unconfirmed": len(self._pending),
            "messages_uncommitted": len(tx.publishes) if tx else 0,
            "acks_uncommitted": tx.acked_count if tx else 0,
            "prefetch_count": self.consumer_prefetch,
            "global_prefetch_count": self.global_prefetch,
            "confirm": self.confirm_mode,
            "transactional": tx is not None,
            "message_stats": {
                "publish": self.stat_publish,
                "confirm": self.stat_confirm,
                "return_unroutable": self.stat_return,
                "drop_unroutable": self.stat_drop_unroutable,
                "deliver": self.stat_deliver,
                "deliver_no_ack": self.stat_deliver_no_ack,
                "get": self.stat_get,
                "get_no_ack": self.stat_get_no_ack,
                "get_empty": self.stat_get_empty,
                "deliver_get": deliver_get,
                "redeliver": self.stat_redeliver,
                "ack": self.stat_ack,
            },
        }

    # -- closing -------------------------------------------------------------------------

    def close_with(self, error: AMQPError) -> None:
        """Close this channel with ``error`` (we send channel.close, then await close-ok)."""
        if self.closing:
            return
        self.release()
        self.closing = True
        self.connection.write_method(
            self.number,
            build(
                commands.Channel.Close,
                reply_code=error.code,
                reply_text=error.reply_text,
                class_id=error.method[0],
                method_id=error.method[1],
            ),
        )

    def release(self) -> None:
        """Cancel consumers and requeue unacked messages (channel or connection closing)."""
        if self._timeout is not None:
            self._timeout.cancel()
        direct_reply_to.cancel(self)
        if self._content is not None:
            self._content.discard()  # the rest of its content is still assembled, not kept
        for consumer in list(self.consumers.values()):
            consumer.remove()
        self.confirms.clear()
        entries = list(self.unacked.values())
        self.unacked.clear()
        if self.tx:
            entries += self.tx.release()  # acked in a transaction never committed
        if entries:
            release_counts(self, entries)
            requeue(entries)

    # -- what the method handlers use ----------------------------------------------------

    def reply(self, method: Any) -> None:
        self.connection.write_method(self.number, method)

    def check(self, kind: str, resource: str, name: str) -> None:
        """A permission check (cached per channel); a user other backends authorise is checked
        by them, and a check they have to wait for raises ``access.PendingCheck``."""
        connection = self.connection
        user = connection.user
        if user is None or user.internal:
            self._permissions.check(connection.permission, kind, resource, name, self.vhost.name, connection.username)
        elif (kind, resource, name) not in self._permissions.granted:
            vhost = self.vhost.name
            refusal = access.refused(resource, name, vhost, connection.username)
            decision = user.check_resource(vhost, resource, name, kind)
            self._permissions.decide((kind, resource, name), decision, refusal)

    def check_topic(self, kind: str, exchange: str, routing_key: str) -> None:
        """The topic permission check on a routing key of a topic exchange."""
        user = self.connection.user
        if user is None or user.internal:
            self._topic_grants.check_topic(
                self.topic_permissions, kind, exchange, routing_key, self.vhost.name, self.connection.username
            )
        elif (kind, exchange, routing_key) not in self._topic_grants.granted:
            vhost, username = self.vhost.name, self.connection.username
            refusal = access.topic_refused(exchange, routing_key, vhost, username)
            decision = user.check_topic(vhost, exchange, routing_key, kind)
            self._topic_grants.decide((kind, exchange, routing_key), decision, refusal)

    def server_queue_name(self, method: Any) -> str:
        """A name for a server-named queue; the same when the declare runs again after a check
        a backend was waited for (the check was of that name)."""
        named = self._server_named
        if named is None or named[0] is not method:
            named = self._server_named = (method, self.connection.new_queue_name())
        return named[1]

    def forget_checks(self) -> None:
        """The user's credentials changed (connection.update-secret): check everything again."""
        self._permissions.granted.clear()
        self._topic_grants.granted.clear()

    def queue_name(self, name: str) -> str:
        """An empty queue name means the channel's last declared queue (AMQP's rule)."""
        if name:
            return name
        if self.connection.last_queue.get(self.number):
            return self.connection.last_queue[self.number]
        raise ChannelError(NOT_FOUND, "no previously declared queue")

    def on_channel_close(self, method: commands.Channel.Close) -> None:
        self.release()
        self.reply(commands.Channel.CloseOk())
        self.connection.channel_closed(self.number)

    def on_channel_close_ok(self, method: commands.Channel.CloseOk) -> None:
        if not self.closing:  # nothing to acknowledge: RabbitMQ takes it as a method it lacks
            raise ConnectionError(COMMAND_INVALID, "unimplemented method", (20, 41))
        self.connection.channel_closed(self.number)

    def on_channel_open(self, method: commands.Channel.Open) -> None:
        raise ConnectionError(CHANNEL_ERROR, "second 'channel.open' seen", (20, 10))

    def on_channel_flow(self, method: commands.Channel.Flow) -> None:
        # RabbitMQ 3.x no longer lets a client stop deliveries with channel.flow.
        if not method.active:
            raise ConnectionError(NOT_IMPLEMENTED, "active=false", (20, 20))
        self.reply(commands.Channel.FlowOk(active=True))


_HANDLERS: dict[type, Callable[[Channel, Any], Any]] = {
    commands.Channel.Close: Channel.on_channel_close,
    commands.Channel.CloseOk: Channel.on_channel_close_ok,
    commands.Channel.Open: Channel.on_channel_open,
    commands.Channel.Flow: Channel.on_channel_flow,
    commands.Basic.Qos: deliveries.qos,
    commands.Basic.Consume: deliveries.consume,
    commands.Basic.Cancel: deliveries.cancel,
    commands.Basic.Get: deliveries.get,
    commands.Basic.Recover: deliveries.recover,
    commands.Basic.RecoverAsync: deliveries.recover_async,
    commands.Confirm.Select: confirms.select,
    commands.Tx.Select: transactions.select,
    commands.Tx.Commit: transactions.commit,
    commands.Tx.Rollback: transactions.rollback,
    commands.Exchange.Declare: entities.exchange_declare,
    commands.Exchange.Delete: entities.exchange_delete,
    commands.Exchange.Bind: entities.exchange_bind,
    commands.Exchange.Unbind: entities.exchange_unbind,
    commands.Queue.Declare: entities.queue_declare,
    commands.Queue.Bind: entities.queue_bind,
    commands.Queue.Unbind: entities.queue_unbind,
    commands.Queue.Purge: entities.queue_purge,
    commands.Queue.Delete: entities.queue_delete,
}
