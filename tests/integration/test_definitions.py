"""RabbitMQ definitions JSON: a file exported from RabbitMQ 3.10.8 imports cleanly (users log
in with their RabbitMQ password hashes), export/import round-trips, and ``load_definitions``
imports a file at boot.

tests/fixtures/rabbitmq-3.10-definitions.json is ``rabbitmqctl export_definitions`` of the
reference node, plus the user ``ref_known_user`` (password ``known-Pass-42``), its permission,
topic permission, user limit, an operator policy, a vhost limit and a global parameter, taken
verbatim from ``GET /api/definitions`` of the same node after creating them there.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pika
import pytest

from tests.conftest import start_broker

FIXTURE = pathlib.Path(__file__).parent.parent / "fixtures" / "rabbitmq-3.10-definitions.json"


@pytest.fixture
def fresh() -> Any:
    handle = start_broker()
    yield handle
    handle.stop()


def load_fixture() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text())


def test_rabbitmq_export_imports_and_users_log_in(fresh: Any) -> None:
    fresh.run(fresh.admin.import_definitions(load_fixture()))
    broker = fresh.broker
    user = broker.users["ref_known_user"]
    assert user.tags == ["monitoring", "management"]
    connection = fresh.connect(user="ref_known_user", password="known-Pass-42")
    channel = connection.channel()
    channel.queue_declare("ref.known.q")  # configure permission ^ref\.known from the file
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        channel.queue_declare("elsewhere")
    assert info.value.reply_code == 403
    connection.close()
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        fresh.connect(user="ref_known_user", password="wrong")
    # The rest of the file: vhosts, permissions, policies, queues, exchanges, bindings, ...
    assert set(broker.vhosts) == {"/", "other"}
    assert broker.vhosts["/"].description == "Default virtual host"
    assert broker.permissions[("ronly", "/")].read == ".*"
    assert broker.topic_permissions[("ref_known_user", "/", "amq.topic")] == {"write": "^w", "read": "^r"}
    assert broker.user_limits["ref_known_user"] == {"max-channels": 7}
    assert broker.vhost_limits["other"] == {"max-queues": 50}
    assert [p["name"] for p in fresh.admin.list_operator_policies("other")] == ["ref-known-op"]
    assert broker.global_parameters == {"ref-known-gp": "my-cluster-x"}
    root = broker.vhosts["/"]
    assert {"d.qa", "ref.def.q", "d.q1", "d.q2", "ref3-smoke"} <= set(root.queues)
    queue = root.queues["ref.def.q"]
    assert queue.durable and queue.policy == "ref-def-policy"
    assert (queue.settings.max_length, queue.settings.overflow, queue.settings.message_ttl) == (
        100,
        "reject-publish",
        60000,
    )
    assert root.exchanges["ref.def.x"].alternate == "amq.fanout"
    # The imported topology routes: ref.def.x -(a.*.b)-> ref.def.q, and d.fan -> d.q2 (max-length 0).
    connection = fresh.connect()
    channel = connection.channel()
    channel.basic_publish("ref.def.x", "a.x.b", b"routed")
    method, _props, body = channel.basic_get("ref.def.q", auto_ack=True)
    assert body == b"routed"
    connection.close()


def test_export_import_round_trip(fresh: Any, unique: str) -> None:
    fresh.run(fresh.admin.import_definitions(load_fixture()))
    connection = fresh.connect()
    channel = connection.channel()
    channel.exchange_declare(unique, "headers", durable=True, arguments={"alternate-exchange": "amq.fanout"})
    channel.queue_declare(unique, arguments={"x-max-priority": 5, "x-dead-letter-exchange": unique})
    channel.queue_bind(unique, unique, "", arguments={"x-match": "any", "k": "v"})
    channel.queue_declare("", exclusive=True)  # exclusive queues are not exported
    connection.close()
    fresh.run(fresh.admin.set_policy("other", "p-other", "^x", {"max-length": 1}, 3, "queues"))
    exported = fresh.admin.export_definitions()
    assert not [q for q in exported["queues"] if q["name"].startswith("amq.gen-")]
    assert not [x for x in exported["exchanges"] if x["name"].startswith("amq.") or not x["name"]]
    exported = json.loads(json.dumps(exported))  # as it would be written to a file
    second = start_broker()
    try:
        second.run(second.admin.import_definitions(exported))
        again = second.admin.export_definitions()
    finally:
        second.stop()
    assert again == exported
    assert {"vhost": "other", "name": "p-other", "pattern": "^x", "apply-to": "queues",
            "definition": {"max-length": 1}, "priority": 3} in again["policies"]  # fmt: skip


def test_load_definitions_at_boot(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "definitions.json"
    path.write_text(FIXTURE.read_text())
    handle = start_broker(load_definitions=str(path))
    try:
        assert "ref.def.q" in handle.broker.vhosts["/"].queues
        connection = handle.connect(user="ref_known_user", password="known-Pass-42")
        assert connection.is_open
        connection.close()
    finally:
        handle.stop()


def test_broken_definitions_file_stops_the_start(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "definitions.json"
    path.write_text("{not json")
    with pytest.raises(Exception, match="cannot read definitions file"):
        start_broker(load_definitions=str(path))


def test_import_refuses_an_invalid_policy(fresh: Any) -> None:
    from amqp_server.admin.operations import AdminError

    definitions = {"policies": [{"vhost": "/", "name": "bad", "pattern": "^x", "apply-to": "all",
                                 "definition": {"max-length": -1}, "priority": 0}]}  # fmt: skip
    with pytest.raises(AdminError) as info:
        fresh.run(fresh.admin.import_definitions(definitions))
    assert str(info.value) == "Validation failed\n\n-1 is not a valid maximum length"
