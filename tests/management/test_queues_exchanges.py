"""Queues and exchanges through the API: declare (201/204), RabbitMQ's 400/401/404 answers,
what pika declared showing up, publish and get with every ack mode, purge and delete. The
reasons are RabbitMQ 3.10.8's, recorded against it."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pika
from conftest import BrokerHandle, start_broker

from management.conftest import Api, q

PUBLISHED_PROPERTIES = {
    "delivery_mode": 2,
    "headers": {"a": 1, "b": "x", "c": [1, "y"], "d": {"e": True}},
    "timestamp": 1700000000,
    "content_type": "text/plain",
}


async def test_declare_queue_201_then_204_then_400(api: Api, unique: str) -> None:
    body = {"durable": True, "arguments": {"x-max-length": 5}}
    assert (await api.put(f"/queues/%2F/{unique}", body)).status == 201
    assert (await api.put(f"/queues/%2F/{unique}", body)).status == 204
    reply = await api.put(f"/queues/%2F/{unique}", {"durable": True, "arguments": {"x-max-length": 6}})
    assert reply.status == 400
    assert reply.body["reason"] == (
        f"inequivalent arg 'x-max-length' for queue '{unique}' in vhost '/': received '6' but current is '5'"
    )
    reply = await api.put(f"/queues/%2F/{unique}", {"durable": False})
    assert reply.body["reason"] == (
        f"inequivalent arg 'durable' for queue '{unique}' in vhost '/': received 'false' but current is 'true'"
    )
    queue = (await api.get(f"/queues/%2F/{unique}")).body
    assert (queue["name"], queue["vhost"], queue["durable"], queue["arguments"]) == (unique, "/", True, {"x-max-length": 5})
    assert (queue["type"], queue["state"], queue["messages"], queue["consumers"]) == ("classic", "running", 0, 0)
    assert (await api.delete(f"/queues/%2F/{unique}")).status == 204
    assert (await api.delete(f"/queues/%2F/{unique}")).status == 404


async def test_declare_queue_refusals(api: Api, unique: str) -> None:
    cases = [
        ("/queues/%2F/amq.reserved", {}, 401, {"error": "not_authorised", "reason": "Access refused."}),
        (f"/queues/%2F/{unique}", {"durable": "yes"}, 400, {"error": "bad_request", "reason": ["not_boolean", "yes"]}),
        (f"/queues/%2F/{unique}", {"arguments": {"x-max-length": "a"}}, 400,
         {"error": "bad_request",
          "reason": f"invalid arg 'x-max-length' for queue '{unique}' in vhost '/': \"expected integer, got longstr\""}),
        (f"/queues/no-such-vhost/{unique}", {}, 404, {"error": "not_found", "reason": "vhost_not_found"}),
        ("/queues/%2F/" + "x" * 300, {}, 400,
         {"error": "bad_request", "reason": "queue should be less than 255 bytes, actually was 300\n"}),
    ]  # fmt: skip
    for path, body, status, answer in cases:
        reply = await api.put(path, body)
        assert (reply.status, reply.body) == (status, answer), path


async def test_declare_exchange(api: Api, unique: str) -> None:
    assert (await api.put(f"/exchanges/%2F/{unique}", {"type": "topic", "durable": True})).status == 201
    assert (await api.put(f"/exchanges/%2F/{unique}", {"type": "topic", "durable": True})).status == 204
    reply = await api.put(f"/exchanges/%2F/{unique}", {"type": "direct", "durable": True})
    assert reply.body["reason"] == (
        f"inequivalent arg 'type' for exchange '{unique}' in vhost '/': received 'direct' but current is 'topic'"
    )
    reply = await api.put(f"/exchanges/%2F/{unique}-2", {"type": "nosuch"})
    assert (reply.status, reply.body["reason"]) == (400, "unknown exchange type 'nosuch'")
    for path in ("/exchanges/%2F/amq.reserved", "/exchanges/%2F/amq.default"):
        reply = await api.put(path, {"type": "direct"})
        assert (reply.status, reply.body["reason"]) == (401, "Access refused."), path
    assert (await api.delete("/exchanges/%2F/amq.direct")).status == 401
    exchange = (await api.get(f"/exchanges/%2F/{unique}")).body
    assert {k: exchange[k] for k in ("name", "vhost", "type", "durable", "auto_delete", "internal", "arguments")} == {
        "name": unique, "vhost": "/", "type": "topic", "durable": True, "auto_delete": False, "internal": False,
        "arguments": {},
    }  # fmt: skip
    default = (await api.get("/exchanges/%2F/amq.default")).body
    assert (default["name"], default["type"]) == ("", "direct")
    # Defaults as exchange.declare's: direct, not durable.
    assert (await api.put(f"/exchanges/%2F/{unique}-3")).status == 201
    made = (await api.get(f"/exchanges/%2F/{unique}-3")).body
    assert (made["type"], made["durable"]) == ("direct", False)
    for name in (unique, f"{unique}-3"):
        assert (await api.delete(f"/exchanges/%2F/{name}")).status == 204


async def test_objects_declared_by_pika_show_up(api: Api, managed_broker: BrokerHandle, unique: str) -> None:
    with managed_broker.connect() as connection:
        channel = connection.channel()
        channel.exchange_declare(unique, "fanout", durable=True)
        channel.queue_declare(unique, arguments={"x-message-ttl": 60000})
        channel.queue_bind(unique, unique)
        for _ in range(3):
            channel.basic_publish(unique, "", b"hello")
        channel.queue_declare(unique, passive=True)  # a round trip: the publishes are in
        queue = (await api.get(f"/queues/%2F/{unique}")).body
        assert (queue["messages"], queue["messages_ready"], queue["arguments"]) == (3, 3, {"x-message-ttl": 60000})
        assert queue["message_stats"]["publish"] == 3
        assert queue["message_bytes"] == 15
        names = [x["name"] for x in (await api.get("/exchanges/%2F")).body]
        assert unique in names
        bindings = (await api.get(f"/exchanges/%2F/{unique}/bindings/source")).body
        assert [(b["destination"], b["destination_type"]) for b in bindings] == [(unique, "queue")]
        channel.queue_delete(unique)
        channel.exchange_delete(unique)
    assert (await api.get(f"/queues/%2F/{unique}")).status == 404


async def test_delete_if_empty_and_if_unused(api: Api, unique: str) -> None:
    await api.put(f"/queues/%2F/{unique}")
    await api.post("/exchanges/%2F/amq.default/publish",
                   {"routing_key": unique, "payload": "x", "payload_encoding": "string", "properties": {}})  # fmt: skip
    reply = await api.delete(f"/queues/%2F/{unique}?if-empty=true")
    assert (reply.status, reply.body) == (400, {"error": "bad_request", "reason": f"queue '{unique}' in vhost '/' not empty"})
    await api.put(f"/exchanges/%2F/{unique}", {"type": "direct"})
    await api.post(f"/bindings/%2F/e/{unique}/q/{unique}", {"routing_key": "k"})
    reply = await api.delete(f"/exchanges/%2F/{unique}?if-unused=true")
    assert reply.body == {"error": "bad_request", "reason": f"exchange '{unique}' in vhost '/' in use"}
    assert (await api.delete(f"/queues/%2F/{unique}/contents")).status == 204
    assert (await api.get(f"/queues/%2F/{unique}")).body["messages"] == 0
    assert (await api.delete(f"/queues/%2F/{unique}?if-empty=true")).status == 204
    assert (await api.delete(f"/exchanges/%2F/{unique}?if-unused=true")).status == 204
    assert (await api.delete(f"/queues/%2F/{unique}/contents")).status == 404


async def test_publish_and_get(api: Api, unique: str) -> None:
    await api.put(f"/queues/%2F/{unique}")
    publish = "/exchanges/%2F/amq.default/publish"
    body = {"routing_key": unique, "payload": "hello", "payload_encoding": "string", "properties": PUBLISHED_PROPERTIES}
    assert (await api.post(publish, body)).body == {"routed": True}
    binary = {"routing_key": unique, "payload": "/w==", "payload_encoding": "base64", "properties": {}}
    assert (await api.post(publish, binary)).body == {"routed": True}
    nowhere = {"routing_key": f"{unique}-nowhere", "payload": "aGk=", "payload_encoding": "base64", "properties": {}}
    assert (await api.post(publish, nowhere)).body == {"routed": False}
    get = f"/queues/%2F/{unique}/get"
    reply = await api.post(get, {"count": 5, "ackmode": "ack_requeue_true", "encoding": "auto", "truncate": 3})
    assert reply.status == 200
    assert reply.body == [
        {"payload_bytes": 5, "redelivered": False, "exchange": "", "routing_key": unique, "message_count": 1,
         "properties": PUBLISHED_PROPERTIES, "payload": "hel", "payload_encoding": "string"},
        {"payload_bytes": 1, "redelivered": False, "exchange": "", "routing_key": unique, "message_count": 0,
         "properties": [], "payload": "/w==", "payload_encoding": "base64"},
    ]  # fmt: skip
    reply = await api.post(get, {"count": 1, "ackmode": "reject_requeue_true", "encoding": "base64"})
    assert [(m["redelivered"], m["payload"], m["payload_encoding"]) for m in reply.body] == [(True, "aGVsbG8=", "base64")]
    reply = await api.post(get, {"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"})
    assert [m["payload"] for m in reply.body] == ["hello"]
    reply = await api.post(get, {"count": 1, "ackmode": "reject_requeue_false", "encoding": "auto"})
    assert [m["payload"] for m in reply.body] == ["/w=="]
    assert (await api.post(get, {"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"})).body == []
    assert (await api.get(f"/queues/%2F/{unique}")).body["messages"] == 0
    await api.delete(f"/queues/%2F/{unique}")


async def test_publish_and_get_refusals(api: Api, unique: str) -> None:
    await api.put(f"/queues/%2F/{unique}")
    publish = "/exchanges/%2F/amq.default/publish"

    def message(**changes: object) -> dict[str, object]:
        return {"routing_key": unique, "payload": "x", "payload_encoding": "string", "properties": {}, **changes}

    cases = [
        (publish, message(payload_encoding="foo"), 400, ["unsupported_encoding", "foo"]),
        (publish, message(payload_encoding="base64"), 400, ["not_base64", "x"]),
        (publish, message(properties={"delivery_mode": "a"}), 400, ["not_int", "delivery_mode"]),
        (publish, message(properties={"expiration": "abc"}), 400,
         "406 PRECONDITION_FAILED - invalid expiration 'abc': no_integer"),
        (publish, message(properties={"user_id": "bob"}), 400,
         "406 PRECONDITION_FAILED - user_id property set to 'bob' but authenticated user was 'guest'"),
        (publish, message(payload=1), 400, "payload_not_string"),
        (publish, {"routing_key": unique, "payload": "x"}, 400, "[{key_missing,properties},{key_missing,payload_encoding}]"),
        ("/exchanges/%2F/amq.rabbitmq.trace/publish", message(), 400,
         "403 ACCESS_REFUSED - cannot publish to internal exchange 'amq.rabbitmq.trace' in vhost '/'"),
        (f"/exchanges/%2F/{unique}-nope/publish", message(), 400,
         f"404 NOT_FOUND - no exchange '{unique}-nope' in vhost '/'"),
    ]  # fmt: skip
    get = f"/queues/%2F/{unique}/get"
    cases += [
        (get, {"count": 5, "ackmode": "ack_requeue_true", "encoding": "x"}, 400,
         "Unsupported encoding. Please use auto or base64."),
        (get, {"count": "a", "ackmode": "ack_requeue_true", "encoding": "auto"}, 400, ["not_integer", "a"]),
        (get, {"ackmode": "ack_requeue_true", "encoding": "auto"}, 400, "[{key_missing,count}]"),
        (f"/queues/%2F/{unique}-nope/get", {"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"}, 404,
         f"NOT_FOUND - no queue '{unique}-nope' in vhost '/'"),
        ("/queues/no-such-vhost/x/get", {"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"}, 401,
         "Access refused."),
    ]  # fmt: skip
    for path, body, status, reason in cases:
        reply = await api.post(path, body)
        assert (reply.status, reply.body["reason"]) == (status, reason), (path, body)
    await api.delete(f"/queues/%2F/{unique}")


async def test_publish_refused_by_a_full_queue(api: Api, unique: str) -> None:
    await api.put(f"/queues/%2F/{unique}", {"arguments": {"x-max-length": 1, "x-overflow": "reject-publish"}})
    message = {"routing_key": unique, "payload": "x", "payload_encoding": "string", "properties": {}}
    assert (await api.post("/exchanges/%2F/amq.default/publish", message)).body == {"routed": True}
    reply = await api.post("/exchanges/%2F/amq.default/publish", message)
    assert (reply.status, reply.body["reason"]) == (400, "rejected Unable to publish message. Check queue limits.")
    await api.delete(f"/queues/%2F/{unique}")


async def test_exclusive_queue_belongs_to_its_connection(api: Api, managed_broker: BrokerHandle) -> None:
    with managed_broker.connect() as connection:
        name = connection.channel().queue_declare("", exclusive=True).method.queue
        queue = (await api.get(f"/queues/%2F/{q(name)}")).body
        assert queue["exclusive"] is True
        assert queue["owner_pid_details"]["name"].endswith(f"-> 127.0.0.1:{managed_broker.port}")
        reply = await api.post(f"/queues/%2F/{q(name)}/get", {"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"})
        assert reply.status == 400
        assert reply.body["reason"].startswith("405 RESOURCE_LOCKED - cannot obtain exclusive access to locked queue")
    assert (await api.get(f"/queues/%2F/{q(name)}")).status == 404


async def test_consumers_of_a_queue(api: Api, managed_broker: BrokerHandle, unique: str) -> None:
    with managed_broker.connect() as connection:
        channel = connection.channel()
        channel.queue_declare(unique)
        channel.basic_qos(prefetch_count=7)
        tag = channel.basic_consume(unique, lambda *args: None, exclusive=True, arguments={"x-priority": 3})
        queue = (await api.get(f"/queues/%2F/{unique}")).body
        assert queue["consumers"] == 1
        assert queue["exclusive_consumer_tag"] == tag
        [consumer] = queue["consumer_details"]
        assert {k: consumer[k] for k in ("consumer_tag", "exclusive", "ack_required", "prefetch_count", "arguments",
                                         "queue", "active", "activity_status")} == {
            "consumer_tag": tag, "exclusive": True, "ack_required": True, "prefetch_count": 7,
            "arguments": {"x-priority": 3}, "queue": {"name": unique, "vhost": "/"}, "active": True,
            "activity_status": "up",
        }  # fmt: skip
        assert consumer["channel_details"]["number"] == channel.channel_number
        channel.queue_delete(unique)


async def test_persistent_publish_waits_for_the_store(tmp_path: Path, unique: str) -> None:
    """A durable queue on a broker with a data directory: the publish answers once on disk."""
    handle = start_broker(management=True, management_port=0, data_dir=str(tmp_path))
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{handle.server.management_port}") as session:
            api = Api(session)
            assert (await api.put(f"/queues/%2F/{unique}", {"durable": True})).status == 201
            message = {"routing_key": unique, "payload": "kept", "payload_encoding": "string",
                       "properties": {"delivery_mode": 2}}  # fmt: skip
            assert (await api.post("/exchanges/%2F/amq.default/publish", message)).body == {"routed": True}
    finally:
        handle.stop()
    handle = start_broker(data_dir=str(tmp_path))
    try:
        with handle.connect() as connection:
            method, _properties, body = connection.channel().basic_get(unique, auto_ack=True)
            assert body == b"kept"
            assert isinstance(method, pika.spec.Basic.GetOk)
    finally:
        handle.stop()
