"""An AMQP channel: content assembly, the basic/queue/exchange/confirm/tx methods, consumers,
unacked deliveries and publisher confirms.

Hot-path frames (basic.publish with its content, basic.ack/nack/reject) are handled
synchronously as they are read. Frames are always assembled into commands at once; methods
that change metadata run as one task each, and while one runs, later commands of the channel
wait in ``_backlog`` so that the channel's order holds (a publish after queue.declare reaches
the new queue).
"""

from __future__ import annotations

import asyncio
import logging
import math
import struct
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any

from pamqp import commands
from pamqp.base import Frame as PamqpMethod

from amqp_server.channel import direct_reply_to
from amqp_server.channel.direct_reply_to import PREFIX as REPLY_TO_PREFIX
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
    PRECONDITION_FAILED,
    UNEXPECTED_FRAME,
    AMQPError,
    ChannelError,
    ConnectionError,
)
from amqp_server.protocol.field_types import amqp_type_name
from amqp_server.protocol.frame_codec import (
    ACK_FIELDS,
    BASIC_ACK,
    BASIC_CLASS,
    BASIC_NACK,
    BASIC_PUBLISH,
    CONTENT_HEADER_FIXED,
    FRAME_BODY,
    FRAME_HEADER,
    FRAME_METHOD,
    Ack,
    Publish,
    build,
    decode_content_header,
    decode_method,
    decode_publish,
    deliver_prefix,
    encode_ack,
    encode_deliver,
    encode_get_ok,
    encode_return,
    frame,
    method_id,
    publish_cache,
)
from exchanges.base import EXCHANGE, QUEUE, Destination
from queues.arguments import is_integer
from queues.base import QueueEntry, QueueType, Settlement, all_settled

if TYPE_CHECKING:
    from amqp_server.core.vhost import Check, Exchange
    from amqp_server.transport.connection import Connection

log = logging.getLogger(__name__)

MAX_MESSAGE_SIZE = 134_217_728  # RabbitMQ's default max_message_size
CONSUMER_TIMEOUT_TICK = 60.0  # seconds between consumer-timeout checks at most (rabbit_channel's tick)
_NACK = struct.Struct(">IQB")  # basic.nack: class/method, delivery tag, bits (multiple=1, requeue=2)


class _Discard(list):
    """Where the body of a message over the size limit goes: nowhere."""

    def append(self, item: object) -> None:
        pass

    def __bool__(self) -> bool:
        return True  # never taken for "no body frames yet"


_DISCARD = _Discard()


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


def _unknown_tag(ack: Ack) -> ChannelError:
    return ChannelError(
        PRECONDITION_FAILED, f"unknown delivery tag {ack.delivery_tag}", (BASIC_CLASS, ack.method_id & 0xFFFF)
    )


# What an ack, nack or reject does with its messages.
ACKED, REQUEUED, REJECTED = 0, 1, 2


class ChannelConsumer:
    """A basic.consume subscription; the queue sees it through ``queues.base.Consumer``."""

    __slots__ = (
        "tag", "channel", "queue", "no_ack", "exclusive", "priority", "prefetch", "unacked", "prefix", "deliver"
    )

    def __init__(
        self, tag: str, channel: Channel, queue: QueueType, no_ack: bool, exclusive: bool, priority: int
    ) -> None:
        self.tag = tag
        self.channel = channel
        self.queue = queue
        self.no_ack = no_ack
        self.exclusive = exclusive
        self.priority = priority
        self.prefetch = channel.consumer_prefetch
        self.unacked = 0
        self.prefix = deliver_prefix(tag)
        # deliver(entry): the queue calls the channel directly (no method layer in between).
        self.deliver = partial(channel.deliver, self)

    def can_take(self) -> bool:
        channel = self.channel
        if not channel.flow_active or channel.closing or not channel.connection.writable:  # deliverable, inlined
            return False
        if self.no_ack:
            return True
        if self.prefetch and self.unacked >= self.prefetch:
            return False
        return not channel.global_prefetch or channel.consumer_unacked < channel.global_prefetch

    def cancelled_by_server(self) -> None:
        self.channel.consumer_cancelled_by_server(self)


class Channel:
    def __init__(self, connection: Connection, number: int) -> None:
        self.connection = connection
        self.number = number
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
        self._acks: list[int] = []  # publish seqs to confirm at the end of this tick
        self._nacks: list[int] = []
        # Confirms waiting for their queues to settle them (a persistent message waits for the
        # message store's batch): (settlement, seq) in seq order; the settlement is a tuple
        # when several queues each owe one. Nothing is allocated here for a transient message.
        self._store = connection.broker.message_store
        self._pending: deque[tuple[Settlement | tuple[Settlement, ...], int]] = deque()
        self._acks_sorted = True  # False once settled confirms joined _acks out of order
        self.tx = False  # tx.select seen
        self._tx_publishes: list[Callable[[], bool | None]] = []  # routed at tx.commit (_route)
        # basic.ack/nack/reject in a transaction: (delivery tag, entry) pairs taken from
        # ``unacked`` and whether to requeue them; they take effect at tx.commit.
        self._tx_acks: list[tuple[list[tuple[int, QueueEntry]], int]] = []
        self._committing = False  # a tx.commit routed messages and its reply is not out yet
        self._publish: Publish | None = None  # basic.publish awaiting its content
        self._header: bytes = b""
        self._body: list[bytes] = []
        self._body_remaining = 0
        self._backlog: deque[Command] | None = None  # commands held while a metadata method runs
        self.task: asyncio.Task[None] | None = None  # the running metadata method, if any
        self._permissions = access.PermissionCache()  # checks passed, as RabbitMQ's permission_cache
        self._topic_grants = access.PermissionCache()  # and its topic_permission_cache
        self._topic_permissions = connection.broker.topic_permissions  # the live table (changed in place)
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
        # Delivery acknowledgement timeout, read at channel open as RabbitMQ reads it. The
        # check needs no per-delivery timestamp: each tick remembers the newest delivery tag
        # at that moment; an unacked tag no newer than a tick at least a timeout old is late.
        config = connection.broker.config
        self.consumer_timeout = config.consumer_timeout_ms
        self._tick_tags: deque[tuple[float, int]] = deque()
        self._timeout_timer: asyncio.TimerHandle | None = None
        self._ticks = 0
        if self.consumer_timeout > 0:
            interval = min(self.consumer_timeout / 1000, CONSUMER_TIMEOUT_TICK)
            self._ticks_needed = math.ceil(self.consumer_timeout / 1000 / interval)
            self._timeout_timer = connection.loop.call_later(interval, self._timeout_tick, interval)

    # -- frame intake --------------------------------------------------------------------

    @property
    def deliverable(self) -> bool:
        return self.flow_active and not self.closing and self.connection.writable

    @property
    def unacked_count(self) -> int:
        return len(self.unacked) + sum(len(taken) for taken, _ in self._tx_acks)

    def handle_frame(self, frame_type: int, payload: bytes) -> None:
        """Assemble the channel's frames into commands at once, whatever the channel is doing
        (RabbitMQ's reader does, so a bad frame is refused before anything after it is
        answered), and run each complete command (see ``_command``)."""
        if frame_type == FRAME_METHOD:
            if self._publish is not None:
                raise self._content_expected()
            mid = method_id(payload)
            if mid == BASIC_PUBLISH:
                self._publish = decode_publish(payload)  # its content follows: the command is not complete yet
                return
            if mid == BASIC_ACK and len(payload) == 13 and not self.tx and self._backlog is None:
                # A single basic.ack of a known tag, the common case, settled straight away (a
                # closing channel has no unacked messages).
                tag, bits = ACK_FIELDS.unpack_from(payload, 4)
                if not bits & 1:
                    entry = self.unacked.pop(tag, None)
                    if entry is not None:
                        self._settle_entries([entry], ACKED)
                        return
            self._command(decode_method(payload))
        elif frame_type == FRAME_HEADER:
            self._content_header(payload)
        elif frame_type == FRAME_BODY:
            self._content_body(payload)
        else:  # an empty heartbeat (all the frame reader lets through) belongs on channel 0
            raise ConnectionError(UNEXPECTED_FRAME, f"type {frame_type}, all octets = <<>>")

    def _command(self, command: Command) -> None:
        """A complete command: a decoded method, or a publish with its content. It runs now,
        or waits while a metadata method runs. While a tx.commit waits for its queues, RabbitMQ
        refuses any command but channel.open/close/close-ok ("it could wreak havoc")."""
        backlog = self._backlog
        if backlog is None:
            self._execute(command)
        elif not self._committing or self.closing:
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

    def _execute(self, command: Command) -> None:
        """Run a complete command (rabbit_channel's handle_method)."""
        if self.closing:
            # Until close-ok only channel.close and close-ok count; channel.open is an error still.
            if isinstance(command, _CHANNEL_METHODS):
                self._handle_method(command)
        elif isinstance(command, tuple):
            self._run_publish(*command)
        else:
            self._handle_method(command)

    def _handle_method(self, method: Any) -> None:
        if isinstance(method, Ack):
            self._settle(method)
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
        if asyncio.iscoroutine(result):
            self._backlog = deque()
            self.task = self.connection.broker.spawn(self._run(result, method))

    async def _run(self, coro: Any, method: Any) -> None:
        try:
            await coro
        except ChannelError as error:
            if error.method == (0, 0):
                error.method = (method.index >> 16, method.index & 0xFFFF)
            self.close_with(error)
        except Exception as exc:
            if not isinstance(exc, ConnectionError):
                log.exception("%s failed", method.name)
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
        if self._backlog is not None or self._publish is not None or self.closing:
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
        if class_id != BASIC_CLASS or weight or not body_size or body_size != len(body) or body_size > MAX_MESSAGE_SIZE:
            return False
        self._publish_message(publish, header, body)
        return True

    def _content_expected(self) -> ConnectionError:
        """Another frame came where the content of a basic.publish was due (rabbit_command_assembler)."""
        if self._header:
            text = "expected content body, got non content body frame instead"
        else:
            text = f"expected content header for class {BASIC_CLASS}, got non content header frame instead"
        return ConnectionError(UNEXPECTED_FRAME, text, (BASIC_CLASS, 40))

    def _content_header(self, payload: bytes) -> None:
        if self._publish is None:
            raise ConnectionError(UNEXPECTED_FRAME, "expected method frame, got non method frame instead")
        if self._header:
            raise self._content_expected()
        class_id, body_size = decode_content_header(payload)
        if class_id != BASIC_CLASS:
            raise ConnectionError(
                UNEXPECTED_FRAME,
                f"expected content header for class {BASIC_CLASS}, got one for class {class_id} instead",
                (BASIC_CLASS, 40),
            )
        self._header = payload
        self._body_remaining = body_size
        if body_size > MAX_MESSAGE_SIZE:
            self._body = _DISCARD  # RabbitMQ refuses it once it has all arrived; keep none of it
        elif body_size == 0:
            self._content_complete(b"")

    def _content_body(self, payload: bytes) -> None:
        if not self._header:
            if self._publish is None:
                raise ConnectionError(UNEXPECTED_FRAME, "expected method frame, got non method frame instead")
            raise self._content_expected()
        remaining = self._body_remaining - len(payload)
        if remaining == 0 and not self._body:
            self._content_complete(payload)
            return
        self._body_remaining = remaining
        if remaining < 0:
            # More than the header announced: RabbitMQ keeps waiting for a body that can never
            # add up, and fails on the next frame that is not a body frame.
            self._body = [b""]
            return
        self._body.append(payload)
        if remaining == 0:
            parts = self._body
            self._body = []
            self._content_complete(None if parts is _DISCARD else b"".join(parts))

    def _content_complete(self, body: bytes | None) -> None:
        """The content of the pending basic.publish is complete (``body`` None: it was over the
        size limit and dropped): the publish is a command now."""
        publish = self._publish
        header = self._header
        self._publish = None
        self._header = b""
        assert publish is not None
        self._command((publish, header, body))

    def _run_publish(self, publish: Publish, header: bytes, body: bytes | None) -> None:
        """A publish assembled frame by frame, refused first as rabbit_channel refuses them."""
        if publish.immediate:
            raise ConnectionError(NOT_IMPLEMENTED, "immediate=true", (60, 40))
        if body is None:
            size = decode_content_header(header)[1]
            raise ChannelError(
                PRECONDITION_FAILED, f"message size {size} is larger than configured max size {MAX_MESSAGE_SIZE}", (60, 40)
            )
        self._publish_message(publish, header, body)

    def _publish_message(self, publish: Publish, header: bytes, body: bytes) -> None:
        """Check, route and confirm a complete publish; its channel errors carry basic.publish's ids."""
        message = Message(publish.exchange, publish.routing_key, publish.exchange_and_key, header, body)
        try:
            vhost = self.vhost
            name = publish.exchange
            if ("write", "exchange", name) not in self._permissions.granted:
                self._check("write", "exchange", name)
            exchange = vhost.exchanges.get(name)
            if exchange is None:
                raise ChannelError(NOT_FOUND, f"no exchange '{name}' in vhost '{vhost.name}'")
            if exchange.internal:
                raise ChannelError(
                    ACCESS_REFUSED, f"cannot publish to internal exchange '{name}' in vhost '{vhost.name}'"
                )
            if self._topic_permissions and exchange.type_name == "topic":  # none anywhere: no cost
                self._check_topic("write", name, publish.routing_key)
            # Any property present: RabbitMQ's publish-time checks; none are needed for a valid
            # delivery_mode alone (what persistent publishers send).
            flags = header[12] << 8 | header[13]
            if flags and (flags != FLAG_DELIVERY_MODE or len(header) != 15 or header[14] not in (1, 2)):
                self._check_properties(message)
            self.stat_publish += 1
            if self.confirm_mode:
                self.publish_seq += 1
            if self.tx:
                seq = self.publish_seq
                self._tx_publishes.append(lambda: self._route(exchange, publish.mandatory, message, seq))
                return
            self._route(exchange, publish.mandatory, message, self.publish_seq)
        except ChannelError as error:
            error.method = (60, 40)
            raise

    def _check_properties(self, message: Message) -> None:
        if message.header[12] & 0x02:  # reply_to present: amq.rabbitmq.reply-to is rewritten
            direct_reply_to.rewrite_reply_to(self, message)
        if message.header[13] & 0x10:  # user_id property present: it must be the logged-in user
            user_id = message.user_id
            if user_id is not None and user_id != self.connection.username:
                raise ChannelError(
                    PRECONDITION_FAILED,
                    f"user_id property set to '{user_id}' but authenticated user was '{self.connection.username}'",
                )
        message.check()

    def _route(self, exchange: Exchange, mandatory: bool, message: Message, seq: int) -> bool | None:
        """Route, return or confirm one publish. None: no queue took it; else whether every
        queue that took it accepted it (what a transaction's commit needs)."""
        if exchange.router is None and (
            message.routing_key.startswith(REPLY_TO_PREFIX)
            or (message.header[12] & 0x20 and len(message.routing_keys) > 1)  # CC keys
        ):
            # Direct replies go straight to the requesting channel and do not count as routed.
            direct_reply_to.deliver_replies(self.connection.broker, message, message.routing_keys)
        queues = self.vhost.route(exchange, message)
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
            self.stat_drop_unroutable += not mandatory
        if not queues and mandatory:
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
        if self.confirm_mode:
            self.stat_confirm += 1
            if not accepted:
                self._nacks.append(seq)
            elif pending is not None:
                # Confirmed when the queues settle it (``settled``).
                self._pending.append((pending, seq))
                for settlement in pending if isinstance(pending, tuple) else (pending,):
                    settlement.watch(self.settled)
                return pending
            else:
                self._acks.append(seq)
            self.connection.confirms_pending(self)
        if pending is None or not accepted:
            return accepted if queues else None
        return pending

    def settled(self, _settlement: Settlement) -> None:
        """A settlement some confirms wait for is settled: confirm the publishes at the head of
        the line whose queues have all settled them (an ack, or a nack when one failed)."""
        waits = self._pending
        if not waits or self.closing:
            return
        acks, nacks = self._acks, self._nacks
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
            self._acks_sorted = False
            self.connection.confirms_pending(self)

    def emit_confirms(self) -> None:
        """Write the confirms gathered this tick, coalesced as rabbit_channel does.

        Acks first, then nacks. A lone ack goes out with multiple=false; otherwise the seqs
        below the smallest seq of the other kind go as one multiple=true and the rest one by
        one (rabbit_channel:coalesce_and_send). Nacks carry requeue=true, RabbitMQ's default.
        A multiple=true never reaches a seq still waiting for the message store: the cutoff
        is also below the oldest such seq.
        """
        acks, nacks = self._acks, self._nacks
        if not acks and not nacks:
            return
        self._acks = []
        self._nacks = []
        if self.closing:
            return  # RabbitMQ drops confirms of a closing channel
        if not self._acks_sorted:
            self._acks_sorted = True
            acks.sort()
            nacks.sort()
        waits = self._pending
        waiting = waits[0][1] if waits else None
        write = self.connection.write
        number = self.number
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

    # -- delivery ------------------------------------------------------------------------

    def deliver(self, consumer: ChannelConsumer, entry: QueueEntry) -> None:
        self.next_delivery_tag = tag = self.next_delivery_tag + 1
        if not consumer.no_ack:
            self.unacked[tag] = entry
            consumer.unacked += 1
            self.consumer_unacked += 1
            self.stat_deliver += 1
        else:
            self.stat_deliver_no_ack += 1
        if entry.redelivered:
            self.stat_redeliver += 1
        message = entry.message
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

    def deliver_reply(self, consumer: direct_reply_to.ReplyConsumer, message: Message) -> None:
        """A direct reply for this channel's reply consumer (no-ack, no queue)."""
        self.stat_deliver_no_ack += 1
        self.connection.write_chunks(direct_reply_to.encode_reply(self, consumer, message))

    def consumer_cancelled_by_server(self, consumer: ChannelConsumer) -> None:
        if self.consumers.pop(consumer.tag, None) is None:
            return
        if self.connection.capabilities.get("consumer_cancel_notify"):
            self.connection.write_method(self.number, build(commands.Basic.Cancel, consumer_tag=consumer.tag))

    # -- acks ----------------------------------------------------------------------------

    def _settle(self, ack: Ack) -> None:
        outcome = ACKED if ack.method_id == BASIC_ACK else REQUEUED if ack.requeue else REJECTED
        if self.tx:
            # The messages leave ``unacked`` now (a second ack of them is an unknown tag) but
            # are settled at tx.commit; tx.rollback puts them back.
            self._tx_acks.append((self._take_unacked_tagged(ack), outcome))
            return
        self._settle_entries(self._take_unacked(ack), outcome)

    def _take_unacked(self, ack: Ack) -> list[QueueEntry]:
        unacked = self.unacked
        tag = ack.delivery_tag
        if not ack.multiple:
            entry = unacked.pop(tag, None)
            if entry is None:
                raise _unknown_tag(ack)
            return [entry]
        if tag == 0:
            entries = list(unacked.values())
            unacked.clear()
            return entries
        if tag not in unacked:
            raise _unknown_tag(ack)
        keys = []
        for key in unacked:
            if key > tag:
                break
            keys.append(key)
        return [unacked.pop(key) for key in keys]

    def _take_unacked_tagged(self, ack: Ack) -> list[tuple[int, QueueEntry]]:
        unacked = self.unacked
        tag = ack.delivery_tag
        if not ack.multiple:
            entry = unacked.pop(tag, None)
            if entry is None:
                raise _unknown_tag(ack)
            return [(tag, entry)]
        if tag and tag not in unacked:
            raise _unknown_tag(ack)
        taken = [(key, entry) for key, entry in unacked.items() if not tag or key <= tag]
        for key, _ in taken:
            del unacked[key]
        return taken

    def _release_counts(self, entries: list[QueueEntry]) -> None:
        """Entries leave their consumers' prefetch windows (acked, rejected or requeued)."""
        for entry in entries:
            consumer = entry.consumer
            if consumer is not None:
                consumer.unacked -= 1  # type: ignore[attr-defined]
                self.consumer_unacked -= 1

    def _settle_entries(self, entries: list[QueueEntry], outcome: int) -> None:
        for entry in entries:  # _release_counts, inlined: this is the hot path of every ack
            consumer = entry.consumer
            if consumer is not None:
                consumer.unacked -= 1  # type: ignore[attr-defined]
                self.consumer_unacked -= 1
        if outcome == REQUEUED:
            self._requeue(entries)
        elif outcome == REJECTED:
            touched: dict[QueueType, None] = {}
            for entry in entries:
                entry.queue.discard(entry, "rejected")
                touched[entry.queue] = None
            for queue in touched:
                queue.dispatch()
        elif len(entries) == 1:
            self.stat_ack += 1
            entry = entries[0]
            queue = entry.queue
            queue.settle(entry)
            queue.dispatch()
        else:
            self.stat_ack += len(entries)
            touched: dict[QueueType, None] = {}
            for entry in entries:
                queue = entry.queue
                queue.settle(entry)
                touched[queue] = None
            for queue in touched:
                queue.dispatch()
        if self.global_prefetch:
            self._dispatch_all()

    def _requeue(self, entries: list[QueueEntry]) -> None:
        by_queue: dict[QueueType, list[QueueEntry]] = {}
        for entry in entries:
            by_queue.setdefault(entry.queue, []).append(entry)
        for queue, queue_entries in by_queue.items():
            queue.requeue(queue_entries)

    def _dispatch_all(self) -> None:
        for queue in {c.queue for c in self.consumers.values()}:
            queue.dispatch()

    # -- stats ---------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """The channel's counters, named as RabbitMQ's management API names them."""
        deliver_get = self.stat_deliver + self.stat_deliver_no_ack + self.stat_get + self.stat_get_no_ack
        return {
            "number": self.number,
            "consumer_count": len(self.consumers),  # as RabbitMQ: the reply consumer is not one
            "messages_unacknowledged": self.unacked_count,
            "messages_unconfirmed": len(self._pending),
            "messages_uncommitted": len(self._tx_publishes),
            "acks_uncommitted": sum(len(taken) for taken, _ in self._tx_acks),
            "prefetch_count": self.consumer_prefetch,
            "global_prefetch_count": self.global_prefetch,
            "confirm": self.confirm_mode,
            "transactional": self.tx,
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

    # -- consumer (delivery acknowledgement) timeout -------------------------------------

    def _timeout_tick(self, interval: float) -> None:
        """Close the channel when its oldest unacked delivery is older than the timeout.

        Tick ``n`` records the newest delivery tag so far. A delivery whose tag is no newer
        than the one recorded ``ticks_needed`` ticks ago has been unacked for at least the
        timeout, so the check is one comparison with the oldest unacked tag.
        """
        self._timeout_timer = None
        if self.closing or self.connection.closed:
            return
        self._ticks = tick = self._ticks + 1
        ticks = self._tick_tags
        needed = self._ticks_needed
        while len(ticks) >= 2 and tick - ticks[1][0] >= needed:
            ticks.popleft()
        unacked = self.unacked
        if unacked and ticks and tick - ticks[0][0] >= needed and next(iter(unacked)) <= ticks[0][1]:
            self.close_with(
                ChannelError(
                    PRECONDITION_FAILED,
                    f"delivery acknowledgement on channel {self.number} timed out. Timeout value used: "
                    f"{self.consumer_timeout} ms. This timeout value can be configured, see consumers "
                    "doc guide to learn more",
                )
            )
            return
        ticks.append((tick, self.next_delivery_tag))
        self._timeout_timer = self.connection.loop.call_later(interval, self._timeout_tick, interval)

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
        if self._timeout_timer is not None:
            self._timeout_timer.cancel()
            self._timeout_timer = None
        direct_reply_to.cancel(self)
        if self._publish is not None:
            self._body = _DISCARD  # the rest of its content is still assembled, not kept
        for consumer in list(self.consumers.values()):
            self._remove_consumer(consumer)
        self._acks = []
        self._nacks = []
        self._pending.clear()
        self._tx_publishes = []
        entries = list(self.unacked.values())
        self.unacked.clear()
        for taken, _outcome in self._tx_acks:  # acked in a transaction never committed
            entries.extend(entry for _tag, entry in taken)
        self._tx_acks = []
        if entries:
            self._release_counts(entries)
            self._requeue(entries)

    def _remove_consumer(self, consumer: ChannelConsumer) -> None:
        self.consumers.pop(consumer.tag, None)
        consumer.queue.remove_consumer(consumer)

    # -- method handlers -----------------------------------------------------------------

    def _reply(self, method: Any) -> None:
        self.connection.write_method(self.number, method)

    def _check(self, kind: str, resource: str, name: str) -> None:
        connection = self.connection
        self._permissions.check(connection.permission, kind, resource, name, self.vhost.name, connection.username)

    def _check_topic(self, kind: str, exchange: str, routing_key: str) -> None:
        """The topic permission check on a routing key of a topic exchange."""
        self._topic_grants.check_topic(
            self._topic_permissions, kind, exchange, routing_key, self.vhost.name, self.connection.username
        )

    def _binding_check(self, source: str, routing_key: str) -> Check:
        """The permission checks of a (un)bind, as rabbit_channel:binding_action makes them:
        right after read on the source, read on the routing key's topic when the source is an
        existing topic exchange."""

        def check(kind: str, resource: str, name: str) -> None:
            self._check(kind, resource, name)
            if kind == "read" and resource == "exchange" and self._topic_permissions:
                exchange = self.vhost.exchanges.get(source)
                if exchange is not None and exchange.type_name == "topic":
                    self._check_topic("read", source, routing_key)

        return check

    def _queue_name(self, name: str) -> str:
        """An empty queue name means the channel's last declared queue (AMQP's rule)."""
        if name:
            return name
        if self.connection.last_queue.get(self.number):
            return self.connection.last_queue[self.number]
        raise ChannelError(NOT_FOUND, "no previously declared queue")

    def on_channel_close(self, method: commands.Channel.Close) -> None:
        self.release()
        self._reply(commands.Channel.CloseOk())
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
        self._reply(commands.Channel.FlowOk(active=True))

    def on_basic_qos(self, method: commands.Basic.Qos) -> None:
        if method.prefetch_size:
            raise ConnectionError(NOT_IMPLEMENTED, f"prefetch_size!=0 ({method.prefetch_size})", (60, 10))
        self._reply(commands.Basic.QosOk())
        if method.global_:
            self.global_prefetch = method.prefetch_count
            self._dispatch_all()
        else:
            self.consumer_prefetch = method.prefetch_count  # for consumers made from now on

    def on_basic_consume(self, method: commands.Basic.Consume) -> None:
        # Checks in rabbit_channel's order: tag reuse, queue name, permission, queue exists,
        # exclusive owner, consumer arguments, exclusive consumers.
        if method.consumer_tag and method.consumer_tag in self.consumers:
            raise ConnectionError(530, f"attempt to reuse consumer tag '{method.consumer_tag}'", (60, 20))
        if method.queue == direct_reply_to.PSEUDO_QUEUE:
            reply = direct_reply_to.consume(
                self, method.consumer_tag or self.connection.new_consumer_tag(), method.no_ack
            )
            if not method.nowait:
                self._reply(build(commands.Basic.ConsumeOk, consumer_tag=reply.tag))
            return
        name = self._queue_name(method.queue)
        self._check("read", "queue", name)
        queue = self.vhost.queue_or_404(name)
        self.vhost.check_exclusive(queue, self.connection.id)
        priority = (method.arguments or {}).get("x-priority", 0)
        if not is_integer(priority):
            raise ChannelError(
                PRECONDITION_FAILED,
                f"invalid arg 'x-priority' for queue '{name}' in vhost '{self.vhost.name}': "
                f'"expected integer, got {amqp_type_name(priority)}"',
            )
        existing = getattr(queue, "consumers", ())
        sac = queue.settings.single_active_consumer  # an exclusive consumer is refused there too
        if (existing or sac) and (method.exclusive or any(c.exclusive for c in existing)):
            raise ChannelError(ACCESS_REFUSED, f"queue '{name}' in vhost '{self.vhost.name}' in exclusive use")
        tag = method.consumer_tag or self.connection.new_consumer_tag()
        consumer = ChannelConsumer(tag, self, queue, method.no_ack, method.exclusive, priority)
        self.consumers[tag] = consumer
        if not method.nowait:
            self._reply(build(commands.Basic.ConsumeOk, consumer_tag=tag))
        queue.add_consumer(consumer)

    def on_basic_cancel(self, method: commands.Basic.Cancel) -> None:
        consumer = self.consumers.get(method.consumer_tag)
        if consumer is not None:
            self._remove_consumer(consumer)
        elif self.reply_consumer is not None and self.reply_consumer.tag == method.consumer_tag:
            direct_reply_to.cancel(self)
        if not method.nowait:
            self._reply(build(commands.Basic.CancelOk, consumer_tag=method.consumer_tag))

    def on_basic_get(self, method: commands.Basic.Get) -> None:
        name = self._queue_name(method.queue)
        self._check("read", "queue", name)
        queue = self.vhost.queue_or_404(name)
        self.vhost.check_exclusive(queue, self.connection.id)
        entry = queue.get()
        if entry is None:
            self.stat_get_empty += 1
            self._reply(commands.Basic.GetEmpty())
            return
        self.next_delivery_tag = tag = self.next_delivery_tag + 1
        if entry.redelivered:
            self.stat_redeliver += 1
        if method.no_ack:
            self.stat_get_no_ack += 1
            queue.settle(entry)
        else:
            self.stat_get += 1
            self.unacked[tag] = entry
        message = entry.message
        connection = self.connection
        connection.write_chunks(
            encode_get_ok(
                self.number,
                tag,
                entry.redelivered,
                message.exchange_and_key,
                queue.message_count,
                message.header,
                message.body,
                connection.frame_max,
            )
        )

    def on_basic_recover(self, method: commands.Basic.Recover) -> None:
        if not method.requeue:
            raise ConnectionError(NOT_IMPLEMENTED, "requeue=false", (60, 110))
        self._reply(commands.Basic.RecoverOk())
        self._recover()

    def on_basic_recover_async(self, method: commands.Basic.RecoverAsync) -> None:
        if not method.requeue:
            raise ConnectionError(NOT_IMPLEMENTED, "requeue=false", (60, 100))
        self._recover()

    def _recover(self) -> None:
        """Every unacked message of the channel goes back to its queue, to be redelivered."""
        entries = list(self.unacked.values())
        self.unacked.clear()
        self._release_counts(entries)
        self._requeue(entries)

    def on_confirm_select(self, method: commands.Confirm.Select) -> None:
        if self.tx:
            raise ChannelError(PRECONDITION_FAILED, "cannot switch from tx to confirm mode", (85, 10))
        self.confirm_mode = True
        if not method.nowait:
            self._reply(commands.Confirm.SelectOk())

    def on_tx_select(self, method: commands.Tx.Select) -> None:
        if self.confirm_mode:
            raise ChannelError(PRECONDITION_FAILED, "cannot switch from confirm to tx mode", (90, 10))
        self.tx = True
        self._reply(commands.Tx.SelectOk())

    def on_tx_commit(self, method: commands.Tx.Commit) -> Coroutine[Any, Any, None] | None:
        """Route the transaction's publishes, then settle its acks, then reply.

        As in RabbitMQ, tx.commit-ok follows the deliveries of the committed publishes but
        precedes the redeliveries of messages the transaction requeued, held back until it is
        out. It goes out later (``_tx_commit_ok_later``) when:

        - the commit routed messages to queues: RabbitMQ replies once those queues confirmed
          them and refuses any other command of the channel meanwhile (``_committing``, see
          ``_command``); here that wait is one turn of the event loop, so a command sent along
          with the commit is refused. A message a queue refused fails the commit.
        - the commit stored or removed persistent messages: the reply waits for the message
          store to commit the batch holding those changes, and later commands wait with it.
        """
        if not self.tx:
            raise ChannelError(PRECONDITION_FAILED, "channel is not transactional", (90, 20))
        publishes, acks = self._tx_publishes, self._tx_acks
        self._tx_publishes = []
        self._tx_acks = []
        store = self._store
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
            self.flow_active = False
            try:
                for taken, outcome in acks:
                    entries = [entry for _tag, entry in taken]
                    if store is not None and outcome != REQUEUED and not stored:
                        stored = any(entry.stored is not None for entry in entries)
                    self._settle_entries(entries, outcome)
            except BaseException:
                self.flow_active = True
                raise
        if store is not None and stored:
            settlements.add(store.pending())  # the removals are in the batch now gathering
        if not settlements and not routed:
            self._tx_commit_ok(bool(acks))
            return None
        self._committing = routed
        return self._tx_commit_ok_later(settlements, bool(acks), accepted)

    async def _tx_commit_ok_later(self, settlements: set[Settlement], acks: bool, accepted: bool) -> None:
        """tx.commit-ok once the commit is complete: when its queues settled what they owe
        (the message store's batch on disk), else on the next turn of the event loop. A refused
        publish or a failed write fails the commit as a nacked publish does in RabbitMQ
        ("partial tx completion"); a channel closed meanwhile gets nothing.
        """
        try:
            written = await all_settled(settlements)
        finally:
            self._committing = False
            self.flow_active = True
        if self.closing or self.connection.channels.get(self.number) is not self:
            return
        if not (written and accepted):
            raise ChannelError(PRECONDITION_FAILED, "partial tx completion", (90, 20))
        self._tx_commit_ok(acks)

    def _tx_commit_ok(self, acks: bool) -> None:
        self.flow_active = True
        self._reply(commands.Tx.CommitOk())
        if acks:
            self._dispatch_all()  # the redeliveries held back by flow_active

    def on_tx_rollback(self, method: commands.Tx.Rollback) -> None:
        """Drop the transaction's publishes; its acked messages become unacked again."""
        if not self.tx:
            raise ChannelError(PRECONDITION_FAILED, "channel is not transactional", (90, 30))
        acks = self._tx_acks
        self._tx_publishes = []
        self._tx_acks = []
        if acks:
            unacked = dict(self.unacked)
            for taken, _requeue in acks:
                unacked.update(taken)
            self.unacked = dict(sorted(unacked.items()))
        self._reply(commands.Tx.RollbackOk())

    async def on_exchange_declare(self, method: commands.Exchange.Declare) -> None:
        await self.vhost.declare_exchange(
            method.exchange,
            method.exchange_type,
            passive=method.passive,
            durable=method.durable,
            auto_delete=method.auto_delete,
            internal=method.internal,
            arguments=method.arguments,
            check=self._check,
        )
        if not method.nowait:
            self._reply(commands.Exchange.DeclareOk())

    async def on_exchange_delete(self, method: commands.Exchange.Delete) -> None:
        await self.vhost.delete_exchange(method.exchange, method.if_unused, check=self._check)
        if not method.nowait:
            self._reply(commands.Exchange.DeleteOk())

    async def on_exchange_bind(self, method: commands.Exchange.Bind) -> None:
        await self.vhost.bind(
            method.source,
            Destination(EXCHANGE, method.destination),
            method.routing_key,
            method.arguments,
            check=self._binding_check(method.source, method.routing_key),
        )
        if not method.nowait:
            self._reply(commands.Exchange.BindOk())

    async def on_exchange_unbind(self, method: commands.Exchange.Unbind) -> None:
        await self.vhost.unbind(
            method.source,
            Destination(EXCHANGE, method.destination),
            method.routing_key,
            method.arguments,
            check=self._binding_check(method.source, method.routing_key),
        )
        if not method.nowait:
            self._reply(commands.Exchange.UnbindOk())

    def on_queue_declare(self, method: commands.Queue.Declare) -> Any:
        if method.queue.startswith(direct_reply_to.PSEUDO_QUEUE):
            # rabbit_channel's declare_fast_reply_to, passive or not: 0 messages, 1 consumer.
            name = method.queue
            if not direct_reply_to.exists(self.connection.broker, name):
                raise ChannelError(NOT_FOUND, f"no queue '{name}' in vhost '{self.vhost.name}'")
            self.connection.last_queue[self.number] = name
            if not method.nowait:
                self._reply(build(commands.Queue.DeclareOk, queue=name, message_count=0, consumer_count=1))
            return None
        return self._queue_declare(method)

    async def _queue_declare(self, method: commands.Queue.Declare) -> None:
        connection = self.connection
        name = method.queue or connection.new_queue_name()
        queue = await self.vhost.declare_queue(
            name,
            passive=method.passive,
            durable=method.durable,
            exclusive_owner=connection.id if method.exclusive else None,
            auto_delete=method.auto_delete,
            arguments=method.arguments,
            server_named=not method.queue,
            check=self._check,
            connection_id=connection.id,
        )
        queue.touch()  # a (passive) redeclare restarts the x-expires countdown
        connection.last_queue[self.number] = name
        if not method.nowait:
            self._reply(
                build(
                    commands.Queue.DeclareOk,
                    queue=name,
                    message_count=queue.message_count,
                    consumer_count=queue.consumer_count,
                )
            )

    async def on_queue_bind(self, method: commands.Queue.Bind) -> None:
        name = self._queue_name(method.queue)
        await self.vhost.bind(
            method.exchange,
            Destination(QUEUE, name),
            method.routing_key,
            method.arguments,
            check=self._binding_check(method.exchange, method.routing_key),
            connection_id=self.connection.id,
        )
        if not method.nowait:
            self._reply(commands.Queue.BindOk())

    async def on_queue_unbind(self, method: commands.Queue.Unbind) -> None:
        name = self._queue_name(method.queue)
        await self.vhost.unbind(
            method.exchange,
            Destination(QUEUE, name),
            method.routing_key,
            method.arguments,
            check=self._binding_check(method.exchange, method.routing_key),
            connection_id=self.connection.id,
        )
        self._reply(commands.Queue.UnbindOk())

    def on_queue_purge(self, method: commands.Queue.Purge) -> None:
        name = self._queue_name(method.queue)
        self._check("read", "queue", name)
        queue = self.vhost.queue_or_404(name)
        self.vhost.check_exclusive(queue, self.connection.id)
        count = queue.purge()
        if not method.nowait:
            self._reply(build(commands.Queue.PurgeOk, message_count=count))

    async def on_queue_delete(self, method: commands.Queue.Delete) -> None:
        name = self._queue_name(method.queue)
        count = await self.vhost.delete_queue(
            name, method.if_unused, method.if_empty, check=self._check, connection_id=self.connection.id
        )
        if not method.nowait:
            self._reply(build(commands.Queue.DeleteOk, message_count=count))


_HANDLERS: dict[type, Callable[[Channel, Any], Any]] = {
    commands.Channel.Close: Channel.on_channel_close,
    commands.Channel.CloseOk: Channel.on_channel_close_ok,
    commands.Channel.Open: Channel.on_channel_open,
    commands.Channel.Flow: Channel.on_channel_flow,
    commands.Basic.Qos: Channel.on_basic_qos,
    commands.Basic.Consume: Channel.on_basic_consume,
    commands.Basic.Cancel: Channel.on_basic_cancel,
    commands.Basic.Get: Channel.on_basic_get,
    commands.Basic.Recover: Channel.on_basic_recover,
    commands.Basic.RecoverAsync: Channel.on_basic_recover_async,
    commands.Confirm.Select: Channel.on_confirm_select,
    commands.Tx.Select: Channel.on_tx_select,
    commands.Tx.Commit: Channel.on_tx_commit,
    commands.Tx.Rollback: Channel.on_tx_rollback,
    commands.Exchange.Declare: Channel.on_exchange_declare,
    commands.Exchange.Delete: Channel.on_exchange_delete,
    commands.Exchange.Bind: Channel.on_exchange_bind,
    commands.Exchange.Unbind: Channel.on_exchange_unbind,
    commands.Queue.Declare: Channel.on_queue_declare,
    commands.Queue.Bind: Channel.on_queue_bind,
    commands.Queue.Unbind: Channel.on_queue_unbind,
    commands.Queue.Purge: Channel.on_queue_purge,
    commands.Queue.Delete: Channel.on_queue_delete,
}
