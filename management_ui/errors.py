"""The error answers of RabbitMQ's HTTP API, as rabbit_mgmt_util:halt_response writes them:
a status and ``{"error": ..., "reason": ...}``.

A handler raises ``HttpError``; the dispatcher (``resource.dispatch``) turns it into the
response. AMQP errors raised by the declare/bind/delete rules are mapped as RabbitMQ's
``direct_request`` and ``with_channel`` map them (``from_amqp``).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from amqp_server.protocol.errors import ACCESS_REFUSED, NOT_FOUND, AMQPError

REALM = 'Basic realm="RabbitMQ Management"'


class HttpError(Exception):
    """An answer other than success; ``reason`` is a string or, for an Erlang tuple, a list."""

    def __init__(self, status: int, error: str, reason: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.error = error
        self.reason = reason
        self.headers = headers or {}

    def response(self) -> web.Response:
        if not self.error:  # cowboy's own answers (no credentials, 405) have no body
            return web.Response(status=self.status, headers=self.headers)
        body = json.dumps({"error": self.error, "reason": self.reason})
        return web.Response(status=self.status, text=body, content_type="application/json", headers=self.headers)


def bad_request(reason: Any, error: str = "bad_request") -> HttpError:
    return HttpError(400, error, reason)


def not_authorised(reason: str) -> HttpError:
    """401 for a user who logged in but may not do this (RabbitMQ's spelling, no realm)."""
    return HttpError(401, "not_authorised", reason)


def challenge() -> HttpError:
    """No (usable) credentials: the browser's login prompt, no body."""
    return HttpError(401, "", "", {"WWW-Authenticate": REALM})


def login_failed() -> HttpError:
    return HttpError(401, "not_authorized", "Login failed", {"WWW-Authenticate": REALM})


def not_found(reason: str = "Not Found", error: str = "Object Not Found") -> HttpError:
    """Without arguments: cowboy's answer when the resource does not exist; with a reason:
    rabbit_mgmt_util:not_found (``{"error": "not_found", ...}``)."""
    return HttpError(404, error, reason)


def missing_keys(keys: list[str]) -> HttpError:
    """rabbit_mgmt_util:decode's ``[{key_missing,K},...]``, printed with ~p."""
    return bad_request("[" + ",".join(f"{{key_missing,{key}}}" for key in keys) + "]")


def from_direct_request(error: AMQPError) -> HttpError:
    """A declare/delete/bind refused (rabbit_mgmt_util:direct_request): 403 becomes 401
    "Access refused.", 404 a not_found with the explanation, anything else a 400."""
    if error.code == ACCESS_REFUSED:
        return not_authorised("Access refused.")
    if error.code == NOT_FOUND:
        return not_found(error.explanation, "not_found")
    if getattr(error, "http_status", None) == 503:  # the cluster's metadata store has no quorum here
        return HttpError(503, "service_unavailable", error.explanation)
    return bad_request(error.explanation)


def from_channel(error: AMQPError, call: bool = True) -> HttpError:
    """The channel of rabbit_mgmt_util:with_channel closed under a call (basic.get): 404 and
    403 keep the reply text, anything else is ``"<code> <reply text>"``. A publish is a cast
    whose failure arrives later (``call=False``, rabbit_mgmt_wm_exchange_publish:bad): always
    the 400."""
    if call and error.code == NOT_FOUND:
        return not_found(error.reply_text, "not_found")
    if call and error.code == ACCESS_REFUSED:
        return not_authorised(error.reply_text)
    return bad_request(f"{error.code} {error.reply_text}")
