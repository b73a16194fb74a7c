"""Classic mirrored queues on a cluster (docs/clustering.md, "Mirrored queues"): three broker
processes on loopback; ha-mode policies make classic queues replicated groups, whether the
policy came before the queue or after it (its messages move into the group), mirrors show in
list_queues and the HTTP API, manual sync waits for sync_queue, and the master killed loses no
confirmed message.

The tests run in order on one cluster (module fixture); the last one kills a node.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator

import pika
import pytest
from helpers import wait_until
from processes import ctl
from test_cross_node_queues import NAMES, Member, declare_when_reachable, queue_item, three_members
from test_quorum_cluster import drain


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Member]]:
    with three_members(tmp_path_factory.mktemp("mirrored")) as nodes:
        yield nodes


def set_policy(node: Member, name: str, pattern: str, definition: dict) -> None:
    code, _, err = ctl(node.data_dir, "set_policy", name, pattern, json.dumps(definition), "--apply-to", "queues")
    assert code == 0, err


def mirrors(node: Member, name: str) -> tuple[list[str], list[str]]:
    code, out, err = ctl(node.data_dir, "list_queues", "name", "slave_pids", "synchronised_slave_pids",
                         "--formatter", "json")  # fmt: skip
    assert code == 0, err
    row = next(row for row in json.loads(out) if row["name"] == name)
    return sorted(row["slave_pids"] or []), sorted(row["synchronised_slave_pids"] or [])


def wait_mirrors(node: Member, name: str, slaves: list[str], synchronised: list[str]) -> None:
    wait_until(None, lambda: mirrors(node, name) == (sorted(slaves), sorted(synchronised)), 20,
               f"{name}: mirrors are {mirrors(node, name)}")  # fmt: skip


def publish(node: Member, name: str, count: int) -> None:
    with node.connect() as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        for i in range(count):
            channel.basic_publish("", name, str(i).encode(), pika.BasicProperties(delivery_mode=2), mandatory=True)


def test_a_policy_mirrors_the_queues_declared_after_it(members: list[Member]) -> None:
    first, second, third = members
    set_policy(first, "ha-all", "^ha\\.", {"ha-mode": "all"})
    wait_until(None, lambda: "ha-all" in ctl(third.data_dir, "list_policies")[1], 10, "policy not everywhere")
    with first.connect() as connection:
        connection.channel().queue_declare("ha.all", durable=True)
    for node in members:
        declare_when_reachable(node, "ha.all")
    wait_mirrors(second, "ha.all", NAMES[1:], NAMES[1:])
    item = queue_item(third, "ha.all")
    assert item["node"] == NAMES[0] and item["type"] == "classic"
    assert sorted(item["slave_nodes"]) == sorted(item["synchronised_slave_nodes"]) == NAMES[1:]
    publish(second, "ha.all", 100)
    assert drain(third, "ha.all", 100) == [str(i).encode() for i in range(100)]


def test_a_policy_mirrors_an_existing_queue_with_its_messages(members: list[Member]) -> None:
    first, second, third = members
    with first.connect() as connection:
        connection.channel().queue_declare("two.q", durable=True)
    publish(first, "two.q", 50)
    assert mirrors(first, "two.q") == ([], [])  # not mirrored: '' in both columns
    set_policy(first, "two", "^two\\.", {"ha-mode": "exactly", "ha-params": 2, "ha-sync-mode": "automatic"})
    wait_mirrors(first, "two.q", [NAMES[1]], [NAMES[1]])
    wait_until(None, lambda: declare_when_reachable(third, "two.q").method.message_count == 50, 20,
               "the messages did not move into the group")  # fmt: skip
    assert drain(second, "two.q", 50) == [str(i).encode() for i in range(50)]


def test_manual_sync_waits_for_sync_queue(members: list[Member]) -> None:
    first, second, third = members
    set_policy(first, "man", "^man\\.", {"ha-mode": "nodes", "ha-params": [NAMES[0]]})
    with first.connect() as connection:
        connection.channel().queue_declare("man.q", durable=True)
    publish(first, "man.q", 20)
    set_policy(first, "man", "^man\\.", {"ha-mode": "all", "ha-sync-mode": "manual"})
    wait_mirrors(first, "man.q", NAMES[1:], [])
    code, out, err = ctl(third.data_dir, "sync_queue", "man.q")
    assert code == 0, err
    assert out == "Synchronising queue 'man.q' in vhost '/' ...\n"
    wait_mirrors(third, "man.q", NAMES[1:], NAMES[1:])
    code, out, err = ctl(third.data_dir, "cancel_sync_queue", "man.q")
    assert code != 0 and "not_syncing" in err
    code, _, err = ctl(first.data_dir, "sync_queue", "nothing.here")
    assert code != 0 and "no queue 'nothing.here'" in err


def test_a_policy_cleared_takes_the_mirrors_away_and_keeps_the_messages(members: list[Member]) -> None:
    first, second, third = members
    set_policy(first, "gone", "^gone\\.", {"ha-mode": "all"})
    with first.connect() as connection:
        connection.channel().queue_declare("gone.q", durable=True)
    wait_mirrors(first, "gone.q", NAMES[1:], NAMES[1:])
    publish(second, "gone.q", 10)
    code, _, err = ctl(first.data_dir, "clear_policy", "gone")
    assert code == 0, err
    wait_mirrors(third, "gone.q", [], [])
    assert drain(third, "gone.q", 10) == [str(i).encode() for i in range(10)]


def test_the_master_killed_loses_no_confirmed_message(members: list[Member]) -> None:
    first, second, third = members
    with first.connect() as connection:
        connection.channel().queue_declare("ha.move", durable=True)
    declare_when_reachable(second, "ha.move")
    wait_mirrors(second, "ha.move", NAMES[1:], NAMES[1:])
    publish(third, "ha.all", 200)
    with second.connect() as connection:
        channel = connection.channel()
        cancelled: list[object] = []
        channel.add_on_cancel_callback(cancelled.append)
        channel.basic_consume("ha.all", lambda *_: None, arguments={"x-cancel-on-ha-failover": True})
        moving = connection.channel()
        received: list[bytes] = []
        moving.basic_consume("ha.move", lambda _ch, method, _p, body: (received.append(body),
                             moving.basic_ack(method.delivery_tag)))  # fmt: skip
        assert first.process is not None
        first.process.kill()
        wait_until(connection, lambda: bool(cancelled), 20, "no basic.cancel")
        wait_until(None, lambda: queue_item(second, "ha.move")["node"] in NAMES[1:], 20, "no new master")
        publish(third, "ha.move", 5)
        # The consumer that did not ask to be cancelled consumes from the new master.
        wait_until(connection, lambda: len(received) == 5, 20, f"received {received}")
    wait_until(None, lambda: queue_item(second, "ha.all")["node"] in NAMES[1:], 20, "no new master")
    assert drain(third, "ha.all", 200) == [str(i).encode() for i in range(200)]


def test_a_whole_cluster_restart_keeps_mirrored_queues(members: list[Member]) -> None:
    first, second, third = members
    publish(second, "ha.move", 5)
    for node in (second, third):
        assert node.process is not None
        node.process.stop(signal.SIGTERM)
    for node in members:
        node.start()
    for node in members:
        assert node.process is not None
        node.process.wait_listening(60)
    wait_until(None, lambda: len(mirrors(first, "ha.move")[1]) == 2, 30, "the group did not come back")
    assert drain(first, "ha.move", 5) == [str(i).encode() for i in range(5)]
