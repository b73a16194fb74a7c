"""stop_app, start_app, reset and force_reset through the control channel of an in-process
broker, with an application that records what it is asked (the server is to hand its own to
``ControlServer``; test_ctl drives the same commands on a node process)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from amqp_server.admin.operations import Admin
from amqp_server.control import ControlServer
from amqp_server.core.broker import BrokerConfig
from amqp_server.server import Server


class App:
    def __init__(self) -> None:
        self.running = True
        self.calls: list[str] = []

    async def stop_app(self) -> None:
        self.calls.append("stop_app")
        self.running = False

    async def start_app(self) -> None:
        self.calls.append("start_app")
        self.running = True


async def ctl(data_dir: Path, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "amqp_server.ctl", "--data-dir", str(data_dir), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode or 0, out.decode(), err.decode()


async def test_the_application_stops_starts_and_resets(tmp_path: Path) -> None:
    server = Server(BrokerConfig(host="127.0.0.1", port=0, data_dir=None))
    await server.start()
    admin = Admin(server.broker)
    await admin.add_vhost("other")
    await admin.add_user("bob", "pw")
    app = App()
    control = ControlServer(admin, str(tmp_path), server.port, lambda: None, app)
    await control.start()
    try:
        assert await ctl(tmp_path, "reset") == (
            64, "",
            "Error: this command requires the 'rabbit' app to be stopped on the target node. Stop it with "
            f"'amqp-ctl stop_app'.\nArguments given:\n\t--data-dir {tmp_path} reset\n",
        )  # fmt: skip
        assert await ctl(tmp_path, "stop_app") == (
            0,
            "Stopping rabbit application on node rabbit@localhost ...\n",
            "",
        )
        assert await ctl(tmp_path, "stop_app", "--formatter", "json") == (
            0, '{"node":"rabbit@localhost","result":"ok"}\n', "",
        )  # fmt: skip
        assert await ctl(tmp_path, "list_queues") == (
            64, "",
            "Error: this command requires the 'rabbit' app to be running on the target node. Start it with "
            f"'amqp-ctl start_app'.\nArguments given:\n\t--data-dir {tmp_path} list_queues\n",
        )  # fmt: skip
        assert await ctl(tmp_path, "await_startup", "--timeout", "0.3") == (
            69,
            "",
            "Error:\nrabbit_is_not_running\n",
        )
        assert await ctl(tmp_path, "reset") == (0, "Resetting node rabbit@localhost ...\n", "")
        assert await ctl(tmp_path, "force_reset") == (
            0,
            "Forcefully resetting node rabbit@localhost ...\n",
            "",
        )
        assert await ctl(tmp_path, "start_app") == (0, "Starting node rabbit@localhost ...\n", "")
        assert (await ctl(tmp_path, "await_startup", "--timeout", "5"))[0] == 0
        assert await ctl(tmp_path, "start_app") == (0, "Starting node rabbit@localhost ...\n", "")
        assert app.calls == ["stop_app", "start_app"]  # a second start or stop does nothing
        assert await ctl(tmp_path, "list_vhosts", "-q") == (0, "name\n/\n", "")
        assert await ctl(tmp_path, "list_users", "-q") == (0, "user\ttags\nguest\t[administrator]\n", "")
        assert await ctl(tmp_path, "list_permissions", "-q") == (
            0,
            "user\tconfigure\twrite\tread\nguest\t.*\t.*\t.*\n",
            "",
        )
    finally:
        await control.stop()
        await server.stop()
