"""Lists: pagination, sorting in Erlang's term order, the name filter, columns, and RabbitMQ's
400s for bad parameters (rabbit_mgmt_util, recorded against 3.10.8)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from management.conftest import Api
from management_ui.paging import extract, term_key


def test_erlang_term_order() -> None:
    values = ["b", [], {"a": 1}, True, None, 2.5, 1, [1], "a", False]
    ordered = sorted(values, key=term_key)
    assert ordered == [1, 2.5, False, None, True, {"a": 1}, [], [1], "a", "b"]


def test_columns() -> None:
    item = {"name": "q", "vhost": "/", "message_stats": {"publish": 1, "ack": 2}, "arguments": {"x": 1}}
    assert extract(item, [["name"], ["message_stats", "publish"]]) == {"name": "q", "message_stats": {"publish": 1}}
    assert extract([item], [["vhost"]]) == [{"vhost": "/"}]
    assert extract(item, None) is item


@pytest.fixture
async def queues(api: Api, unique: str) -> AsyncIterator[list[str]]:
    """Five queues ``<unique>-0`` .. ``-4``; queue i holds 4 - i messages."""
    names = [f"{unique}-{i}" for i in range(5)]
    for index, name in enumerate(names):
        await api.put(f"/queues/%2F/{name}", {"durable": index % 2 == 0})
        for _ in range(4 - index):
            await api.post("/exchanges/%2F/amq.default/publish",
                           {"routing_key": name, "payload": "x", "payload_encoding": "string", "properties": {}})  # fmt: skip
    yield names
    for name in names:
        await api.delete(f"/queues/%2F/{name}")


async def test_pages(api: Api, queues: list[str], unique: str) -> None:
    reply = await api.get(f"/queues/%2F?page=2&page_size=2&name={unique}")
    body = reply.body
    assert {k: body[k] for k in ("item_count", "filtered_count", "page", "page_size", "page_count")} == {
        "item_count": 2, "filtered_count": 5, "page": 2, "page_size": 2, "page_count": 3,
    }  # fmt: skip
    assert body["total_count"] >= 5
    assert [q["name"] for q in body["items"]] == queues[2:4]
    last = (await api.get(f"/queues/%2F?page=3&page_size=2&name={unique}")).body
    assert [q["name"] for q in last["items"]] == queues[4:]
    # page_size defaults to 100; a filter is case-insensitive, a regex too.
    body = (await api.get(f"/queues?page=1&name={unique.upper()}-[13]&use_regex=true")).body
    assert (body["page_size"], [q["name"] for q in body["items"]]) == (100, [queues[1], queues[3]])
    body = (await api.get(f"/queues?page=1&name={unique.upper()}-3")).body
    assert [q["name"] for q in body["items"]] == [queues[3]]


async def test_sort_and_reverse(api: Api, queues: list[str], unique: str) -> None:
    body = (await api.get(f"/queues/%2F?page=1&name={unique}&sort=messages")).body
    assert [q["name"] for q in body["items"]] == queues[::-1]
    body = (await api.get(f"/queues/%2F?page=1&name={unique}&sort=name&sort_reverse=true")).body
    assert [q["name"] for q in body["items"]] == queues[::-1]
    body = (await api.get(f"/queues/%2F?page=1&name={unique}&sort=durable")).body  # false < true, then by name
    assert [q["name"] for q in body["items"]] == [queues[1], queues[3], queues[0], queues[2], queues[4]]
    body = (await api.get(f"/queues/%2F?page=1&name={unique}&sort=message_stats.publish&sort_reverse=true")).body
    assert [q["name"] for q in body["items"]] == queues


async def test_columns_of_a_list(api: Api, queues: list[str], unique: str) -> None:
    body = (await api.get(f"/queues/%2F?page=1&name={unique}&columns=name,messages,message_stats.publish")).body
    assert body["items"][0] == {"name": queues[0], "messages": 4, "message_stats": {"publish": 4}}
    listed = (await api.get("/queues/%2F?columns=name,durable")).body
    assert {"name": queues[0], "durable": True} in listed
    assert (await api.get("/overview?columns=rabbitmq_version")).body == {"rabbitmq_version": "3.10.8"}
    users = (await api.get("/users?columns=name&sort=name&sort_reverse=true")).body
    assert users == sorted(users, key=lambda u: u["name"], reverse=True) and set(users[0]) == {"name"}


async def test_lists_that_do_not_paginate(api: Api, queues: list[str]) -> None:
    # As RabbitMQ: bindings and users are whole lists whatever ``page`` says.
    assert isinstance((await api.get("/bindings/%2F?page=1&page_size=1")).body, list)
    assert isinstance((await api.get("/users?page=1")).body, list)
    assert "items" in (await api.get("/exchanges?page=1&page_size=1")).body


@pytest.mark.parametrize(
    ("query", "error", "reason"),
    [
        ("page=a", "bad_request", "Pagination parameters are invalid"),
        ("page=1&name=(&use_regex=true", "bad_request", "Pagination parameters are invalid"),
        ("page=0", "invalid_pagination_parameters", "Invalid pagination parameters: page number 0, page size undefined"),
        ("page=1&page_size=501", "invalid_pagination_parameters",
         "Invalid pagination parameters: page number 1, page size 501"),
        ("lengths_age=6000&lengths_incr=1", "invalid_range_parameters", "Invalid range parameters: age 6000, incr 1"),
    ],
)  # fmt: skip
async def test_bad_parameters(api: Api, query: str, error: str, reason: str) -> None:
    reply = await api.get(f"/queues?{query}")
    assert (reply.status, reply.body) == (400, {"error": error, "reason": reason})


async def test_page_out_of_range(api: Api, queues: list[str], unique: str) -> None:
    reply = await api.get(f"/queues/%2F?page=4&page_size=2&name={unique}")
    assert (reply.status, reply.body) == (
        400, {"error": "page_out_of_range", "reason": "Page out of range, page: 4 page size: 2, len: 5"}
    )  # fmt: skip
    # A page just past the end is empty, not an error (lists:nthtail reaches the end exactly).
    reply = await api.get(f"/queues/%2F?page=2&page_size=5&name={unique}")
    assert (reply.status, reply.body["items"]) == (200, [])


async def test_sorted_pages_follow_queues_coming_and_going(api: Api, queues: list[str], unique: str) -> None:
    # The order by (vhost, name) is kept between requests until a queue comes or goes.
    path = f"/queues/%2F?page=1&name={unique}"
    assert [q["name"] for q in (await api.get(path)).body["items"]] == queues
    await api.delete(f"/queues/%2F/{queues[1]}")
    await api.put(f"/queues/%2F/{unique}-1a")
    assert [q["name"] for q in (await api.get(path)).body["items"]] == [queues[0], f"{unique}-1a", *queues[2:]]
    await api.delete(f"/queues/%2F/{unique}-1a")
    await api.put(f"/queues/%2F/{queues[1]}")
