"""Bindings through the API: POST answers 201 with a Location ending in the properties_key,
GET and DELETE by it, the default exchange's implicit bindings, exchange-to-exchange bindings,
and the properties_key encoding (RabbitMQ's quoting; ``~`` and a hash for arguments)."""

from __future__ import annotations

from conftest import BrokerHandle

from management.conftest import Api
from management_ui.format import args_hash, binding_key, quote_plus


def test_properties_key_as_rabbitmq_writes_it() -> None:
    # Recorded against RabbitMQ 3.10.8.
    assert binding_key("", {}) == "~"
    assert binding_key("a.#", {}) == "a.%23"
    assert binding_key("a.#.#.*..", {}) == "a.%23.%23.%2A.."
    assert binding_key("k k~", {}) == "k+k%7E"
    assert binding_key("probe-q", {}) == "probe-q"
    assert quote_plus("é/ ~") == "%C3%A9%2F+~"
    hashed = binding_key("a.#", {"x": 1})
    assert hashed == "a.%23~" + args_hash({"x": 1})
    assert binding_key("", {"x": 1}).startswith("~") and args_hash({"x": 1}) != args_hash({"x": 2})


async def test_bind_get_delete_by_properties_key(api: Api, unique: str) -> None:
    await api.put(f"/exchanges/%2F/{unique}", {"type": "topic"})
    await api.put(f"/queues/%2F/{unique}")
    base = f"/bindings/%2F/e/{unique}/q/{unique}"
    reply = await api.post(base, {"routing_key": "a.#", "arguments": {}})
    assert (reply.status, reply.headers["Location"]) == (201, f"{unique}/a.%2523")
    reply = await api.post(base, {"routing_key": "a.#", "arguments": {}})  # binding again: the same
    assert reply.status == 201
    reply = await api.post(base, {"routing_key": "b", "arguments": {"x": 1}})
    key = "b~" + args_hash({"x": 1})
    assert reply.headers["Location"] == f"{unique}/{quote_plus(key)}"
    reply = await api.post(base, {})
    assert reply.headers["Location"] == f"{unique}/~"
    listed = (await api.get(base)).body
    assert [(b["routing_key"], b["properties_key"], b["arguments"]) for b in listed] == [
        ("", "~", {}), ("a.#", "a.%23", {}), ("b", key, {"x": 1}),
    ]  # fmt: skip
    # The key as listed, quoted once more by a client or not: both name the binding.
    for path in (f"{base}/a.%2523", f"{base}/a.%23", f"{base}/~", f"{base}/{quote_plus(key)}"):
        reply = await api.get(path)
        assert reply.status == 200, path
    one = (await api.get(f"{base}/a.%2523")).body
    assert one == {"source": unique, "vhost": "/", "destination": unique, "destination_type": "queue",
                   "routing_key": "a.#", "arguments": {}, "properties_key": "a.%23"}  # fmt: skip
    for path in (f"{base}/zzz", f"{base}/a.%23~nohash", f"{base}/a~b~c"):
        assert (await api.get(path)).status == 404, path
    assert (await api.delete(f"{base}/a.%2523")).status == 204
    assert (await api.delete(f"{base}/a.%2523")).status == 404
    assert (await api.delete(f"{base}/{quote_plus(key)}")).status == 204
    assert [b["properties_key"] for b in (await api.get(base)).body] == ["~"]
    await api.delete(f"/queues/%2F/{unique}")
    await api.delete(f"/exchanges/%2F/{unique}")


async def test_bind_refusals(api: Api, unique: str) -> None:
    await api.put(f"/queues/%2F/{unique}")
    reply = await api.post(f"/bindings/%2F/e/{unique}-nope/q/{unique}", {})
    assert (reply.status, reply.body) == (404, {"error": "not_found", "reason": f"no exchange '{unique}-nope' in vhost '/'"})
    reply = await api.post(f"/bindings/%2F/e/amq.direct/q/{unique}-nope", {})
    assert reply.body == {"error": "not_found", "reason": f"no queue '{unique}-nope' in vhost '/'"}
    reply = await api.post(f"/bindings/%2F/e/amq.default/q/{unique}", {"routing_key": "x"})
    assert (reply.status, reply.body["reason"]) == (401, "Access refused.")
    assert (await api.post(f"/bindings/%2F/e/amq.direct/x/{unique}", {})).status == 404  # neither e nor q
    await api.delete(f"/queues/%2F/{unique}")


async def test_default_exchange_bindings_are_listed(api: Api, unique: str) -> None:
    await api.put(f"/queues/%2F/{unique}")
    implicit = {"source": "", "vhost": "/", "destination": unique, "destination_type": "queue", "routing_key": unique,
                "arguments": {}, "properties_key": unique}  # fmt: skip
    assert (await api.get(f"/queues/%2F/{unique}/bindings")).body == [implicit]
    assert implicit in (await api.get("/bindings/%2F")).body
    assert implicit in (await api.get("/exchanges/%2F/amq.default/bindings/source")).body
    assert (await api.get(f"/bindings/%2F/e/amq.default/q/{unique}/{unique}")).body == implicit
    reply = await api.delete(f"/bindings/%2F/e/amq.default/q/{unique}/{unique}")
    assert (reply.status, reply.body["reason"]) == (401, "Access refused.")
    await api.delete(f"/queues/%2F/{unique}")


async def test_exchange_to_exchange_binding_routes(api: Api, managed_broker: BrokerHandle, unique: str) -> None:
    await api.put(f"/exchanges/%2F/{unique}-a", {"type": "fanout"})
    await api.put(f"/exchanges/%2F/{unique}-b", {"type": "direct"})
    await api.put(f"/queues/%2F/{unique}")
    assert (await api.post(f"/bindings/%2F/e/{unique}-a/e/{unique}-b", {"routing_key": "k k~"})).status == 201
    assert (await api.post(f"/bindings/%2F/e/{unique}-b/q/{unique}", {"routing_key": "k k~"})).status == 201
    destination = (await api.get(f"/exchanges/%2F/{unique}-b/bindings/destination")).body
    assert [(b["source"], b["properties_key"]) for b in destination] == [(f"{unique}-a", "k+k%7E")]
    assert (await api.get(f"/bindings/%2F/e/{unique}-a/e/{unique}-b/k+k%257E")).status == 200
    message = {"routing_key": "k k~", "payload": "via", "payload_encoding": "string", "properties": {}}
    assert (await api.post(f"/exchanges/%2F/{unique}-a/publish", message)).body == {"routed": True}
    with managed_broker.connect() as connection:
        assert connection.channel().basic_get(unique, auto_ack=True)[2] == b"via"
    assert (await api.delete(f"/bindings/%2F/e/{unique}-a/e/{unique}-b/k+k%257E")).status == 204
    assert (await api.post(f"/exchanges/%2F/{unique}-a/publish", message)).body == {"routed": False}
    for path in (f"/queues/%2F/{unique}", f"/exchanges/%2F/{unique}-a", f"/exchanges/%2F/{unique}-b"):
        await api.delete(path)
