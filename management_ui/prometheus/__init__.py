"""Prometheus metrics as the rabbitmq_prometheus plugin exposes them (docs/prometheus.md):
``start_prometheus(broker, host, port)`` serves them on the broker's event loop.

- ``families.py``: RabbitMQ's metric families as data (names, types, help texts, tables);
- ``collect.py``: reading the broker into rows, and the counters kept from its events;
- ``render.py``: the text of each registry (default, per-object, detailed);
- ``server.py``: the aiohttp application and its lifecycle.
"""

from management_ui.prometheus.server import CONTENT_TYPE, PrometheusServer, start_prometheus

__all__ = ["CONTENT_TYPE", "PrometheusServer", "start_prometheus"]
