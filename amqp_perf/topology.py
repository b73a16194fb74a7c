"""Which exchange, queues, bindings and routing keys a run uses (PerfTest's rules), declaring them
and removing what the run created.

- No ``-u`` and no queue pattern: every consumer declares its own server-named, exclusive queue
  on its connection and binds it with the routing key (so every consumer gets every message);
  the key is ``-k`` or a random UUID.
- ``-u a,b``: the coordinator declares the named queues (durable with ``-f persistent``,
  auto-delete unless ``--auto-delete false``) and binds them with the key; every consumer
  consumes all of them.
- ``--queue-pattern perf-%d --queue-pattern-from 1 --queue-pattern-to 20``: those queues, each
  bound with its own name as key; producer i publishes with key queue[i % n] and consumer j
  consumes queue[j % n].
- The exchange is ``-e`` (empty or ``amq.default``: the default exchange, no bindings, and
  the key defaults to the queue name) or, by default, an exchange named after ``-t``.

Clean-up deletes only what this run created: the consumers' server-named queues (workers) and the
exchange if it did not exist before (with if-unused, so it stays while anyone's queues are bound).
Named queues are left to auto-delete, and ``-p`` deletes nothing.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass

from pamqp import commands

from amqp_perf.client import AmqpError, Connection
from amqp_perf.settings import Settings

NOT_FOUND = 404
PRECONDITION_FAILED = 406


@dataclass(frozen=True)
class Topology:
    exchange: str
    exchange_type: str
    #: queues the coordinator declares, with their binding keys ("" exchange: not bound)
    named_queues: tuple[tuple[str, str], ...]
    #: routing key of each producer
    producer_keys: tuple[str, ...]
    #: queues of each consumer; empty: its own server-named queue
    consumer_queues: tuple[tuple[str, ...], ...]
    #: binding key of the server-named queues (None: not bound)
    own_queue_key: str | None
    #: per producer: deliveries one publish makes that some consumer takes
    fanout: tuple[int, ...]
    #: per consumer and queue: it is the queue's only consumer, so a gap in a producer's
    #: sequence numbers is a lost message
    sole_consumer: tuple[tuple[bool, ...], ...]

    @property
    def declares_exchange(self) -> bool:
        return bool(self.exchange) and not self.exchange.startswith("amq.")


def plan(settings: Settings) -> Topology:
    exchange = settings.exchange_type if settings.exchange is None else settings.exchange
    if exchange == "amq.default":
        exchange = ""
    pattern = settings.pattern_queues()
    producers, consumers = range(settings.producers), range(settings.consumers)
    if pattern:
        named = tuple((q, "" if not exchange else q) for q in pattern)
        producer_keys = tuple(pattern[i % len(pattern)] for i in producers)
        consumer_queues = tuple((pattern[j % len(pattern)],) for j in consumers)
        own_key = None
    elif settings.queues:
        key = settings.routing_key or (settings.queues[0] if not exchange else str(uuid.uuid4()))
        named = tuple((q, "" if not exchange else key) for q in settings.queues)
        producer_keys = (key,) * settings.producers
        consumer_queues = (tuple(settings.queues),) * settings.consumers
        own_key = None
    else:
        key = settings.routing_key or str(uuid.uuid4())
        named = ()
        producer_keys = (key,) * settings.producers
        consumer_queues = ((),) * settings.consumers
        own_key = key if exchange else None

    readers = Counter(q for queues in consumer_queues for q in queues)
    bound = dict(named)

    def deliveries(key: str) -> int:
        if not exchange:
            targets = [q for q in bound if q == key]
        elif settings.exchange_type in ("fanout", "headers"):
            targets = list(bound)
        else:
            targets = [q for q, k in bound.items() if k == key]
        own = (
            settings.consumers
            if own_key is not None and (own_key == key or settings.exchange_type == "fanout")
            else 0
        )
        return own + sum(1 for q in targets if readers[q])

    return Topology(
        exchange=exchange,
        exchange_type=settings.exchange_type,
        named_queues=named,
        producer_keys=producer_keys,
        consumer_queues=consumer_queues,
        own_queue_key=own_key,
        fanout=tuple(deliveries(k) for k in producer_keys),
        sole_consumer=tuple(
            tuple(readers[q] == 1 for q in queues) if queues else (True,) for queues in consumer_queues
        ),
    )


async def _exists(
    conn: Connection, method: commands.Exchange.Declare | commands.Queue.Declare, ok: type
) -> bool:
    """A passive declare on channel 1: True if the object exists (channel 1 is reopened after a
    404, which closes it)."""
    try:
        await conn.rpc(1, method, ok)
        return True
    except AmqpError as exc:
        if exc.code != NOT_FOUND:
            raise
        await conn.open_channel(1)
        return False


@dataclass
class Declared:
    """What the coordinator's set-up created, for clean-up."""

    exchange: str | None = None


async def declare(conn: Connection, topology: Topology, settings: Settings) -> Declared:
    """Declare the exchange and the named queues and bind them, on channel 1 of ``conn``
    (opened here). With ``-p`` existing objects are used as they are."""
    await conn.open_channel(1)
    declared = Declared()
    if topology.declares_exchange:
        existed = await _exists(
            conn,
            commands.Exchange.Declare(exchange=topology.exchange, passive=True),
            commands.Exchange.DeclareOk,
        )
        if not (existed and settings.predeclared):
            await conn.rpc(
                1,
                commands.Exchange.Declare(exchange=topology.exchange, exchange_type=topology.exchange_type),
                commands.Exchange.DeclareOk,
            )
        if not existed:
            declared.exchange = topology.exchange
    for queue, key in topology.named_queues:
        if not (
            settings.predeclared
            and await _exists(
                conn, commands.Queue.Declare(queue=queue, passive=True), commands.Queue.DeclareOk
            )
        ):
            await conn.rpc(
                1,
                commands.Queue.Declare(
                    queue=queue, durable=settings.persistent or settings.quorum, auto_delete=settings.auto_delete,
                    arguments={"x-queue-type": "quorum"} if settings.quorum else None,
                ),  # fmt: skip
                commands.Queue.DeclareOk,
            )
        if topology.exchange:
            await conn.rpc(
                1,
                commands.Queue.Bind(queue=queue, exchange=topology.exchange, routing_key=key),
                commands.Queue.BindOk,
            )
    return declared


async def cleanup(conn: Connection, declared: Declared, settings: Settings) -> None:
    """Delete the exchange the run created, unless it is still used (or ``-p`` was given)."""
    if declared.exchange is None or settings.predeclared:
        return
    try:
        await conn.rpc(
            1,
            commands.Exchange.Delete(exchange=declared.exchange, if_unused=True),
            commands.Exchange.DeleteOk,
        )
    except AmqpError as exc:
        if exc.code != PRECONDITION_FAILED:  # still has bindings: someone uses it, keep it
            raise
