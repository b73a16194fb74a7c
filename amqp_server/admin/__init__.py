"""Administration for the CLI and the HTTP API: operations and RabbitMQ's definitions."""
