"""The HTTP layer as RabbitMQ 3.10's cowboy answers it: logins, the tags each resource asks
for, 405 with ``Allow``, OPTIONS, 404 bodies, and the answers of RabbitMQ recorded by hand."""

from __future__ import annotations

import pytest

from management.conftest import Api


async def test_no_credentials_is_a_challenge_without_body(api: Api) -> None:
    reply = await api.get("/overview", user=None)
    assert reply.status == 401
    assert reply.body is None
    assert reply.headers["WWW-Authenticate"] == 'Basic realm="RabbitMQ Management"'


async def test_wrong_password_and_unknown_user(api: Api) -> None:
    for user in (("guest", "nope"), ("nobody-at-all", "x")):
        reply = await api.get("/overview", user=user)
        assert reply.status == 401
        assert reply.body == {"error": "not_authorized", "reason": "Login failed"}


async def test_user_without_management_tag(api: Api, tagged: dict[str, tuple[str, str]]) -> None:
    reply = await api.get("/overview", user=tagged["none"])
    assert (reply.status, reply.body) == (401, {"error": "not_authorised", "reason": "Not management user"})


@pytest.mark.parametrize(
    ("path", "allowed", "refused", "reason"),
    [
        ("/users", ("administrator",), ("monitoring", "policymaker", "management"), "Not administrator user"),
        ("/nodes", ("administrator", "monitoring"), ("policymaker", "management"), "Not monitor user"),
        ("/definitions", ("administrator",), ("monitoring", "management"), "Not administrator user"),
        ("/global-parameters", ("administrator", "policymaker"), ("monitoring", "management"),
         "User not authorised to access object"),
        ("/overview", ("administrator", "monitoring", "policymaker", "management"), (), ""),
        ("/queues/%2F", ("administrator", "monitoring", "policymaker", "management"), (), ""),
    ],
)  # fmt: skip
async def test_tags_decide_access(
    api: Api, tagged: dict[str, tuple[str, str]], path: str, allowed: tuple[str, ...], refused: tuple[str, ...],
    reason: str,
) -> None:  # fmt: skip
    for tag in allowed:
        assert (await api.get(path, user=tagged[tag])).status == 200, tag
    for tag in refused:
        reply = await api.get(path, user=tagged[tag])
        assert (reply.status, reply.body) == (401, {"error": "not_authorised", "reason": reason}), tag


async def test_vhost_permissions_decide_access(api: Api, tagged: dict[str, tuple[str, str]], unique: str) -> None:
    assert (await api.put(f"/vhosts/{unique}")).status == 201
    reply = await api.get(f"/queues/{unique}", user=tagged["management"])
    assert reply.status == 401
    assert reply.body == {"error": "not_authorised", "reason": "User not authorised to access virtual host"}
    # A monitoring user sees every vhost in lists, but not into one without permissions.
    assert unique in [v["name"] for v in (await api.get("/vhosts", user=tagged["monitoring"])).body]
    assert unique not in [v["name"] for v in (await api.get("/vhosts", user=tagged["management"])).body]
    assert (await api.get(f"/queues/{unique}", user=tagged["monitoring"])).status == 401
    # A policymaker needs permissions on the vhost too.
    reply = await api.put(f"/policies/{unique}/p", {"pattern": ".", "definition": {"max-length": 1}},
                          user=tagged["policymaker"])  # fmt: skip
    assert (reply.status, reply.body["reason"]) == (401, "User not authorised to access object")
    assert (await api.delete(f"/vhosts/{unique}")).status == 204


async def test_method_not_allowed_lists_the_methods(api: Api) -> None:
    reply = await api.post("/overview")
    assert reply.status == 405
    assert reply.headers["Allow"] == "HEAD, GET, OPTIONS"
    assert reply.body is None
    reply = await api.call("PATCH", "/queues/%2F/x")
    assert (reply.status, reply.headers["Allow"]) == (405, "HEAD, GET, PUT, DELETE, OPTIONS")


async def test_options_needs_no_login(api: Api) -> None:
    reply = await api.call("OPTIONS", "/queues", user=None)
    assert (reply.status, reply.headers["Allow"]) == (200, "HEAD, GET, OPTIONS")


async def test_head_has_no_body(api: Api) -> None:
    reply = await api.call("HEAD", "/overview")
    assert reply.status == 200
    assert reply.body is None


async def test_unknown_paths_and_objects_are_404(api: Api) -> None:
    not_found = {"error": "Object Not Found", "reason": "Not Found"}
    for path in ("/nonexistent", "/queues/%2F/no-such-queue", "/queues/no-such-vhost", "/exchanges/%2F/nope"):
        reply = await api.get(path)
        assert (reply.status, reply.body) == (404, not_found), path


async def test_whoami_auth_and_extensions(api: Api, tagged: dict[str, tuple[str, str]]) -> None:
    assert (await api.get("/whoami")).body == {"name": "guest", "tags": ["administrator"]}
    name = tagged["monitoring"][0]
    assert (await api.get("/whoami", user=tagged["monitoring"])).body == {"name": name, "tags": ["monitoring"]}
    reply = await api.get("/auth", user=None)  # how to log in: open to anyone
    assert reply.body == {"enable_uaa": False, "uaa_client_id": "", "uaa_location": ""}
    assert (await api.get("/extensions")).body == []


async def test_bad_bodies(api: Api, unique: str) -> None:
    expected = {
        "not json": "not_json",
        "[1]": "not_json",
        '"doubly"': "invalid payload: the request body JSON-decoded to a string. Is the input doubly-JSON-encoded?",
    }
    for raw, reason in expected.items():
        reply = await api.call("PUT", f"/queues/%2F/{unique}", raw=raw, headers={"Content-Type": "application/json"})
        assert (reply.status, reply.body) == (400, {"error": "bad_request", "reason": reason}), raw
