"""RabbitMQ's management HTTP API for the broker: ``app.ManagementServer`` serves it on the
broker's event loop. ``static/``, when present, holds the dashboard, served at ``/``."""
