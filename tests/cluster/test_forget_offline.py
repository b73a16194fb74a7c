"""forget_cluster_node --offline (docs/clustering.md, "Losing the majority"): the last node of
a cluster whose other members are lost cannot get a quorum; stopped, it forgets them from its
stored Raft membership and then serves metadata changes alone."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

from conftest import Node, free_port
from helpers import wait_until
from pika.exceptions import ConnectionClosedByBroker
from processes import cluster_status, clustered, ctl

NAMES = [f"rabbit-{i}@localhost" for i in range(3)]


def declare(node: Node, name: str) -> tuple[int, str] | None:
    """The close a durable queue declare on ``node`` gets (None: it was declared)."""
    try:
        with node.connect() as connection:
            connection.channel().queue_declare(name, durable=True)
    except ConnectionClosedByBroker as exc:
        return exc.reply_code, exc.reply_text
    return None


def test_the_last_node_forgets_the_lost_ones_offline_and_serves_alone(
    nodes: list[Node], tmp_path: Path
) -> None:
    ports = [free_port() for _ in NAMES]
    dirs = [tmp_path / f"node{i}" for i in range(3)]

    def start(i: int) -> Node:
        peers = [f"{NAMES[j]}:{ports[j]}" for j in range(3) if j != i]
        node = clustered(dirs[i], tmp_path, NAMES[i], ports[i], peers)
        nodes.append(node)
        return node

    cluster = [start(i) for i in range(3)]
    for node in cluster:
        node.wait_listening(30)
    wait_until(None, lambda: cluster_status(dirs[0])["disk_nodes"] == NAMES, 30)
    assert declare(cluster[0], "before") is None
    code, _, err = ctl(dirs[0], "forget_cluster_node", "--offline", NAMES[1])
    assert (code, err.splitlines()[0]) == (64, "Error: this command requires the target node to be stopped.")

    # Two nodes lost with their data: the third has no quorum.
    for i in (1, 2):
        assert cluster[i].stop(signal.SIGTERM)[0] == 0
        shutil.rmtree(dirs[i])
    assert declare(cluster[0], "no-quorum") == (
        541,
        "INTERNAL_ERROR - failed to declare queue 'no-quorum' in vhost '/' because the operation timed out",
    )
    assert cluster[0].stop(signal.SIGTERM)[0] == 0

    code, out, err = ctl(dirs[0], "forget_cluster_node", "--offline", NAMES[1])
    assert code == 0, err
    assert out.strip() == (
        "Removing node rabbit-1@localhost from the cluster. "
        "Warning: metadata changes committed only on the forgotten nodes are lost"
    )
    assert ctl(dirs[0], "forget_cluster_node", "--offline", "-q", NAMES[2])[0] == 0
    code, _, err = ctl(dirs[0], "forget_cluster_node", "--offline", NAMES[2])
    assert (code, err.strip()) == (70, "Error:\nThe node selected is not in the cluster.")
    code, _, err = ctl(dirs[0], "forget_cluster_node", "--offline", NAMES[0])
    assert code == 70 and "cannot forget itself" in err

    last = start(0)
    last.wait_listening(30)
    assert declare(last, "after") is None
    assert declare(last, "before") is None  # (exists: declared again, equivalent)
    status = cluster_status(dirs[0])
    assert (status["disk_nodes"], status["running_nodes"]) == (NAMES[:1], NAMES[:1])
    code, out, _ = ctl(dirs[0], "list_queues", "-q", "name")
    assert code == 0 and {"before", "after"} <= set(out.split())
