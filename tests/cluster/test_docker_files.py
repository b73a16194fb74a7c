"""docker/compose.yaml's three-node cluster, checked by reading (no Docker engine runs here and
PyYAML is not installed: the compose file's structure is checked on its text). Each node's
command line and environment are given to amqp-server's own parser, so the settings checked
are those a container would start with."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from amqp_server.cli import parse_args
from cluster.service import peer_address

DOCKER = Path(__file__).resolve().parents[2] / "docker"
COMPOSE = (DOCKER / "compose.yaml").read_text()
DOCKERFILE = (DOCKER / "Dockerfile").read_text()
NODES = ["node1", "node2", "node3"]


def section(text: str, name: str, indent: str = "") -> str:
    """The lines of the mapping ``name:`` (or ``name: &anchor``) at ``indent``, up to the next
    key at that indent."""
    match = re.search(rf"^{indent}{name}:(?: &\S+)?\n((?:{indent}[ ].*\n|\n)*)", text, re.MULTILINE)
    assert match is not None, f"no {name} at indent {len(indent)}"
    return match[1]


def listed(text: str) -> list[str]:
    """The strings of a flow sequence line, ``["a", "b"]``."""
    return shlex.split(text.strip().strip("[]").replace(",", " "))


def test_three_disc_nodes_named_by_their_host_names_each_with_its_volume() -> None:
    services = section(COMPOSE, "services")
    volumes = section(COMPOSE, "volumes")
    for node in NODES:
        service = section(services, node, "  ")
        assert "<<: *node" in service
        assert f"hostname: {node}\n" in service
        assert f"RABBITMQ_NODENAME: rabbit@{node}\n" in service
        assert f"- {node}-data:/var/lib/amqp-server\n" in service
        assert f"  {node}-data:\n" in volumes
    assert '- "15672:15672"' in section(services, "node1", "  ")
    for node in NODES[1:]:  # node1 founds the cluster (the lowest name): they join it once it is up
        depends = section(section(services, node, "  "), "depends_on", "    ")
        assert "node1:\n        condition: service_healthy" in depends
    assert "cluster_formation.node_type" not in (DOCKER / "cluster.conf").read_text()  # disc, the default


def test_each_node_starts_clustered_with_the_shared_cookie() -> None:
    node = section(COMPOSE, "x-node")  # what every service merges (<<: *node)
    command = listed(re.search(r"^  command: (.*)$", node, re.MULTILINE)[1])
    assert command[0] == "amqp-server"
    config_target = re.search(r"- source: cluster_conf\n\s+target: (\S+)", node)[1]
    cookie = re.search(r"secrets:\n\s+- (\S+)", node)[1]
    assert re.search(rf"^  {cookie}:\n    file: ./cluster_cookie$", section(COMPOSE, "secrets"), re.MULTILINE)
    assert re.search(
        r"^  cluster_conf:\n    file: ./cluster.conf$", section(COMPOSE, "configs"), re.MULTILINE
    )
    args = [str(DOCKER / "cluster.conf") if a == config_target else a for a in command[1:]]
    env = {"RABBITMQ_NODENAME": "rabbit@node2", "AMQP_SERVER_DATA_DIR": "/var/lib/amqp-server"}
    config = parse_args(args, env)
    assert (config.node_name, config.data_dir) == ("rabbit@node2", "/var/lib/amqp-server")
    assert config.cookie_file == f"/run/secrets/{cookie}"
    assert [peer_address(p) for p in config.cluster_nodes] == [(f"rabbit@{n}", (n, 25672)) for n in NODES]
    assert (config.port, config.management_port, list(config.loopback_users)) == (5672, 15672, [])
    assert listed(re.search(r"^    test: (.*)$", node, re.MULTILINE)[1]) == ["CMD", "amqp-ctl", "ping"]


def test_the_image_serves_the_cluster_port_and_checks_its_health() -> None:
    exposed = re.search(r"^EXPOSE (.*)$", DOCKERFILE, re.MULTILINE)[1].split()
    assert {"5672", "15672", "25672", "25672/udp"} <= set(exposed)
    assert re.search(r'^HEALTHCHECK .*CMD \["amqp-ctl", "ping"\]$', DOCKERFILE, re.MULTILINE)
    env = dict(item.split("=", 1) for item in re.search(r"^ENV (.*)$", DOCKERFILE, re.MULTILINE)[1].split())
    assert env["AMQP_SERVER_DATA_DIR"] == re.search(r"^VOLUME (\S+)$", DOCKERFILE, re.MULTILINE)[1]
    cmd = listed(re.search(r"^CMD (.*)$", DOCKERFILE, re.MULTILINE)[1])
    assert "--node-name" not in cmd and "--data-dir" not in cmd  # RABBITMQ_NODENAME and ENV name them
    config = parse_args(
        [str(DOCKER / "rabbitmq.conf") if a.endswith("rabbitmq.conf") else a for a in cmd[1:]], env
    )
    assert (config.node_name, config.data_dir) == ("rabbit@localhost", "/var/lib/amqp-server")
