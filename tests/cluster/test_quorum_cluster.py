"""Quorum queues on a cluster (docs/clustering.md, "Replicated queues"): three broker processes
on loopback; a quorum queue is a Raft group of the three, a publish is confirmed once a
majority has it, clients of every node use it, and when its leader is killed another member
takes over with every confirmed message.

The tests run in order on one cluster (module fixture).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
import requests
from helpers import wait_until
from test_cross_node_queues import NAMES, Member, declare_when_reachable, queue_item, three_members


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Member]]:
    with three_members(tmp_path_factory.mktemp("quorum")) as nodes:
        yield nodes


def leader_of(node: Member, name: str) -> str:
    return str(queue_item(node, name)["node"])


def drain(node: Member, name: str, expected: int) -> list[bytes]:
    with node.connect() as connection:
        channel = connection.channel()
        bodies = []
        for method, _, body in channel.consume(name, inactivity_timeout=5):
            if method is None:
                break
            bodies.append(body)
            channel.basic_ack(method.delivery_tag)
            if len(bodies) == expected:
                break
        channel.cancel()
        return bodies


def test_a_quorum_queue_is_used_from_every_node(members: list[Member]) -> None:
    first, second, third = members
    with first.connect() as connection:
        ok = connection.channel().queue_declare("qq", durable=True, arguments={"x-queue-type": "quorum"})
        assert ok.method.queue == "qq"
    for node in members:
        declare_when_reachable(node, "qq")
    with second.connect() as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        for i in range(100):
            channel.basic_publish("", "qq", str(i).encode(), pika.BasicProperties(delivery_mode=2), mandatory=True)
    assert drain(third, "qq", 100) == [str(i).encode() for i in range(100)]
    leader = leader_of(first, "qq")
    assert leader == NAMES[0]  # the declaring node leads its new queue, as in RabbitMQ
    assert all(leader_of(node, "qq") == leader for node in members)


def test_the_leader_killed_loses_no_confirmed_message(members: list[Member]) -> None:
    with members[0].connect() as connection:
        channel = connection.channel()
        channel.queue_declare("qf", durable=True, arguments={"x-queue-type": "quorum"})
    for node in members:
        declare_when_reachable(node, "qf")
    leader = leader_of(members[0], "qf")
    victim = members[NAMES.index(leader)]
    survivor = members[(NAMES.index(leader) + 1) % 3]
    with survivor.connect() as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        for i in range(50):
            channel.basic_publish("", "qf", str(i).encode(), pika.BasicProperties(delivery_mode=2))
    assert victim.process is not None
    victim.process.kill()
    wait_until(None, lambda: leader_of(survivor, "qf") not in (leader, ""), 15, "no new leader")
    assert drain(survivor, "qf", 50) == [str(i).encode() for i in range(50)]
    victim.start()
    victim.process.wait_listening(60)

    def follows_new_leader() -> bool:
        try:
            return leader_of(victim, "qf") not in (leader, "")
        except requests.ConnectionError:  # its HTTP listener starts after AMQP's
            return False

    wait_until(None, follows_new_leader, 15, "the restarted node does not follow the new leader")
    with victim.connect() as connection:
        ok = connection.channel().queue_declare("qf", passive=True)
        assert ok.method.message_count == 0


def queues_tool(node: Member, *args: str) -> tuple[int, str, str]:
    """amqp-queues (rabbitmq-queues) against ``node``."""
    done = subprocess.run([str(Path(sys.executable).with_name("amqp-queues")), "--data-dir", str(node.data_dir), *args],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    return done.returncode, done.stdout, done.stderr


def members_of(node: Member, name: str) -> list[str]:
    """The members quorum_status lists (retried while the group elects a leader)."""
    found: list[list[str]] = []

    def listed() -> bool:
        code, out, _ = queues_tool(node, "quorum_status", name, "--formatter", "json")
        if code == 0:
            found.append(sorted(row["Node Name"] for row in json.loads(out)))
        return code == 0

    wait_until(None, listed, 15, "no quorum status")
    return found[-1]


def test_members_are_listed_removed_and_added_with_amqp_queues(members: list[Member]) -> None:
    first, second, third = members
    with first.connect() as connection:
        channel = connection.channel()
        channel.queue_declare("qm", durable=True, arguments={"x-queue-type": "quorum"})
        channel.confirm_delivery()
        for i in range(10):
            channel.basic_publish("", "qm", str(i).encode())
    code, out, err = queues_tool(second, "quorum_status", "qm")
    assert code == 0, err
    assert out.startswith("Status of quorum queue qm on node rabbit-1@localhost ...\n┌")
    assert "│ Node Name" in out and "│ Raft State" in out and "│ leader" in out
    assert sum(name in out for name in NAMES) == 3
    code, out, err = queues_tool(second, "quorum_status", "qm", "--formatter", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert sorted(row["Node Name"] for row in rows) == NAMES
    assert [row["Raft State"] for row in rows].count("leader") == 1

    code, out, err = queues_tool(first, "delete_member", "qm", NAMES[2])
    assert code == 0, err
    assert out == f"Removing a replica for queue qm on node {NAMES[2]}...\n"
    assert members_of(first, "qm") == NAMES[:2]
    code, _, err = queues_tool(first, "delete_member", "qm", NAMES[2])
    assert code != 0 and "not_a_member" in err

    code, out, err = queues_tool(third, "add_member", "qm", NAMES[2])
    assert code == 0, err
    assert members_of(first, "qm") == NAMES
    # The member added caught up: it can lead with every message.
    assert drain(third, "qm", 10) == [str(i).encode() for i in range(10)]

    code, out, err = queues_tool(first, "shrink", NAMES[2])
    assert code == 0, err
    assert "Shrinking quorum queues on rabbit-2@localhost..." in out and "│ qm" in out
    code, out, err = queues_tool(first, "grow", NAMES[2], "all")
    assert code == 0, err
    assert "│ qm" in out and "│ ok" in out
    assert members_of(first, "qm") == NAMES


def test_delivery_counts_survive_a_failover(members: list[Member]) -> None:
    with members[0].connect() as connection:
        channel = connection.channel()
        channel.queue_declare("qc", durable=True, arguments={"x-queue-type": "quorum", "x-delivery-limit": 5})
    for node in members:
        declare_when_reachable(node, "qc")
    leader = leader_of(members[0], "qc")
    victim = members[NAMES.index(leader)]
    survivor = members[(NAMES.index(leader) + 1) % 3]
    with survivor.connect() as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish("", "qc", b"poison", pika.BasicProperties(delivery_mode=2))
        for _ in range(3):  # returned three times
            method, _, _ = channel.basic_get("qc")
            assert method is not None
            channel.basic_nack(method.delivery_tag, requeue=True)
        channel.basic_get("qc")  # (a round trip: the nacks are through)
    assert victim.process is not None
    victim.process.kill()
    wait_until(None, lambda: leader_of(survivor, "qc") not in (leader, ""), 15, "no new leader")
    with survivor.connect() as connection:
        channel = connection.channel()
        method, properties, body = channel.basic_get("qc")
        assert body == b"poison"
        assert properties.headers["x-delivery-count"] >= 3
    victim.start()
    victim.process.wait_listening(60)
