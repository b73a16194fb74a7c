"""Where a new queue lives: its home node, chosen as RabbitMQ 3.10's queue master locator
chooses it (``x-queue-master-locator`` argument, else the ``queue-master-locator`` policy key):

- ``client-local`` (the default): the node the declaring client is connected to;
- ``min-masters``: the running node that is home to the fewest queues;
- ``random``: any running node.

An exclusive queue always lives with its owning connection, as in RabbitMQ. Without
clustering every queue is local.

A replicated queue (a quorum queue of a cluster, or a classic queue an ha-mode policy mirrors)
has members too, which ``cluster.replicated_queues`` chooses.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from amqp_server.core.policy import effective_definition, select

if TYPE_CHECKING:
    from amqp_server.core.vhost import VirtualHost


def home_node(vhost: VirtualHost, name: str, arguments: Mapping[str, Any], exclusive: bool) -> str:
    broker = vhost.broker
    local = broker.node_name
    link = broker.queue_link
    if exclusive or link is None:
        return local
    locator = arguments.get("x-queue-master-locator")
    if locator is None:
        policy = select(vhost.policies.values(), "queue", name)
        operator = select(vhost.operator_policies.values(), "queue", name)
        locator = effective_definition(policy, operator).get("queue-master-locator")
    if locator not in ("min-masters", "random"):
        return local
    running = sorted({local, *link.running_nodes()})
    if locator == "random":
        return random.choice(running)
    homes = Counter(queue.home_node for other in broker.vhosts.values() for queue in other.queues.values())
    return min(running, key=lambda node: (homes[node], node != local, node))


def replica_group(
    vhost: VirtualHost, name: str, queue_type: str, arguments: Mapping[str, Any], exclusive: bool
) -> dict[str, Any]:
    """The record fields of a replicated queue's group (none for another queue): its members
    and the group's id (a queue declared again after a delete is a new group)."""
    replicas = vhost.broker.replicas
    members = None if replicas is None else replicas.initial_members(vhost, name, queue_type, arguments, exclusive)
    return {} if members is None else {"members": members, "group": uuid.uuid4().hex}
