"""amqp-ctl's cluster commands on the node side (the control channel calls these): status,
join, node type, forget; and forget_cluster_node --offline, which amqp-ctl runs itself on a
stopped node's data directory. Refusals are ``AdminError``s with rabbitmqctl's texts."""

from __future__ import annotations

import os
import platform
from typing import Any

from amqp_server.admin.definitions import RABBIT_VERSION
from amqp_server.admin.errors import AdminError
from amqp_server.core.broker import Broker
from amqp_server.metadata.sqlite import lock_directory, unlock_directory
from amqp_server.protocol.errors import ChannelError
from amqp_server.storage.sqlite_db import StoreError
from cluster.metadata_store import (
    ClusterError,
    RaftMetadataStore,
    Unavailable,
    node_of,
    read_members_file,
    write_members_file,
)
from cluster.names import NodeNameError
from cluster.raft import EntryKind, MembershipError
from cluster.raft_storage import DB_NAME, SqliteRaftStorage
from cluster.service import peer_address

# rabbit_mnesia's error descriptions (3.10).
ONLY_DISC_NODE = (
    "You cannot reset a node when it is the only disc node in a cluster. "
    "Please convert another node of the cluster to a disc node first."
)
NOT_A_CLUSTER_NODE = "The node selected is not in the cluster."
REMOVING_FROM_OFFLINE = (
    "To remove a node remotely from an offline node, the node you are removing from must be a disc node "
    "and all the other nodes must be offline."
)
NOT_CLUSTERED = "clustering is not configured on this node (start it with --cluster-port or cluster peers)"


def store_of(broker: Broker) -> RaftMetadataStore:
    store = broker.store
    if not isinstance(store, RaftMetadataStore):
        raise AdminError(NOT_CLUSTERED)
    return store


def members(broker: Broker) -> tuple[dict[str, str], set[str]]:
    """Each member's node -> "disc"/"ram", and the members running (reachable) now."""
    store = broker.store
    if not isinstance(store, RaftMetadataStore) or store.node is None:
        return {broker.node_name: "disc" if broker.config.data_dir else "ram"}, {broker.node_name}
    found = store.members() or {broker.node_name: "ram" if store.ram else "disc"}
    return found, {node for node in found if store.service.running(node)}


def partitions(broker: Broker) -> dict[str, list[str]]:
    """rabbitmqctl's partitions: this node -> the members it cannot reach now."""
    found, running = members(broker)
    unreachable = sorted(set(found) - running)
    return {broker.node_name: unreachable} if unreachable else {}


def cluster_status(broker: Broker, listeners: list[dict[str, Any]]) -> dict[str, Any]:
    """rabbitmqctl cluster_status --formatter json's document (``listeners``: this node's)."""
    found, running = members(broker)
    node = broker.node_name
    own = [{"node": node, **item} for item in listeners if item["port"]]
    store = broker.store
    every_listener = {node: own}
    if isinstance(store, RaftMetadataStore):
        own.insert(0, {"node": node, "interface": broker.config.host, "port": store.service.port,
                       "protocol": "clustering", "purpose": "inter-node and CLI tool communication"})  # fmt: skip
        for peer in sorted(running - {node}):
            info = store.service.peer_info(peer)
            if info is not None:
                every_listener[peer] = [{"node": peer, "interface": peer.partition("@")[2], "port": port,
                                         "protocol": _PROTOCOLS.get(name, name), "purpose": _PURPOSES.get(name, name)}
                                        for name, port in sorted(info.ports.items())]  # fmt: skip
    version = {"erlang_version": platform.python_version(), "rabbitmq_name": "RabbitMQ",
               "rabbitmq_version": RABBIT_VERSION}  # fmt: skip
    return {
        "alarms": [{"node": node, "resource": alarm} for alarm in sorted(broker.alarms.alarms)],
        "cluster_name": broker.cluster_name,
        "disk_nodes": [n for n, kind in found.items() if kind == "disc"],
        "feature_flags": [],
        "listeners": every_listener,
        "maintenance_status": {n: "not under maintenance" for n in sorted(running)},
        "partitions": partitions(broker),
        "ram_nodes": [n for n, kind in found.items() if kind == "ram"],
        "running_nodes": sorted(running),
        "versions": {n: version for n in sorted(running)},
    }


_PROTOCOLS = {"cluster": "clustering", "amqp": "amqp", "management": "http"}
_PURPOSES = {"cluster": "inter-node and CLI tool communication", "amqp": "AMQP 0-9-1 and AMQP 1.0",
             "management": "HTTP API"}  # fmt: skip


async def join_cluster(broker: Broker, target: str, ram: bool) -> str | None:
    """join_cluster (the application stopped); a message when there is nothing to do."""
    store = store_of(broker)
    try:
        name, _address = peer_address(target)
    except NodeNameError as exc:
        raise AdminError(str(exc)) from None
    if name == broker.node_name:
        raise AdminError(f"Error: cannot cluster node with itself: {broker.node_name}")
    found, _running = members(broker)
    if name in found and len(found) > 1 and (found.get(broker.node_name) == "ram") == ram:
        return "The node is already a member of this cluster"
    if found.get(broker.node_name) == "disc" and len(found) > 1 and list(found.values()).count("disc") == 1:
        raise AdminError(
            "You cannot cluster a node if it is the only disc node in its existing  cluster. If new nodes "
            "joined while this node was offline, use 'update_cluster_nodes' to add them manually."
        )
    try:
        await store.join_cluster(target, ram)
    except (ClusterError, Unavailable) as exc:
        raise AdminError(str(exc)) from None
    return None


async def change_node_type(broker: Broker, kind: str) -> str | None:
    """change_cluster_node_type disc|ram (the application stopped)."""
    store = store_of(broker)
    wanted = "ram" if kind == "ram" else "disc"
    found, _running = members(broker)
    if found.get(broker.node_name) == wanted:
        return f"Node type is already {wanted}"
    if len(found) < 2:
        raise AdminError("Non-clustered nodes can only be disc nodes.")
    others = [n for n in found if n != broker.node_name]
    try:
        # A new identity under the new type: a RAM node's state is not durable, so it cannot
        # simply start voting; the leader swaps the identities one change at a time.
        if wanted == "ram" and list(found.values()).count("disc") == 1:
            raise AdminError(ONLY_DISC_NODE)
        await store.join_cluster(others[0], wanted == "ram")
    except (ClusterError, Unavailable, MembershipError) as exc:
        raise AdminError(_membership_text(exc)) from None
    return None


async def forget_cluster_node(broker: Broker, node: str) -> None:
    store = store_of(broker)
    found, running = members(broker)
    if node not in found:
        raise AdminError(NOT_A_CLUSTER_NODE)
    if node in running and node != broker.node_name:
        raise AdminError(
            f"RabbitMQ on node {node} must be stopped with 'rabbitmqctl -n {node} stop_app' before it can be removed"
        )
    try:
        await store.leader_call("forget", node_name=node)
    except (ClusterError, Unavailable, MembershipError) as exc:
        raise AdminError(_membership_text(exc)) from None


async def forget_offline(data_dir: str, node: str) -> None:
    """forget_cluster_node --offline: ``node`` leaves the membership stored in the data directory
    of a stopped disc node, which then starts as a cluster without it, able to elect itself
    when the nodes forgotten were the rest of its majority. What only they had committed is
    lost (cluster.raft_storage's ``forget``); they must be reset before they join again."""
    if not os.path.exists(os.path.join(data_dir, DB_NAME)):  # a RAM node, or never clustered
        ram = read_members_file(data_dir).get("type") == "ram"
        raise AdminError(REMOVING_FROM_OFFLINE if ram else NOT_A_CLUSTER_NODE)
    try:
        lock = lock_directory(data_dir)
    except StoreError as exc:
        raise AdminError(str(exc)) from None
    storage = SqliteRaftStorage(data_dir)
    try:
        state, _commit = await storage.open()
        if state is None:
            raise AdminError(NOT_A_CLUSTER_NODE)
        configs = [state.snapshot.config] + [e.command for e in state.entries if e.kind is EntryKind.CONFIG]
        config = configs[-1]
        if node not in {node_of(m) for m in config.ordered_members}:
            raise AdminError(NOT_A_CLUSTER_NODE)
        document = read_members_file(data_dir)
        others = document.get("nodes", {})
        if node not in others:  # a member the members file does not name as another: this node
            raise AdminError(f"{node} is the node of this data directory: it cannot forget itself")
        own = {node_of(m) for m in config.voters} - set(others)
        if not own:  # not a voter (yet): it could not elect itself
            raise AdminError(REMOVING_FROM_OFFLINE)
        await storage.forget(node)
        del others[node]
        write_members_file(data_dir, document)
    finally:
        await storage.close()
        unlock_directory(lock)


async def leave_cluster(broker: Broker) -> None:
    """reset on a clustered node: it leaves its cluster first (refused for the only disc node)."""
    store = broker.store
    if not isinstance(store, RaftMetadataStore):
        return
    found, _running = members(broker)
    if len(found) > 1 and found.get(broker.node_name) == "disc" and list(found.values()).count("disc") == 1:
        raise AdminError(ONLY_DISC_NODE)
    try:
        await store.leave()
    except (ClusterError, Unavailable, MembershipError) as exc:
        raise AdminError(_membership_text(exc)) from None


def _membership_text(exc: Exception) -> str:
    text = str(exc)
    if text.endswith("is the last voter"):
        return ONLY_DISC_NODE
    if "is not a member" in text or "not in the cluster" in text:
        return NOT_A_CLUSTER_NODE
    return text


async def quorum(broker: Broker, args: dict[str, Any]) -> Any:
    """rabbitmq-queues' commands: a replicated queue's members (``action`` add, delete, status)
    and every quorum queue's (grow, shrink: rows of vhost, name, size, result); a mirrored
    queue's sync_queue and cancel_sync_queue (sync, cancel_sync)."""
    from cluster.replicated_queues import REPLICATED_TYPES, MembershipRefused

    replicas = broker.replicas
    if replicas is None:
        raise AdminError(NOT_CLUSTERED)
    action = args["action"]
    try:
        if action in ("grow", "shrink"):
            rows = []
            for vhost in broker.vhosts.values():
                for queue in list(vhost.queues.values()):
                    if queue.type_name not in REPLICATED_TYPES:
                        continue
                    change = "add" if action == "grow" else "delete"
                    try:
                        size = await replicas.membership(vhost.name, queue.name, change, args["node"])
                        result = "ok"
                    except (MembershipRefused, ChannelError) as exc:
                        result = f"error: {getattr(exc, 'explanation', None) or exc}"
                        size = len(await replicas.membership(vhost.name, queue.name, "status"))
                    rows.append([vhost.name, queue.name, size, result])
            return rows
        if action in ("sync", "cancel_sync"):
            return await replicas.sync(args["vhost"], args["queue"], cancel=action == "cancel_sync")
        return await replicas.membership(args["vhost"], args["queue"], action, args.get("node", ""))
    except (MembershipRefused, ChannelError) as exc:
        raise AdminError(f"Error:\n{getattr(exc, 'explanation', None) or exc}") from None
