"""Durable metadata across restarts of a broker with a data directory: what was durable comes
back exactly (vhosts, users with their passwords, permissions, durable exchanges, queues and the
bindings between durable ends), what was transient or exclusive does not, whether the broker was
stopped (SIGTERM) or killed (SIGKILL). The data directory is locked against a second broker, and
a damaged store stops the start with a clear error instead of booting an empty broker."""

from __future__ import annotations

import asyncio
import datetime
import signal
from decimal import Decimal
from pathlib import Path

import pika
import pika.exceptions
import pytest
from conftest import BrokerHandle, Node, start_broker

from amqp_server.metadata.sqlite import StoreError
from exchanges.base import QUEUE, Destination

CUSTOM_ARGS = {
    "x-message-ttl": 60000,
    "x-dead-letter-exchange": "dlx",
    "x-custom-decimal": Decimal("1.50"),
    "x-custom-time": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
    "x-custom-table": {"nested": [1, "two", True]},
}


def _user_exchanges(handle: BrokerHandle, vhost: str) -> set[str]:
    return handle.call(
        lambda: {n for n in handle.broker.vhosts[vhost].exchanges if n and not n.startswith("amq.")}
    )


def _bindings(handle: BrokerHandle, vhost: str) -> set[tuple[str, str, str, str]]:
    def read() -> set[tuple[str, str, str, str]]:
        return {(b.source, b.destination.kind, b.destination.name, b.routing_key)
                for b in handle.broker.vhosts[vhost].bindings.values()}  # fmt: skip

    return handle.call(read)


def _setup_in_process(data_dir: Path, handles: list[BrokerHandle]) -> None:
    """Users, vhosts and permissions through the admin API; exchanges, queues and bindings of
    every durability over pika. Then a clean stop."""
    handle = start_broker(data_dir=str(data_dir))
    handles.append(handle)
    admin = handle.admin
    handle.run(admin.add_vhost("v1"))
    handle.run(admin.add_vhost("gone"))
    handle.run(admin.add_user("alice", "alice-pw", ["monitoring"]))
    handle.run(admin.add_user("bob", "bob-pw"))
    handle.run(admin.set_permissions("alice", "v1", "^a", "^a", ".*"))
    handle.run(admin.set_permissions("bob", "v1"))
    handle.run(admin.set_permissions("alice", "gone"))
    handle.run(admin.set_policy("/", "ttl", "^dq$", {"message-ttl": 5000}, 3, "queues"))
    handle.run(admin.set_operator_policy("/", "cap", "^d", {"max-length": 100}))
    handle.run(admin.set_vhost_limits("v1", {"max-queues": 10}))
    handle.run(admin.set_user_limits("alice", {"max-connections": 5}))
    handle.run(admin.set_policy("gone", "p", ".*", {"max-length": 1}))
    handle.run(
        admin.import_definitions(
            {
                "topic_permissions": [
                    {"user": "alice", "vhost": "v1", "exchange": "amq.topic", "write": "^a", "read": ".*"}
                ],
                "parameters": [
                    {
                        "vhost": "v1",
                        "component": "federation-upstream",
                        "name": "up",
                        "value": {"uri": "amqp://"},
                    }
                ],
                "global_parameters": [{"name": "cluster_tags", "value": {"region": "eu"}}],
            }
        )
    )
    handle.run(admin.delete_user("bob"))
    handle.run(admin.delete_vhost("gone"))

    connection = handle.connect()
    channel = connection.channel()
    channel.exchange_declare("dx", "topic", durable=True, arguments={"alternate-exchange": "dx2"})
    channel.exchange_declare("dx2", "fanout", durable=True)
    channel.exchange_declare("tx", "direct", durable=False)
    channel.queue_declare("dq", durable=True, arguments=CUSTOM_ARGS)
    channel.queue_declare("tq", durable=False)
    channel.queue_declare("eq", durable=True, exclusive=True)
    channel.queue_declare("doomed", durable=True)
    channel.queue_bind("dq", "dx", "a.#")
    channel.queue_bind("dq", "amq.direct", "k")
    channel.queue_bind("tq", "dx", "b.*")  # transient end: not stored
    channel.queue_bind("dq", "tx", "t")  # transient end: not stored
    channel.queue_bind("eq", "amq.fanout", "")  # exclusive queue: not stored
    channel.exchange_bind("dx2", "dx", "e2e")
    channel.queue_bind("doomed", "dx", "d")
    channel.queue_bind("doomed", "amq.topic", "#")
    channel.queue_delete("doomed")  # its bindings must not come back
    channel.exchange_declare("dx-gone", "direct", durable=True)
    channel.queue_bind("dq", "dx-gone", "x")
    channel.exchange_delete("dx-gone")
    connection.close()
    handle.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_durable_metadata_survives_stop_and_kill(tmp_path, nodes, handles, sig):
    data_dir = tmp_path / "data"
    _setup_in_process(data_dir, handles)

    # A broker process on the same directory sees the users, then stores more and is stopped or killed.
    node = Node(data_dir, tmp_path)
    nodes.append(node)
    node.wait_listening()
    connection = node.connect("alice", "alice-pw", "v1")
    channel = connection.channel()
    channel.queue_declare("aq", durable=True)
    channel.queue_bind("aq", "amq.fanout", "")
    channel.queue_declare("atq", durable=False)
    channel.exchange_declare("ax", "headers", durable=True, auto_delete=True)
    guest = node.connect().channel()
    guest.queue_declare("dq", passive=True)
    guest.queue_declare("late-transient", durable=False)
    node.process.send_signal(sig)
    code, err = node.exit_status()
    assert code == (0 if sig == signal.SIGTERM else -signal.SIGKILL), err

    handle = start_broker(data_dir=str(data_dir))
    handles.append(handle)
    broker = handle.broker
    assert handle.call(lambda: sorted(broker.vhosts)) == ["/", "v1"]
    assert handle.call(lambda: sorted(broker.users)) == ["alice", "guest"]
    assert handle.call(lambda: broker.users["alice"].tags) == ["monitoring"]
    assert handle.call(lambda: sorted((p.user, p.vhost, p.configure, p.write, p.read)
                                      for p in broker.permissions.values())) == [
        ("alice", "v1", "^a", "^a", ".*"),
        ("guest", "/", ".*", ".*", ".*"),
    ]  # fmt: skip
    assert broker.topic_permissions == {("alice", "v1", "amq.topic"): {"write": "^a", "read": ".*"}}
    assert broker.parameters == {("v1", "federation-upstream", "up"): {"uri": "amqp://"}}
    assert broker.global_parameters["cluster_tags"] == {"region": "eu"}
    assert (broker.vhost_limits, broker.user_limits) == (
        {"v1": {"max-queues": 10}},
        {"alice": {"max-connections": 5}},
    )
    assert handle.admin.list_policies() == [
        {"vhost": "/", "name": "ttl", "pattern": "^dq$", "apply-to": "queues", "definition": {"message-ttl": 5000},
         "priority": 3}
    ]  # fmt: skip
    assert [p["name"] for p in handle.admin.list_operator_policies()] == ["cap"]
    assert handle.call(
        lambda: (broker.vhosts["/"].queues["dq"].policy, broker.vhosts["/"].queues["dq"].operator_policy)
    ) == ("ttl", "cap")
    assert _user_exchanges(handle, "/") == {"dx", "dx2"}
    assert _user_exchanges(handle, "v1") == {"ax"}
    assert handle.call(lambda: sorted(broker.vhosts["/"].queues)) == ["dq"]
    assert handle.call(lambda: sorted(broker.vhosts["v1"].queues)) == ["aq"]
    assert _bindings(handle, "/") == {
        ("dx", QUEUE, "dq", "a.#"),
        ("amq.direct", QUEUE, "dq", "k"),
        ("dx", "exchange", "dx2", "e2e"),
    }
    assert _bindings(handle, "v1") == {("amq.fanout", QUEUE, "aq", "")}
    dq = handle.call(lambda: broker.vhosts["/"].queues["dq"])
    assert (dq.durable, dq.auto_delete, dq.exclusive_owner) == (True, False, None)
    assert dict(dq.arguments) == CUSTOM_ARGS  # decimals, timestamps and tables kept as they were
    dx = handle.call(lambda: broker.vhosts["/"].exchanges["dx"])
    assert (dx.type_name, dx.durable, dx.alternate) == ("topic", True, "dx2")
    ax = handle.call(lambda: broker.vhosts["v1"].exchanges["ax"])
    assert (ax.type_name, ax.durable, ax.auto_delete) == ("headers", True, True)

    # The restored tables route: dx -> dq by topic, dx -> dx2 (e2e) fanning out to nothing else.
    connection = handle.connect()
    channel = connection.channel()
    channel.basic_publish("dx", "a.b", b"routed")
    channel.basic_publish("amq.direct", "k", b"direct")
    assert [channel.basic_get("dq", auto_ack=True)[2] for _ in range(2)] == [b"routed", b"direct"]
    channel.queue_declare("dq", durable=True, arguments=CUSTOM_ARGS)  # still equivalent
    connection.close()

    # alice logs in with her password (and not with another one); bob is gone.
    handle.connect(user="alice", password="alice-pw", vhost="v1").close()
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        handle.connect(user="alice", password="wrong", vhost="v1")
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        handle.connect(user="bob", password="bob-pw", vhost="v1")


def test_second_broker_on_the_data_directory_is_refused(tmp_path, nodes):
    data_dir = tmp_path / "data"
    first = Node(data_dir, tmp_path).wait_listening()
    nodes.append(first)
    second = Node(data_dir, tmp_path)
    nodes.append(second)
    code, err = second.exit_status()
    assert code == 1
    assert (
        f"cannot start: data directory {data_dir} is in use by another broker process "
        f"(lock {data_dir / '.lock'} is held)"
    ) in err
    first.connect().close()  # the first broker is unaffected


def test_second_in_process_broker_is_refused(tmp_path, handles):
    handles.append(start_broker(data_dir=str(tmp_path)))
    with pytest.raises(StoreError, match=f"data directory {tmp_path} is in use by another broker process"):
        start_broker(data_dir=str(tmp_path))


def test_corrupt_store_stops_the_start(tmp_path, nodes):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "metadata.db").write_bytes(b"\x00garbage\xff" * 500)
    node = Node(data_dir, tmp_path)
    nodes.append(node)
    code, err = node.exit_status()
    assert code == 1
    assert (
        f"cannot start: cannot read metadata store {data_dir / 'metadata.db'}: file is not a database" in err
    )
    # Nothing was written over it: the damaged file is left for the operator.
    assert (data_dir / "metadata.db").read_bytes() == b"\x00garbage\xff" * 500


def test_default_data_dir_is_created_in_the_working_directory(tmp_path, nodes):
    """The README's run command (no --data-dir) keeps its state in ./data."""
    node = Node(None, tmp_path).wait_listening()
    nodes.append(node)
    channel = node.connect().channel()
    channel.queue_declare("kept", durable=True)
    node.process.send_signal(signal.SIGTERM)
    assert node.exit_status()[0] == 0
    assert (tmp_path / "data" / "metadata.db").exists()
    node = Node(None, tmp_path).wait_listening()
    nodes.append(node)
    node.connect().channel().queue_declare("kept", passive=True)


def test_group_commit_through_the_broker(tmp_path, handles):
    """200 concurrent durable declares share a handful of transactions (fsyncs)."""
    handle = start_broker(data_dir=str(tmp_path))
    handles.append(handle)
    vhost = handle.broker.vhosts["/"]
    store = handle.broker.store
    before = store.transactions

    async def declare_all() -> None:
        await asyncio.gather(*(vhost.declare_queue(f"gc-{i}", durable=True) for i in range(200)))

    handle.run(declare_all())
    assert store.transactions - before <= 20, store.transactions - before
    handle.stop()
    handle = start_broker(data_dir=str(tmp_path))
    handles.append(handle)
    names = handle.call(lambda: {n for n in handle.broker.vhosts["/"].queues if n.startswith("gc-")})
    assert names == {f"gc-{i}" for i in range(200)}


def test_exclusive_queue_binding_to_durable_exchange_is_not_kept(tmp_path, handles):
    handle = start_broker(data_dir=str(tmp_path))
    handles.append(handle)
    channel = handle.connect().channel()
    channel.exchange_declare("keep", "direct", durable=True)
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, "keep", "r")
    handle.stop()
    handle = start_broker(data_dir=str(tmp_path))
    handles.append(handle)
    assert handle.call(lambda: handle.broker.vhosts["/"].bindings_of_queue(queue)) == []
    assert (
        handle.call(lambda: handle.broker.vhosts["/"].indexes_destination(Destination(QUEUE, queue))) is False
    )
    assert _user_exchanges(handle, "/") == {"keep"}


def test_deleted_defaults_stay_deleted(tmp_path, handles):
    """The default vhost and user are created on the node's first start only (as RabbitMQ),
    not again when an operator has deleted them."""
    handle = start_broker(data_dir=str(tmp_path))
    handles.append(handle)
    handle.run(handle.admin.add_user("ops", "secret", ["administrator"]))
    handle.run(handle.admin.delete_user("guest"))
    handle.run(handle.admin.delete_vhost("/"))
    handle.stop()
    handle = start_broker(data_dir=str(tmp_path))
    handles.append(handle)
    assert handle.call(lambda: (sorted(handle.broker.users), sorted(handle.broker.vhosts))) == (["ops"], [])
