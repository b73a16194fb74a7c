"""Queue types, chosen by a queue's ``x-queue-type`` argument: the ``amqp_server.queue_types``
entry-point group, plus in-process registration (see ``amqp_server.type_registry``). The bundled
types (``classic``, ``quorum``) register through their entry points exactly as a third-party type
does."""

from __future__ import annotations

from amqp_server.type_registry import TypeRegistry
from queues.base import QueueType

ENTRY_POINT_GROUP = "amqp_server.queue_types"

queue_types: TypeRegistry[type[QueueType]] = TypeRegistry(ENTRY_POINT_GROUP, QueueType, "type_name", "queue type")
register = queue_types.register
unregister = queue_types.unregister
load_queue_types = queue_types.load
