"""Federation upstreams: runtime parameters ``federation-upstream`` (one upstream) and
``federation-upstream-set`` (a list of upstreams with overrides), validated as
rabbit_federation_parameters does, and the upstreams a policy names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from amqp_server.plugin_api import NodeContext
from amqp_server.protocol.rabbit_text import erlang_json
from plugins.shovel import uri
from plugins.shovel.validation import MANDATORY, OPTIONAL, binary, boolean, enum, number, proplist

UPSTREAM, UPSTREAM_SET = "federation-upstream", "federation-upstream-set"

SHARED = [
    ("exchange", binary, OPTIONAL),
    ("queue", binary, OPTIONAL),
    ("consumer-tag", binary, OPTIONAL),
    ("prefetch-count", number, OPTIONAL),
    ("reconnect-delay", number, OPTIONAL),
    ("max-hops", number, OPTIONAL),
    ("expires", number, OPTIONAL),
    ("message-ttl", number, OPTIONAL),
    ("trust-user-id", boolean, OPTIONAL),
    ("ack-mode", enum("no-ack", "on-publish", "on-confirm"), OPTIONAL),
    ("resource-cleanup-mode", enum("default", "never"), OPTIONAL),
    ("ha-policy", binary, OPTIONAL),
    ("bind-nowait", boolean, OPTIONAL),
    ("channel-use-mode", enum("multiple", "single"), OPTIONAL),
]


def validate_upstream(_vhost: str, name: str, value: Any) -> list[str]:
    return proplist(name, [("uri", uri.validate, MANDATORY), *SHARED], value)


def validate_upstream_set(_vhost: str, name: str, value: Any) -> list[str]:
    members = value if isinstance(value, list) else [value]
    return [
        error
        for member in members
        for error in proplist(name, [("upstream", binary, MANDATORY), *SHARED], member)
    ]


def _policy_name(what: str) -> Any:
    def check(value: Any) -> str | None:
        return None if isinstance(value, str) else f"{erlang_json(value)} is not a valid federation {what}"

    return check


# Plugin.policy_keys: rabbit_federation_parameters' policy validation, key by key.
POLICY_KEYS = {UPSTREAM: _policy_name("upstream name"), UPSTREAM_SET: _policy_name("upstream set name")}


@dataclass(frozen=True)
class Upstream:
    """One upstream as a link uses it (the parameter's keys, with a set's overrides applied)."""

    name: str
    uris: tuple[uri.Endpoint, ...]
    exchange: str | None = None
    queue: str | None = None
    consumer_tag: str | None = None
    prefetch_count: int = 1000
    reconnect_delay: float = 5
    max_hops: int = 1
    expires: int | None = None
    message_ttl: int | None = None
    trust_user_id: bool = False
    ack_mode: str = "on-confirm"
    resource_cleanup_mode: str = "default"

    @classmethod
    def of(cls, name: str, value: dict[str, Any]) -> Upstream:
        get = value.get
        return cls(
            name=name,
            uris=tuple(uri.uris(value["uri"])),
            exchange=get("exchange"),
            queue=get("queue"),
            consumer_tag=get("consumer-tag"),
            prefetch_count=int(get("prefetch-count", 1000)),
            reconnect_delay=get("reconnect-delay", 5),
            max_hops=int(get("max-hops", 1)),
            expires=get("expires"),
            message_ttl=get("message-ttl"),
            trust_user_id=get("trust-user-id", False),
            ack_mode=get("ack-mode", "on-confirm"),
            resource_cleanup_mode=get("resource-cleanup-mode", "default"),
        )


def upstreams_for(node: NodeContext, vhost: str, policy: dict[str, Any]) -> list[Upstream]:
    """The upstreams a policy definition names: ``federation-upstream`` one by name,
    ``federation-upstream-set`` a set's members, or every upstream of the vhost for ``all``."""
    defined = {name: value for (host, name), value in node.parameters(UPSTREAM).items() if host == vhost}
    if UPSTREAM in policy:
        name = policy[UPSTREAM]
        return [Upstream.of(name, defined[name])] if name in defined else []
    set_name = policy.get(UPSTREAM_SET)
    if set_name is None:
        return []
    if set_name == "all":
        return [Upstream.of(name, value) for name, value in sorted(defined.items())]
    members = node.parameters(UPSTREAM_SET).get((vhost, set_name)) or []
    found = []
    for member in members:
        name = member.get("upstream")
        if name in defined:  # the set's keys override the upstream's
            found.append(
                Upstream.of(name, {**defined[name], **{k: v for k, v in member.items() if k != "upstream"}})
            )
    return found
