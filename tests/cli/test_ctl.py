"""amqp-ctl against a broker process: rabbitmqctl's texts, JSON and exit codes (as Debian's
RabbitMQ 3.10.8 prints them), a stopped node, a wrong secret, and the control files' modes."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from conftest import Node, free_port

from amqp_server.control import DATA_DIR_ENV, DEFAULT_DATA_DIR, DEFAULT_NODE_NAME
from amqp_server.core.broker import BrokerConfig

NODE_DOWN = "Error: unable to perform an operation on node 'rabbit@localhost'. Please see diagnostics"


class Ctl:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def __call__(self, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
        done = subprocess.run(
            [sys.executable, "-m", "amqp_server.ctl", "--data-dir", str(self.data_dir), *args],
            capture_output=True, text=True, input=stdin, timeout=30,
        )  # fmt: skip
        return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Ctl]]:
    base = tmp_path_factory.mktemp("ctl")
    node = Node(base / "data", base).wait_listening()
    ctl = Ctl(base / "data")
    assert ctl("await_startup", "--timeout", "10")[0] == 0
    yield node, ctl
    node.kill()


@pytest.fixture
def ctl(node: tuple[Node, Ctl]) -> Ctl:
    return node[1]


def test_defaults_are_the_servers() -> None:
    assert (BrokerConfig.data_dir, BrokerConfig.node_name) == (DEFAULT_DATA_DIR, DEFAULT_NODE_NAME)


def test_control_files_are_private(ctl: Ctl) -> None:
    for name in (".control_secret", "control.sock"):
        assert stat.S_IMODE((ctl.data_dir / name).stat().st_mode) == 0o600


def test_ping_and_status(ctl: Ctl) -> None:
    assert ctl("ping") == (
        0,
        "Will ping rabbit@localhost. This only checks if the OS process is running and registered with epmd. "
        "Timeout: 60000 ms.\nPing succeeded\n",
        "",
    )
    code, out, _ = ctl("status")
    assert code == 0 and out.startswith("Status of node rabbit@localhost ...\nRuntime\n")
    assert "Virtual host count: 1" in out
    code, out, _ = ctl("status", "--formatter", "json")
    assert code == 0 and json.loads(out)["virtual_host_count"] == 1


def test_list_queues_table_and_json(node: tuple[Node, Ctl]) -> None:
    broker, ctl = node
    with broker.connect() as connection:
        channel = connection.channel()
        channel.queue_declare("cq1", durable=True, arguments={"x-max-length": 5})
        channel.basic_publish("", "cq1", b"hi")
        assert ctl("list_queues") == (
            0, "Timeout: 60.0 seconds ...\nListing queues for vhost / ...\nname\tmessages\ncq1\t1\n", "",
        )  # fmt: skip
        assert ctl("list_queues", "-q") == (0, "name\tmessages\ncq1\t1\n", "")
        assert ctl("list_queues", "-q", "name", "memory", "message_bytes", "messages_ram", "messages_ready_ram") == (
            0, "name\tmemory\tmessage_bytes\tmessages_ram\tmessages_ready_ram\ncq1\t2\t2\t1\t1\n", "",
        )  # fmt: skip
        code, out, _ = ctl(
            "list_queues", "--formatter", "json", "name", "durable", "arguments", "policy", "type", "state"
        )
        assert out == (
            '[\n{"name":"cq1","durable":true,"arguments":[["x-max-length","long",5]],"policy":"",'
            '"type":"classic","state":"running"}\n]\n'
        )
        code, out, _ = ctl("list_queues", "-q", "name", "arguments", "exclusive", "auto_delete", "consumers")
        assert (
            out
            == 'name\targuments\texclusive\tauto_delete\tconsumers\ncq1\t[{"x-max-length",5}]\tfalse\tfalse\t0\n'
        )
        code, _, err = ctl("list_queues", "bogus")
        assert code == 64 and err == (
            "Error (argument validation): Info key(s) bogus are not supported\nArguments given:\n\t"
            f"--data-dir {ctl.data_dir} list_queues bogus\n"
        )
        code, out, _ = ctl("list_bindings", "-q")
        assert out == "source_name\tsource_kind\tdestination_name\tdestination_kind\trouting_key\targuments\n" \
            "\texchange\tcq1\tqueue\tcq1\t[]\n"  # fmt: skip
        code, out, _ = ctl("list_connections", "--formatter", "json", "user", "vhost", "state")
        assert json.loads(out) == [{"user": "guest", "vhost": "/", "state": "running"}]
        code, out, _ = ctl("list_channels", "-q", "user", "vhost", "number")
        assert out == "user\tvhost\tnumber\nguest\t/\t1\n"
        assert ctl("purge_queue", "cq1") == (0, "Purging queue 'cq1' in vhost '/' ...\n", "")
        assert ctl("purge_queue", "nope") == (
            69,
            "Purging queue 'nope' in vhost '/' ...\n",
            "Error:\nnot_found\n",
        )
        assert ctl("delete_queue", "cq1") == (
            0, "Deleting queue 'cq1' on vhost '/' ...\nQueue was successfully deleted with 0 ready messages\n", "",
        )  # fmt: skip
        assert ctl("delete_queue", "cq1")[::2] == (64, "Error:\nQueue not found\n")


def test_list_exchanges(ctl: Ctl) -> None:
    code, out, _ = ctl("list_exchanges", "-q")
    assert code == 0 and out.startswith("name\ttype\n") and "amq.topic\ttopic\n" in out
    rows = json.loads(ctl("list_exchanges", "--formatter", "json", "name", "durable")[1])
    assert {"name": "amq.direct", "durable": True} in rows


def test_users(ctl: Ctl) -> None:
    assert ctl("add_user", "bob", "pw") == (
        0,
        'Adding user "bob" ...\nDone. Don\'t forget to grant the user permissions to some virtual hosts! '
        "See 'rabbitmqctl help set_permissions' to learn more.\n",
        "",
    )
    assert ctl("add_user", "bob", "pw") == (
        70,
        'Adding user "bob" ...\n',
        'Error:\nUser "bob" already exists\n',
    )
    assert ctl("authenticate_user", "bob", "pw") == (0, 'Authenticating user "bob" ...\nSuccess\n', "")
    assert ctl("authenticate_user", "bob", "no") == (
        65, 'Authenticating user "bob" ...\n',
        'Error:\nError: failed to authenticate user "bob"\nuser \'bob\' - invalid credentials\n',
    )  # fmt: skip
    assert ctl("change_password", "bob", "pw2") == (0, 'Changing password for user "bob" ...\n', "")
    assert ctl("change_password", "nobody", "x")[::2] == (67, 'Error:\nUser "nobody" does not exist\n')
    assert ctl("set_user_tags", "bob", "administrator", "management") == (
        0, 'Setting tags for user "bob" to [administrator, management] ...\n', "",
    )  # fmt: skip
    assert ctl("list_users", "-q") == (
        0,
        "user\ttags\nbob\t[administrator, management]\nguest\t[administrator]\n",
        "",
    )
    assert json.loads(ctl("list_users", "--formatter", "json")[1])[0] == {
        "user": "bob", "tags": ["administrator", "management"],
    }  # fmt: skip
    assert ctl("clear_password", "bob") == (0, 'Clearing password for user "bob" ...\n', "")
    assert ctl("authenticate_user", "bob", "pw2")[0] == 65
    assert ctl("delete_user", "bob") == (0, 'Deleting user "bob" ...\n', "")
    assert ctl("delete_user", "bob") == (
        67,
        'Deleting user "bob" ...\n',
        'Error:\nUser "bob" does not exist\n',
    )


def test_vhosts_and_permissions(ctl: Ctl) -> None:
    assert ctl("add_vhost", "cv") == (0, 'Adding vhost "cv" ...\n', "")
    assert ctl("list_vhosts", "-q") == (0, "name\n/\ncv\n", "")
    assert ctl("add_user", "pu", "pw")[0] == 0
    assert ctl("set_permissions", "-p", "cv", "pu", ".*", "w.*", "r.*") == (
        0, 'Setting permissions for user "pu" in vhost "cv" ...\n', "",
    )  # fmt: skip
    assert ctl("set_permissions", "-p", "cv", "nouser", "a", "b", "c")[::2] == (
        67, "Error:\nUser nouser does not exist\n",
    )  # fmt: skip
    assert ctl("set_permissions", "-p", "novh", "pu", "a", "b", "c")[::2] == (
        69, "Error:\nVirtual host novh does not exist\n",
    )  # fmt: skip
    assert ctl("list_permissions", "-p", "cv") == (
        0, 'Listing permissions for vhost "cv" ...\nuser\tconfigure\twrite\tread\npu\t.*\tw.*\tr.*\n', "",
    )  # fmt: skip
    assert ctl("list_user_permissions", "pu", "-q") == (
        0,
        "vhost\tconfigure\twrite\tread\ncv\t.*\tw.*\tr.*\n",
        "",
    )
    assert ctl("list_user_permissions", "nouser")[::2] == (69, 'Error:\n{:no_such_user, "nouser"}\n')
    assert ctl("set_topic_permissions", "-p", "cv", "pu", "amq.topic", "^a", "^b") == (
        0, 'Setting topic permissions on "amq.topic" for user "pu" in vhost "cv" ...\n', "",
    )  # fmt: skip
    assert ctl("list_topic_permissions", "-p", "cv", "-q") == (
        0, "user\texchange\twrite\tread\npu\tamq.topic\t^a\t^b\n", "",
    )  # fmt: skip
    assert ctl("clear_topic_permissions", "-p", "cv", "pu") == (
        0, 'Clearing topic permissions for user "pu" in vhost "cv" ...\n', "",
    )  # fmt: skip
    assert ctl("list_topic_permissions", "-p", "cv") == (
        0,
        'Listing topic permissions for vhost "cv" ...\n\n',
        "",
    )
    assert ctl("clear_permissions", "-p", "cv", "pu") == (
        0, 'Clearing permissions for user "pu" in vhost "cv" ...\n', "",
    )  # fmt: skip
    assert ctl("delete_vhost", "cv") == (0, 'Deleting vhost "cv" ...\n', "")
    assert ctl("delete_vhost", "cv") == (
        65,
        'Deleting vhost "cv" ...\n',
        "Virtual host 'cv' does not exist\n",
    )
    assert ctl("delete_user", "pu")[0] == 0


def test_policies(ctl: Ctl) -> None:
    assert ctl("set_policy", "p1", "^a", '{"max-length":10}', "--priority", "2", "--apply-to", "queues") == (
        0,
        'Setting policy "p1" for pattern "^a" to "{"max-length":10}" with priority "2" for vhost "/" ...\n',
        "",
    )
    assert ctl("list_policies", "-q") == (
        0, 'vhost\tname\tpattern\tapply-to\tdefinition\tpriority\n/\tp1\t^a\tqueues\t{"max-length":10}\t2\n', "",
    )  # fmt: skip
    assert ctl("list_policies", "--formatter", "json")[1] == (
        '[\n{"vhost":"/","name":"p1","pattern":"^a","apply-to":"queues","definition":"{\\"max-length\\":10}",'
        '"priority":2}\n]\n'
    )
    assert ctl("set_policy", "p3", "^a", "notjson")[::2] == (
        69,
        "Error:\nJSON decoding error. Reason: badarg\n",
    )
    assert ctl("set_policy", "-p", "novh", "p1", "^a", '{"max-length":1}')[::2] == (
        65,
        "Virtual host 'novh' does not exist\n",
    )
    assert ctl("clear_policy", "p1") == (0, 'Clearing policy "p1" on vhost "/" ...\n', "")
    assert ctl("clear_policy", "p1") == (
        69,
        'Clearing policy "p1" on vhost "/" ...\n',
        "Error:\nParameter does not exist\n",
    )
    assert ctl("list_policies") == (0, 'Listing policies for vhost "/" ...\n\n', "")
    assert ctl("set_operator_policy", "op1", "^a", '{"max-length":10}', "--apply-to", "queues")[0] == 0
    assert ctl("list_operator_policies", "-q")[1] == (
        'vhost\tname\tpattern\tapply-to\tdefinition\tpriority\n/\top1\t^a\tqueues\t{"max-length":10}\t0\n'
    )
    assert ctl("list_parameters", "-q")[1] == (
        'component\tname\tvalue\noperator_policy\top1\t{"pattern":"^a","definition":{"max-length":10},'
        '"priority":0,"apply-to":"queues"}\n'
    )
    assert ctl("clear_operator_policy", "op1") == (0, 'Clearing operator policy "op1" on vhost "/" ...\n', "")


def test_limits(ctl: Ctl) -> None:
    assert ctl("set_vhost_limits", '{"max-connections":10}') == (
        0, 'Setting vhost limits to "{"max-connections":10}" for vhost "/" ...\n', "",
    )  # fmt: skip
    assert ctl("list_vhost_limits") == (0, 'Listing limits for vhost "/" ...\n{"max-connections":10}\n', "")
    assert ctl("list_vhost_limits", "--global", "-q") == (0, 'vhost\tlimits\n/\t{"max-connections":10}\n', "")
    assert ctl("set_vhost_limits", '{"bad":1}')[::2] == (
        69, 'Error:\nValidation failed\n\nUnrecognised terms [{<<"bad">>,1}] in limits\n',
    )  # fmt: skip
    assert ctl("clear_vhost_limits") == (0, 'Clearing vhost "/" limits ...\n', "")
    assert ctl("set_user_limits", "guest", '{"max-channels":5}') == (
        0, 'Setting user limits to "{"max-channels":5}" for user "guest" ...\n', "",
    )  # fmt: skip
    assert ctl("list_user_limits") == (0, 'Listing limits for user "guest" ...\n{"max-channels":5}\n', "")
    assert ctl("list_user_limits", "--global", "-q") == (0, 'user\tlimits\nguest\t{"max-channels":5}\n', "")
    assert ctl("clear_user_limits", "guest", "max-channels") == (
        0, 'Clearing "max-channels" limit for user "guest" ...\n', "",
    )  # fmt: skip
    assert ctl("clear_user_limits", "guest", "all") == (0, 'Clearing all limits for user "guest" ...\n', "")


def connection_name(ctl: Ctl) -> str:
    """The name of the one open connection, as list_connections gives it."""
    return json.loads(ctl("list_connections", "--formatter", "json", "name")[1])[0]["name"]


def test_connections(node: tuple[Node, Ctl]) -> None:
    broker, ctl = node
    connection = broker.connect()
    channel = connection.channel()
    channel.queue_declare("consumed", exclusive=True)
    channel.basic_consume("consumed", lambda *_: None, consumer_tag="ct1")
    assert ctl("list_consumers", "-q") == (
        0, "queue_name\tchannel_pid\tconsumer_tag\tack_required\tprefetch_count\tactive\targuments\n"
        f"consumed\t{connection_name(ctl)} (1)\tct1\ttrue\t0\ttrue\t[]\n", "",
    )  # fmt: skip
    code, out, _ = ctl("list_connections")
    assert out.startswith("Listing connections ...\nuser\tpeer_host\tpeer_port\tstate\nguest\t127.0.0.1\t")
    name = connection_name(ctl)
    assert ctl("close_connection", name, "bye") == (0, f"Closing connection {name}, reason: bye...\n", "")
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker):
        connection.sleep(1)
    broker.connect()
    assert ctl("close_all_connections", "bye") == (
        0, "Closing all connections in vhost /, reason: bye...\nClosed 1 connections\n", "",
    )  # fmt: skip


def test_definitions_and_hash(ctl: Ctl, tmp_path: Path) -> None:
    code, out, _ = ctl("export_definitions", "-")
    assert code == 0 and {"name": "/"}.items() <= json.loads(out)["vhosts"][0].items()
    document = {"vhosts": [{"name": "imported"}]}
    code, out, _ = ctl("import_definitions", stdin=json.dumps(document))
    assert code == 0 and out.startswith("Importing definitions in JSON from standard input ...\nSuccessfully")
    assert "imported" in ctl("list_vhosts", "-q")[1]
    path = tmp_path / "defs.json"
    assert ctl("export_definitions", str(path)) == (
        0,
        f'Exporting definitions in JSON to a file at "{path}" ...\n',
        "",
    )
    assert json.loads(path.read_text())["vhosts"]
    code, out, _ = ctl("hash_password", "foo")
    assert code == 0 and out.startswith("Will hash password foo\n") and len(out.splitlines()[1]) == 48


def test_usage_errors(ctl: Ctl) -> None:
    """The arguments are shown as given (ours start with --data-dir DIR)."""
    assert ctl("nocommand")[0] == 64
    assert ctl("add_user", "-q")[::2] == (
        64,
        f"Error (argument validation): not enough arguments.\nArguments given:\n\t--data-dir {ctl.data_dir} add_user -q\n",
    )


def test_wrong_secret_is_refused(ctl: Ctl, tmp_path: Path) -> None:
    # A copy of the data directory's socket path with another secret: the node refuses it.
    (tmp_path / ".control_secret").write_text("wrong\n")
    (tmp_path / "control.sock").symlink_to(ctl.data_dir / "control.sock")
    code, out, err = Ctl(tmp_path)("list_users")
    assert (code, out) == (69, "")
    assert err.startswith(NODE_DOWN) and "refused the control secret" in err


def test_stopped_node(tmp_path: Path) -> None:
    code, _, err = Ctl(tmp_path)("list_queues")
    assert code == 69 and err.startswith(NODE_DOWN)
    assert "attempted to contact: [rabbit@localhost]" in err


def test_stop_command(tmp_path: Path) -> None:
    """Last: a node of its own, stopped by amqp-ctl stop, exits 0 and removes its socket; the
    secret stays for the next start."""
    node = Node(tmp_path / "data", tmp_path).wait_listening()
    ctl = Ctl(tmp_path / "data")
    try:
        assert ctl("await_startup")[0] == 0
        secret = (ctl.data_dir / ".control_secret").read_text()
        assert ctl("stop") == (0, "Stopping and halting node rabbit@localhost ...\n", "")
        assert node.exit_status()[0] == 0
        assert not (ctl.data_dir / "control.sock").exists()
        assert (ctl.data_dir / ".control_secret").read_text() == secret
    finally:
        if node.process.poll() is None:
            node.stop(signal.SIGTERM)


def test_deep_data_directory(tmp_path: Path) -> None:
    """A socket path longer than an AF_UNIX address allows still works (a node in its own process)."""
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "data"
    node = Node(deep, tmp_path).wait_listening()
    try:
        assert Ctl(deep)("await_startup")[0] == 0
        assert Ctl(deep)("list_vhosts", "-q") == (0, "name\n/\n", "")
    finally:
        node.kill()


def test_import_of_a_bad_document(ctl: Ctl) -> None:
    document = json.dumps({"queues": [{"name": "q", "vhost": "nowhere"}]})
    assert ctl("import_definitions", stdin=document)[::2] == (65, "Virtual host 'nowhere' does not exist\n")
    assert ctl("import_definitions", stdin="not json")[::2] == (
        65, 'Error:\nFailed to deserialise input (format: JSON) (error: {:unexpected_token, "not json"})\n',
    )  # fmt: skip


def test_an_unreadable_secret_stops_the_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / ".control_secret").mkdir(parents=True)  # a directory where the secret should be
    node = Node(data, tmp_path)
    code, err = node.exit_status()
    assert code == 1 and "cannot start: cannot listen on the control socket" in err


class Diagnostics(Ctl):
    """amqp-diagnostics (rabbitmq-diagnostics) on the same node."""

    def __call__(self, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
        done = subprocess.run(
            [sys.executable, "-c", "from amqp_server.ctl import diagnostics_main; diagnostics_main()",
             "--data-dir", str(self.data_dir), *args],
            capture_output=True, text=True, input=stdin, timeout=30,
        )  # fmt: skip
        return done.returncode, done.stdout, done.stderr


@pytest.fixture
def diagnostics(ctl: Ctl) -> Diagnostics:
    return Diagnostics(ctl.data_dir)


def test_parameters(ctl: Ctl) -> None:
    assert ctl("set_parameter", "federation-upstream", "x", '{"uri":"amqp://"}') == (
        69,
        'Setting runtime parameter "x" for component "federation-upstream" to "{"uri":"amqp://"}" in vhost "/" ...\n',
        "Error:\nValidation failed\n\ncomponent federation-upstream not found\n\n",
    )
    assert ctl("set_parameter", "policy", "x", "{}")[::2] == (
        69,
        "Error:\npolicies may not be set using this method\n",
    )
    assert ctl("set_parameter", "-p", "novh", "vhost-limits", "x", "{}")[::2] == (
        65, "Virtual host 'novh' does not exist\n",
    )  # fmt: skip
    assert ctl("set_parameter", "vhost-limits", "limits", '{"max-queues":3}') == (
        0, 'Setting runtime parameter "limits" for component "vhost-limits" to "{"max-queues":3}" in vhost "/" ...\n',
        "",
    )  # fmt: skip
    assert ctl("list_vhost_limits", "-q") == (0, '{"max-queues":3}\n', "")
    assert ctl("clear_parameter", "vhost-limits", "limits") == (
        0, 'Clearing runtime parameter "limits" for component "vhost-limits" on vhost "/" ...\n', "",
    )  # fmt: skip
    assert ctl("clear_parameter", "foo", "x")[::2] == (69, "Error:\nParameter does not exist\n")
    assert ctl("set_parameter", "federation-upstream")[::2] == (
        64, "Error (argument validation): not enough arguments.\nArguments given:\n\t"
        f"--data-dir {ctl.data_dir} set_parameter federation-upstream\n",
    )  # fmt: skip


def test_listings_of_a_vhost_that_does_not_exist(ctl: Ctl) -> None:
    """Live objects: an empty list; configuration: rabbitmqctl's error, 65."""
    assert ctl("list_queues", "-p", "novh") == (
        0,
        "Timeout: 60.0 seconds ...\nListing queues for vhost novh ...\n",
        "",
    )
    for command in ("list_exchanges", "list_bindings", "list_consumers"):
        assert ctl(command, "-p", "novh", "-q") == (0, "", "")
    for command in ("list_permissions", "list_policies", "list_parameters", "list_topic_permissions",
                    "list_operator_policies", "list_vhost_limits"):  # fmt: skip
        assert ctl(command, "-p", "novh", "-q") == (65, "", "Virtual host 'novh' does not exist\n")


def test_environment_and_report(ctl: Ctl) -> None:
    code, out, _ = ctl("environment")
    assert code == 0 and out.startswith(
        "Application environment of node rabbit@localhost ...\n[{amqp_server,\n"
    )
    assert '      {default_pass,"********"},\n' in out and "      {heartbeat,60},\n" in out
    environment = json.loads(ctl("environment", "--formatter", "json")[1])["amqp_server"]
    assert environment["node_name"] == "rabbit@localhost" and environment["default_pass"] == "********"
    code, out, _ = ctl("report")
    assert code == 0 and out.startswith(
        "Reporting server status of node rabbit@localhost ...\n\nStatus of node"
    )
    for banner in ("Application environment of node", "Listing connections ...", "Listing channels ...",
                   "Listing queues for vhost / ...", "Listing exchanges for vhost / ...\nname\ttype\tdurable",
                   "Listing bindings for vhost /...", 'Listing permissions for vhost "/" ...\nuser\tconfigure',
                   'Listing policies for vhost "/" ...', 'Listing runtime parameters for vhost "/" ...'):  # fmt: skip
        assert banner in out
    assert ctl("report", "--formatter", "json") == (
        64, "", 'Error (argument validation): "Only report formatter is supported"\nArguments given:\n\t'
        f"--data-dir {ctl.data_dir} report --formatter json\n",
    )  # fmt: skip


def test_stop_app_start_app_and_reset(tmp_path: Path) -> None:
    """stop_app closes the clients (320) and the AMQP port of a node of its own while the process,
    its stores and the control channel stay; reset then empties it; start_app listens again."""
    node = Node(tmp_path / "data", tmp_path).wait_listening()
    ctl = Ctl(tmp_path / "data")
    try:
        assert ctl("await_startup")[0] == 0
        client = node.connect()
        client.channel().queue_declare("kept", durable=True)
        assert ctl("reset")[0] == 64  # only with the application stopped
        assert ctl("stop_app") == (0, "Stopping rabbit application on node rabbit@localhost ...\n", "")
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
            client.process_data_events(time_limit=5)
        assert closed.value.reply_code == 320
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            node.connect()
        assert ctl("list_queues")[0] == 64
        assert ctl("ping")[0] == 0
        assert ctl("reset") == (0, "Resetting node rabbit@localhost ...\n", "")
        assert ctl("start_app") == (0, "Starting node rabbit@localhost ...\n", "")
        assert ctl("await_startup", "--timeout", "5")[0] == 0
        channel = node.connect().channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as gone:
            channel.queue_declare("kept", passive=True)
        assert gone.value.args == (404, "NOT_FOUND - no queue 'kept' in vhost '/'")
        assert ctl("list_users", "-q") == (0, "user\ttags\nguest\t[administrator]\n", "")
    finally:
        node.stop(signal.SIGTERM)


def test_diagnostics(diagnostics: Diagnostics, node: tuple[Node, Ctl]) -> None:
    port = node[0].port
    code, out, _ = diagnostics("listeners")
    assert code == 0 and out.startswith("Asking node rabbit@localhost to report its protocol listeners ...\n")
    assert f"Interface: 127.0.0.1, port: {port}, protocol: amqp, purpose: AMQP 0-9-1\n" in out
    assert "protocol: control, purpose: CLI tool communication\n" in out
    listed = json.loads(diagnostics("listeners", "--formatter", "json")[1])
    assert {"interface": "127.0.0.1", "node": "rabbit@localhost", "port": port, "protocol": "amqp",
            "purpose": "AMQP 0-9-1"} in listed["listeners"]  # fmt: skip
    assert diagnostics("alarms") == (
        0, "Asking node rabbit@localhost to report any known resource alarms ...\n"
        "Node rabbit@localhost reported no alarms, local or clusterwide\n", "",
    )  # fmt: skip
    assert (
        diagnostics("alarms", "--formatter", "json")[1]
        == '{"alarms":[],"node":"rabbit@localhost","result":"ok"}\n'
    )
    assert diagnostics("check_local_alarms") == (
        0, "Asking node rabbit@localhost to report any local resource alarms ...\n"
        "Node rabbit@localhost reported no local alarms\n", "",
    )  # fmt: skip
    assert diagnostics("check_local_alarms", "--formatter", "json")[1] == '{"result":"ok"}\n'
    assert diagnostics("check_running") == (
        0, "Checking if RabbitMQ is running on node rabbit@localhost ...\n"
        "RabbitMQ on node rabbit@localhost is fully booted and running\n", "",
    )  # fmt: skip
    assert json.loads(diagnostics("check_running", "--formatter", "json")[1]) == {
        "message": "RabbitMQ on node rabbit@localhost is fully booted and running"
    }
    code, out, _ = diagnostics("check_port_connectivity")
    assert code == 0 and out.startswith(
        "Testing TCP connections to all active listeners on node rabbit@localhost"
    )
    assert "Successfully connected to ports " in out and str(port) in out
    assert diagnostics("check_virtual_hosts") == (
        0, "Checking if all vhosts are running on node rabbit@localhost ...\n"
        "Node rabbit@localhost reported all vhosts as running\n", "",
    )  # fmt: skip
    code, out, _ = diagnostics("memory_breakdown", "--unit", "mb")
    assert code == 0 and out.startswith("Reporting memory breakdown on node rabbit@localhost...\n")
    assert all(line.endswith("%)") and " mb (" in line for line in out.splitlines()[1:])
    breakdown = json.loads(diagnostics("memory_breakdown", "--formatter", "json")[1])
    assert {"queue_procs", "connection_writers", "other_proc"} <= breakdown.keys()
    assert diagnostics("memory_breakdown", "--unit", "parsecs")[0] == 64
    # the tools keep to their own commands, as rabbitmqctl and rabbitmq-diagnostics do
    assert diagnostics("add_user", "x", "y") == (64, "", "\nCommand 'add_user' not found. \n\n")
    assert Ctl(diagnostics.data_dir)("listeners")[0] == 64
    code, out, _ = diagnostics("list_vhosts", "-q")
    assert code == 0 and out.startswith("name\n/\n")


def test_node_names(ctl: Ctl) -> None:
    """-n naming the node of the data directory reaches it through its control socket; another
    node is asked over its cluster port, which a node without clustering has not (69,
    rabbitmqctl's text; tests/cli/test_ctl_remote.py has clustered nodes)."""
    assert ctl("-n", "rabbit@localhost", "ping")[0] == 0
    port = free_port()
    code, _, err = ctl("-n", f"hare@localhost:{port}", "ping")
    assert code == 69 and err.startswith(
        "Error: unable to perform an operation on node 'hare@localhost'. Please see diagnostics"
    )
    assert f"unable to connect to the inter-node port ({port}) on localhost: connection refused" in err
    code, _, err = ctl("-n", "rabbit@elsewhere.invalid", "list_queues")
    assert code == 69 and "on elsewhere.invalid: cannot resolve the host" in err


def test_data_directory_from_the_environment(ctl: Ctl, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "amqp_server.ctl", "list_vhosts", "-q"], capture_output=True, text=True,
        cwd=tmp_path, env={**os.environ, DATA_DIR_ENV: str(ctl.data_dir)}, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.startswith("name\n/\n")
