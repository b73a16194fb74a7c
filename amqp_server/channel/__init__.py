"""An AMQP channel: content assembly, commands, publishing, confirms, transactions, consumers and
deliveries, exchange and queue methods, direct reply-to."""
