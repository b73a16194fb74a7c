"""The broker's model: vhosts, exchanges, queues and routing, messages, policies, access, dead-lettering, alarms, events."""
