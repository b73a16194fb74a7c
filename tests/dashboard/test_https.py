"""The dashboard over HTTPS (rabbitmq.conf ``management.ssl.*``), in Chromium trusting nothing but
being told to accept the test CA's certificate: log in and see the overview."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import BrokerHandle, start_broker
from playwright.sync_api import Browser, expect
from tls_certs import Authority

from amqp_server.tls import TlsOptions

from .conftest import TIMEOUT_MS, VIEWPORT, login


@pytest.fixture(scope="module")
def https_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerHandle]:
    directory = tmp_path_factory.mktemp("https")
    server = Authority(directory, "dashboard-ca").issue("server", "localhost", server=True)
    handle = start_broker(
        management=True, management_port=None, management_ssl_port=0,
        management_ssl_options=TlsOptions(certfile=str(server.cert), keyfile=str(server.key)),
    )  # fmt: skip
    yield handle
    handle.stop()


def test_dashboard_over_https(browser: Browser, https_broker: BrokerHandle) -> None:
    url = f"https://localhost:{https_broker.server.management.https_port}/"
    context = browser.new_context(viewport=VIEWPORT, ignore_https_errors=True)  # the test CA is not the system's
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()
        page.goto(url)
        login(page)
        expect(page.get_by_role("img", name="Queued messages")).to_be_visible()
        assert page.evaluate("location.protocol") == "https:"
    finally:
        context.close()
