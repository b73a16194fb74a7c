"""``amqp-server``: command line and rabbitmq.conf-style configuration file."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from dataclasses import fields
from typing import NoReturn

from amqp_server.admin.definitions import DefinitionsError
from amqp_server.admin.errors import AdminError
from amqp_server.core.alarms import parse_float, parse_information_unit
from amqp_server.core.broker import BrokerConfig
from amqp_server.metadata.sqlite import StoreError
from amqp_server.server import StartError, serve

# rabbitmq.conf keys understood in --config files, mapped to BrokerConfig fields.
# ``listeners.tcp.<name> = [host:]port`` and ``loopback_users.<user> = true|false`` are
# handled apart; handshake_timeout and consumer_timeout are in milliseconds, as in RabbitMQ.
CONFIG_KEYS = {
    "management.tcp.port": "management_port",
    "management.tcp.ip": "management_host",
    "collect_statistics_interval": "collect_statistics_interval",
    "prometheus.tcp.port": "prometheus_port",
    "prometheus.tcp.ip": "prometheus_host",
    "prometheus.return_per_object_metrics": "prometheus_return_per_object_metrics",
    "default_user": "default_user",
    "default_pass": "default_pass",
    "default_vhost": "default_vhost",
    "heartbeat": "heartbeat",
    "frame_max": "frame_max",
    "channel_max": "channel_max",
    "handshake_timeout": "handshake_timeout",
    "consumer_timeout": "consumer_timeout_ms",
    "cluster_name": "cluster_name",
    "load_definitions": "load_definitions",
    "queue_memory_window": "queue_memory_window",
}
# Resource alarm keys: sizes take RabbitMQ's units (1GB, 512MiB, 50mb, ...), fractions are
# floats written with a decimal point. As in RabbitMQ, when both the relative and the absolute
# form of one setting are given, the relative one wins.
RESOURCE_KEYS = {
    "vm_memory_high_watermark.relative": ("vm_memory_high_watermark", parse_float),
    "vm_memory_high_watermark.absolute": ("vm_memory_high_watermark_absolute", parse_information_unit),
    "disk_free_limit.relative": ("disk_free_limit_relative", parse_float),
    "disk_free_limit.absolute": ("disk_free_limit", parse_information_unit),
}


def read_config_file(path: str, config: BrokerConfig) -> None:
    """Apply ``key = value`` lines (rabbitmq.conf syntax; ``#`` starts a comment).

    An unknown key stops the broker from starting, as RabbitMQ's config schema does.
    """
    types = {f.name: f.type for f in fields(BrokerConfig)}
    loopback = list(config.loopback_users)
    relative: set[str] = set()
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.readlines()
    except OSError as exc:
        raise SystemExit(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SystemExit(f"cannot read config file {path}: not UTF-8 text") from None
    for number, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        key, sep, value = (part.strip() for part in line.partition("="))
        if not sep or not value:
            raise SystemExit(f"{path}:{number}: expected 'key = value'")
        try:
            if key.startswith("listeners.tcp."):
                host, _, port = value.rpartition(":")
                config.port = int(port)
                if host:
                    config.host = host.strip("[]")
            elif key.startswith("loopback_users."):
                user = key.split(".", 1)[1]
                if value not in ("true", "false"):
                    raise ValueError(value)
                if value == "true" and user not in loopback:
                    loopback.append(user)
                elif value == "false" and user in loopback:
                    loopback.remove(user)
            elif key == "loopback_users" and value == "none":
                loopback = []
            elif key in RESOURCE_KEYS:
                name, parse = RESOURCE_KEYS[key]
                setattr(config, name, parse(value))
                if key.endswith(".relative"):
                    relative.add(key.partition(".")[0])
            elif key in CONFIG_KEYS:
                name = CONFIG_KEYS[key]
                kind = types[name]
                if name == "handshake_timeout":
                    setattr(config, name, int(value) / 1000)
                elif kind in ("int", int):
                    setattr(config, name, int(value))
                elif kind in ("bool", bool):
                    if value not in ("true", "false"):
                        raise ValueError(value)
                    setattr(config, name, value == "true")
                else:
                    setattr(config, name, value)
            else:
                raise SystemExit(f"{path}:{number}: unknown setting '{key}'")
        except ValueError:
            raise SystemExit(f"{path}:{number}: invalid value '{value}' for '{key}'") from None
    config.loopback_users = loopback
    if "vm_memory_high_watermark" in relative:  # (a relative disk limit already wins)
        config.vm_memory_high_watermark_absolute = None


def parse_args(argv: list[str] | None = None) -> BrokerConfig:
    parser = argparse.ArgumentParser(prog="amqp-server", description="AMQP 0-9-1 message broker")
    parser.add_argument("--config", help="configuration file (rabbitmq.conf syntax)")
    parser.add_argument("--host", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="AMQP port (default 5672)")
    parser.add_argument("--management-port", type=int, help="management HTTP port (default 15672)")
    parser.add_argument("--prometheus-port", type=int, help="Prometheus metrics port (default 15692)")
    parser.add_argument("--data-dir", help="directory for the message store (default ./data)")
    parser.add_argument("--node-name", help="node name (default rabbit@localhost)")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # A node started from the command line serves the HTTP API and the metrics.
    config = BrokerConfig(management=True, prometheus=True)
    if args.config:
        read_config_file(args.config, config)
    for option, name in (
        ("host", "host"),
        ("port", "port"),
        ("management_port", "management_port"),
        ("prometheus_port", "prometheus_port"),
        ("data_dir", "data_dir"),
        ("node_name", "node_name"),
    ):
        value = getattr(args, option)
        if value is not None:
            setattr(config, name, value)
    for what, port in (
        ("port", config.port), ("management port", config.management_port), ("prometheus port", config.prometheus_port)
    ):  # fmt: skip
        if not 0 <= port <= 65535:
            raise SystemExit(f"cannot start: {what} {port} is out of range (0-65535)")
    return config


def main(argv: list[str] | None = None) -> None:
    config = parse_args(argv)
    try:
        import uvloop  # optional: a faster event loop when installed
    except ImportError:
        run = asyncio.run
    else:
        run = uvloop.run
    # What an operator can cause and fix gets one line, not a traceback. A store that is locked,
    # corrupt or too new stops the start too: never start as an empty broker.
    try:
        run(serve(config))
    except (StoreError, StartError, DefinitionsError) as exc:
        fail(str(exc))
    except AdminError as exc:  # a definitions file naming something that cannot be imported
        fail(f"cannot import definitions file {config.load_definitions}: {exc}")


def fail(reason: str) -> NoReturn:
    logging.getLogger("amqp_server").error("cannot start: %s", reason)
    raise SystemExit(1)
