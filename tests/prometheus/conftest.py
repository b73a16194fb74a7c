"""Fixtures of the Prometheus tests: the metrics listener on the session's ``broker`` (a free
port, started once, so its churn counters count from then on) and an aiohttp client that
scrapes it.

Every scrape is parsed with prometheus_client's text parser, so each test also proves the
output is valid exposition format. Tests read values through ``Scrape.value`` and compare
before/after figures, since the broker is shared with the rest of the session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from conftest import BrokerHandle
from prometheus_client.parser import text_string_to_metric_families

from management_ui.prometheus import PrometheusServer, start_prometheus


@dataclass
class Scrape:
    status: int
    headers: Any
    text: str
    #: (sample name, sorted label pairs) -> value, from prometheus_client's parser.
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)
    #: family name as written in its TYPE line -> type.
    types: dict[str, str] = field(default_factory=dict)

    def value(self, name: str, **labels: str) -> float | None:
        """The sample ``name`` with exactly these labels, None when there is none."""
        return self.samples.get((name, tuple(sorted(labels.items()))))

    def labelled(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        """Every sample of ``name``, by its labels."""
        return {labels: value for (sample, labels), value in self.samples.items() if sample == name}

    def with_label(self, name: str, key: str, value: str) -> float | None:
        """The one sample of ``name`` whose label ``key`` is ``value`` (None if there is none)."""
        found = [v for labels, v in self.labelled(name).items() if (key, value) in labels]
        assert len(found) <= 1, found
        return found[0] if found else None


def parse(status: int, headers: Any, text: str) -> Scrape:
    scrape = Scrape(status, headers, text)
    if status != 200:
        return scrape
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name not in scrape.types, f"family {name} twice"
            scrape.types[name] = kind
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in scrape.samples, f"sample {key} twice"
            scrape.samples[key] = sample.value
    return scrape


class Client:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def get(self, path: str, headers: dict[str, str] | None = None) -> Scrape:
        async with self.session.get(path, headers=headers) as response:
            return parse(response.status, response.headers, await response.text())


@pytest.fixture(scope="session")
def metrics(broker: BrokerHandle) -> Iterator[PrometheusServer]:
    server = broker.run(start_prometheus(broker.broker, "127.0.0.1", 0))
    yield server
    broker.run(server.stop())


@pytest.fixture
async def prom(metrics: PrometheusServer) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession(f"http://127.0.0.1:{metrics.port}") as session:
        yield Client(session)


@pytest.fixture
def scrape_port() -> Callable[[int, str], Awaitable[Scrape]]:
    """Scrape ``path`` of a metrics listener on another ``port`` (one a test started itself)."""

    async def get(port: int, path: str) -> Scrape:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
            return await Client(session).get(path)

    return get
