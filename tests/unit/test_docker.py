"""docker/ is kept correct by reading (no Docker engine runs here): the image copies every
package the project installs, each file it copies exists, and its configuration file is one
the broker accepts, with guest allowed from outside the container."""

from __future__ import annotations

import tomllib
from pathlib import Path

from amqp_server.cli import read_config_file
from amqp_server.core.broker import BrokerConfig

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "docker" / "Dockerfile").read_text()


def _copied() -> list[str]:
    return [line.split()[1] for line in DOCKERFILE.splitlines() if line.startswith("COPY ")]


def test_every_copied_path_exists() -> None:
    assert _copied()
    for source in _copied():
        assert (ROOT / source).exists(), source


def test_every_installed_package_is_copied() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {pattern.rstrip("*") for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages <= set(_copied())


def test_the_image_configuration_is_accepted() -> None:
    config = BrokerConfig()
    read_config_file(str(ROOT / "docker" / "rabbitmq.conf"), config)
    assert (config.port, config.management_port, list(config.loopback_users)) == (5672, 15672, [])
