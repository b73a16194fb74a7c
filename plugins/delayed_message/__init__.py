"""rabbitmq_delayed_message_exchange: the ``x-delayed-message`` exchange type (``exchange.py``),
with the held messages in ``delayed.db`` in the plugin's data directory (``store.py``) and the
earliest-due window of them in memory (``scheduler.py``).

Held messages survive a restart, persistent or not, as the RabbitMQ plugin's (kept in Mnesia on
disk) do; unlike it, disabling the plugin keeps them for when it is enabled again, and deleting
an exchange (or its vhost) drops the messages it held. A node without a data directory keeps
them in a temporary directory, removed when the node's event loop is.

``AMQP_SERVER_DELAYED_MESSAGE_WINDOW`` (default 10000) is how many messages the window holds.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import weakref

from amqp_server.plugin_api import Event, NodeContext, Plugin
from plugins.delayed_message.exchange import DelayedMessageExchange, schedulers
from plugins.delayed_message.scheduler import Scheduler
from plugins.delayed_message.store import DelayedStore

WINDOW_VARIABLE = "AMQP_SERVER_DELAYED_MESSAGE_WINDOW"
DEFAULT_WINDOW = 10_000
# The store of a node without a data directory, by the node's event loop: removed with it.
_temporary: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tempfile.TemporaryDirectory[str]] = (
    weakref.WeakKeyDictionary()
)


async def _start(node: NodeContext) -> None:
    loop = asyncio.get_running_loop()
    directory = node.data_dir
    if directory is None:  # kept while the node runs, so that disabling loses nothing either
        if loop not in _temporary:
            _temporary[loop] = tempfile.TemporaryDirectory(prefix="delayed-message-")
        directory = _temporary[loop].name
    window = max(1, int(os.environ.get(WINDOW_VARIABLE, DEFAULT_WINDOW)))
    scheduler = Scheduler(node, DelayedStore(directory, node.throttle_publishers), window)
    await scheduler.start()
    schedulers[loop] = scheduler

    def gone(event: Event) -> None:
        payload = event.payload
        if event.name == "vhost.deleted":
            scheduler.purge(payload["name"], None)
        else:
            scheduler.purge(payload["vhost"], payload["name"])

    node.subscribe(gone, "exchange.deleted", "vhost.deleted")


async def _stop(_node: NodeContext) -> None:
    scheduler = schedulers.pop(asyncio.get_running_loop(), None)
    if scheduler is not None:
        await scheduler.close()


PLUGIN = Plugin(
    "rabbitmq_delayed_message_exchange",
    description="RabbitMQ Delayed Message Exchange",
    exchange_types=(DelayedMessageExchange,),
    start=_start,
    stop=_stop,
)

__all__ = ["PLUGIN", "DelayedMessageExchange"]
