"""Policies and operator policies through pika: applied to new and existing queues at once,
priority between policies, apply-to, operator caps, alternate-exchange, and rabbitmqctl's
validation texts (recorded from RabbitMQ 3.10.8)."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import pika
import pytest
from helpers import drain, message_count, publish_numbered

from amqp_server.admin.errors import AdminError


@pytest.fixture
def policies(broker: Any) -> Any:
    """Set policies through the admin API; every policy set here is cleared afterwards."""
    made: list[tuple[str, str, str]] = []

    class Policies:
        def set(self, name: str, pattern: str, definition: dict[str, Any], **kw: Any) -> None:
            broker.run(broker.admin.set_policy(kw.pop("vhost", "/"), name, pattern, definition, **kw))
            made.append(("policy", "/", name))

        def set_operator(self, name: str, pattern: str, definition: dict[str, Any], **kw: Any) -> None:
            broker.run(broker.admin.set_operator_policy(kw.pop("vhost", "/"), name, pattern, definition, **kw))
            made.append(("operator_policy", "/", name))

    yield Policies()
    for kind, vhost, name in made:
        clear = broker.admin.clear_policy if kind == "policy" else broker.admin.clear_operator_policy
        with contextlib.suppress(AdminError):
            broker.run(clear(vhost, name))


def test_policy_trims_existing_queue_at_once_and_applies_to_new_ones(broker, channel, unique, policies) -> None:
    channel.queue_declare(f"{unique}-old")
    publish_numbered(channel, f"{unique}-old", 5)
    assert message_count(channel, f"{unique}-old") == 5
    policies.set(f"{unique}-p", f"^{unique}-", {"max-length": 2}, apply_to="queues")
    assert message_count(channel, f"{unique}-old") == 2  # drop-head: the oldest went
    assert drain(channel, f"{unique}-old") == [b"m3", b"m4"]
    channel.queue_declare(f"{unique}-new")
    publish_numbered(channel, f"{unique}-new", 4)
    assert message_count(channel, f"{unique}-new") == 2
    queue = broker.broker.vhosts["/"].queues[f"{unique}-new"]
    assert (queue.policy, queue.operator_policy) == (f"{unique}-p", None)
    assert queue.effective_policy == {"max-length": 2}


def test_clearing_a_policy_lifts_its_limit(broker, channel, unique, policies) -> None:
    policies.set(f"{unique}-p", f"^{unique}$", {"max-length": 1})
    channel.queue_declare(unique)
    publish_numbered(channel, unique, 3)
    assert message_count(channel, unique) == 1
    broker.run(broker.admin.clear_policy("/", f"{unique}-p"))
    publish_numbered(channel, unique, 3)
    assert message_count(channel, unique) == 4
    assert broker.broker.vhosts["/"].queues[unique].policy is None


def test_message_ttl_policy_expires_messages(broker, channel, unique, policies) -> None:
    policies.set(f"{unique}-p", f"^{unique}$", {"message-ttl": 100})
    channel.queue_declare(unique, arguments={"x-message-ttl": 60000})  # the lower (policy) wins
    publish_numbered(channel, unique, 2)
    time.sleep(0.3)
    assert message_count(channel, unique) == 0
    assert channel.basic_get(unique)[0] is None


def test_only_highest_priority_policy_applies(broker, channel, unique, policies) -> None:
    policies.set(f"{unique}-low", f"^{unique}", {"max-length": 7, "message-ttl": 99999}, priority=1)
    policies.set(f"{unique}-high", f"^{unique}", {"max-length": 9}, priority=2)
    channel.queue_declare(unique)
    publish_numbered(channel, unique, 15)
    assert message_count(channel, unique) == 9
    queue = broker.broker.vhosts["/"].queues[unique]
    assert queue.policy == f"{unique}-high"
    assert queue.settings.message_ttl is None  # no merging with the lower-priority policy


def test_equal_priority_name_that_sorts_first_wins(broker, channel, unique, policies) -> None:
    policies.set(f"{unique}-zeta", f"^{unique}", {"max-length": 11}, priority=3)
    policies.set(f"{unique}-alpha", f"^{unique}", {"max-length": 12}, priority=3)
    channel.queue_declare(unique)
    publish_numbered(channel, unique, 15)
    assert message_count(channel, unique) == 12
    assert broker.broker.vhosts["/"].queues[unique].policy == f"{unique}-alpha"


def test_apply_to_exchanges_does_not_touch_queues(broker, channel, unique, policies) -> None:
    policies.set(f"{unique}-x", f"^{unique}", {"max-length": 1}, apply_to="exchanges")
    channel.queue_declare(unique)
    publish_numbered(channel, unique, 5)
    assert message_count(channel, unique) == 5
    assert broker.broker.vhosts["/"].queues[unique].policy is None


def test_argument_wins_for_overflow_and_lower_wins_for_length(broker, unique, policies) -> None:
    policies.set(f"{unique}-p", f"^{unique}-", {"max-length": 3, "overflow": "reject-publish"})
    connection = broker.connect()
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare(f"{unique}-a", arguments={"x-max-length": 20})
    channel.queue_declare(f"{unique}-b", arguments={"x-max-length": 20, "x-overflow": "drop-head"})
    channel.queue_declare(f"{unique}-c", arguments={"x-max-length": 2})
    outcomes = {}
    for suffix in "abc":
        results = []
        for i in range(5):
            try:
                channel.basic_publish("", f"{unique}-{suffix}", f"m{i}".encode())
                results.append("ack")
            except pika.exceptions.NackError:
                results.append("nack")
        outcomes[suffix] = (results, message_count(channel, f"{unique}-{suffix}"))
    assert outcomes["a"] == (["ack"] * 3 + ["nack"] * 2, 3)  # policy overflow, min(20, 3)
    assert outcomes["b"] == (["ack"] * 5, 3)  # argument overflow drop-head wins
    assert outcomes["c"] == (["ack"] * 2 + ["nack"] * 3, 2)  # min(2, 3)
    connection.close()


def test_operator_policy_caps_policy_and_arguments(broker, channel, unique, policies) -> None:
    policies.set_operator(f"{unique}-op", f"^{unique}-", {"max-length": 5, "expires": 900000}, apply_to="queues")
    policies.set(f"{unique}-pol", f"^{unique}-", {"max-length": 8, "message-ttl": 60000}, apply_to="queues")
    channel.queue_declare(f"{unique}-none")
    channel.queue_declare(f"{unique}-len4", arguments={"x-max-length": 4})
    channel.queue_declare(f"{unique}-len10", arguments={"x-max-length": 10})
    for suffix, expected in (("none", 5), ("len4", 4), ("len10", 5)):
        publish_numbered(channel, f"{unique}-{suffix}", 8)
        assert message_count(channel, f"{unique}-{suffix}") == expected
    queue = broker.broker.vhosts["/"].queues[f"{unique}-none"]
    assert (queue.policy, queue.operator_policy) == (f"{unique}-pol", f"{unique}-op")
    assert queue.effective_policy == {"max-length": 5, "message-ttl": 60000, "expires": 900000}


def test_operator_policy_alone_caps_argument(broker, channel, unique, policies) -> None:
    channel.queue_declare(f"{unique}-len10", arguments={"x-max-length": 10})
    channel.queue_declare(f"{unique}-len3", arguments={"x-max-length": 3})
    policies.set_operator(f"{unique}-op", f"^{unique}-", {"max-length": 5})
    publish_numbered(channel, f"{unique}-len10", 8)
    publish_numbered(channel, f"{unique}-len3", 8)
    assert message_count(channel, f"{unique}-len10") == 5
    assert message_count(channel, f"{unique}-len3") == 3


def test_alternate_exchange_policy_and_argument_wins(broker, channel, unique, policies) -> None:
    channel.exchange_declare(f"{unique}-ae", "fanout")
    channel.queue_declare(f"{unique}-aeq")
    channel.queue_bind(f"{unique}-aeq", f"{unique}-ae")
    channel.exchange_declare(f"{unique}-ae2", "fanout")
    channel.queue_declare(f"{unique}-ae2q")
    channel.queue_bind(f"{unique}-ae2q", f"{unique}-ae2")
    channel.exchange_declare(f"{unique}-x", "direct")  # exists before the policy
    channel.exchange_declare(f"{unique}-xarg", "direct", arguments={"alternate-exchange": f"{unique}-ae2"})
    policies.set(f"{unique}-p", f"^{unique}-x", {"alternate-exchange": f"{unique}-ae"}, apply_to="exchanges")
    channel.basic_publish(f"{unique}-x", "nowhere", b"to-policy-ae")
    channel.basic_publish(f"{unique}-xarg", "nowhere", b"to-arg-ae")
    assert drain(channel, f"{unique}-aeq") == [b"to-policy-ae"]
    assert drain(channel, f"{unique}-ae2q") == [b"to-arg-ae"]
    channel.exchange_declare(f"{unique}-xnew", "topic")  # declared after: gets it too
    channel.basic_publish(f"{unique}-xnew", "nowhere", b"new")
    assert drain(channel, f"{unique}-aeq") == [b"new"]
    broker.run(broker.admin.clear_policy("/", f"{unique}-p"))
    channel.basic_publish(f"{unique}-x", "nowhere", b"dropped")
    assert drain(channel, f"{unique}-aeq") == []
    assert broker.broker.vhosts["/"].exchanges[f"{unique}-x"].alternate is None


def test_dead_letter_exchange_from_policy(broker, channel, unique, policies) -> None:
    channel.queue_declare(f"{unique}-dlq")
    policies.set(f"{unique}-p", f"^{unique}-src$", {"dead-letter-exchange": "", "dead-letter-routing-key": f"{unique}-dlq"})
    channel.queue_declare(f"{unique}-src")
    channel.basic_publish("", f"{unique}-src", b"x")
    method, _props, _body = channel.basic_get(f"{unique}-src")
    channel.basic_reject(method.delivery_tag, requeue=False)
    method, props, body = channel.basic_get(f"{unique}-dlq", auto_ack=True)
    assert body == b"x"
    assert props.headers["x-first-death-reason"] == "rejected"


@pytest.mark.parametrize(
    ("definition", "error"),
    [
        ({"foo-bar": 1}, '[{<<"foo-bar">>,1}] are not recognised policy settings'),
        ({"message-ttl": "abc"}, '<<"abc">> is not a valid message TTL'),
        ({"message-ttl": -1}, "-1 is not a valid message TTL"),
        ({"max-length": -1}, "-1 is not a valid maximum length"),
        ({"expires": 0}, "0 is not a valid queue expiry"),
        ({"overflow": "foo"}, '<<"foo">> is not a valid overflow value'),
        ({"dead-letter-exchange": 5}, "5 is not a valid dead letter exchange name"),
        ({"max-priority": 5}, '[{<<"max-priority">>,5}] are not recognised policy settings'),
        ({"queue-mode": "foo"}, '<<"foo">> is not a valid queue-mode value'),
        ({"ha-mode": "foo"}, '<<"foo">> is not a valid ha-mode value'),
        ({}, "no policy provided"),
        ({"foo": 1, "message-ttl": "a"}, '<<"a">> is not a valid message TTL'),  # validators first
    ],
)
def test_policy_validation_texts(broker, unique, definition, error) -> None:
    with pytest.raises(AdminError) as info:
        broker.run(broker.admin.set_policy("/", unique, "^x", definition))
    assert str(info.value) == "Validation failed\n\n" + error


def test_policy_validation_pattern_apply_to_and_operator_keys(broker, unique) -> None:
    with pytest.raises(AdminError) as info:
        broker.run(broker.admin.set_policy("/", unique, "^ref3-pol-bad[", {"max-length": 1}))
    assert str(info.value) == (
        "Validation failed\n\npattern should be regular expression but is invalid: "
        '{"missing terminating ] for character class",\n' + " " * 54 + "14}"
    )
    with pytest.raises(AdminError) as info:
        broker.run(broker.admin.set_policy("/", unique, "^x", {"max-length": 1}, apply_to="foo"))
    assert str(info.value) == "Validation failed\n\napply-to 'foo' unrecognised; should be 'queues', 'exchanges' or 'all'"
    for definition, shown in (
        ({"dead-letter-exchange": "x"}, '[{<<"dead-letter-exchange">>,<<"x">>}]'),
        ({"overflow": "reject-publish"}, '[{<<"overflow">>,<<"reject-publish">>}]'),
        ({"alternate-exchange": "x"}, '[{<<"alternate-exchange">>,<<"x">>}]'),
    ):
        with pytest.raises(AdminError) as info:
            broker.run(broker.admin.set_operator_policy("/", unique, "^x", definition))
        assert str(info.value) == f"Validation failed\n\n{shown} are not recognised policy settings"
    # dead-letter-routing-key without a dead-letter-exchange is accepted in a policy
    broker.run(broker.admin.set_policy("/", unique, "^x-nothing$", {"dead-letter-routing-key": "k"}))
    broker.run(broker.admin.clear_policy("/", unique))


def test_clear_missing_policy_and_unknown_vhost(broker, unique) -> None:
    with pytest.raises(AdminError, match="^Parameter does not exist$"):
        broker.run(broker.admin.clear_policy("/", unique))
    with pytest.raises(AdminError, match="^Parameter does not exist$"):
        broker.run(broker.admin.clear_operator_policy("/", unique))
    with pytest.raises(AdminError) as info:
        broker.run(broker.admin.set_policy(unique, "p", "^x", {"max-length": 1}))
    assert str(info.value) == f"Virtual host '{unique}' does not exist"


def test_list_policies_shape(broker, unique, policies) -> None:
    policies.set(f"{unique}-p", f"^{unique}", {"max-length": 3}, priority=4, apply_to="queues")
    listed = [p for p in broker.admin.list_policies("/") if p["name"] == f"{unique}-p"]
    assert listed == [
        {"vhost": "/", "name": f"{unique}-p", "pattern": f"^{unique}", "apply-to": "queues",
         "definition": {"max-length": 3}, "priority": 4}
    ]  # fmt: skip
