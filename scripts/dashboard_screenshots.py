"""Take the dashboard's screenshots shown in docs/management.md (docs/screenshots/*.png).

    python scripts/dashboard_screenshots.py [--out docs/screenshots] [--warmup 30]

Starts a broker process (``python -m amqp_server``, as deployed) on free ports with a fresh
data directory and statistics every second, gives it something to show (two vhosts, a topic
exchange with bindings, a few queues, policies, a limit, a publisher and a consumer working for
``--warmup`` seconds so that the charts have a history), then logs in to the dashboard with
headless Chromium (Debian's ``/usr/bin/chromium`` driven by Playwright, as tests/dashboard
does; no browser is downloaded) and saves one PNG of the viewport per page.
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pika
from broker_process import free_port, wait_listening
from playwright.sync_api import Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
VIEWPORT = {"width": 1200, "height": 760}
AUTH = "Basic " + base64.b64encode(b"guest:guest").decode()


def api(http_port: int, method: str, path: str, body: object = None) -> None:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{http_port}/api{path}", data, method=method)
    request.add_header("Authorization", AUTH)
    request.add_header("Content-Type", "application/json")
    urllib.request.urlopen(request).close()


def populate(amqp: int, http_port: int) -> None:
    """Objects the pages list: made over the HTTP API (admin) and AMQP (topology, messages)."""
    api(http_port, "PUT", "/vhosts/staging", {"description": "pre-production", "tags": "qa"})
    api(http_port, "PUT", "/policies/%2F/orders-ttl",
        {"pattern": "^orders\\.", "apply-to": "queues", "priority": 1, "definition": {"message-ttl": 3600000}})  # fmt: skip
    api(http_port, "PUT", "/policies/staging/cap", {"pattern": ".*", "apply-to": "queues", "definition": {"max-length": 10000}})
    api(http_port, "PUT", "/vhost-limits/staging/max-connections", {"value": 50})
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", amqp))
    channel = connection.channel()
    channel.exchange_declare("orders", "topic", durable=True)
    channel.exchange_declare("orders.dlx", "fanout", durable=True)
    channel.queue_declare("orders.new", durable=True, arguments={"x-dead-letter-exchange": "orders.dlx"})
    channel.queue_declare("orders.audit", durable=True, arguments={"x-max-length": 5000})
    channel.queue_declare("orders.dead", durable=True)
    channel.queue_declare("invoices", durable=True)
    channel.queue_declare("emails", durable=True, arguments={"x-max-priority": 10})
    channel.queue_bind("orders.new", "orders", "order.created")
    channel.queue_bind("orders.audit", "orders", "order.#")
    channel.queue_bind("orders.dead", "orders.dlx")
    channel.queue_bind("invoices", "orders", "order.paid")
    for i in range(40):
        channel.basic_publish("", "emails", f"welcome {i}".encode(), pika.BasicProperties(priority=i % 10))
    connection.close()
    staging = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", amqp, "staging"))
    staging.channel().queue_declare("smoke-tests")
    staging.close()
    # The shovel plugin is enabled (see main): one shovel within the node, one from an exchange.
    api(http_port, "PUT", "/parameters/shovel/%2F/dead-letters-to-staging", {"value": {
        "src-uri": "amqp://", "src-queue": "orders.dead", "dest-uri": "amqp:///staging", "dest-queue": "orders.dead"}})  # fmt: skip
    api(http_port, "PUT", "/parameters/shovel/%2F/paid-orders-to-billing", {"value": {
        "src-uri": "amqp://", "src-exchange": "orders", "src-exchange-key": "order.paid",
        "dest-uri": "amqp:///staging", "dest-exchange": "amq.topic", "dest-exchange-key": "billing"}})  # fmt: skip


def work(amqp: int, stop: threading.Event) -> list[threading.Thread]:
    """A publisher to the topic exchange at a changing rate and a consumer of orders.new."""

    def publish() -> None:
        params = pika.ConnectionParameters("127.0.0.1", amqp, client_properties={"connection_name": "order-service"})
        connection = pika.BlockingConnection(params)
        channel = connection.channel()
        channel.confirm_delivery()
        n = 0
        while not stop.is_set():
            key = "order.paid" if n % 3 == 0 else "order.created"
            channel.basic_publish("orders", key, json.dumps({"order": n}).encode(), pika.BasicProperties(delivery_mode=2))
            n += 1
            # 20 to 60 messages a second, in waves, so that the charts are not flat.
            connection.sleep(1 / (40 + 20 * ((n // 200) % 3 - 1)))
        connection.close()

    def consume() -> None:
        params = pika.ConnectionParameters("127.0.0.1", amqp, client_properties={"connection_name": "fulfilment"})
        connection = pika.BlockingConnection(params)
        channel = connection.channel()
        channel.basic_qos(prefetch_count=20)
        channel.basic_consume("orders.new", lambda ch, method, _p, _b: ch.basic_ack(method.delivery_tag))
        while not stop.is_set():
            connection.process_data_events(time_limit=0.2)
        connection.close()

    threads = [threading.Thread(target=publish, daemon=True), threading.Thread(target=consume, daemon=True)]
    for thread in threads:
        thread.start()
    return threads


def shoot(page: Page, out: Path, name: str) -> None:
    """The top of the page, at most a viewport high (less for a short page: smaller files)."""
    page.wait_for_load_state("networkidle")
    page.evaluate("document.querySelectorAll('#messages .notice').forEach(n => n.remove())")
    page.evaluate("window.scrollTo(0, 0)")
    bottom = page.evaluate("Math.ceil(document.getElementById('app').getBoundingClientRect().bottom)")
    height = min(VIEWPORT["height"], bottom + 20)
    page.screenshot(path=str(out / f"{name}.png"), clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height})
    print(f"{name}.png {(out / f'{name}.png').stat().st_size // 1024} KiB")


def screenshots(http_port: int, out: Path, chromium: str) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        page = browser.new_page(viewport=VIEWPORT)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"http://127.0.0.1:{http_port}/")
        page.get_by_label("Username").fill("guest")
        page.get_by_label("Password").fill("guest")
        page.get_by_role("button", name="Login").click()
        expect(page.get_by_role("img", name="Message rates")).to_be_visible()
        shoot(page, out, "overview")

        pages = [
            ("connections", "#/connections", "order-service"),
            ("queues", "#/queues", "orders.audit"),
            ("queue", "#/queues/%2F/orders.audit", "order.#"),
            ("exchange", "#/exchanges/%2F/orders", "order.#"),
            ("policies", "#/policies", "orders-ttl"),
            ("shovels", "#/shovels", "running"),
        ]
        for name, route, shows in pages:
            page.evaluate("route => { location.hash = route; }", route)
            expect(page.locator("#main")).to_contain_text(shows)
            shoot(page, out, name)
        failures = errors + page.locator("#messages .error").all_inner_texts()
        browser.close()
    if failures:
        raise SystemExit(f"the dashboard reported errors: {failures}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds of traffic before the screenshots")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    amqp, http_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        config = Path(data_dir) / "rabbitmq.conf"
        config.write_text("collect_statistics_interval = 1000\ncluster_name = rabbit@demo\n")
        (Path(data_dir) / "data").mkdir()
        (Path(data_dir) / "data" / "enabled_plugins").write_text("[rabbitmq_shovel].\n")  # the Shovel Status page
        command = [sys.executable, "-m", "amqp_server", "--host", "127.0.0.1", "--port", str(amqp),
                   "--management-port", str(http_port), "--prometheus-port", "0",
                   "--data-dir", str(Path(data_dir) / "data"), "--config", str(config),
                   "--log-level", "WARNING"]  # fmt: skip
        process = subprocess.Popen(command, cwd=ROOT)
        stop = threading.Event()
        threads: list[threading.Thread] = []
        try:
            wait_listening(amqp, process)
            wait_listening(http_port, process)
            populate(amqp, http_port)
            threads = work(amqp, stop)
            time.sleep(args.warmup)
            screenshots(http_port, args.out, args.chromium)
        finally:
            stop.set()
            for thread in threads:
                thread.join(5)
            process.terminate()
            process.wait(30)


if __name__ == "__main__":
    main()
