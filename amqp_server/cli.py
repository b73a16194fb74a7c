"""``amqp-server``: the command line, over the environment, over the config file (the parsing
of both is ``amqp_server.config``); then the node runs until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Mapping
from typing import NoReturn

from amqp_server.admin.definitions import DefinitionsError
from amqp_server.admin.errors import AdminError
from amqp_server.config import (
    LOG_LEVELS,
    ConfigError,
    apply_conf,
    apply_environment,
    config_file,
    data_dir,
    level_filter,
    node_name,
)
from amqp_server.core.broker import BrokerConfig
from amqp_server.metadata.sqlite import StoreError
from amqp_server.server import StartError, serve, setup_logging


def read_config_file(path: str, config: BrokerConfig) -> None:
    """Apply a rabbitmq.conf file to ``config``; anything wrong in it (an unknown key, a bad
    value, a line that is not ``key = value``, an unreadable file) is SystemExit with one line."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise SystemExit(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SystemExit(f"cannot read config file {path}: not UTF-8 text") from None
    try:
        apply_conf(text, config, path)
    except ConfigError as exc:
        raise SystemExit(str(exc)) from None


def parse_args(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> BrokerConfig:
    """The node's settings: command-line options over environment variables (``env``, by
    default ``os.environ``) over the config file over the defaults."""
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(prog="amqp-server", description="AMQP 0-9-1 message broker")
    parser.add_argument(
        "--config", help="configuration file, rabbitmq.conf syntax (default: $RABBITMQ_CONFIG_FILE)"
    )
    parser.add_argument("--host", help="address of AMQP listeners given without one (default 0.0.0.0)")
    parser.add_argument(
        "--port", type=int, help="AMQP port, replacing the config file's listeners (default 5672)"
    )
    parser.add_argument("--management-port", type=int, help="management HTTP port (default 15672)")
    parser.add_argument("--prometheus-port", type=int, help="Prometheus metrics port (default 15692)")
    parser.add_argument("--data-dir", help="directory for the node's data (default ./data)")
    parser.add_argument("--node-name", help="node name (default rabbit@localhost)")
    parser.add_argument(
        "--cluster-port", type=int, help="inter-node port; turns clustering on (default: $RABBITMQ_DIST_PORT)"
    )
    parser.add_argument("--cookie-file", help="the cluster's shared secret (default: <data-dir>/.control_secret)")
    parser.add_argument(
        "--log-level", help="debug, info, notice, warning, error, critical or none (default info)"
    )
    args = parser.parse_args(argv)
    # A node started from the command line serves the HTTP API and the metrics.
    config = BrokerConfig(management=True, prometheus=True)
    path = args.config or config_file(env)
    if args.config or (path and os.path.exists(path)):  # RabbitMQ starts without a missing one
        read_config_file(path, config)
    try:
        apply_environment(env, config)
    except ConfigError as exc:
        raise SystemExit(str(exc)) from None
    if args.port is not None:
        config.listeners = None  # one listener, as RABBITMQ_NODE_PORT makes
    if args.node_name is not None:
        args.node_name = node_name(args.node_name)
    for name in ("host", "port", "management_port", "prometheus_port", "node_name", "cluster_port", "cookie_file"):
        value = getattr(args, name)
        if value is not None:
            setattr(config, name, value)
    config.data_dir = args.data_dir or data_dir(env, config.node_name) or config.data_dir
    if args.log_level is not None:
        level = args.log_level.lower()
        if level not in LOG_LEVELS:
            raise SystemExit(
                f"cannot start: unknown log level {args.log_level!r} (one of {', '.join(LOG_LEVELS)})"
            )
        config.log_console_level = config.log_file_level = level
    for what, port in (
        ("port", config.port), ("management port", config.management_port), ("prometheus port", config.prometheus_port),
        ("cluster port", config.cluster_port),
    ):  # fmt: skip
        if port is not None and not 0 <= port <= 65535:
            raise SystemExit(f"cannot start: {what} {port} is out of range (0-65535)")
    return config


def main(argv: list[str] | None = None) -> None:
    config = parse_args(argv)
    try:
        setup_logging(config)
    except StartError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
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
        fail(str(exc), config)
    except AdminError as exc:  # a definitions file naming something that cannot be imported
        fail(f"cannot import definitions file {config.load_definitions}: {exc}", config)


def fail(reason: str, config: BrokerConfig) -> NoReturn:
    logging.getLogger("amqp_server").error("cannot start: %s", reason)
    shown = config.log_console and config.log_console_stdio == "stderr"
    if not (shown and level_filter(config.log_console_level)[1](logging.ERROR)):  # the line is not lost
        print(f"cannot start: {reason}", file=sys.stderr)
    raise SystemExit(1)
