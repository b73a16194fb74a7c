"""Node names as rabbitmqctl completes and checks them."""

from __future__ import annotations

import pytest

from cluster.names import (
    INVALID_HOST,
    INVALID_PREFIX,
    NodeName,
    NodeNameError,
    long_names,
    own,
    parse,
    short_hostname,
)


def test_a_bare_name_gets_this_hosts_short_hostname() -> None:
    assert parse("rabbit") == NodeName("rabbit", short_hostname())
    assert "." not in short_hostname()
    assert str(parse("hare", hostname="box")) == "hare@box"


def test_an_empty_prefix_is_rabbit() -> None:
    assert parse("@box") == NodeName("rabbit", "box")


def test_a_dotted_host_needs_long_names() -> None:
    assert parse("rabbit@box.example.com", longnames=True) == NodeName("rabbit", "box.example.com")
    with pytest.raises(NodeNameError) as refused:
        parse("rabbit@box.example.com", command="join_cluster")
    assert str(refused.value) == (
        "Error: operation join_cluster failed due to invalid node name (node: rabbit@box.example.com, reason: short).\n"
        "If using FQDN node names, use the -l / --longnames argument"
    )


@pytest.mark.parametrize(("name", "text"), [("rab bit@box", INVALID_PREFIX), ("rabbit@b x", INVALID_HOST),
                                            ("r.a@box", INVALID_PREFIX)])  # fmt: skip
def test_invalid_names_have_rabbitmqctls_texts(name: str, text: str) -> None:
    with pytest.raises(NodeNameError) as refused:
        parse(name)
    assert str(refused.value) == text
    assert str(refused.value).startswith("Unsupported node name: ")


def test_this_nodes_name_is_completed_as_the_broker_does() -> None:
    assert own("rabbit") == NodeName("rabbit", "localhost")
    assert own("rabbit@box.example.com") == NodeName("rabbit", "box.example.com")


def test_long_names_from_the_environment() -> None:
    assert long_names({"RABBITMQ_USE_LONGNAME": "true"}) and not long_names({})
