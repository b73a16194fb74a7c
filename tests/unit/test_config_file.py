"""rabbitmq.conf and RABBITMQ_* environment variables read into a BrokerConfig (amqp_server.config):
every key with RabbitMQ's value syntax, RabbitMQ's list semantics, errors naming the key and
line in RabbitMQ's words, the environment, and the precedence command line > environment >
file > default (cli.parse_args)."""

from __future__ import annotations

import logging
from operator import attrgetter
from pathlib import Path

import pytest

from amqp_server.cli import parse_args
from amqp_server.config import (
    KEYS,
    PATTERNS,
    TLS_PREFIXES,
    ConfigError,
    apply_conf,
    apply_environment,
    config_file,
    data_dir,
    level_filter,
    log_file_path,
    parse_conf,
)
from amqp_server.core.broker import BrokerConfig


def conf(text: str) -> BrokerConfig:
    config = BrokerConfig()
    apply_conf(text, config)
    return config


def error(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        conf(text)
    message = str(caught.value)
    assert "\n" not in message
    return message


# -- syntax ---------------------------------------------------------------------------------------


def test_syntax_comments_blank_lines_and_spaces():
    text = "# a comment\n\n  heartbeat=30  \ndefault_pass = a b  # comment\r\ndefault_user =admin#x\n"
    assert parse_conf(text) == [
        (3, "heartbeat", "30"),
        (4, "default_pass", "a b"),
        (5, "default_user", "admin"),
    ]
    config = conf(text)
    assert (config.heartbeat, config.default_pass, config.default_user) == (30, "a b", "admin")


@pytest.mark.parametrize("line", ["heartbeat", "heartbeat =", "= 30", "heart beat = 30"])
def test_a_line_that_is_not_key_equals_value(line):
    assert error(f"heartbeat = 1\n{line}\n") == (
        "Error parsing configuration: Syntax error in rabbitmq.conf on line 2: expected 'key = value'"
    )


def test_later_lines_win():
    assert conf("heartbeat = 1\nheartbeat = 2\n").heartbeat == 2


# -- every key ------------------------------------------------------------------------------------


KEY_EXAMPLES = [
    ("management.tcp.port = 15673", "management_port", 15673),
    ("management.tcp.ip = 127.0.0.1", "management_host", "127.0.0.1"),
    ("prometheus.tcp.port = 15693", "prometheus_port", 15693),
    ("prometheus.tcp.ip = ::1", "prometheus_host", "::1"),
    ("prometheus.return_per_object_metrics = true", "prometheus_return_per_object_metrics", True),
    ("collect_statistics_interval = 1000", "collect_statistics_interval", 1000),
    ("default_user = admin", "default_user", "admin"),
    ("default_pass = s3cr3t", "default_pass", "s3cr3t"),
    ("default_vhost = prod", "default_vhost", "prod"),
    ("event_exchange.vhost = events", "event_exchange_vhost", "events"),
    ("heartbeat = 0", "heartbeat", 0),
    ("frame_max = 65536", "frame_max", 65536),
    ("frame_max = 128KB", "frame_max", 131072),
    ("frame_max = 1MB", "frame_max", 1048576),
    ("channel_max = 64", "channel_max", 64),
    ("max_message_size = 134217728", "max_message_size", 134217728),
    ("ssl_handshake_timeout = 2000", "ssl_handshake_timeout", 2.0),
    ("management.ssl.port = 15671", "management_ssl_port", 15671),
    ("prometheus.ssl.port = 15691", "prometheus_ssl_port", 15691),
    ("ssl_cert_login_from = distinguished_name", "ssl_cert_login_from", "distinguished_name"),
    ("handshake_timeout = 5000", "handshake_timeout", 5.0),
    ("handshake_timeout = infinity", "handshake_timeout", float("inf")),
    ("consumer_timeout = 900000", "consumer_timeout_ms", 900000),
    ("cluster_name = east", "cluster_name", "east"),
    ("load_definitions = /etc/defs.json", "load_definitions", "/etc/defs.json"),
    ("vm_memory_high_watermark.relative = 0.6", "vm_memory_high_watermark", 0.6),
    ("vm_memory_high_watermark.absolute = 2GB", "vm_memory_high_watermark_absolute", 2_000_000_000),
    ("vm_memory_high_watermark.absolute = 1073741824", "vm_memory_high_watermark_absolute", 1073741824),
    ("disk_free_limit.relative = 1.5", "disk_free_limit_relative", 1.5),
    ("disk_free_limit.absolute = 50MB", "disk_free_limit", 50_000_000),
    ("disk_free_limit.absolute = 1GiB", "disk_free_limit", 1024**3),
    ("log.dir = /var/log/amqp", "log_dir", "/var/log/amqp"),
    ("log.console = false", "log_console", False),
    ("log.console.level = debug", "log_console_level", "debug"),
    ("log.console.stdio = stdout", "log_console_stdio", "stdout"),
    ("log.file = /var/log/amqp/node.log", "log_file", "/var/log/amqp/node.log"),
    ("log.file = false", "log_file", ""),
    ("log.file.level = warning", "log_file_level", "warning"),
    ("log.file.level = =debug", "log_file_level", "=debug"),
    ("log.file.level = <warning", "log_file_level", "<warning"),
    ("queue_memory_window = 0", "queue_memory_window", 0),
    ("cluster_formation.node_type = ram", "cluster_node_type", "ram"),
    ("cluster.ssl = true", "cluster_ssl", True),
    ("auth_http.http_method = post", "auth.http_method", "post"),
    ("auth_http.user_path = http://auth:8000/user", "auth.http_user_path", "http://auth:8000/user"),
    ("auth_http.vhost_path = http://auth:8000/vhost", "auth.http_vhost_path", "http://auth:8000/vhost"),
    ("auth_http.resource_path = http://auth:8000/resource", "auth.http_resource_path", "http://auth:8000/resource"),
    ("auth_http.topic_path = http://auth:8000/topic", "auth.http_topic_path", "http://auth:8000/topic"),
    ("auth_http.request_timeout = 15000", "auth.http_request_timeout", 15000),
    ("auth_http.connection_timeout = 5000", "auth.http_connection_timeout", 5000),
    ("auth_cache.cache_ttl = 0", "auth.cache_ttl", 0),
    ("auth_cache.cache_refusals = true", "auth.cache_refusals", True),
    ("auth_oauth2.resource_server_id = rabbitmq", "auth.oauth2_resource_server_id", "rabbitmq"),
    ("auth_oauth2.additional_scopes_key = extra_scope", "auth.oauth2_additional_scopes_key", "extra_scope"),
    ("auth_oauth2.default_key = key-1", "auth.oauth2_default_key", "key-1"),
    ("auth_oauth2.verify_aud = false", "auth.oauth2_verify_aud", False),
]


@pytest.mark.parametrize(("line", "field", "value"), KEY_EXAMPLES)
def test_keys(line, field, value):
    assert attrgetter(field)(conf(line + "\n")) == value


def test_every_key_is_tested_and_documented():
    tested = {line.partition(" = ")[0] for line, _field, _value in KEY_EXAMPLES}
    lists = {
        "listeners.tcp",
        "listeners.ssl",
        "loopback_users",
        *(key for key in KEYS if any(key.startswith(prefix) for prefix in TLS_PREFIXES) and not key.endswith(".port")),
        *(f"default_permissions.{k}" for k in ("configure", "write", "read")),
        *(f"auth_cache.cached_backend{suffix}" for suffix in ("", ".authn", ".authz")),
    }
    assert set(KEYS) - tested == lists  # (tested below)
    docs = (Path(__file__).parents[2] / "docs" / "operations.md").read_text()
    for key in [*KEYS, *PATTERNS]:
        shown = key.replace("$name", "NAME").replace("$user", "USER").replace("$tag", "TAG").replace("$n", "N")
        if key.startswith(("management.ssl.", "prometheus.ssl.")) and not key.endswith(".port"):
            shown = key.rsplit(".", 2 if key.endswith(".$n") else 1)[0] + ".*"  # as ssl_options.*
        assert f"`{shown}" in docs, key


def test_defaults_stay_as_rabbitmq_without_a_file():
    config = conf("")
    assert (config.host, config.port, config.listeners) == ("0.0.0.0", 5672, None)
    assert (config.default_user, config.default_pass, config.default_vhost) == ("guest", "guest", "/")
    assert config.default_user_tags == ["administrator"]
    assert config.default_permissions == {"configure": ".*", "write": ".*", "read": ".*"}
    assert config.loopback_users == ["guest"]
    assert (config.log_console, config.log_file, config.log_console_level) == (True, None, "info")


def test_tls_keys():
    config = conf(
        "listeners.ssl.default = 5671\n"
        "listeners.ssl.other = 127.0.0.1:5681\n"
        "ssl_options.cacertfile = /etc/tls/ca.pem\n"
        "ssl_options.certfile = /etc/tls/server.pem\n"
        "ssl_options.keyfile = /etc/tls/server.key\n"
        "ssl_options.password = pw\n"
        "ssl_options.verify = verify_peer\n"
        "ssl_options.fail_if_no_peer_cert = true\n"
        "ssl_options.depth = 2\n"
        "ssl_options.honor_cipher_order = true\n"
        "ssl_options.versions.1 = tlsv1.3\n"
        "ssl_options.ciphers.1 = ECDHE-ECDSA-AES256-GCM-SHA384\n"
        "auth_mechanisms.1 = EXTERNAL\n"
        "auth_mechanisms.2 = PLAIN\n"
    )
    assert config.ssl_listeners == [("", 5671), ("127.0.0.1", 5681)]
    assert config.listeners is None  # the AMQP listener stays as it was
    options = config.ssl_options
    assert (options.cacertfile, options.certfile, options.keyfile, options.password) == (
        "/etc/tls/ca.pem", "/etc/tls/server.pem", "/etc/tls/server.key", "pw",
    )  # fmt: skip
    assert (options.verify, options.fail_if_no_peer_cert, options.depth, options.honor_cipher_order) == (
        "verify_peer", True, 2, True,
    )  # fmt: skip
    assert (options.versions, options.ciphers) == (["tlsv1.3"], ["ECDHE-ECDSA-AES256-GCM-SHA384"])
    assert config.auth_mechanisms == ["EXTERNAL", "PLAIN"]
    assert conf("listeners.ssl = none").ssl_listeners == []
    assert "ssl_options.verify" in error("ssl_options.verify = maybe")
    assert "auth_mechanisms.1" in error("auth_mechanisms.1 = CRAM-MD5")


def test_auth_http_tls_keys():
    """rabbitmq_auth_backend_http's ``auth_http.ssl_options.*``: the TLS client of https URLs,
    which checks the service's certificate unless told not to."""
    assert conf("").auth.http_ssl_options.verify == "verify_peer"
    options = conf(
        "auth_http.ssl_options.cacertfile = /etc/tls/ca.pem\n"
        "auth_http.ssl_options.certfile = /etc/tls/client.pem\n"
        "auth_http.ssl_options.keyfile = /etc/tls/client.key\n"
        "auth_http.ssl_options.password = pw\n"
        "auth_http.ssl_options.verify = verify_none\n"
        "auth_http.ssl_options.fail_if_no_peer_cert = false\n"
        "auth_http.ssl_options.depth = 3\n"
        "auth_http.ssl_options.versions.1 = tlsv1.3\n"
        "auth_http.ssl_options.versions.2 = tlsv1.2\n"
        "auth_http.ssl_options.ciphers.1 = TLS_AES_256_GCM_SHA384\n"
        "auth_http.ssl_options.server_name_indication = auth.example.com\n"
    ).auth.http_ssl_options
    assert (options.cacertfile, options.certfile, options.keyfile, options.password) == (
        "/etc/tls/ca.pem", "/etc/tls/client.pem", "/etc/tls/client.key", "pw",
    )  # fmt: skip
    assert (options.verify, options.fail_if_no_peer_cert, options.depth) == ("verify_none", False, 3)
    assert (options.versions, options.ciphers) == (["tlsv1.3", "tlsv1.2"], ["TLS_AES_256_GCM_SHA384"])
    assert options.server_name_indication == "auth.example.com"
    for sni, name in (("auth.example.com", "auth.example.com"), ("none", "")):  # (none: the URL's host)
        assert conf(f"auth_http.ssl_options.sni = {sni}").auth.http_ssl_options.server_name_indication == name
    assert conf("ssl_options.cacertfile = /a.pem\n").auth.http_ssl_options.cacertfile == ""  # the listeners'
    assert "auth_http.ssl_options.verify" in error("auth_http.ssl_options.verify = maybe\n")
    assert "auth_http.ssl_options.versions.1" in error("auth_http.ssl_options.versions.1 = sslv3\n")


# -- keys whose lines make one list ---------------------------------------------------------------


def test_listeners():
    config = conf(
        "listeners.tcp.default = 5672\nlisteners.tcp.1 = 127.0.0.1:5673\n"
        "listeners.tcp.2 = ::1:5673\nlisteners.tcp.3 = [::1]:5674\nlisteners.tcp.other = localhost:5675\n"
    )
    assert config.listeners == [
        ("", 5672),
        ("127.0.0.1", 5673),
        ("::1", 5673),
        ("::1", 5674),
        ("localhost", 5675),
    ]
    assert config.port == 5672


@pytest.mark.parametrize(
    "value", ["127.0.0.1", "127.0.0.1:", ":5672", "port", "70000", "1:2:3:zz:5672", "-1"]
)
def test_bad_listeners(value):
    assert f"invalid value '{value}'" in error(f"listeners.tcp.default = {value}\n")


def test_listeners_none_is_refused():
    assert "the node needs an AMQP listener" in error("listeners.tcp = none\n")


@pytest.mark.parametrize(
    ("text", "chain"),
    [
        ("", [("rabbit_auth_backend_internal",) * 2]),
        ("auth_backends.1 = internal\n", [("rabbit_auth_backend_internal",) * 2]),
        (
            "auth_backends.2 = rabbit_auth_backend_internal\nauth_backends.1 = http\n",
            [("rabbit_auth_backend_http",) * 2, ("rabbit_auth_backend_internal",) * 2],
        ),
        (
            "auth_backends.1.authn = oauth2\nauth_backends.1.authz = internal\nauth_backends.10 = cache\n",
            [("rabbit_auth_backend_oauth2", "rabbit_auth_backend_internal"), ("rabbit_auth_backend_cache",) * 2],
        ),
        ("auth_backends.1.authz = http\n", [("rabbit_auth_backend_http",) * 2]),
    ],
)
def test_auth_backends(text, chain):
    assert conf(text).auth.backends == chain


def test_auth_backend_keys_assembled_from_lines():
    config = conf(
        "auth_cache.cached_backend.authn = http\nauth_cache.cached_backend.authz = internal\n"
        "auth_oauth2.signing_keys.key-1 = /etc/keys/one.pem\nauth_oauth2.signing_keys.key-2 = /etc/keys/two.pem\n"
        "auth_oauth2.algorithms.1 = RS256\nauth_oauth2.algorithms.2 = ES256\n"
    )
    assert config.auth.cache_backend == ("rabbit_auth_backend_http", "rabbit_auth_backend_internal")
    assert config.auth.oauth2_signing_keys == {"key-1": "/etc/keys/one.pem", "key-2": "/etc/keys/two.pem"}
    assert config.auth.oauth2_algorithms == ["RS256", "ES256"]
    assert conf("auth_cache.cached_backend = http\n").auth.cache_backend == ("rabbit_auth_backend_http",) * 2


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("auth_backends.1 = ldap\n", '"ldap" is not a valid enum value'),
        ("auth_backends.x = internal\n", "Auth backend position in the chain should be an integer x"),
        ("auth_backends.1 = internal\nauth_backends.1.authn = http\n", "Auth backend already defined for the 1th authn"),
        ("auth_oauth2.algorithms.1 = none\n", '"none" is not a valid enum value'),
    ],
)
def test_bad_auth_backends(text, detail):
    assert detail in error(text)


@pytest.mark.parametrize(
    ("text", "users"),
    [
        ("loopback_users = none\n", []),
        ("loopback_users.guest = false\n", []),
        ("loopback_users.guest = true\n", ["guest"]),
        ("loopback_users.admin = true\n", ["admin"]),  # the list is what the file says, as in RabbitMQ
        ("loopback_users.admin = true\nloopback_users.guest = true\n", ["admin", "guest"]),
        ("loopback_users.admin = true\nloopback_users.admin = false\n", []),
    ],
)
def test_loopback_users(text, users):
    assert conf(text).loopback_users == users


def test_default_user_tags_and_permissions():
    config = conf(
        "default_user_tags.monitoring = true\ndefault_user_tags.management = true\n"
        "default_user_tags.administrator = false\n"
        "default_permissions.configure = ^amq\\.gen.*\ndefault_permissions.read = .*\n"
        "default_permissions.write = ^$\n"
    )
    assert config.default_user_tags == ["monitoring", "management"]
    assert config.default_permissions == {"configure": "^amq\\.gen.*", "write": "^$", "read": ".*"}


def test_relative_wins_over_absolute():
    config = conf("vm_memory_high_watermark.relative = 0.5\nvm_memory_high_watermark.absolute = 1GB\n")
    assert (config.vm_memory_high_watermark, config.vm_memory_high_watermark_absolute) == (0.5, None)


# -- errors ---------------------------------------------------------------------------------------


def test_unknown_key_is_named_with_its_line_in_rabbitmq_words():
    assert error("heartbeat = 30\n\nframe_mx = 131072\n") == (
        "Error preparing configuration in phase transform_datatypes: Conf file attempted to set unknown "
        "variable: frame_mx (rabbitmq.conf, line 3: unknown setting 'frame_mx', did you mean 'frame_max'?)"
    )


@pytest.mark.parametrize(
    "key",
    [
        "foo",
        "listeners.quic.default",
        "default_permissions.all",
        "loopback_users.a.b",
        "log.file.x",
        "Heartbeat",
    ],
)
def test_unknown_keys(key):
    assert f"unknown variable: {key} (rabbitmq.conf, line 1: unknown setting '{key}'" in error(f"{key} = 1\n")


@pytest.mark.parametrize(
    ("line", "detail"),
    [
        ("heartbeat = soon", '"soon" cannot be converted to a(n) integer'),
        ("heartbeat = 70000", "70000 is out of range (0-65535)"),
        ("channel_max = -1", "-1 is out of range (0-65535)"),
        ("frame_max = 1kb", '"1kb" cannot be converted to a(n) bytesize'),
        ("consumer_timeout = 0", "0 is not a non-zero positive integer"),
        ("handshake_timeout = forever", '"forever" cannot be converted to a(n) integer'),
        (
            "log.console.level = loud",
            '"loud" is not a valid enum value, acceptable values are: debug, info, notice',
        ),
        ("log.file.level = >info", '">info" is not a valid enum value'),
        ("log.console = yes", '"yes" is not a valid enum value, acceptable values are: true, false'),
        ("loopback_users.guest = maybe", '"maybe" is not a valid enum value'),
        ("loopback_users = all", '"all" is not a valid enum value, acceptable values are: none'),
        ("vm_memory_high_watermark.relative = 1", '"1" cannot be converted to a(n) float'),
        ("vm_memory_high_watermark.absolute = 1.5GB", '"1.5GB" is not a valid size'),
        ("disk_free_limit.absolute = lots", '"lots" is not a valid size'),
        ("default_permissions.read = (", '"(" is not a valid regular expression'),
        ("max_message_size = 536870913", "536870913 is out of range (1-536870912)"),
        ("management.tcp.port = 65536", "65536 is out of range (0-65535)"),
    ],
)
def test_bad_values_in_rabbitmq_words(line, detail):
    key, _, value = line.partition(" = ")
    message = error(f"# first\n{line}\n")
    assert message.startswith(
        f"Error preparing configuration in phase transform_datatypes: Error transforming datatype for: {key}: {detail}"
    )
    assert message.endswith(f" (rabbitmq.conf, line 2: invalid value '{value}')")


# -- environment ----------------------------------------------------------------------------------


def test_environment():
    config = BrokerConfig()
    apply_environment(
        {
            "RABBITMQ_NODENAME": "hare",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": "5673",
            "RABBITMQ_DEFAULT_USER": "admin",
            "RABBITMQ_DEFAULT_PASS": "pw",
            "RABBITMQ_DEFAULT_VHOST": "prod",
            "RABBITMQ_LOG_BASE": "/var/log/amqp",
            "RABBITMQ_LOG": "connection=debug,warning,+color",
            "AMQP_SERVER_MANAGEMENT_PORT": "15673",
            "AMQP_SERVER_PROMETHEUS_PORT": "15693",
        },
        config,
    )
    assert (config.node_name, config.host, config.port) == ("hare@localhost", "127.0.0.1", 5673)
    assert (config.default_user, config.default_pass, config.default_vhost) == ("admin", "pw", "prod")
    assert (config.management_port, config.prometheus_port) == (15673, 15693)
    assert (config.log_dir, config.log_console_level, config.log_file_level) == (
        "/var/log/amqp",
        "warning",
        "warning",
    )
    assert log_file_path(config) == "/var/log/amqp/hare@localhost.log"


def test_node_port_replaces_the_files_listeners():
    config = conf("listeners.tcp.1 = 127.0.0.1:5680\nlisteners.tcp.2 = 127.0.0.1:5681\n")
    apply_environment({"RABBITMQ_NODE_PORT": "5690"}, config)
    assert (config.listeners, config.port) == (None, 5690)


@pytest.mark.parametrize("variable", ["RABBITMQ_NODE_PORT", "AMQP_SERVER_MANAGEMENT_PORT"])
@pytest.mark.parametrize("value", ["abc", "70000", "-1", ""])
def test_bad_port_variables(variable, value):
    if not value:
        apply_environment({variable: value}, BrokerConfig())  # "" is not set, as RabbitMQ reads it
        return
    with pytest.raises(ConfigError, match=rf'^Invalid value for \${variable}: "{value}"$'):
        apply_environment({variable: value}, BrokerConfig())


@pytest.mark.parametrize(
    ("logs", "console", "stdio", "path"),
    [
        ("-", True, "stdout", None),
        ("-stderr", True, "stderr", None),
        ("/tmp/n.log", True, "stderr", "/tmp/n.log"),
    ],
)
def test_rabbitmq_logs(logs, console, stdio, path):
    config = BrokerConfig()
    apply_environment({"RABBITMQ_LOGS": logs, "RABBITMQ_LOG_BASE": "/var/log/amqp"}, config)
    assert (config.log_console, config.log_console_stdio, log_file_path(config)) == (console, stdio, path)


def test_config_file_and_data_dir_variables():
    assert config_file({}) is None
    assert config_file({"RABBITMQ_CONFIG_FILE": "/etc/amqp/rabbitmq"}) == "/etc/amqp/rabbitmq.conf"
    assert config_file({"RABBITMQ_CONFIG_FILE": "/etc/amqp/node.conf"}) == "/etc/amqp/node.conf"
    assert data_dir({}, "rabbit@localhost") is None
    assert (
        data_dir({"RABBITMQ_MNESIA_BASE": "/var/lib/amqp"}, "hare@localhost")
        == "/var/lib/amqp/hare@localhost"
    )
    both = {"RABBITMQ_MNESIA_BASE": "/var/lib/amqp", "RABBITMQ_MNESIA_DIR": "/srv/node"}
    assert data_dir(both, "hare@localhost") == "/srv/node"


# -- logging settings -----------------------------------------------------------------------------


def test_log_file_path():
    assert log_file_path(conf("")) is None
    assert log_file_path(conf("log.dir = /var/log/amqp\n")) == "/var/log/amqp/rabbit@localhost.log"
    assert log_file_path(conf("log.dir = /var/log/amqp\nlog.file = node.log\n")) == "/var/log/amqp/node.log"
    assert log_file_path(conf("log.dir = /var/log/amqp\nlog.file = /tmp/n.log\n")) == "/tmp/n.log"
    assert log_file_path(conf("log.dir = /var/log/amqp\nlog.file = false\n")) is None
    assert log_file_path(conf("log.file = node.log\n")) == "node.log"


@pytest.mark.parametrize(
    ("spec", "lowest", "taken"),
    [
        ("debug", logging.DEBUG, {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}),
        ("info", logging.INFO, {"INFO", "WARNING", "ERROR", "CRITICAL"}),
        ("notice", 25, {"WARNING", "ERROR", "CRITICAL"}),
        ("error", logging.ERROR, {"ERROR", "CRITICAL"}),
        ("none", 100, set()),
        ("=debug", logging.DEBUG, {"DEBUG"}),
        ("!=info", logging.DEBUG, {"DEBUG", "WARNING", "ERROR", "CRITICAL"}),
        ("<=notice", logging.DEBUG, {"DEBUG", "INFO"}),
        ("<warning", logging.DEBUG, {"DEBUG", "INFO"}),
    ],
)
def test_levels(spec, lowest, taken):
    level, takes = level_filter(spec)
    assert level == lowest
    assert {
        name
        for name in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
        if takes(logging.getLevelName(name))
    } == taken


# -- precedence: command line > environment > file > default --------------------------------------


def test_precedence(tmp_path: Path):
    path = tmp_path / "rabbitmq.conf"
    path.write_text("listeners.tcp.default = 5601\ndefault_user = file\ndefault_pass = file\nheartbeat = 9\n")
    env = {
        "RABBITMQ_CONFIG_FILE": str(tmp_path / "rabbitmq"),
        "RABBITMQ_NODE_PORT": "5602",
        "RABBITMQ_DEFAULT_USER": "env",
    }
    config = parse_args([], env)
    assert (config.port, config.listeners, config.default_user, config.default_pass) == (
        5602,
        None,
        "env",
        "file",
    )
    assert (config.heartbeat, config.channel_max) == (9, 2047)  # file, default
    config = parse_args(["--port", "5603", "--config", str(path)], env)
    assert (config.port, config.default_user) == (5603, "env")
    config = parse_args(["--config", str(path)], {})
    assert (config.port, config.listeners) == (5601, [("", 5601)])


def test_data_dir_and_node_name_precedence(tmp_path: Path):
    env = {"RABBITMQ_MNESIA_BASE": "/var/lib/amqp", "RABBITMQ_NODENAME": "env"}
    assert parse_args([], {}).data_dir == "data"  # unchanged default start
    assert parse_args([], env).data_dir == "/var/lib/amqp/env@localhost"
    assert parse_args(["--node-name", "cli"], env).data_dir == "/var/lib/amqp/cli@localhost"
    assert parse_args(["--node-name", "cli@host"], env).node_name == "cli@host"
    assert parse_args(["--data-dir", "d"], {**env, "RABBITMQ_MNESIA_DIR": "/srv"}).data_dir == "d"
    assert parse_args([], {**env, "RABBITMQ_MNESIA_DIR": "/srv"}).data_dir == "/srv"


def test_clustering_settings(tmp_path: Path):
    """Off by default; peers from the file's classic_config lines in order; the cluster port
    from RABBITMQ_DIST_PORT under --cluster-port."""
    config = conf("")
    assert (config.cluster_port, config.cookie_file, config.cluster_nodes) == (None, "", [])
    config = conf(
        "cluster_formation.classic_config.nodes.1 = rabbit@host-a\n"
        "cluster_formation.classic_config.nodes.2 = rabbit@host-b:25673\n"
    )
    assert config.cluster_nodes == ["rabbit@host-a", "rabbit@host-b:25673"]
    assert "cluster_formation.node_type" in error("cluster_formation.node_type = tape")
    assert parse_args([], {"RABBITMQ_DIST_PORT": "25700"}).cluster_port == 25700
    args = ["--cluster-port", "25800", "--cookie-file", "/etc/cookie"]
    config = parse_args(args, {"RABBITMQ_DIST_PORT": "25700"})
    assert (config.cluster_port, config.cookie_file) == (25800, "/etc/cookie")
    with pytest.raises(SystemExit, match="cluster port 70000 is out of range"):
        parse_args(["--cluster-port", "70000"], {})


def test_log_level_option_over_environment_and_file(tmp_path: Path):
    path = tmp_path / "rabbitmq.conf"
    path.write_text("log.console.level = error\nlog.file.level = error\n")
    config = parse_args(["--config", str(path), "--log-level", "DEBUG"], {"RABBITMQ_LOG": "warning"})
    assert (config.log_console_level, config.log_file_level) == ("debug", "debug")
    config = parse_args(["--config", str(path)], {"RABBITMQ_LOG": "warning"})
    assert (config.log_console_level, config.log_file_level) == ("warning", "warning")


def test_missing_config_file_from_the_environment_is_skipped_as_in_rabbitmq(tmp_path: Path):
    assert parse_args([], {"RABBITMQ_CONFIG_FILE": str(tmp_path / "none")}).port == 5672
    with pytest.raises(SystemExit, match="cannot read config file"):
        parse_args(["--config", str(tmp_path / "none.conf")], {})


def test_default_start_is_unchanged():
    config = parse_args([], {})
    assert (config.host, config.port, config.management_port, config.prometheus_port) == (
        "0.0.0.0",
        5672,
        15672,
        15692,
    )
    assert (config.data_dir, config.node_name, config.loopback_users) == (
        "data",
        "rabbit@localhost",
        ["guest"],
    )
    assert (config.management, config.prometheus, config.log_console, log_file_path(config)) == (
        True,
        True,
        True,
        None,
    )
