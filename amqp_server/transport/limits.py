"""The vhost and user limits a connection meets: max-connections at connection.open and the
user's max-channels at each new channel, counted over the broker's live connections. A
negative limit means none."""

from __future__ import annotations

from typing import TYPE_CHECKING

from amqp_server.protocol.errors import NOT_ALLOWED, ConnectionError

if TYPE_CHECKING:
    from amqp_server.transport.connection import Connection


def check_connection_limits(connection: Connection, vhost: str) -> None:
    """rabbit_reader's is_over_vhost_connection_limit, then is_over_user_connection_limit
    (after "vhost not found", before the permission check)."""
    broker = connection.broker
    user = connection.username
    limit = broker.vhost_limits.get(vhost, {}).get("max-connections")
    if limit is not None and limit >= 0:
        count = sum(1 for c in broker.connections if c.vhost is not None and c.vhost.name == vhost and c.open)
        if count >= limit:
            raise ConnectionError(
                NOT_ALLOWED,
                f"access to vhost '{vhost}' refused for user '{user}': connection limit ({limit}) is reached",
                (10, 40),
            )
    limit = broker.user_limits.get(user, {}).get("max-connections")
    if limit is not None and limit >= 0:
        count = sum(1 for c in broker.connections if c.username == user and c.vhost is not None and c.open)
        if count >= limit:
            raise ConnectionError(
                NOT_ALLOWED,
                f"connection refused for user '{user}': user connection limit ({limit}) is reached",
                (10, 40),
            )


def check_channel_limit(connection: Connection) -> None:
    """The user's max-channels limit, over all of the user's connections (create_channel);
    channels still assembling a command before channel.open count."""
    broker = connection.broker
    user = connection.username
    limit = broker.user_limits.get(user, {}).get("max-channels")
    if limit is None or limit < 0:
        return
    count = sum(len(c.channels) + len(c._unopened) for c in broker.connections if c.username == user and c.open)
    if count >= limit:
        raise ConnectionError(
            NOT_ALLOWED,
            f"number of channels opened for user '{user}' has reached the maximum allowed user limit of ({limit})",
        )
