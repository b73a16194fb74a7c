"""Snapshot and restore of the whole metadata state: a broker that restores another's snapshot
(what a joining cluster node starts from) holds the same vhosts, users, permissions, limits,
parameters, policies, exchanges, queues (transient ones too) and bindings."""

from __future__ import annotations

from conftest import start_broker
from metadata_fuzz import durable_state

from amqp_server.core.broker import Broker, BrokerConfig
from amqp_server.metadata.store import Change


def _everything(broker: Broker) -> tuple[object, ...]:
    vhosts = broker.vhosts
    return (
        durable_state(broker),
        {name: sorted((q.name, q.durable, q.exclusive_owner, repr(q.arguments)) for q in v.queues.values())
         for name, v in vhosts.items()},  # fmt: skip
        {name: sorted(repr(b.key) for b in v.bindings.values()) for name, v in vhosts.items()},
    )


def test_restored_snapshot_equals_the_original() -> None:
    source = start_broker()
    try:
        admin = source.admin
        source.run(admin.add_vhost("snap-v", "described", ["t1"]))
        source.run(admin.add_user("snap-u", "pw", ["monitoring"]))
        source.run(admin.set_permissions("snap-u", "snap-v", "^snap", ".*", ""))
        source.run(admin.set_user_limits("snap-u", {"max-channels": 3}))
        source.run(admin.set_vhost_limits("snap-v", {"max-queues": 9}))
        source.run(admin.set_policy("/", "snap-p", "^snap", {"message-ttl": 1000}, 2, "queues"))
        source.run(admin.set_operator_policy("/", "snap-op", "^snap", {"max-length": 7}))
        source.run(admin.import_definitions({
            "topic_permissions": [{"user": "snap-u", "vhost": "snap-v", "exchange": "amq.topic", "write": "^w",
                                   "read": "^r"}],
            "parameters": [{"vhost": "/", "component": "federation-upstream", "name": "up", "value": {"uri": "x"}}],
            "global_parameters": [{"name": "cluster_tags", "value": ["a"]}],
        }))  # fmt: skip
        with source.connect() as connection:
            channel = connection.channel()
            channel.exchange_declare("snap-x", "headers", durable=True, arguments={"alternate-exchange": "amq.fanout"})
            channel.queue_declare("snap-durable", durable=True, arguments={"x-max-priority": 4})
            channel.queue_declare("snap-transient", auto_delete=False)
            channel.queue_bind("snap-durable", "snap-x", arguments={"x-match": "any", "k": 1})
            channel.queue_bind("snap-transient", "amq.topic", "a.*")
            snapshot = source.call(source.broker.snapshot)
            expected = source.call(_everything, source.broker)
    finally:
        source.stop()
    assert {c.kind for c in snapshot} >= {"vhost", "user", "permission", "topic_permission", "user_limits",
                                          "vhost_limits", "parameter", "global_parameter", "policy",
                                          "operator_policy", "exchange", "queue", "binding"}  # fmt: skip
    assert not [c for c in snapshot if c.name == "snap-transient" and c.persisted]
    target = Broker(BrokerConfig(data_dir=None))
    target.restore(snapshot)
    assert _everything(target) == expected
    assert target.vhosts["/"].queues["snap-durable"].settings.message_ttl == 1000  # the policy applies
    assert isinstance(snapshot[0], Change) and snapshot[0].kind == "vhost"
