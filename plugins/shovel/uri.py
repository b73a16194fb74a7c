"""AMQP URIs as RabbitMQ's amqp_uri reads them: ``amqp://user:pass@host:port/vhost``, and
``amqp://`` (no host) for the local node, which RabbitMQ reaches by a direct connection and this
broker by a loopback connection to its own listener as its default user."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from amqp_server.plugin_api import NodeContext
from amqp_server.protocol.rabbit_text import erlang_json
from plugins.shovel.validation import binary

DEFAULT_PORTS = {"amqp": 5672, "amqps": 5671}


class URIError(ValueError):
    """amqp_uri's error term, as ``~p`` prints it."""


@dataclass(frozen=True)
class Endpoint:
    uri: str  # as given
    scheme: str
    host: str | None  # None: the local node
    port: int | None
    vhost: str
    user: str | None
    password: str | None

    @property
    def shown(self) -> str:
        """The URI without its credentials (amqp_uri:remove_credentials), for status and headers."""
        parts = urlsplit(self.uri)
        netloc = parts.netloc.rpartition("@")[2]
        return parts._replace(netloc=netloc).geturl() if parts.netloc else self.uri

    def url(self, node: NodeContext) -> str:
        """The URL aiormq connects to; the local node's own listener for ``amqp://``."""
        host, port, user, password = self.host, self.port, self.user, self.password
        if host is None:
            config = node.config
            bound, port = node.amqp_address or (config.listeners or [(config.host, config.port)])[0]
            host = "127.0.0.1" if bound in ("", "0.0.0.0", "::", None) else bound
            user = user if user is not None else config.default_user
            password = password if password is not None else config.default_pass
        user = "guest" if user is None else user  # amqp_params_network's defaults
        password = "guest" if password is None else password
        host = f"[{host}]" if ":" in host else host
        port = port or DEFAULT_PORTS[self.scheme]
        return f"{self.scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/{quote(self.vhost, safe='')}"


def parse(uri: str) -> Endpoint:
    """amqp_uri:parse; raises URIError with amqp_uri's reason."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise URIError("{unable_to_parse_uri,no_scheme}")
    if scheme.lower() not in DEFAULT_PORTS:
        raise URIError(f'{{unexpected_uri_scheme,"{scheme.lower()}"}}')
    parts = urlsplit(uri)
    try:
        port = parts.port
    except ValueError:
        raise URIError("{unable_to_parse_uri,bad_port}") from None
    host = parts.hostname or None
    if host is None and port is not None:
        raise URIError("port_requires_host")
    if port is not None and not 0 < port <= 65535:
        raise URIError(f"{{port_out_of_range,{port}}}")
    path = parts.path
    if path:
        if "/" in path[1:]:
            raise URIError(f'{{invalid_vhost,"{path[1:]}"}}')
        vhost = unquote(path[1:])
    else:
        vhost = "/"
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return Endpoint(uri, scheme.lower(), host, port, vhost, user, password)


def validate(key: str, value: Any) -> str | None:
    """rabbit_shovel_parameters / rabbit_federation_parameters validate_uri: a URI or a list."""
    if isinstance(value, str):
        try:
            parse(value)
        except URIError as error:
            return f'"{value}" not a valid URI: {{{error},"{value}"}}'
        return binary(key, value)
    if not isinstance(value, list):
        return f"{key} should be list, actually was {erlang_json(value)}"
    return next((error for item in value if (error := validate(key, item)) is not None), None)


def uris(value: str | list[str]) -> list[Endpoint]:
    return [parse(item) for item in ([value] if isinstance(value, str) else value)]
