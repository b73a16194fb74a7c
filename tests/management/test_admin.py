"""Vhosts, users, permissions, policies, parameters, limits, definitions and the cluster name
through the API, with RabbitMQ 3.10.8's answers; every write goes through ``Admin``, so what
the API made is what the broker (and AMQP logins) see."""

from __future__ import annotations

import pika
import pytest
from conftest import BrokerHandle

from amqp_server.core.access import hash_password
from management.conftest import Api


async def test_vhost_put_get_delete(api: Api, managed_broker: BrokerHandle, unique: str) -> None:
    assert (await api.put(f"/vhosts/{unique}", {"description": "d", "tags": "a, b"})).status == 201
    vhost = (await api.get(f"/vhosts/{unique}")).body
    assert (vhost["name"], vhost["description"], vhost["tags"], vhost["tracing"]) == (unique, "d", ["a", "b"], False)
    assert vhost["metadata"] == {"description": "d", "tags": ["a", "b"]}
    assert (vhost["messages"], vhost["message_stats"]["publish"]) == (0, 0)
    # Its maker may use it at once, as in RabbitMQ.
    assert (await api.get(f"/vhosts/{unique}/permissions")).body == [
        {"user": "guest", "vhost": unique, "configure": ".*", "write": ".*", "read": ".*"}
    ]
    assert (await api.put(f"/vhosts/{unique}", {"description": "e"})).status == 204
    assert (await api.get(f"/vhosts/{unique}")).body["tags"] == []
    reply = await api.put(f"/vhosts/{unique}", {"tracing": "x"})
    assert (reply.status, reply.body["reason"]) == (400, ["not_boolean", "x"])
    assert unique in [v["name"] for v in (await api.get("/vhosts")).body]
    with managed_broker.connect(vhost=unique) as connection:
        connection.channel().queue_declare("in-the-new-vhost")
    assert [q["name"] for q in (await api.get(f"/queues/{unique}")).body] == ["in-the-new-vhost"]
    assert (await api.delete(f"/vhosts/{unique}")).status == 204
    assert (await api.delete(f"/vhosts/{unique}")).status == 404
    assert unique not in managed_broker.broker.vhosts


async def test_user_put(api: Api, managed_broker: BrokerHandle, unique: str) -> None:
    reply = await api.put(f"/users/{unique}", {"password": "pw"})
    assert (reply.status, reply.body) == (400, {"error": "bad_request", "reason": "tags_not_present"})
    assert (await api.put(f"/users/{unique}", {"password": "pw", "tags": ""})).status == 201
    assert (await api.put(f"/users/{unique}", {"password": "pw", "tags": "monitoring, management"})).status == 204
    user = (await api.get(f"/users/{unique}")).body
    assert (user["name"], user["tags"], user["limits"]) == (unique, ["monitoring", "management"], {})
    assert user["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    assert (await api.get("/whoami", user=(unique, "pw"))).body == {"name": unique, "tags": ["monitoring", "management"]}
    reply = await api.put(f"/users/{unique}", {"password": "x", "password_hash": "y", "tags": ""})
    assert reply.body["reason"] == "both_password_and_password_hash_are_provided"
    reply = await api.put(f"/users/{unique}", {"password_hash": "!!!", "tags": ""})
    assert reply.body["reason"] == ["not_base64", "!!!"]
    # A hash as RabbitMQ's definitions hold it logs in with its password.
    assert (await api.put(f"/users/{unique}", {"password_hash": hash_password("secret"), "tags": ["administrator"]})).status == 204
    assert (await api.get("/whoami", user=(unique, "secret"))).status == 200
    await api.put(f"/permissions/%2F/{unique}", {"configure": ".*", "write": ".*", "read": ".*"})
    pika.BlockingConnection(managed_broker.params(user=unique, password="secret")).close()
    # Neither password nor hash: no password any more (as RabbitMQ's put_user).
    assert (await api.put(f"/users/{unique}", {"tags": "administrator"})).status == 204
    assert (await api.get("/whoami", user=(unique, "secret"))).status == 401
    assert (await api.delete(f"/users/{unique}")).status == 204
    assert (await api.delete(f"/users/{unique}")).status == 404


async def test_users_without_permissions_and_bulk_delete(api: Api, unique: str) -> None:
    for name in (f"{unique}-a", f"{unique}-b"):
        await api.put(f"/users/{name}", {"password": "pw", "tags": ""})
    listed = [u["name"] for u in (await api.get("/users/without-permissions")).body]
    assert {f"{unique}-a", f"{unique}-b"} <= set(listed) and "guest" not in listed
    reply = await api.post("/users/bulk-delete", {"users": [f"{unique}-a", f"{unique}-nope", f"{unique}-b"]})
    assert (reply.status, reply.body["reason"]) == (400, ["no_such_user", f"{unique}-nope"])
    assert (await api.get(f"/users/{unique}-a")).status == 404  # deleted before the failure, as RabbitMQ
    assert (await api.post("/users/bulk-delete", {})).body["reason"] == "[{key_missing,users}]"
    assert (await api.post("/users/bulk-delete", {"users": [f"{unique}-b"]})).status == 204
    assert (await api.get(f"/users/{unique}-b")).status == 404


async def test_permissions(api: Api, unique: str) -> None:
    await api.put(f"/users/{unique}", {"password": "pw", "tags": ""})
    path = f"/permissions/%2F/{unique}"
    assert (await api.get(path)).status == 404
    assert (await api.put(path, {"configure": "^c", "write": "^w", "read": "^r"})).status == 201
    assert (await api.put(path, {"configure": "^c", "write": "^w", "read": "^r"})).status == 204
    expected = {"user": unique, "vhost": "/", "configure": "^c", "write": "^w", "read": "^r"}
    assert (await api.get(path)).body == expected
    assert (await api.get(f"/users/{unique}/permissions")).body == [expected]
    assert expected in (await api.get("/permissions")).body
    assert (await api.put(path, {"configure": ".*"})).body["reason"] == "[{key_missing,write},{key_missing,read}]"
    for bad in (f"/permissions/%2F/{unique}-nope", f"/permissions/{unique}-nope/{unique}"):
        reply = await api.put(bad, {"configure": ".*", "write": ".*", "read": ".*"})
        assert (reply.status, reply.body["reason"]) == (400, "vhost_or_user_not_found")
    assert (await api.put(path, {"configure": "(", "write": "", "read": ""})).status == 400
    assert (await api.get(f"/users/{unique}-nope/permissions")).status == 404
    assert (await api.delete(path)).status == 204
    assert (await api.delete(path)).status == 404
    await api.delete(f"/users/{unique}")


async def test_topic_permissions(api: Api, unique: str) -> None:
    await api.put(f"/users/{unique}", {"password": "pw", "tags": ""})
    path = f"/topic-permissions/%2F/{unique}"
    assert (await api.put(path, {"exchange": "amq.topic", "write": "^a", "read": ".*"})).status == 201
    assert (await api.put(path, {"exchange": "amq.topic", "write": "^a", "read": ".*"})).status == 204
    assert (await api.put(path, {"exchange": "other", "write": "", "read": ""})).status == 204
    one = {"user": unique, "vhost": "/", "exchange": "amq.topic", "write": "^a", "read": ".*"}
    listed = (await api.get(path)).body
    assert listed[0] == one and len(listed) == 2
    assert one in (await api.get("/topic-permissions")).body
    assert one in (await api.get("/vhosts/%2F/topic-permissions")).body
    assert (await api.get(f"/users/{unique}/topic-permissions")).body == listed
    assert (await api.put(path, {"exchange": "x"})).body["reason"] == "[{key_missing,write},{key_missing,read}]"
    assert (await api.delete(f"{path}/other")).status == 204
    assert (await api.get(path)).body == [one]
    assert (await api.delete(path)).status == 204
    assert (await api.get(path)).status == 404
    await api.delete(f"/users/{unique}")


async def test_policies(api: Api, managed_broker: BrokerHandle, unique: str) -> None:
    path = f"/policies/%2F/{unique}"
    body = {"pattern": f"^{unique}", "definition": {"max-length": 1}, "priority": 1, "apply-to": "queues"}
    assert (await api.put(path, body)).status == 201
    assert (await api.put(path, body)).status == 204
    assert (await api.get(path)).body == {"vhost": "/", "name": unique, "pattern": f"^{unique}", "apply-to": "queues",
                                          "definition": {"max-length": 1}, "priority": 1}  # fmt: skip
    await api.put(f"/queues/%2F/{unique}-q")
    queue = (await api.get(f"/queues/%2F/{unique}-q")).body
    assert (queue["policy"], queue["effective_policy_definition"]) == (unique, {"max-length": 1})
    reply = await api.put(path, {"pattern": "^q", "definition": {"max-length": "x"}})
    assert reply.body == {"error": "bad_request",
                          "reason": 'Validation failed\n\n&lt;&lt;"x"&gt;&gt; is not a valid maximum length\n'}  # fmt: skip
    reply = await api.put(path, {"pattern": "^q", "definition": {"foo": 1}})
    assert reply.body["reason"] == 'Validation failed\n\n[{&lt;&lt;"foo"&gt;&gt;,1}] are not recognised policy settings\n'
    assert (await api.put(path, {"pattern": "^q"})).body["reason"] == "[{key_missing,definition}]"
    reply = await api.put(f"/policies/{unique}-nope/p", {"pattern": "^q", "definition": {"max-length": 1}})
    assert (reply.status, reply.body) == (404, {"error": "not_found", "reason": "vhost_not_found"})
    op = f"/operator-policies/%2F/{unique}"
    assert (await api.put(op, {"pattern": f"^{unique}", "definition": {"max-length": 5}})).status == 201
    reply = await api.put(op, {"pattern": "^q", "definition": {"dead-letter-exchange": "x"}})
    assert reply.body["reason"] == 'Validation failed\n\n[{<<"dead-letter-exchange">>,<<"x">>}] are not recognised policy settings\n'
    assert any(p["name"] == unique for p in (await api.get("/operator-policies/%2F")).body)
    assert any(p["name"] == unique and p["component"] == "operator_policy" for p in (await api.get("/parameters")).body)
    assert (await api.delete(op)).status == 204
    assert (await api.delete(path)).status == 204
    assert (await api.delete(path)).status == 404
    assert (await api.get(f"/queues/%2F/{unique}-q")).body["policy"] is None
    await api.delete(f"/queues/%2F/{unique}-q")


async def test_parameters_and_global_parameters(api: Api, unique: str) -> None:
    reply = await api.put(f"/parameters/federation-upstream/%2F/{unique}", {"value": {"uri": "amqp://"}})
    assert reply.body == {"error": "bad_request", "reason": "Validation failed\n\ncomponent federation-upstream not found\n"}
    assert (await api.get("/parameters/federation-upstream")).body == []
    assert (await api.get(f"/parameters/federation-upstream/%2F/{unique}")).status == 404
    path = f"/global-parameters/{unique}"
    assert (await api.put(path, {"value": {"a": 1}})).status == 201
    assert (await api.put(path, {"value": {"a": 2}})).status == 204
    assert (await api.get(path)).body == {"value": {"a": 2}, "name": unique}
    assert {"name": unique, "value": {"a": 2}} in (await api.get("/global-parameters")).body
    assert (await api.put(path, {})).body["reason"] == "[{key_missing,value}]"
    assert (await api.delete(path)).status == 204
    assert (await api.delete(path)).status == 404


async def test_limits(api: Api, managed_broker: BrokerHandle, unique: str) -> None:
    await api.put(f"/vhosts/{unique}")
    path = f"/vhost-limits/{unique}/max-queues"
    assert (await api.put(path, {"value": 1})).status == 204
    assert (await api.put(f"/vhost-limits/{unique}/max-connections", {"value": 10})).status == 204
    assert (await api.get(f"/vhost-limits/{unique}")).body == [{"vhost": unique, "value": {"max-connections": 10, "max-queues": 1}}]
    reply = await api.put(f"/vhost-limits/{unique}/max-foo", {"value": 10})
    assert reply.body["reason"] == 'Validation failed\n\nUnrecognised terms [{<<"max-foo">>,10}] in limits\n'
    reply = await api.put(path, {"value": "a"})
    assert reply.body["reason"] == 'Validation failed\n\nmax-queues should be a number, actually was <<"a">>\n'
    assert (await api.put(path, {})).body["reason"] == "[{key_missing,value}]"
    assert (await api.get(f"/vhost-limits/{unique}-nope")).status == 404
    await api.put(f"/queues/{unique}/first")
    reply = await api.put(f"/queues/{unique}/second")
    assert (reply.status, reply.body["reason"]) == (400, f"cannot declare queue 'second': queue limit in vhost '{unique}' (1) is reached")
    assert (await api.delete(path)).status == 204
    assert (await api.delete(path)).status == 204
    assert (await api.get(f"/vhost-limits/{unique}")).body == [{"vhost": unique, "value": {"max-connections": 10}}]
    await api.delete(f"/vhosts/{unique}")
    await api.put(f"/users/{unique}", {"password": "pw", "tags": ""})
    assert (await api.put(f"/user-limits/{unique}/max-channels", {"value": 10})).status == 204
    assert (await api.get(f"/user-limits/{unique}")).body == [{"user": unique, "value": {"max-channels": 10}}]
    assert (await api.get(f"/users/{unique}")).body["limits"] == {"max-channels": 10}
    reply = await api.put(f"/user-limits/{unique}/max-foo", {"value": 10})
    assert reply.body["reason"] == 'Unrecognised terms [{<<"max-foo">>,10}] in user-limits'
    assert (await api.delete(f"/user-limits/{unique}/max-channels")).status == 204
    assert (await api.get(f"/user-limits/{unique}")).body == []
    assert (await api.get(f"/user-limits/{unique}-nope")).status == 404
    await api.delete(f"/users/{unique}")


async def test_definitions(api: Api, unique: str) -> None:
    await api.put(f"/vhosts/{unique}")
    document = {
        "queues": [{"name": "dq", "vhost": "ignored", "durable": True, "auto_delete": False, "arguments": {"x-max-length": 3}}],
        "exchanges": [{"name": "dx", "type": "fanout", "durable": True, "auto_delete": False, "internal": False, "arguments": {}}],
        "bindings": [{"source": "dx", "destination": "dq", "destination_type": "queue", "routing_key": "", "arguments": {}}],
        "policies": [{"name": "dp", "pattern": "^dq$", "definition": {"message-ttl": 1000}, "priority": 0, "apply-to": "queues"}],
    }  # fmt: skip
    assert (await api.post(f"/definitions/{unique}", document)).status == 204
    exported = (await api.get(f"/definitions/{unique}")).body
    assert exported["queues"] == [{"name": "dq", "durable": True, "auto_delete": False, "arguments": {"x-max-length": 3},
                                   "type": "classic"}]  # fmt: skip
    assert [b["source"] for b in exported["bindings"]] == ["dx"] and "vhost" not in exported["bindings"][0]
    assert [p["name"] for p in exported["policies"]] == ["dp"]
    whole = await api.get("/definitions?download=all.json")
    assert whole.headers["Content-Disposition"] == "attachment; filename=all.json"
    assert {"name": "dq", "vhost": unique} in [{"name": q["name"], "vhost": q["vhost"]} for q in whole.body["queues"]]
    assert whole.body["rabbit_version"] == "3.10.8"
    assert any(u["name"] == "guest" for u in whole.body["users"])
    # Importing the whole document into a fresh broker state changes nothing that is there.
    assert (await api.post("/definitions", whole.body)).status == 204
    reply = await api.call("POST", "/definitions", raw="not json", headers={"Content-Type": "application/json"})
    assert (reply.status, reply.body["reason"]) == (400, "failed_to_parse_json")
    assert (await api.get(f"/definitions/{unique}-nope")).body == {"error": "bad_request", "reason": "vhost_not_found"}
    assert (await api.post(f"/definitions/{unique}-nope", {})).status == 404
    assert (await api.get("/definitions", user=None)).status == 401
    await api.delete(f"/vhosts/{unique}")


@pytest.mark.parametrize("name", ["renamed-cluster"])
async def test_cluster_name(api: Api, managed_broker: BrokerHandle, tagged: dict[str, tuple[str, str]], name: str) -> None:
    before = (await api.get("/cluster-name")).body["name"]
    reply = await api.put("/cluster-name", {"name": name}, user=tagged["monitoring"])
    assert (reply.status, reply.body["reason"]) == (401, "Not administrator user")
    assert (await api.put("/cluster-name", {})).body["reason"] == "[{key_missing,name}]"
    assert (await api.put("/cluster-name", {"name": name})).status == 204
    assert (await api.get("/cluster-name")).body == {"name": name}
    assert (await api.get("/overview")).body["cluster_name"] == name
    assert managed_broker.broker.cluster_name == name  # what connection.start tells new connections
    await api.put("/cluster-name", {"name": before})
