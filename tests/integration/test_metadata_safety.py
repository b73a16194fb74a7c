"""No declare, bind, policy or definitions import can poison the metadata store: input is
checked completely before it is committed, a committed record always applies, and a boot that
meets a stored record it cannot apply logs it, sets it aside and starts with everything else.

Non-UTF-8 octets in string arguments are taken as RabbitMQ 3.10 takes them (checked against
Debian's rabbitmq-server): accepted where RabbitMQ accepts them, and sent back octet for octet
in reply texts.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import struct
from pathlib import Path

import pika
import pytest
from conftest import BrokerHandle, start_broker
from metadata_fuzz import durable_state, run, set_aside_rows
from pamqp import commands
from rawamqp import RawClient

from amqp_server.admin.errors import AdminError
from amqp_server.metadata.sqlite import SqliteStore
from amqp_server.metadata.store import Change
from amqp_server.protocol.frame_codec import build, encode_method

NOT_UTF8 = b"\xff\xfe"


def _declare_raw(handle: BrokerHandle, method: object) -> RawClient:
    client = RawClient.connected(handle.port)
    client.send_raw(encode_method(1, method))
    return client


def test_alternate_exchange_that_is_not_utf8_is_accepted_and_survives_restart(tmp_path: Path) -> None:
    """The record that once stopped every later boot: RabbitMQ answers declare-ok."""
    handle = start_broker(data_dir=str(tmp_path))
    try:
        arguments = {"alternate-exchange": NOT_UTF8}
        client = _declare_raw(
            handle, build(commands.Exchange.Declare, exchange="poison", exchange_type="direct", durable=True,
                          arguments=arguments)  # fmt: skip
        )
        client.expect(1, commands.Exchange.DeclareOk)
        client.close()
    finally:
        handle.stop()
    handle = start_broker(data_dir=str(tmp_path))
    try:
        with handle.connect() as connection:
            channel = connection.channel()
            channel.exchange_declare("poison", "direct", passive=True)
            channel.confirm_delivery()
            # The alternate names no exchange (no name is that octet string): unroutable, returned.
            with pytest.raises(pika.exceptions.UnroutableError):
                channel.basic_publish("poison", "k", b"m", mandatory=True)
        exchange = handle.call(lambda: handle.broker.vhosts["/"].exchanges["poison"])
        assert exchange.arguments == arguments
    finally:
        handle.stop()


@pytest.mark.parametrize(
    ("arguments", "text"),
    [
        ({"x-queue-mode": NOT_UTF8},
         b"PRECONDITION_FAILED - invalid arg 'x-queue-mode' for queue 'q-mode' in vhost '/': "
         b"\"unsupported queue mode '\xff\xfe'\""),
        ({"x-queue-type": NOT_UTF8},
         b"PRECONDITION_FAILED - invalid arg 'x-queue-type' for queue 'q-mode' in vhost '/': "
         b"\"unsupported queue type '\xff\xfe'\""),
    ],
)  # fmt: skip
def test_reply_texts_carry_the_clients_octets(broker: BrokerHandle, arguments: dict, text: bytes) -> None:
    client = _declare_raw(broker, build(commands.Queue.Declare, queue="q-mode", durable=True, arguments=arguments))
    got = client.next()
    client.close()
    assert got.payload[:4] == struct.pack(">HH", 20, 40)  # channel.close
    assert got.payload[6 : 7 + got.payload[6]] == bytes((len(text),)) + text


def test_x_match_octets_are_printed_as_rabbitmq_prints_them(broker: BrokerHandle, unique: str) -> None:
    with broker.connect() as connection:
        connection.channel().queue_declare(unique, auto_delete=True)
    client = _declare_raw(
        broker, build(commands.Queue.Bind, queue=unique, exchange="amq.headers", arguments={"x-match": NOT_UTF8})
    )
    got = client.next()
    client.close()
    assert b'Invalid x-match field value <<"\xff\xfe">>;' in got.payload


@pytest.mark.parametrize("locator", ["foo", NOT_UTF8, 3])
def test_unknown_master_locator_is_refused_as_rabbitmq_does(broker: BrokerHandle, unique: str, locator: object) -> None:
    """RabbitMQ 3.10 declares nothing and closes the connection with a bare INTERNAL_ERROR."""
    client = _declare_raw(
        broker, build(commands.Queue.Declare, queue=unique, durable=True,
                      arguments={"x-queue-master-locator": locator})  # fmt: skip
    )
    close = client.expect_close()
    client.close()
    assert (close.reply_code, close.reply_text) == (541, "INTERNAL_ERROR")
    assert unique not in broker.call(lambda: set(broker.broker.vhosts["/"].queues))


async def _store(data_dir: Path, *changes: Change) -> None:
    store = SqliteStore(data_dir)
    for change in changes:
        await store.commit(change)
    await store.close()


def _prepare_store(tmp_path: Path, *changes: Change) -> None:
    """A data directory with a durable queue holding one persistent message, plus ``changes``
    written straight into its store (records no declare would have let through)."""
    handle = start_broker(data_dir=str(tmp_path))
    with handle.connect() as connection:
        channel = connection.channel()
        channel.queue_declare("kept", durable=True)
        channel.basic_publish("", "kept", b"still here", pika.BasicProperties(delivery_mode=2))
    handle.stop()
    asyncio.run(_store(tmp_path, *changes))


def _binding(source: str, key: str) -> Change:
    record = {"source": source, "destination_type": "queue", "destination": "kept", "routing_key": key,
              "arguments": {}}  # fmt: skip
    return Change("binding", "put", "/", repr((source, "queue", "kept", key)), record)


def test_boot_sets_aside_a_record_it_cannot_apply(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A binding its exchange type refuses (x-consistent-hash weights are integers) is logged
    and set aside; the node starts with everything else, and the next boot does not meet it."""
    exchange = Change("exchange", "put", "/", "hashed", {"type": "x-consistent-hash", "durable": True})
    _prepare_store(tmp_path, exchange, _binding("hashed", "10"), _binding("hashed", "heavy"))
    with caplog.at_level(logging.ERROR):  # (its plugin, enabled at boot, recovers it as what it is)
        handle = start_broker(data_dir=str(tmp_path), plugins=["rabbitmq_consistent_hash_exchange"])
    try:
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "setting aside stored binding" in errors[0], errors
        assert "The binding key 'heavy' must be a positive integer" in errors[0]
        keys = handle.call(lambda: [b.routing_key for b in handle.broker.vhosts["/"].bindings_of_queue("kept")])
        assert keys == ["10"]
        with handle.connect() as connection:
            _, _, body = connection.channel().basic_get("kept", auto_ack=True)
            assert body == b"still here"
    finally:
        handle.stop()
    with sqlite3.connect(tmp_path / "metadata.db") as db:
        rows = db.execute("SELECT kind, name FROM set_aside").fetchall()
    assert rows == [("binding", repr(("hashed", "queue", "kept", "heavy")))]
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        handle = start_broker(data_dir=str(tmp_path), plugins=["rabbitmq_consistent_hash_exchange"])
    handle.stop()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_exchange_whose_plugin_is_gone_loads_as_a_placeholder(tmp_path: Path) -> None:
    """As RabbitMQ's rabbit_exchange_type_invalid: the exchange and its bindings stay, routing
    through it is refused with 406, and a redeclare names the type as unknown."""
    exchange = Change("exchange", "put", "/", "orphan", {"type": "x-uninstalled-plugin", "durable": True})
    _prepare_store(tmp_path, exchange, _binding("orphan", "k"))
    handle = start_broker(data_dir=str(tmp_path))
    try:
        with handle.connect() as connection:
            channel = connection.channel()
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
                channel.basic_publish("orphan", "k", b"m")
                channel.queue_declare("kept", passive=True)  # the publish's refusal arrives first
            assert (info.value.reply_code, info.value.reply_text) == (
                406, "PRECONDITION_FAILED - Cannot route message through exchange 'orphan' in vhost '/': "
                "exchange type x-uninstalled-plugin not found",
            )  # fmt: skip
            channel = connection.channel()
            with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
                channel.exchange_declare("orphan", "x-uninstalled-plugin", durable=True)
            assert closed.value.reply_code == 503
        keys = handle.call(lambda: [b.source for b in handle.broker.vhosts["/"].bindings_of_queue("kept")])
        assert keys == ["orphan"]
    finally:
        handle.stop()


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"queues": [{"vhost": "/"}]}, "queues[0] has no 'name'"),
        ({"exchanges": [{"name": "x", "durable": "yes"}]}, "exchanges[0]: 'durable' has the wrong type"),
        ({"queues": [{"name": "q" * 256}]}, "queues[0]: 'name' is longer than 255 bytes"),
        ({"users": [{"name": "\udcff"}]}, "users[0] holds a string that is not valid Unicode"),
        ({"bindings": "all of them"}, "'bindings' must be a list"),
        ({"vhosts": [5]}, "vhosts[0] must be an object"),
    ],
)
def test_malformed_definitions_are_refused_before_anything_is_imported(
    broker: BrokerHandle, document: dict, reason: str
) -> None:
    document = {"exchanges": [{"name": "imported-first", "vhost": "/"}], **document}
    before = broker.call(durable_state, broker.broker)
    with pytest.raises(AdminError) as info:
        broker.run(broker.admin.import_definitions(document))
    assert str(info.value) == reason
    assert broker.call(durable_state, broker.broker) == before


def test_metadata_fuzz_with_restarts(tmp_path: Path) -> None:
    """A short run of the metadata fuzz (scripts/metadata_fuzz.py runs 10,000 operations)."""
    outcomes = run(seed=20261203, operations=1500, restarts=5, data_dir=str(tmp_path))
    assert outcomes["restarts"] == 5
    assert sum(count for key, count in outcomes.items() if key.endswith(" ok")) > 300
    assert set_aside_rows(str(tmp_path)) == 0


@pytest.mark.parametrize("kind", ["queue", "exchange"])
def test_concurrent_declares_of_one_name_give_one_entity_and_one_refusal(tmp_path: Path, kind: str) -> None:
    """Two declares of one durable name with different arguments, committing at the same time:
    the first to commit creates it, the second finds it existing and gets RabbitMQ's 406, as if
    it had come later (no caller is left holding an entity that was replaced)."""
    handle = start_broker(data_dir=str(tmp_path))
    try:
        clients = [RawClient.connected(handle.port) for _ in range(2)]
        for client, ttl in zip(clients, (1000, 2000), strict=True):
            if kind == "queue":
                method = build(commands.Queue.Declare, queue="contested", durable=True,
                               arguments={"x-message-ttl": ttl})  # fmt: skip
            else:
                method = build(commands.Exchange.Declare, exchange="contested", exchange_type="direct",
                               durable=True, arguments={"alternate-exchange": f"ae-{ttl}"})  # fmt: skip
            client.send_raw(encode_method(1, method))
        answers = [client.next() for client in clients]
        for client in clients:
            client.close()
        oks = [a for a in answers if type(a.value).__name__ == "DeclareOk"]
        refusals = [a.value for a in answers if isinstance(a.value, commands.Channel.Close)]
        assert len(oks) == 1 and len(refusals) == 1, answers
        assert refusals[0].reply_code == 406 and "inequivalent arg" in refusals[0].reply_text
        winner = 1000 if answers[0] in oks else 2000
        table = "queues" if kind == "queue" else "exchanges"
        arguments = handle.call(lambda: dict(getattr(handle.broker.vhosts["/"], table)["contested"].arguments))
        assert arguments == ({"x-message-ttl": winner} if kind == "queue" else {"alternate-exchange": f"ae-{winner}"})
        before = handle.call(durable_state, handle.broker)
    finally:
        handle.stop()
    handle = start_broker(data_dir=str(tmp_path))
    try:
        assert handle.call(durable_state, handle.broker) == before
    finally:
        handle.stop()
