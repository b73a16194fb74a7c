"""The message store: persistent messages of durable queues, paging, recovery."""
