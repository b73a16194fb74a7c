"""The backend chain (``auth_backends``) over the wire: logins and checks through
rabbit_auth_backend_http (a stub service written with aiohttp, on the broker's own event loop, so
that a broker blocking on it would hang; also over HTTPS, with ``auth_http.ssl_options.*``),
rabbit_auth_backend_cache in front of it, and
rabbit_auth_backend_oauth2 (JWTs signed here with RSA and EC keys); the chain falling through to
the internal users; RabbitMQ's refusal texts; token expiry and connection.update-secret; and
the HTTP API's login through the chain."""

from __future__ import annotations

import base64
import json
import logging
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aio_pika
import jwt
import pika
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pamqp import commands
from pika.exceptions import ProbableAccessDeniedError, ProbableAuthenticationError

from amqp_server.auth.config import CACHE, HTTP, INTERNAL, OAUTH2, AuthConfig
from amqp_server.config import apply_conf
from amqp_server.core.broker import BrokerConfig
from amqp_server.server import Server, StartError
from tests.conftest import BrokerHandle, free_port, start_broker
from tests.helpers import channel_error, closes, connect_named, server_connection
from tests.integration.rawamqp import RawClient
from tests.tls_certs import Authority

LOGIN_REFUSED = "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile."


# -- the stub HTTP auth service -------------------------------------------------------------------


class AuthService:
    """rabbit_auth_backend_http's counterpart: alice (password alice-pw, tags management and
    policymaker) may use vhost / and any resource not named forbidden-*; on topic exchanges, the
    routing keys her own name starts. Everyone else is denied. It records every request. With
    ``tls`` (a server context) it serves HTTPS."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, path, parameters)
        self.port = free_port()
        self.tls = tls

    def url(self, name: str) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/auth/{name}"

    def config(self, **overrides: Any) -> AuthConfig:
        paths = {f"http_{name}_path": self.url(name) for name in ("user", "vhost", "resource", "topic")}
        return AuthConfig(**(paths | overrides))

    def asked(self, path: str, **params: str) -> list[dict[str, str]]:
        """The requests to ``path`` whose parameters include ``params``."""
        return [p for _m, got, p in self.requests if got == path and params.items() <= p.items()]

    async def start(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_route("*", "/auth/{what}", self.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port, ssl_context=self.tls).start()
        return runner

    async def handle(self, request: web.Request) -> web.Response:
        params = dict(await request.post()) if request.method == "POST" else dict(request.query)
        what = request.match_info["what"]
        self.requests.append((request.method, what, {k: str(v) for k, v in params.items()}))
        return web.Response(text=self.answer(what, params))

    @staticmethod
    def answer(what: str, p: dict[str, Any]) -> str:
        if p.get("username") != "alice":
            return "deny"
        if what == "user":
            return "allow management policymaker" if p.get("password") == "alice-pw" else "deny"
        if what == "vhost":
            return "allow" if p["vhost"] == "/" else "deny"
        if what == "resource":
            return "deny" if p["name"].startswith("forbidden") else "allow"
        return "allow" if p["routing_key"].startswith(p["variable_map.username"] + ".") else "deny"


@pytest.fixture(scope="module")
def service() -> AuthService:
    return AuthService()


def _with_service(service: AuthService, **config: Any) -> Iterator[BrokerHandle]:
    handle = start_broker(**config)
    runner = handle.run(service.start())
    yield handle
    handle.run(runner.cleanup())
    handle.stop()


@pytest.fixture(scope="module")
def http_broker(service: AuthService) -> Iterator[BrokerHandle]:
    """auth_backends.1 = http, auth_backends.2 = internal, with the HTTP API."""
    auth = service.config(backends=[(HTTP, HTTP), (INTERNAL, INTERNAL)])
    yield from _with_service(service, auth=auth, management=True, management_port=0)


def alice(handle: BrokerHandle, **kw: Any) -> pika.BlockingConnection:
    return handle.connect(user="alice", password="alice-pw", **kw)


# -- the HTTP backend -----------------------------------------------------------------------------


def test_pika_login_and_checks_through_http(http_broker: BrokerHandle, service: AuthService) -> None:
    with alice(http_broker, client_properties={"connection_name": "alice-1"}) as connection:
        channel = connection.channel()
        channel.queue_declare("alice-q", exclusive=True)
        channel.basic_publish("", "alice-q", b"hello")
        assert channel.basic_get("alice-q", auto_ack=True)[2] == b"hello"
        assert server_connection(http_broker, "alice-1").username == "alice"
    assert service.asked("user", username="alice", password="alice-pw")
    assert service.asked("vhost", username="alice", vhost="/", ip="127.0.0.1", tags="management policymaker")
    for name, permission in (("alice-q", "configure"), ("amq.default", "write"), ("alice-q", "read")):
        assert service.asked("resource", username="alice", vhost="/", name=name, permission=permission)


def test_checks_are_asked_once_per_channel(http_broker: BrokerHandle, service: AuthService) -> None:
    with alice(http_broker) as connection:
        channel = connection.channel()
        before = len(service.asked("resource", name="amq.default"))
        for _ in range(20):
            channel.basic_publish("", "nowhere", b"x")
        channel.queue_declare("", exclusive=True)  # a round trip after the publishes
        assert len(service.asked("resource", name="amq.default")) == before + 1


async def test_aio_pika_login_through_http(http_broker: BrokerHandle) -> None:
    connection = await aio_pika.connect(f"amqp://alice:alice-pw@127.0.0.1:{http_broker.port}/")
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("", exclusive=True)
        await channel.default_exchange.publish(aio_pika.Message(b"aio"), routing_key=queue.name)
        message = await queue.get(timeout=5)
        assert message.body == b"aio"
        await message.ack()


def test_the_chain_falls_through_to_internal_users(http_broker: BrokerHandle, service: AuthService) -> None:
    with http_broker.connect() as connection:  # guest: denied by the service, known internally
        connection.channel().queue_declare("", exclusive=True)
    assert service.asked("user", username="guest", password="guest")
    with pytest.raises(ProbableAuthenticationError) as refused:
        http_broker.connect(user="alice", password="wrong")
    assert f"(403) '{LOGIN_REFUSED}'" in str(refused.value)


def test_http_refusals_with_rabbitmq_texts(http_broker: BrokerHandle) -> None:
    with alice(http_broker) as connection:
        code, text = channel_error(connection, lambda ch: ch.queue_declare("forbidden-q"))
        assert (code, text) == (
            403,
            "ACCESS_REFUSED - access to queue 'forbidden-q' in vhost '/' refused for user 'alice'",
        )
        channel = connection.channel()
        code, text = closes(channel, lambda: channel.basic_publish("forbidden-x", "k", b"x"))
        assert (code, text) == (
            403,
            "ACCESS_REFUSED - access to exchange 'forbidden-x' in vhost '/' refused for user 'alice'",
        )
    http_broker.run(http_broker.admin.add_vhost("alice-denied"))
    with pytest.raises(ProbableAccessDeniedError) as refused:
        alice(http_broker, vhost="alice-denied")
    assert "access to vhost 'alice-denied' refused for user 'alice'" in str(refused.value)


def test_topic_permissions_through_http(http_broker: BrokerHandle, service: AuthService) -> None:
    with alice(http_broker) as connection:
        channel = connection.channel()
        channel.exchange_declare("alice-topic", "topic", auto_delete=True)
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(queue, "alice-topic", "alice.#")
        channel.basic_publish("alice-topic", "alice.news", b"ok")
        assert channel.basic_get(queue, auto_ack=True)[2] == b"ok"
        code, text = closes(channel, lambda: channel.basic_publish("alice-topic", "bob.news", b"no"))
        assert (code, text) == (
            403,
            "ACCESS_REFUSED - access to topic 'bob.news' in exchange 'alice-topic' in vhost '/' refused for user 'alice'",
        )
        code, text = channel_error(connection, lambda ch: ch.queue_bind(queue, "alice-topic", "carol.*"))
        assert code == 403 and "access to topic 'carol.*'" in text
    asked = service.asked("topic", name="alice-topic", routing_key="alice.news", permission="write")
    assert asked == [{"username": "alice", "vhost": "/", "resource": "topic", "name": "alice-topic",
                      "permission": "write", "tags": "management policymaker", "routing_key": "alice.news",
                      "variable_map.username": "alice", "variable_map.vhost": "/"}]  # fmt: skip
    assert service.asked("topic", routing_key="alice.#", permission="read")


def test_http_api_login_through_the_chain(http_broker: BrokerHandle) -> None:
    def whoami(user: str, password: str) -> tuple[int, Any]:
        request = urllib.request.Request(f"http://127.0.0.1:{http_broker.server.management_port}/api/whoami")
        request.add_header(
            "Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    assert whoami("alice", "alice-pw") == (200, {"name": "alice", "tags": ["management", "policymaker"]})
    assert whoami("guest", "guest") == (200, {"name": "guest", "tags": ["administrator"]})
    assert whoami("alice", "wrong")[0] == 401


def test_post_and_the_cache_backend() -> None:
    """auth_backends.1 = cache with auth_cache.cached_backend = http, asked with POST: a second
    login, and a second channel's checks, are answered from the cache."""
    service = AuthService()
    auth = service.config(backends=[(CACHE, CACHE)], cache_backend=(HTTP, HTTP), http_method="post")
    for handle in _with_service(service, auth=auth):
        before = len(service.requests)
        for _ in range(2):
            with alice(handle) as connection:
                connection.channel().queue_declare("alice-cached", auto_delete=True)
        new = service.requests[before:]
        assert {method for method, _path, _params in new} == {"POST"}
        assert [path for _m, path, _p in new].count("user") == 2  # authn, then authz: once each
        assert [path for _m, path, _p in new].count("resource") == 1


# -- the HTTP backend over HTTPS (auth_http.ssl_options.*) ---------------------------------------


@pytest.fixture(scope="module")
def auth_ca(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    """A private CA: the system's CAs do not know it."""
    return Authority(tmp_path_factory.mktemp("auth-tls"), "auth-ca")


def https_service(ca: Authority, client_certificate: bool = False) -> AuthService:
    """The stub service over TLS, with a certificate for 127.0.0.1 from ``ca``; with
    ``client_certificate``, it takes only clients presenting one from ``ca``."""
    issued = ca.issue("auth-service", "localhost", server=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(issued.cert, issued.key)
    if client_certificate:
        context.load_verify_locations(ca.path)
        context.verify_mode = ssl.CERT_REQUIRED
    return AuthService(context)


def conf_auth(service: AuthService, text: str = "") -> AuthConfig:
    """The auth settings of a rabbitmq.conf saying ``auth_backends.1 = http``, the service's
    URLs and ``text``."""
    urls = "".join(
        f"auth_http.{name}_path = {service.url(name)}\n" for name in ("user", "vhost", "resource", "topic")
    )
    config = BrokerConfig()
    apply_conf(f"auth_backends.1 = http\n{urls}{text}", config)
    return config.auth


def refused_quickly(handle: BrokerHandle, caplog: pytest.LogCaptureFixture) -> list[str]:
    """alice's login refused at once; the HTTP backend's warnings."""
    started = time.monotonic()
    with (
        caplog.at_level(logging.WARNING, "amqp_server.auth.http"),
        pytest.raises(ProbableAuthenticationError) as refused,
    ):
        alice(handle, connection_attempts=1)
    assert time.monotonic() - started < 5
    assert f"(403) '{LOGIN_REFUSED}'" in str(refused.value)
    return [r.getMessage() for r in caplog.records if r.name == "amqp_server.auth.http"]


def test_https_service_trusted_with_cacertfile(auth_ca: Authority) -> None:
    service = https_service(auth_ca)
    auth = conf_auth(service, f"auth_http.ssl_options.cacertfile = {auth_ca.path}\n")
    for handle in _with_service(service, auth=auth):
        with alice(handle) as connection:
            connection.channel().queue_declare("alice-https", exclusive=True)
    assert service.asked("user", username="alice", password="alice-pw")
    assert service.asked("resource", name="alice-https", permission="configure")


def test_https_service_of_an_unknown_ca_refuses_logins(
    auth_ca: Authority, caplog: pytest.LogCaptureFixture
) -> None:
    """Without cacertfile the service's certificate is checked against the system's CAs: the
    request fails, the login is refused (as when the service is down), and the log says why."""
    service = https_service(auth_ca)
    for handle in _with_service(service, auth=conf_auth(service)):
        warnings = refused_quickly(handle, caplog)
    assert service.requests == []
    assert len(warnings) == 1
    assert warnings[0].startswith(
        f"HTTP auth service {service.url('user')}: TLS handshake failed: [SSL: CERTIFICATE_VERIFY_FAILED]"
    )
    assert warnings[0].endswith(
        "(checked against the system's CAs: auth_http.ssl_options.cacertfile is not set)"
    )


def test_https_service_requiring_a_client_certificate(
    auth_ca: Authority, caplog: pytest.LogCaptureFixture
) -> None:
    service = https_service(auth_ca, client_certificate=True)
    issued = auth_ca.issue("auth-client", "broker")
    trust = f"auth_http.ssl_options.cacertfile = {auth_ca.path}\n"
    present = (
        f"auth_http.ssl_options.certfile = {issued.cert}\nauth_http.ssl_options.keyfile = {issued.key}\n"
    )
    for handle in _with_service(service, auth=conf_auth(service, trust + present)):
        with alice(handle) as connection:
            connection.channel()
    assert service.asked("vhost", username="alice")
    before = len(service.requests)
    for handle in _with_service(service, auth=conf_auth(service, trust)):
        warnings = refused_quickly(handle, caplog)
    assert len(service.requests) == before
    assert len(warnings) == 1 and warnings[0].startswith(f"HTTP auth service {service.url('user')}: ")
    assert "certificate" in warnings[0].lower()  # (the hint, or OpenSSL's alert when it comes first)


def test_https_options_that_make_no_context_stop_the_start(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    for text, error in (
        (f"cacertfile = {missing}", f"auth_http.ssl_options.cacertfile: cannot load {missing}: "),
        (f"certfile = {missing}", f"auth_http.ssl_options: cannot read {missing}: No such file or directory"),
        (
            f"keyfile = {missing}",
            "auth_http.ssl_options.certfile is not set: keyfile is the key of a certificate",
        ),
    ):
        config = BrokerConfig(host="127.0.0.1", port=0)
        apply_conf(f"auth_backends.1 = http\nauth_http.ssl_options.{text}\n", config)
        with pytest.raises(StartError) as failed:
            Server(config)
        assert str(failed.value).startswith(error)


# -- OAuth 2.0 ------------------------------------------------------------------------------------


class Keys:
    """Signing keys and the files the broker reads them from."""

    def __init__(self, directory: Path) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.files = {}
        for kid, key in (("rsa-1", self.rsa), ("ec-1", self.ec)):
            path = directory / f"{kid}.pem"
            pem = key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            path.write_bytes(pem)
            self.files[kid] = str(path)
        (directory / "hmac-1.key").write_text("a-shared-secret-of-enough-length-for-hs256\n")
        self.files["hmac-1"] = str(directory / "hmac-1.key")

    def token(
        self, scope: list[str] | str, *, expires_in: float = 60, kid: str | None = "rsa-1", **claims: Any
    ) -> str:
        payload = {
            "sub": "svc-1",
            "aud": ["rabbitmq"],
            "scope": scope,
            "exp": int(time.time() + expires_in),
        } | claims
        headers = {} if kid is None else {"kid": kid}
        if kid == "ec-1":
            return jwt.encode(payload, self.ec, algorithm="ES256", headers=headers)
        if kid == "hmac-1":
            return jwt.encode(
                payload, b"a-shared-secret-of-enough-length-for-hs256", algorithm="HS256", headers=headers
            )
        return jwt.encode(payload, self.rsa, algorithm="RS256", headers=headers)


ALL = ["rabbitmq.configure:*/*", "rabbitmq.write:*/*", "rabbitmq.read:*/*", "rabbitmq.tag:management"]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return Keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def oauth_broker(keys: Keys) -> Iterator[BrokerHandle]:
    """auth_backends.1 = oauth2, auth_backends.2 = internal."""
    auth = AuthConfig(
        backends=[(OAUTH2, OAUTH2), (INTERNAL, INTERNAL)],
        oauth2_resource_server_id="rabbitmq",
        oauth2_signing_keys=keys.files,
        oauth2_default_key="rsa-1",
        oauth2_additional_scopes_key="extra",
    )
    handle = start_broker(auth=auth)
    yield handle
    handle.stop()


def test_jwt_login_with_pika(oauth_broker: BrokerHandle, keys: Keys) -> None:
    for kid in ("rsa-1", "ec-1", "hmac-1", None):  # None: the default key
        token = keys.token(ALL, kid=kid)
        with connect_named(oauth_broker, f"jwt-{kid}", user="ignored", password=token) as connection:
            channel = connection.channel()
            queue = channel.queue_declare("", exclusive=True).method.queue
            channel.basic_publish("", queue, b"token")
            assert channel.basic_get(queue, auto_ack=True)[2] == b"token"
            assert server_connection(oauth_broker, f"jwt-{kid}").username == "svc-1"  # the token's sub


def test_jwt_scopes_grant_exactly(oauth_broker: BrokerHandle, keys: Keys) -> None:
    token = keys.token(
        ["rabbitmq.configure:*/jwt-*", "rabbitmq.read:*/jwt-*", "other.write:*/*"], client_id="app"
    )
    with oauth_broker.connect(password=token) as connection:
        channel = connection.channel()
        channel.queue_declare("jwt-q", auto_delete=True)
        code, text = closes(channel, lambda: channel.basic_publish("", "jwt-q", b"x"))
        assert (code, text) == (
            403,
            "ACCESS_REFUSED - access to exchange 'amq.default' in vhost '/' refused for user 'app'",
        )
        code, text = channel_error(connection, lambda ch: ch.queue_declare("other-q"))
        assert (code, text) == (
            403,
            "ACCESS_REFUSED - access to queue 'other-q' in vhost '/' refused for user 'app'",
        )
    extra = keys.token([], extra={"rabbitmq": ["write:*/*", "configure:*/*"]})  # additional_scopes_key
    with oauth_broker.connect(password=extra) as connection:
        channel = connection.channel()
        channel.basic_publish("", "jwt-anywhere", b"x")
        channel.queue_declare("jwt-extra", auto_delete=True)


@pytest.mark.parametrize("case", ["expired", "bad signature", "wrong audience", "unknown key", "not a token"])
def test_jwt_refusals_fall_through_and_fail(oauth_broker: BrokerHandle, keys: Keys, case: str) -> None:
    token = {
        "expired": keys.token(ALL, expires_in=-10),
        "bad signature": keys.token(ALL)[:-4] + "AAAA",
        "wrong audience": keys.token(ALL, aud=["another"]),
        "unknown key": keys.token(ALL, kid="nope"),
        "not a token": "guest-but-not-guest",
    }[case]
    with pytest.raises(ProbableAuthenticationError) as refused:
        oauth_broker.connect(user="guest", password=token)
    assert f"(403) '{LOGIN_REFUSED}'" in str(refused.value)
    with oauth_broker.connect() as connection:  # guest/guest: refused by oauth2, internal logs in
        assert connection.is_open


def _raw_login(handle: BrokerHandle, token: str) -> RawClient:
    client = RawClient(handle.port)
    assert isinstance(client.handshake(user="", password=token), commands.Connection.OpenOk)
    return client


def test_connection_closed_when_its_token_expires(oauth_broker: BrokerHandle, keys: Keys) -> None:
    client = _raw_login(oauth_broker, keys.token(ALL, expires_in=1))
    close = client.expect_close(timeout=5)  # the token's exp is at most 1 s away
    assert (close.reply_code, close.reply_text) == (320, "CONNECTION_FORCED - credential expired")
    client.close()


def test_update_secret_refreshes_a_token(oauth_broker: BrokerHandle, keys: Keys) -> None:
    client = _raw_login(oauth_broker, keys.token(["rabbitmq.configure:*/jwt-*"]))
    assert isinstance(client.open_channel(1), commands.Channel.OpenOk)
    client.rpc(1, commands.Queue.Declare(queue="jwt-r1", auto_delete=True), commands.Queue.DeclareOk)
    client.rpc(0, commands.Connection.UpdateSecret(new_secret=keys.token(ALL), reason="refresh"),
               commands.Connection.UpdateSecretOk)  # fmt: skip
    # The new token's scopes apply at once, on the open channel too.
    client.rpc(1, commands.Queue.Declare(queue="other-r1", auto_delete=True), commands.Queue.DeclareOk)
    client.send(0, commands.Connection.UpdateSecret(new_secret="not-a-token", reason="refresh"))
    close = client.expect_close()
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        530, "NOT_ALLOWED - New secret was refused by one of the backends", 10, 70,
    )  # fmt: skip
    client.close()


def test_update_secret_with_an_expired_token_closes(oauth_broker: BrokerHandle, keys: Keys) -> None:
    client = _raw_login(oauth_broker, keys.token(ALL))
    client.rpc(0, commands.Connection.UpdateSecret(new_secret=keys.token(ALL, expires_in=-5), reason="late"),
               commands.Connection.UpdateSecretOk)  # fmt: skip
    close = client.expect_close()
    assert (close.reply_code, close.reply_text) == (320, "CONNECTION_FORCED - credential expired")
    client.close()


async def test_aio_pika_token_login_and_update_secret(oauth_broker: BrokerHandle, keys: Keys) -> None:
    url = f"amqp://svc:{keys.token(['rabbitmq.read:*/*'])}@127.0.0.1:{oauth_broker.port}/"
    connection = await aio_pika.connect(url)
    async with connection:
        await connection.update_secret(keys.token(ALL), reason="refresh")
        channel = await connection.channel()
        queue = await channel.declare_queue("", exclusive=True)  # configure: from the new token
        await channel.default_exchange.publish(aio_pika.Message(b"fresh"), routing_key=queue.name)
        message = await queue.get(timeout=5)
        assert message.body == b"fresh"
        await message.ack()


def test_internal_users_keep_update_secret_ok(broker: BrokerHandle) -> None:
    client = RawClient(broker.port)
    assert isinstance(client.handshake(), commands.Connection.OpenOk)
    client.rpc(
        0,
        commands.Connection.UpdateSecret(new_secret="anything", reason="r"),
        commands.Connection.UpdateSecretOk,
    )
    client.close()
