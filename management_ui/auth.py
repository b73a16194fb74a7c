"""Who may call what, as rabbit_mgmt_util decides it.

Every request logs in with HTTP basic auth through the backend chain (``auth_backends``: by
default the broker's users and the password hashes RabbitMQ uses), with the loopback rule of
AMQP logins. A user needs one of the management tags
(administrator, monitoring, policymaker, management); each resource then applies one
``Rule``, whose message is the 401 reason when it fails:

- ``ANY``: any management user;
- ``ADMIN``: administrator;
- ``MONITOR``: administrator or monitoring;
- ``VHOST``: administrator, or a user with permissions on the vhost named in the path (a
  path without a vhost, or naming one that does not exist, passes: the resource answers 404);
- ``VHOST_VISIBLE``: as ``VHOST``, where a monitoring user sees every vhost;
- ``POLICIES``: administrator, or policymaker with permissions on the vhost;
- ``GLOBAL_PARAMETERS``: policymaker (or administrator).

Connections and channels (``enforce_owner``) are a user's own, any for monitoring users; only an
administrator may close another user's connection. Lists are filtered to the vhosts a user
can log into (``visible_vhosts`` for administrators and monitoring users: all).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from amqp_server.auth.backend import ConnectionInfo, Refusal
from amqp_server.auth.chain import Login
from amqp_server.core.access import User
from amqp_server.transport.handshake import is_loopback
from management_ui.errors import challenge, login_failed, not_authorised

if TYPE_CHECKING:
    from amqp_server.core.broker import Broker
    from management_ui.resource import Context

MANAGEMENT_TAGS = frozenset(("administrator", "monitoring", "policymaker", "management"))


def is_admin(user: User) -> bool:
    return "administrator" in user.tags


def is_monitor(user: User) -> bool:
    return "administrator" in user.tags or "monitoring" in user.tags


def is_policymaker(user: User) -> bool:
    return "administrator" in user.tags or "policymaker" in user.tags


async def authenticate(request: web.Request, broker: Broker) -> User:
    """The user the request logs in as (rabbit_mgmt_util:is_authorized up to the tag check),
    through the backend chain (``auth_backends``) as AMQP logins."""
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        # No credentials: the browser's prompt, and no body (as cowboy answers).
        raise challenge()
    try:
        username, sep, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise challenge() from None
    if not sep:
        raise challenge()
    result = broker.auth.login(username, password, ConnectionInfo(request.remote or "", "HTTP"))
    if not isinstance(result, Login | Refusal):
        result = await result
    if isinstance(result, Refusal):
        raise login_failed()
    username = result.name
    # A user of another backend has the tags it gave (and no permissions of this node's).
    user = broker.users.get(username) if result.internal else None
    if user is None:
        user = User(username, "", list(result.tags))
    if username in broker.config.loopback_users and not is_loopback(request.remote or ""):
        raise not_authorised("User can only log in via localhost")
    if MANAGEMENT_TAGS.isdisjoint(user.tags):
        raise not_authorised("Not management user")
    return user


def login_vhosts(broker: Broker, user: User) -> list[str]:
    """The vhosts ``user`` may open a connection to (has permissions on), sorted."""
    permissions = broker.permissions
    return [name for name in sorted(broker.vhosts) if (user.name, name) in permissions]


def visible_vhosts(broker: Broker, user: User) -> list[str]:
    """rabbit_mgmt_util:list_visible_vhosts: monitoring users learn of every vhost."""
    return sorted(broker.vhosts) if is_monitor(user) else login_vhosts(broker, user)


def listed_vhosts(broker: Broker, user: User) -> list[str]:
    """rabbit_mgmt_util:filter_vhost: what a list of queues, exchanges, ... shows a user."""
    return sorted(broker.vhosts) if is_admin(user) else login_vhosts(broker, user)


def enforce_owner(ctx: Context, owner: str | None) -> None:
    """rabbit_mgmt_util:is_authorized_user: one's own connections and channels (``owner``,
    None when the object is not there); monitoring users see all; closing another user's
    takes an administrator."""
    user = ctx.user
    if owner is not None and user.name == owner:
        return
    if not (is_admin(user) if ctx.request.method == "DELETE" else is_monitor(user)):
        raise not_authorised("User not authorised to access object")


@dataclass(frozen=True)
class Rule:
    """A resource's authorisation: ``check`` passes or the answer is 401 ``message``."""

    message: str
    check: Callable[[Context], bool]

    def enforce(self, ctx: Context) -> None:
        if not self.check(ctx):
            raise not_authorised(self.message)


def _vhost_allowed(ctx: Context, visible: bool) -> bool:
    vhost = ctx.vhost
    if vhost is None:  # none named, or not there: the resource says 404
        return True
    names = visible_vhosts(ctx.broker, ctx.user) if visible else login_vhosts(ctx.broker, ctx.user)
    return vhost in names


ANY = Rule("", lambda ctx: True)
ADMIN = Rule("Not administrator user", lambda ctx: is_admin(ctx.user))
MONITOR = Rule("Not monitor user", lambda ctx: is_monitor(ctx.user))
VHOST = Rule(
    "User not authorised to access virtual host", lambda ctx: is_admin(ctx.user) or _vhost_allowed(ctx, False)
)
VHOST_VISIBLE = Rule(
    "User not authorised to access virtual host", lambda ctx: is_admin(ctx.user) or _vhost_allowed(ctx, True)
)
POLICIES = Rule(
    "User not authorised to access object",
    lambda ctx: is_admin(ctx.user) or (is_policymaker(ctx.user) and _vhost_allowed(ctx, False)),
)
GLOBAL_PARAMETERS = Rule("User not authorised to access object", lambda ctx: is_policymaker(ctx.user))
