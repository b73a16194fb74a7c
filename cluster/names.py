"""Node names, ``prefix@host``, as RabbitMQ parses and checks them.

This node's own name is ``BrokerConfig.node_name``, completed by ``amqp_server.config.node_name``
from ``--node-name`` or ``RABBITMQ_NODENAME`` (a bare ``rabbit`` is ``rabbit@localhost`` there,
this broker's single-host default); ``own`` checks it. A name given for another node (a peer,
``join_cluster``'s argument) is completed and checked by ``parse`` as rabbitmqctl's
``RabbitMQ.CLI.Core.NodeName.create`` does: a bare name gets this host's short hostname (its
full name with ``longnames``, RABBITMQ_USE_LONGNAME), an empty prefix is ``rabbit``.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from amqp_server.config import node_name

DEFAULT_PREFIX = "rabbit"
#: The name prefix rabbitmqctl accepts (``valid_name_head``).
_PREFIX = re.compile(r"[0-9A-Za-z_\-]+")
#: The host rabbitmqctl accepts (``validate_hostname_rx``: printable Latin-1, no space).
_HOST = re.compile(r"[!-\xff]*")
_FQDN_HINT = "If using FQDN node names, use the -l / --longnames argument"

# rabbitmqctl's texts for its node-name errors (rabbitmqctl.ex, format_error).
INVALID_HOST = (
    "Unsupported node name: hostname is invalid (possibly contains unsupported characters).\n"
    + _FQDN_HINT
    + "."
)
INVALID_PREFIX = (
    "Unsupported node name: node name head (the part before the @) is invalid. "
    "Only alphanumerics, _ and - characters are allowed.\n" + _FQDN_HINT
)


class NodeNameError(ValueError):
    """A node name rabbitmqctl refuses; ``str()`` is its error text."""


@dataclass(frozen=True, slots=True)
class NodeName:
    prefix: str
    host: str

    def __str__(self) -> str:
        return f"{self.prefix}@{self.host}"


def short_hostname() -> str:
    """This host's name up to the first dot (``hostname -s``, Erlang's ``-sname`` host)."""
    return socket.gethostname().split(".", 1)[0]


def long_names(env: Mapping[str, str]) -> bool:
    """Whether the environment asks for fully qualified names (``RABBITMQ_USE_LONGNAME``)."""
    return env.get("RABBITMQ_USE_LONGNAME", "").lower() == "true"


def parse(name: str, *, longnames: bool = False, hostname: str | None = None, command: str = "") -> NodeName:
    """``name`` completed and checked as rabbitmqctl does (``hostname`` stands for this host's;
    ``command``, the operation an error text names)."""
    prefix, _, host = name.partition("@")
    prefix = prefix or DEFAULT_PREFIX
    if not host:
        host = hostname or (socket.getfqdn() if longnames else short_hostname())
    elif not longnames and "." in host:
        # A dotted host with short names is rabbitmqctl's {node_name, short} error.
        operation = f"operation {command}" if command else "operation"
        raise NodeNameError(
            f"Error: {operation} failed due to invalid node name (node: {name}, reason: short).\n{_FQDN_HINT}"
        )
    if _HOST.fullmatch(host) is None:
        raise NodeNameError(INVALID_HOST)
    if _PREFIX.fullmatch(prefix) is None:
        raise NodeNameError(INVALID_PREFIX)
    return NodeName(prefix, host)


def own(name: str) -> NodeName:
    """This node's name, completed as the broker completes ``--node-name`` and checked; a
    dotted host is allowed (the node's name is whatever it was started with)."""
    return parse(node_name(name), longnames=True)
