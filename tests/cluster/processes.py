"""Clustered broker processes for the tests of cluster operations (importing a node's own
metadata, forget_cluster_node --offline): started on loopback, peers named with their cluster
ports (``name@localhost:port``), all sharing one cookie file; amqp-ctl run as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import Node


def clustered(data_dir: Path, base: Path, name: str, port: int, peers: list[str]) -> Node:
    """A node named ``name`` with clustering on (cluster port ``port``), its peers in a config file."""
    config = base / f"{name.partition('@')[0]}.conf"
    config.write_text(
        "".join(f"cluster_formation.classic_config.nodes.{i} = {p}\n" for i, p in enumerate(peers))
    )
    cookie = base / "cookie"
    if not cookie.exists():
        cookie.write_text("the cluster's cookie\n")
    return Node(data_dir, base, "--node-name", name, "--cluster-port", str(port), "--cookie-file", str(cookie),
                "--config", str(config), "--log-level", "warning")  # fmt: skip


def ctl(data_dir: Path, *args: str) -> tuple[int, str, str]:
    done = subprocess.run([sys.executable, "-m", "amqp_server.ctl", "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    return done.returncode, done.stdout, done.stderr


def cluster_status(data_dir: Path) -> dict[str, Any]:
    code, out, err = ctl(data_dir, "cluster_status", "--formatter", "json")
    assert code == 0, err
    return json.loads(out)


def definitions(data_dir: Path) -> dict[str, Any]:
    """The node's metadata (export_definitions), without what differs between nodes."""
    code, out, err = ctl(data_dir, "export_definitions", "-")
    assert code == 0, err
    document = json.loads(out)
    for volatile in ("rabbit_version", "rabbitmq_version", "product_name", "product_version"):
        document.pop(volatile, None)
    return {key: sorted(json.dumps(item, sort_keys=True) for item in value) if isinstance(value, list) else value
            for key, value in document.items()}  # fmt: skip
