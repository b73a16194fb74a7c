"""The SASL mechanisms a client may choose in connection.start-ok.

Each turns the client's response into a username and a password, or None when the response is
malformed, as RabbitMQ's rabbit_auth_mechanism_* modules parse it. ``MECHANISMS`` is the one
place a mechanism is added: connection.start offers its names in this order, and start-ok looks
the chosen one up in it.
"""

from __future__ import annotations

from collections.abc import Callable

from amqp_server.protocol.tables import decode_table

Credentials = tuple[str, str]  # username, password


def plain(response: bytes) -> Credentials | None:
    """SASL PLAIN as rabbit_auth_mechanism_plain parses it: NUL user NUL password."""
    if not response.startswith(b"\x00"):
        return None
    parts = response[1:].split(b"\x00")
    if len(parts) != 2:
        return None
    return parts[0].decode(errors="replace"), parts[1].decode(errors="replace")


def amqplain(response: bytes) -> Credentials | None:
    """AMQPLAIN: a field table without its length prefix, with longstr LOGIN and PASSWORD."""
    try:
        table = decode_table(len(response).to_bytes(4, "big") + response)
    except Exception:  # noqa: BLE001 - any malformed table is refused the same way
        return None
    login, password = table.get("LOGIN"), table.get("PASSWORD")
    if isinstance(login, bytes):
        login = login.decode(errors="replace")
    if isinstance(password, bytes):
        password = password.decode(errors="replace")
    if not isinstance(login, str) or not isinstance(password, str):
        return None
    return login, password


# In RabbitMQ 3.10's order in connection.start ("AMQPLAIN PLAIN").
MECHANISMS: dict[str, Callable[[bytes], Credentials | None]] = {"AMQPLAIN": amqplain, "PLAIN": plain}
# EXTERNAL (rabbitmq_auth_mechanism_ssl) takes no password: the user is named by the client's
# verified TLS certificate, so it is offered on such connections only (handshake.py).
EXTERNAL = "EXTERNAL"
MECHANISM_NAMES = (EXTERNAL, *MECHANISMS)
