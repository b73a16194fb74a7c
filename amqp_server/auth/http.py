"""rabbit_auth_backend_http: a web service answers every login and check.

Each question is one request to its URL (``auth_http.user_path``, ``vhost_path``,
``resource_path``, ``topic_path``), with RabbitMQ's parameters in the query string (GET) or as a
form (POST). A 200 or 201 whose body is ``allow`` grants (``allow TAG...`` gives a login its
tags), ``deny`` refuses; anything else, or no answer, is an error: the login is refused and the
check too. Answers are awaited (never on the publish path once a channel has them: the channel
keeps its granted checks); ``auth_backends.N = cache`` keeps them across channels and connections.

https URLs are asked with TLS as ``auth_http.ssl_options.*`` say (the service's certificate is
checked against ``cacertfile`` or the system's CAs; ``certfile`` is presented if set); the
context is made once, here, and a failed handshake is a failed request, logged with its reason.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

import aiohttp

from amqp_server.auth.backend import AuthUser, ConnectionInfo, LoginResult, Refusal
from amqp_server.auth.config import HTTP, AuthConfig
from amqp_server.tls import client_context, describe

log = logging.getLogger(__name__)

SUCCESSFUL_RESPONSE_CODES = (200, 201)
# Context entries may not replace these parameters (?RESOURCE_REQUEST_PARAMETERS).
FIXED_PARAMETERS = ("username", "vhost", "resource", "name", "permission")
#: Hints after a failed TLS handshake's reason in the log.
SYSTEM_CAS = " (checked against the system's CAs: auth_http.ssl_options.cacertfile is not set)"
NO_CLIENT_CERTIFICATE = "closed by the service over TLS: does it require a client certificate (certfile)?"


class HttpBackendError(Exception):
    """The service did not answer allow or deny (``logged``: the failure is in the log already)."""

    def __init__(self, message: str, logged: bool = False) -> None:
        super().__init__(message)
        self.logged = logged


class HttpBackend:
    name = HTTP

    def __init__(self, config: AuthConfig) -> None:
        """TlsError when ``auth_http.ssl_options`` make no TLS context (a file that does not load)."""
        self.config = config
        total = config.http_request_timeout
        connect = config.http_connection_timeout if config.http_connection_timeout is not None else total
        self.timeout = aiohttp.ClientTimeout(
            total=None if total is None else total / 1000, connect=None if connect is None else connect / 1000
        )
        options = config.http_ssl_options
        # The arguments of a request to an https URL: the context, and the name the service's
        # certificate must carry when it is not the URL's host.
        self.tls: dict[str, Any] = {"ssl": client_context(options, certificate=False)}
        if options.server_name_indication not in ("", "disable"):
            self.tls["server_hostname"] = options.server_name_indication

    async def authenticate(self, username: str, password: str | None, info: ConnectionInfo) -> LoginResult:
        params = {"username": username} | ({} if password is None else {"password": password})
        try:
            answer = await self._request(self.config.http_user_path, params)
        except HttpBackendError as exc:
            return Refusal(f"HTTP auth service error: {exc}")
        if answer == "deny":
            return Refusal("Denied by the backing HTTP service")
        if answer.startswith("allow"):
            return AuthUser(username, answer[len("allow") :].split())
        return Refusal(f"HTTP auth service error: bad_response {answer!r}")

    authorize = authenticate

    async def check_vhost(self, user: AuthUser, vhost: str, ip: str) -> bool:
        params = {"username": user.name, "vhost": vhost, "ip": ip, "tags": " ".join(user.tags)}
        return await self._allowed(self.config.http_vhost_path, params)

    async def check_resource(
        self, user: AuthUser, vhost: str, resource: str, name: str, permission: str
    ) -> bool:
        params = {"username": user.name, "vhost": vhost, "resource": resource, "name": name,
                  "permission": permission, "tags": " ".join(user.tags)}  # fmt: skip
        return await self._allowed(self.config.http_resource_path, params)

    async def check_topic(
        self,
        user: AuthUser,
        vhost: str,
        exchange: str,
        routing_key: str,
        permission: str,
        variables: dict[str, str],
    ) -> bool:
        params = {"username": user.name, "vhost": vhost, "resource": "topic", "name": exchange,
                  "permission": permission, "tags": " ".join(user.tags), "routing_key": routing_key}  # fmt: skip
        params |= {f"variable_map.{key}": value for key, value in variables.items()}
        return await self._allowed(self.config.http_topic_path, params)

    def expires_at(self, user: AuthUser) -> float | None:
        return None

    def update_secret(self, user: AuthUser, secret: str) -> None:
        return None  # state_can_expire() -> false

    async def _allowed(self, url: str, params: dict[str, str]) -> bool:
        try:
            answer = await self._request(url, params)
        except HttpBackendError as exc:
            if not exc.logged:
                log.error("%s: %s", url, exc)
            return False
        if answer not in ("allow", "deny"):
            log.error("%s: bad response %r", url, answer)
        return answer == "allow"

    async def _request(self, url: str, params: dict[str, str]) -> str:
        """The service's answer, stripped and in lower case as RabbitMQ reads it."""
        post = self.config.http_method == "post"
        https = url[:6].lower() == "https:"
        tls = self.tls if https else {}
        try:
            async with aiohttp.ClientSession(timeout=self.timeout) as session:
                request = (
                    session.post(url, data=params, **tls) if post else session.get(url, params=params, **tls)
                )
                async with request as response:
                    body = await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = self._tls_failure(exc) if https else None
            if reason is not None:  # the operator's to fix: said once, with the URL (never the query)
                log.warning("HTTP auth service %s: %s", url, reason)
                raise HttpBackendError(reason, logged=True) from None
            raise HttpBackendError(f"{type(exc).__name__}: {exc}") from None
        if response.status not in SUCCESSFUL_RESPONSE_CODES:
            raise HttpBackendError(f"{response.status} {body!r}")
        return body.strip().lower()

    def _tls_failure(self, exc: BaseException) -> str | None:
        """What failed in TLS with an https service, or None (not TLS: refused, timed out...)."""
        options = self.config.http_ssl_options
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            reason = describe(exc.certificate_error) + ("" if options.cacertfile else SYSTEM_CAS)
            return f"TLS handshake failed: {reason}"
        if isinstance(exc, aiohttp.ClientSSLError):
            return f"TLS handshake failed: {describe(exc.os_error)}"
        cause = next((e for e in (exc, exc.__cause__, exc.__context__) if isinstance(e, ssl.SSLError)), None)
        if cause is not None:  # an alert after the handshake (TLS 1.3: a certificate refused)
            return f"TLS failed: {describe(cause)}"
        if isinstance(exc, aiohttp.ServerDisconnectedError) and not options.certfile:
            return NO_CLIENT_CERTIFICATE  # (how a service that requires one refuses a client without)
        return None
