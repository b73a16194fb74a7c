"""The settings of the backend chain (rabbitmq.conf ``auth_backends.*``, ``auth_http.*``,
``auth_cache.*``, ``auth_oauth2.*``): ``BrokerConfig.auth``."""

from __future__ import annotations

from dataclasses import dataclass, field

from amqp_server.tls import TlsOptions

INTERNAL = "rabbit_auth_backend_internal"
HTTP = "rabbit_auth_backend_http"
OAUTH2 = "rabbit_auth_backend_oauth2"
CACHE = "rabbit_auth_backend_cache"
#: RabbitMQ's short names (rabbit.schema), and the module names themselves.
ALIASES = {"internal": INTERNAL, "http": HTTP, "oauth2": OAUTH2, "cache": CACHE} | {
    name: name for name in (INTERNAL, HTTP, OAUTH2, CACHE)
}

#: The JWT signature algorithms by kind of signing key (``auth_oauth2.algorithms.N`` picks some).
RSA_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
EC_ALGORITHMS = ["ES256", "ES384", "ES512"]
HMAC_ALGORITHMS = ["HS256", "HS384", "HS512"]


@dataclass
class AuthConfig:
    # (authentication backend, authorisation backend) per entry of the chain, in order.
    backends: list[tuple[str, str]] = field(default_factory=lambda: [(INTERNAL, INTERNAL)])
    # rabbit_auth_backend_http: the method and the four URLs (RabbitMQ's defaults), timeouts in ms.
    http_method: str = "get"
    http_user_path: str = "http://localhost:8000/auth/user"
    http_vhost_path: str = "http://localhost:8000/auth/vhost"
    http_resource_path: str = "http://localhost:8000/auth/resource"
    http_topic_path: str = "http://localhost:8000/auth/topic"
    http_request_timeout: int | None = None  # None: no limit (RabbitMQ's infinity)
    http_connection_timeout: int | None = None  # None: the request timeout
    # ``auth_http.ssl_options.*``: the TLS client of https URLs. The service's certificate is
    # checked (against ``cacertfile``, or the system's CAs) unless ``verify = verify_none``;
    # ``certfile``/``keyfile``: a client certificate to present, if the service asks for one.
    http_ssl_options: TlsOptions = field(default_factory=lambda: TlsOptions(verify="verify_peer"))
    # rabbit_auth_backend_cache: the backend it asks (authn, authz), how long answers live (ms),
    # and whether refusals are kept too.
    cache_backend: tuple[str, str] | None = None
    cache_ttl: int = 15000
    cache_refusals: bool = False
    # rabbit_auth_backend_oauth2.
    oauth2_resource_server_id: str = ""
    oauth2_additional_scopes_key: str = ""
    oauth2_default_key: str = ""
    oauth2_signing_keys: dict[str, str] = field(default_factory=dict)  # key id -> PEM (or secret) file
    oauth2_verify_aud: bool = True
    oauth2_algorithms: list[str] = field(default_factory=list)  # []: any the key's type allows


def chain_entries(positions: dict[str, dict[str, str]]) -> list[tuple[str, str]]:
    """The chain rabbitmq.conf's ``auth_backends.N`` (``default``), ``auth_backends.N.authn`` and
    ``.authz`` lines make, by position, as rabbit.schema's translation assembles it; a bad
    combination raises ValueError with its words."""
    entries = []
    for position, kinds in positions.items():
        if not position.isdigit():
            raise ValueError(f"Auth backend position in the chain should be an integer {position}")
        if "default" in kinds and len(kinds) > 1:
            kind = "authn" if "authn" in kinds else "authz"
            raise ValueError(f"Auth backend already defined for the {position}th {kind} backend")
        authn = kinds.get("authn", kinds.get("default", kinds.get("authz", "")))
        authz = kinds.get("authz", kinds.get("default", authn))
        entries.append((int(position), (authn, authz)))
    return [entry for _position, entry in sorted(entries)]
