"""An AMQP channel: commands, publishing, confirms, consumers and deliveries, direct reply-to."""
