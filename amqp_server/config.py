"""rabbitmq.conf and the RABBITMQ_* environment variables, read into a ``BrokerConfig``.

Sans-IO: ``apply_conf`` takes the text of a config file, ``apply_environment`` a mapping such as
``os.environ``; both set ``BrokerConfig`` fields or raise ``ConfigError``, whose message is the
one line ``amqp-server`` prints before exiting 1. Reading the file, the command line, opening the
log file and listening are the callers' (``cli.py``, ``server.py``).

The syntax is cuttlefish's, the schema library RabbitMQ reads rabbitmq.conf with: one
``key = value`` per line, ``#`` starts a comment anywhere on a line, keys are dot-separated
words. Every key must be in ``KEYS`` or match a pattern of ``PATTERNS``; any other stops the
start, as RabbitMQ's schema does, with RabbitMQ's words plus the file and line it is on. Values
take the datatypes of RabbitMQ's schema (``rabbit.schema``), refused with its texts.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from operator import attrgetter
from typing import Any

from amqp_server.auth.config import ALIASES, EC_ALGORITHMS, HMAC_ALGORITHMS, RSA_ALGORITHMS, chain_entries
from amqp_server.control import DATA_DIR_ENV
from amqp_server.core.alarms import parse_float, parse_information_unit
from amqp_server.core.broker import BrokerConfig
from amqp_server.tls import TLS_VERSIONS, TlsOptions
from amqp_server.transport.sasl import MECHANISM_NAMES

#: RabbitMQ's log levels, lowest first, as Python logging levels (RabbitMQ's ``notice`` sits
#: between info and warning; ``alert`` and ``emergency`` are critical here; ``none`` logs nothing).
LOG_LEVELS = {
    "debug": 10, "info": 20, "notice": 25, "warning": 30, "error": 40,
    "critical": 50, "alert": 50, "emergency": 50, "none": 100,
}  # fmt: skip
#: ``log.file.level`` also takes RabbitMQ's comparisons: only that level, all but it, up to it,
#: below it.
FILE_LEVEL_PREFIXES = ("=", "!=", "<=", "<")
MAX_MESSAGE_SIZE_LIMIT = 536_870_912  # RabbitMQ's max_message_size validator: at most 512 MiB


class ConfigError(Exception):
    """A setting that stops the start; the message is one line naming the key (and its line)."""


class Invalid(ValueError):
    """A value its datatype refuses; the message is RabbitMQ's text for it."""


# -- datatypes: text -> value, or Invalid with cuttlefish's words ------------------------------


def integer(value: str) -> int:
    if re.fullmatch(r"-?[0-9]+", value) is None:
        raise Invalid(f'"{value}" cannot be converted to a(n) integer')
    return int(value)


def ranged(low: int, high: int) -> Callable[[str], int]:
    """An integer from ``low`` to ``high`` (what the AMQP field it goes to can carry)."""

    def parse(value: str) -> int:
        number = integer(value)
        if not low <= number <= high:
            raise Invalid(f"{number} is out of range ({low}-{high})")
        return number

    return parse


def positive(value: str) -> int:
    number = integer(value)
    if number <= 0:
        raise Invalid(f"{number} is not a non-zero positive integer")  # non_zero_positive_integer
    return number


def string(value: str) -> str:
    return value


def boolean(value: str) -> bool:
    return enum("true", "false")(value) == "true"


def enum(*values: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in values:
            raise Invalid(f'"{value}" is not a valid enum value, acceptable values are: {", ".join(values)}')
        return value

    return parse


def bytesize(value: str) -> int:
    """cuttlefish's bytesize (``frame_max``): bytes, or a count of KB, MB or GB (powers of 1024)."""
    match = re.fullmatch(r"([0-9]+)(KB|MB|GB)?", value)
    if match is None:
        raise Invalid(f'"{value}" cannot be converted to a(n) bytesize')
    number, unit = match.groups()
    return int(number) * {None: 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}[unit]


def information_unit(value: str) -> int:
    """A memory or disk size: bytes, or RabbitMQ's units (``2GB``, ``512MiB``, ``50MB``)."""
    try:
        return parse_information_unit(value)
    except ValueError:
        units = "kB, MB, GB, k, KiB, M, MiB, G or GiB"
        raise Invalid(f'"{value}" is not a valid size (bytes, or a number with {units})') from None


def fraction(value: str) -> float:
    try:
        return parse_float(value)
    except ValueError:
        raise Invalid(f'"{value}" cannot be converted to a(n) float') from None


def milliseconds_or_infinity(value: str) -> float:
    """``handshake_timeout``: milliseconds (as seconds here), or ``infinity``."""
    return float("inf") if value == "infinity" else ranged(0, 2**31)(value) / 1000


def log_level(value: str) -> str:
    return enum(*LOG_LEVELS)(value)


def file_log_level(value: str) -> str:
    """``log.file.level``: a level, or ``=level``, ``!=level``, ``<=level``, ``<level``."""
    bare = value.lstrip("=!<")
    if value[: len(value) - len(bare)] not in ("", *FILE_LEVEL_PREFIXES) or bare not in LOG_LEVELS:
        accepted = ", ".join(LOG_LEVELS) + ", or one of them after =, !=, <= or <"
        raise Invalid(f'"{value}" is not a valid enum value, acceptable values are: {accepted}')
    return value


def log_file(value: str) -> str:
    """``log.file``: a file name (under ``log.dir`` unless absolute), or ``false``: no file."""
    return "" if value == "false" else value


def listener(value: str) -> tuple[str, int]:
    """``listeners.tcp.*``: a port (every interface), or ``address:port``; an IPv6 address as
    ``::1:5672`` or ``[::1]:5672``."""
    host, colon, port = value.rpartition(":")
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise Invalid(f'"{value}" cannot be converted to a(n) IP address and port') from None
    if (colon and not host) or re.fullmatch(r"[0-9]+", port.strip()) is None:
        raise Invalid(f'"{value}" cannot be converted to a(n) integer or IP address and port')
    number = int(port)
    if number > 65535:
        raise Invalid(f"port {number} is out of range (0-65535)")
    return host, number


def permission_pattern(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise Invalid(f'"{value}" is not a valid regular expression: {exc}') from None
    return value


def auth_backend(value: str) -> str:
    """``auth_backends.N``: a backend's short name or module name, as the module name."""
    if value not in ALIASES:
        raise Invalid(f'"{value}" is not a valid enum value, acceptable values are: {", ".join(ALIASES)}')
    return ALIASES[value]


def non_negative(value: str) -> int:
    number = integer(value)
    if number < 0:
        raise Invalid(f"{number} is not a non-negative integer")  # non_negative_integer
    return number


# -- the schema ---------------------------------------------------------------------------------

#: The TLS options of a listener, under the prefix of its kind (``ssl_options.`` for AMQPS,
#: ``management.ssl.``, ``prometheus.ssl.``, ``cluster.ssl_options.`` for both ends of the links
#: between nodes), and of the HTTP auth backend's client (``auth_http.ssl_options.``); each
#: prefix's ``TlsOptions`` is a BrokerConfig field (``auth.``: of its AuthConfig).
TLS_PREFIXES = {"ssl_options.": "ssl_options", "management.ssl.": "management_ssl_options",
                "prometheus.ssl.": "prometheus_ssl_options",
                "cluster.ssl_options.": "cluster_ssl_options",
                "auth_http.ssl_options.": "auth.http_ssl_options"}  # fmt: skip
#: The links between nodes: TLS on or off (RabbitMQ's ``-proto_dist inet_tls``), the name a
#: dialed peer's certificate must carry, and TLS 1.2 and 1.3 only.
CLUSTER_TLS_KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "cluster.ssl": ("cluster_ssl", boolean),
    "cluster.ssl_options.server_name_indication": ("server_name_indication", string),
}
CLUSTER_TLS_PATTERNS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "cluster.ssl_options.versions.$n": ("versions", enum("tlsv1.2", "tlsv1.3")),
}
#: The HTTP auth backend's client: the name the service's certificate must carry (and the SNI
#: sent), as for the links; ``sni`` is rabbitmq_auth_backend_http's own key for it (``none``: the
#: host of the URL).
AUTH_HTTP_TLS_KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "auth_http.ssl_options.server_name_indication": ("server_name_indication", string),
    "auth_http.ssl_options.sni": ("server_name_indication", lambda value: "" if value == "none" else value),
}
TLS_KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "cacertfile": ("cacertfile", string),
    "certfile": ("certfile", string),
    "keyfile": ("keyfile", string),
    "password": ("password", string),
    "verify": ("verify", enum("verify_peer", "verify_none")),
    "fail_if_no_peer_cert": ("fail_if_no_peer_cert", boolean),
    "depth": ("depth", ranged(0, 255)),
    "honor_cipher_order": ("honor_cipher_order", boolean),
}
TLS_LIST_KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "versions": ("versions", enum(*TLS_VERSIONS)),
    "ciphers": ("ciphers", string),
}


def tls_options(config: BrokerConfig, entry: str) -> TlsOptions | None:
    """The ``TlsOptions`` a TLS key (``management.ssl.certfile``) sets, or None for another key."""
    for prefix, name in TLS_PREFIXES.items():
        if entry.startswith(prefix) and entry != f"{prefix}port":
            return attrgetter(name)(config)
    return None


#: rabbitmq.conf keys mapped to (BrokerConfig field, datatype). ``handshake_timeout`` and
#: ``consumer_timeout`` are in milliseconds, as in RabbitMQ.
KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "management.tcp.port": ("management_port", ranged(0, 65535)),
    "management.tcp.ip": ("management_host", string),
    "collect_statistics_interval": ("collect_statistics_interval", positive),
    "prometheus.tcp.port": ("prometheus_port", ranged(0, 65535)),
    "prometheus.tcp.ip": ("prometheus_host", string),
    "prometheus.return_per_object_metrics": ("prometheus_return_per_object_metrics", boolean),
    "default_user": ("default_user", string),
    "default_pass": ("default_pass", string),
    "default_vhost": ("default_vhost", string),
    "event_exchange.vhost": ("event_exchange_vhost", string),  # rabbitmq_event_exchange's
    "heartbeat": ("heartbeat", ranged(0, 65535)),
    "frame_max": ("frame_max", bytesize),
    "channel_max": ("channel_max", ranged(0, 65535)),
    "max_message_size": ("max_message_size", ranged(1, MAX_MESSAGE_SIZE_LIMIT)),
    "handshake_timeout": ("handshake_timeout", milliseconds_or_infinity),
    "consumer_timeout": ("consumer_timeout_ms", positive),
    "cluster_name": ("cluster_name", string),
    "load_definitions": ("load_definitions", string),
    "vm_memory_high_watermark.relative": ("vm_memory_high_watermark", fraction),
    "vm_memory_high_watermark.absolute": ("vm_memory_high_watermark_absolute", information_unit),
    "disk_free_limit.relative": ("disk_free_limit_relative", fraction),
    "disk_free_limit.absolute": ("disk_free_limit", information_unit),
    "log.dir": ("log_dir", string),
    "log.console": ("log_console", boolean),
    "log.console.level": ("log_console_level", log_level),
    "log.console.stdio": ("log_console_stdio", enum("stdout", "stderr")),
    "log.file": ("log_file", log_file),
    "log.file.level": ("log_file_level", file_log_level),
    "queue_memory_window": ("queue_memory_window", ranged(0, 2**31)),  # not a RabbitMQ key
    "cluster_formation.node_type": ("cluster_node_type", enum("disc", "disk", "ram")),
    # Keys whose value is a list assembled from several lines (see apply_conf):
    "listeners.tcp": ("listeners", enum("none")),
    "listeners.ssl": ("ssl_listeners", enum("none")),
    **{f"{prefix}{key}": spec for prefix in TLS_PREFIXES for key, spec in TLS_KEYS.items()},
    **CLUSTER_TLS_KEYS,
    **AUTH_HTTP_TLS_KEYS,
    "management.ssl.port": ("management_ssl_port", ranged(0, 65535)),
    "prometheus.ssl.port": ("prometheus_ssl_port", ranged(0, 65535)),
    "ssl_handshake_timeout": ("ssl_handshake_timeout", milliseconds_or_infinity),
    "ssl_cert_login_from": ("ssl_cert_login_from", enum("common_name", "distinguished_name")),
    "loopback_users": ("loopback_users", enum("none")),
    "default_permissions.configure": ("default_permissions", permission_pattern),
    "default_permissions.write": ("default_permissions", permission_pattern),
    "default_permissions.read": ("default_permissions", permission_pattern),
    # The backend chain's settings (BrokerConfig.auth; docs/security.md).
    "auth_http.http_method": ("auth.http_method", enum("get", "post")),
    "auth_http.user_path": ("auth.http_user_path", string),
    "auth_http.vhost_path": ("auth.http_vhost_path", string),
    "auth_http.resource_path": ("auth.http_resource_path", string),
    "auth_http.topic_path": ("auth.http_topic_path", string),
    "auth_http.request_timeout": ("auth.http_request_timeout", non_negative),
    "auth_http.connection_timeout": ("auth.http_connection_timeout", non_negative),
    "auth_cache.cached_backend": ("auth.cache_backend", auth_backend),
    "auth_cache.cached_backend.authn": ("auth.cache_backend", auth_backend),
    "auth_cache.cached_backend.authz": ("auth.cache_backend", auth_backend),
    "auth_cache.cache_ttl": ("auth.cache_ttl", non_negative),
    "auth_cache.cache_refusals": ("auth.cache_refusals", boolean),
    "auth_oauth2.resource_server_id": ("auth.oauth2_resource_server_id", string),
    "auth_oauth2.additional_scopes_key": ("auth.oauth2_additional_scopes_key", string),
    "auth_oauth2.default_key": ("auth.oauth2_default_key", string),
    "auth_oauth2.verify_aud": ("auth.oauth2_verify_aud", boolean),
}
#: Keys with a name of the operator's choosing in their last part (``listeners.tcp.default``,
#: ``listeners.tcp.2``, ``loopback_users.guest``, ``default_user_tags.monitoring``).
PATTERNS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "listeners.tcp.$name": ("listeners", listener),
    "listeners.ssl.$name": ("ssl_listeners", listener),
    **{f"{prefix}{key}.$n": spec for prefix in TLS_PREFIXES for key, spec in TLS_LIST_KEYS.items()},
    **CLUSTER_TLS_PATTERNS,
    "auth_mechanisms.$n": ("auth_mechanisms", enum(*MECHANISM_NAMES)),
    "loopback_users.$user": ("loopback_users", boolean),
    "default_user_tags.$tag": ("default_user_tags", boolean),
    "auth_backends.$n": ("auth.backends", auth_backend),
    "auth_backends.$n.authn": ("auth.backends", auth_backend),
    "auth_backends.$n.authz": ("auth.backends", auth_backend),
    "auth_oauth2.signing_keys.$name": ("auth.oauth2_signing_keys", string),
    "cluster_formation.classic_config.nodes.$n": ("cluster_nodes", string),
    "auth_oauth2.algorithms.$n": ("auth.oauth2_algorithms", enum(*RSA_ALGORITHMS, *EC_ALGORITHMS, *HMAC_ALGORITHMS)),
}
_KEY = re.compile(r"[A-Za-z0-9_\-@$]+(?:\.[A-Za-z0-9_\-@$]+)*")
_PHASE = "Error preparing configuration in phase transform_datatypes"


def schema_key(key: str) -> str | None:
    """The ``KEYS`` or ``PATTERNS`` entry ``key`` is, or None (an unknown key)."""
    if key in KEYS:
        return key
    parts = key.split(".")
    for pattern in PATTERNS:
        words = pattern.split(".")  # a ``$`` word stands for any word (auth_backends.$n.authn)
        if len(words) == len(parts) and all(w == p or (w[0] == "$" and p) for w, p in zip(words, parts, strict=True)):
            return pattern
    return None


def parse_conf(text: str, source: str = "rabbitmq.conf") -> list[tuple[int, str, str]]:
    """The ``(line number, key, value)`` settings of a rabbitmq.conf text, in order; a line that
    is not ``key = value`` raises ConfigError. Keys are not checked here (``apply_conf`` does)."""
    settings = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        key, sep, value = (part.strip() for part in line.partition("="))
        if not sep or not value or _KEY.fullmatch(key) is None:
            raise ConfigError(
                f"Error parsing configuration: Syntax error in {source} on line {number}: expected 'key = value'"
            )
        settings.append((number, key, value))
    return settings


def apply_conf(text: str, config: BrokerConfig, source: str = "rabbitmq.conf") -> None:
    """Set ``config`` from the rabbitmq.conf ``text`` (``source`` names it in errors).

    As RabbitMQ's schema translates them: the ``listeners.tcp.*`` lines together are the AMQP
    listeners, the ``loopback_users.*`` and ``default_user_tags.*`` lines set to ``true`` are
    the whole list (``loopback_users = none``: nobody is loopback-only), and when both forms of a
    resource limit are given the relative one wins.
    """
    listeners: list[tuple[str, int]] = []
    loopback: list[str] | None = None
    tags: list[str] | None = None
    permissions = dict(config.default_permissions)
    relative: set[str] = set()
    mechanisms: list[str] | None = None
    backends: dict[str, dict[str, str]] = {}  # auth_backends: position -> default/authn/authz
    cached: dict[str, str] = {}  # auth_cache.cached_backend: default/authn/authz
    given = set()
    for number, key, value in parse_conf(text, source):
        given.add(key)
        entry = schema_key(key)
        if entry is None:
            close = difflib.get_close_matches(key, [*KEYS, *PATTERNS], 1)
            hint = f", did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"{_PHASE}: Conf file attempted to set unknown variable: {key} "
                f"({source}, line {number}: unknown setting '{key}'{hint})"
            )
        name, parse = (KEYS if entry in KEYS else PATTERNS)[entry]
        try:
            parsed = parse(value)
        except Invalid as exc:
            raise ConfigError(
                f"{_PHASE}: Error transforming datatype for: {key}: {exc} "
                f"({source}, line {number}: invalid value '{value}')"
            ) from None
        last = key.rpartition(".")[2]
        if entry == "listeners.tcp":
            reason = "'listeners.tcp = none' is not supported: the node needs an AMQP listener"
            raise ConfigError(f"{source}, line {number}: {reason}")
        elif entry == "listeners.tcp.$name":
            listeners.append(parsed)
        elif entry == "listeners.ssl":
            config.ssl_listeners = []
        elif entry == "listeners.ssl.$name":
            config.ssl_listeners.append(parsed)
        elif entry.endswith(".$n") and tls_options(config, entry) is not None:
            getattr(tls_options(config, entry), name).append(parsed)
        elif tls_options(config, entry) is not None:
            setattr(tls_options(config, entry), name, parsed)
        elif entry == "auth_mechanisms.$n":
            mechanisms = [] if mechanisms is None else mechanisms
            mechanisms.append(parsed)
        elif entry == "loopback_users":
            loopback = []
        elif entry == "loopback_users.$user":
            loopback = [u for u in loopback or [] if u != last] + ([last] if parsed else [])
        elif entry == "default_user_tags.$tag":
            tags = [t for t in tags or [] if t != last] + ([last] if parsed else [])
        elif name == "default_permissions":
            permissions[last] = parsed
        elif name == "auth.backends":
            backends.setdefault(key.split(".")[1], {})[last if last in ("authn", "authz") else "default"] = parsed
        elif name == "auth.cache_backend":
            cached[last if last in ("authn", "authz") else "default"] = parsed
        elif name == "auth.oauth2_signing_keys":
            config.auth.oauth2_signing_keys[last] = parsed
        elif name == "auth.oauth2_algorithms":
            config.auth.oauth2_algorithms.append(parsed)
        elif name == "cluster_nodes":
            config.cluster_nodes.append(parsed)
        elif name.startswith("auth."):
            setattr(config.auth, name[len("auth.") :], parsed)
        else:
            setattr(config, name, parsed)
            if entry.endswith(".relative"):
                relative.add(entry.partition(".")[0])
    if listeners:
        config.listeners = listeners
        config.port = listeners[0][1]
    # As rabbitmq_management and rabbitmq_prometheus: an HTTPS listener replaces the plain one
    # unless the file also names a plain port.
    for kind in ("management", "prometheus"):
        if f"{kind}.ssl.port" in given and f"{kind}.tcp.port" not in given:
            setattr(config, f"{kind}_port", None)
    if loopback is not None:
        config.loopback_users = loopback
    if mechanisms is not None:
        config.auth_mechanisms = mechanisms
    if tags is not None:
        config.default_user_tags = tags
    config.default_permissions = permissions
    try:
        if backends:
            config.auth.backends = chain_entries(backends)
        if cached:
            config.auth.cache_backend = chain_entries({"1": cached})[0]
    except ValueError as exc:
        raise ConfigError(f"{_PHASE}: auth_backends: {exc} ({source})") from None
    if "vm_memory_high_watermark" in relative:  # (a relative disk limit already wins)
        config.vm_memory_high_watermark_absolute = None


# -- environment variables ------------------------------------------------------------------------

#: Ours, where RabbitMQ has no variable (its HTTP listeners are set in rabbitmq.conf only).
MANAGEMENT_PORT_VARIABLE = "AMQP_SERVER_MANAGEMENT_PORT"
PROMETHEUS_PORT_VARIABLE = "AMQP_SERVER_PROMETHEUS_PORT"


def config_file(env: Mapping[str, str]) -> str | None:
    """The config file ``RABBITMQ_CONFIG_FILE`` names; as in RabbitMQ, a name without an
    extension means that name plus ``.conf``."""
    path = env.get("RABBITMQ_CONFIG_FILE")
    if not path:
        return None
    return path if os.path.splitext(path)[1] else path + ".conf"


def node_name(name: str) -> str:
    """A node name as RabbitMQ completes it: ``rabbit`` is ``rabbit@localhost`` here."""
    return name if "@" in name else f"{name}@localhost"


def _env_port(env: Mapping[str, str], variable: str) -> int | None:
    value = env.get(variable)
    if not value:  # (an empty variable is an unset one, as rabbit_env reads them)
        return None
    if re.fullmatch(r"[0-9]+", value) is None or int(value) > 65535:
        raise ConfigError(f'Invalid value for ${variable}: "{value}"')  # rabbit_env's words
    return int(value)


def apply_environment(env: Mapping[str, str], config: BrokerConfig) -> None:
    """Set ``config`` from RabbitMQ's environment variables (and ours, where RabbitMQ has none).

    ``RABBITMQ_NODE_PORT`` replaces the config file's listeners by one on that port;
    ``RABBITMQ_NODE_IP_ADDRESS`` is the address of listeners given without one. The data
    directory from ``RABBITMQ_MNESIA_BASE`` depends on the final node name: ``data_dir``.
    """
    if env.get("RABBITMQ_NODENAME"):
        config.node_name = node_name(env["RABBITMQ_NODENAME"])
    if env.get("RABBITMQ_NODE_IP_ADDRESS"):
        config.host = env["RABBITMQ_NODE_IP_ADDRESS"]
    port = _env_port(env, "RABBITMQ_NODE_PORT")
    if port is not None:
        config.port = port
        config.listeners = None
    for variable, name in (
        (MANAGEMENT_PORT_VARIABLE, "management_port"),
        (PROMETHEUS_PORT_VARIABLE, "prometheus_port"),
        ("RABBITMQ_DIST_PORT", "cluster_port"),
    ):
        port = _env_port(env, variable)
        if port is not None:
            setattr(config, name, port)
    for variable, name in (
        ("RABBITMQ_DEFAULT_USER", "default_user"),
        ("RABBITMQ_DEFAULT_PASS", "default_pass"),
        ("RABBITMQ_DEFAULT_VHOST", "default_vhost"),
        ("RABBITMQ_LOG_BASE", "log_dir"),
    ):
        if env.get(variable):
            setattr(config, name, env[variable])
    logs = env.get("RABBITMQ_LOGS")
    if logs in ("-", "-stderr"):  # the console only
        config.log_file = ""
        config.log_console = True
        config.log_console_stdio = "stdout" if logs == "-" else "stderr"
    elif logs:
        config.log_file = logs
    for part in env.get("RABBITMQ_LOG", "").split(","):
        # rabbit_env: a bare level is the global one; categories (connection=debug) and
        # +color/+json are RabbitMQ's output options this broker does not have, so ignored.
        if part.strip() in LOG_LEVELS:
            config.log_console_level = config.log_file_level = part.strip()


def data_dir(env: Mapping[str, str], name: str) -> str | None:
    """The data directory the environment names for node ``name``: ``AMQP_SERVER_DATA_DIR`` (what
    amqp-ctl reads too), ``RABBITMQ_MNESIA_DIR``, or ``RABBITMQ_MNESIA_BASE``/``name`` as in
    RabbitMQ; None when none is set."""
    if env.get(DATA_DIR_ENV):
        return env[DATA_DIR_ENV]
    if env.get("RABBITMQ_MNESIA_DIR"):
        return env["RABBITMQ_MNESIA_DIR"]
    if env.get("RABBITMQ_MNESIA_BASE"):
        return os.path.join(env["RABBITMQ_MNESIA_BASE"], name)
    return None


# -- logging --------------------------------------------------------------------------------------


def log_file_path(config: BrokerConfig) -> str | None:
    """Where the log file is: ``log_file`` under ``log_dir`` (unless absolute); with only a log
    directory, ``<log_dir>/<node name>.log`` as RabbitMQ names it; None: no log file."""
    if config.log_file == "":
        return None
    if config.log_file is None:
        return os.path.join(config.log_dir, f"{config.node_name}.log") if config.log_dir else None
    return os.path.join(config.log_dir, config.log_file) if config.log_dir else config.log_file


def level_filter(spec: str) -> tuple[int, Callable[[int], bool]]:
    """For a RabbitMQ level (``info``) or file level comparison (``=debug``, ``!=info``,
    ``<=notice``, ``<warning``): the lowest Python level it takes and which levels it takes."""
    bare = spec.lstrip("=!<")
    level = LOG_LEVELS[bare]
    prefix = spec[: len(spec) - len(bare)]
    if prefix == "=":
        return level, lambda n: n == level
    if prefix == "!=":
        return LOG_LEVELS["debug"], lambda n: n != level
    if prefix == "<=":
        return LOG_LEVELS["debug"], lambda n: n <= level
    if prefix == "<":
        return LOG_LEVELS["debug"], lambda n: n < level
    return level, lambda n: n >= level
