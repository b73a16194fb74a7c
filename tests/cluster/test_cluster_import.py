"""A node that ran alone and restarts with clustering on keeps what it had: its metadata
(SQLite) becomes the new cluster's first snapshot, its queues keep their persisted messages,
and a node joining later gets all of it (docs/clustering.md, "A node that ran alone")."""

from __future__ import annotations

import signal
from pathlib import Path

import pika
from conftest import Node, free_port
from processes import cluster_status, clustered, ctl, definitions

FIRST, SECOND = "rabbit-0@localhost", "rabbit-1@localhost"


def test_a_node_that_ran_alone_founds_a_cluster_with_its_metadata_and_messages(
    nodes: list[Node], tmp_path: Path
) -> None:
    data = tmp_path / "first"
    alone = Node(data, tmp_path)  # rabbit@localhost, no clustering
    nodes.append(alone)
    alone.wait_listening()
    with alone.connect() as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.exchange_declare("kept-x", "topic", durable=True)
        channel.queue_declare("kept", durable=True)
        channel.queue_bind("kept", "kept-x", "k.#")
        for i in range(5):
            channel.basic_publish("kept-x", "k.1", f"m{i}".encode(), pika.BasicProperties(delivery_mode=2))
    for command in (("add_vhost", "other"), ("add_user", "carol", "s3cret"),
                    ("set_permissions", "-p", "other", "carol", ".*", ".*", ".*")):  # fmt: skip
        assert ctl(data, *command)[0] == 0
    assert alone.stop(signal.SIGTERM)[0] == 0

    # Restarted with clustering on, under another name: the first member of a new cluster.
    port = free_port()
    first = clustered(data, tmp_path, FIRST, port, [])
    nodes.append(first)
    first.wait_listening(30)
    assert cluster_status(data)["disk_nodes"] == [FIRST]
    with first.connect() as connection:
        channel = connection.channel()
        assert channel.queue_declare("kept", durable=True, passive=True).method.message_count == 5
        method, _properties, body = channel.basic_get("kept")
        assert body == b"m0"
        channel.basic_ack(method.delivery_tag)
    code, out, _ = ctl(data, "list_bindings", "-q", "source_name", "destination_name", "routing_key")
    assert code == 0 and "kept-x\tkept\tk.#" in out
    with first.connect("carol", "s3cret", "other"):
        pass

    # Its Raft log holds it now: a restart does not import again, and the messages stay.
    assert first.stop(signal.SIGTERM)[0] == 0
    first = clustered(data, tmp_path, FIRST, port, [])
    nodes.append(first)
    first.wait_listening(30)
    with first.connect() as connection:
        assert connection.channel().queue_declare("kept", passive=True).method.message_count == 4

    # A blank node joining it gets the cluster's metadata.
    second_data = tmp_path / "second"
    second = clustered(second_data, tmp_path, SECOND, free_port(), [f"{FIRST}:{port}"])
    nodes.append(second)
    second.wait_listening(30)
    assert cluster_status(second_data)["disk_nodes"] == [FIRST, SECOND]
    assert definitions(second_data) == definitions(data)
    assert '"name": "kept"' in "".join(definitions(second_data)["queues"])
    with second.connect("carol", "s3cret", "other"):
        pass
