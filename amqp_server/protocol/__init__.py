"""The AMQP 0-9-1 wire format, free of I/O: frames, methods, content, field tables, RabbitMQ's reply codes and texts."""
