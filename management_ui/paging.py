"""Sorting, filtering, pagination and column selection of lists, as rabbit_mgmt_util does them.

Query parameters: ``sort`` (a dotted key, put in front of the list's default sort keys),
``sort_reverse=true``, ``columns=a,b.c`` (only those keys, nested keys dotted), and
``page`` (from 1), ``page_size`` (default 100, at most 500), ``name`` (a case-insensitive
substring, or with ``use_regex=true`` a case-insensitive regular expression) for the lists
that paginate. A paginated answer is ``{"total_count", "item_count", "filtered_count",
"page", "page_size", "page_count", "items"}``; ``name`` filters only paginated lists.

Values compare in Erlang's term order (numbers < atoms < maps < lists < strings), and a
missing key counts as 0, as in RabbitMQ.

The big lists (queues, exchanges, vhosts) go through ``augmented``: when the sort key and the
requested columns are among the cheap "basic" fields, the objects are sorted on those fields
alone and only the requested page is built in full (rabbit_mgmt_util:augment_resources). A
sort on fields an object keeps for life (a queue's vhost and name) is kept in an
``OrderCache`` until a queue comes or goes, so that a page of 10,000 queues costs the page.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from management_ui.errors import HttpError, bad_request

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500

Columns = list[list[str]]
#: A cheap field of an object, for sorting without building the whole item.
Getter = Callable[[Any], Any]


@dataclass(frozen=True)
class Pagination:
    page: int
    page_size: int
    name: str | None
    use_regex: bool


def pagination(query: Mapping[str, str]) -> Pagination | None:
    """rabbit_mgmt_util:pagination_params: None unless ``page`` is given."""
    try:
        page = _int_param(query, "page")
        page_size = _int_param(query, "page_size")
        name = query.get("name")
        use_regex = query.get("use_regex") == "true"
        if use_regex and name:
            re.compile(name)
    except (ValueError, re.error):
        raise bad_request("Pagination parameters are invalid") from None
    if page is None:
        return None
    if page > 0 and page_size is None:
        page_size = DEFAULT_PAGE_SIZE
    elif page <= 0 or page_size is None or not 0 < page_size <= MAX_PAGE_SIZE:
        raise bad_request(
            f"Invalid pagination parameters: page number {page}, page size {_erlang(page_size)}",
            "invalid_pagination_parameters",
        )
    return Pagination(page, page_size, name or None, use_regex)


def _int_param(query: Mapping[str, str], key: str) -> int | None:
    value = query.get(key)
    if value is None:
        return None
    # list_to_integer: an optional sign and digits, nothing else.
    if not re.fullmatch(r"[+-]?[0-9]+", value):
        raise ValueError(value)
    return int(value)


def _erlang(value: int | None) -> str:
    return "undefined" if value is None else str(value)


def columns(query: Mapping[str, str]) -> Columns | None:
    """``columns=a,b.c`` as [["a"], ["b", "c"]]; None for all columns."""
    value = query.get("columns")
    if value is None:
        return None
    return [[part for part in column.split(".") if part] for column in value.split(",") if column]


def sort_keys(query: Mapping[str, str], default: Sequence[str]) -> list[str] | None:
    """The sort keys: ``sort`` in front of the defaults; None when ``sort`` is given empty
    (RabbitMQ then leaves the list as it is)."""
    sort = query.get("sort")
    if sort is None:
        return list(default)
    if sort == "":
        return None
    return [sort, *default]


def extract(item: Any, cols: Columns | None) -> Any:
    """rabbit_mgmt_util:extract_column_items: keep the requested keys, descending into nested
    objects for dotted columns."""
    if cols is None:
        return item
    if isinstance(item, dict):
        return {key: extract(value, _descend(key, cols)) for key, value in item.items() if _wanted(key, cols)}
    if isinstance(item, list):
        return [extract(element, cols) for element in item]
    return item


def _wanted(key: str, cols: Columns) -> bool:
    return any(column and column[0] == key for column in cols)


def _descend(key: str, cols: Columns) -> Columns | None:
    nested: Columns = []
    for column in cols:
        if column == [key]:
            return None  # the whole value
        if column and column[0] == key:
            nested.append(column[1:])
    return nested


def term_key(value: Any) -> tuple[Any, ...]:
    """A key under which Python orders values as Erlang orders the terms RabbitMQ's items hold:
    number < atom (true, false, null) < map < [] < list < binary."""
    if value is None:
        return (1, "null")
    if value is True:
        return (1, "true")
    if value is False:
        return (1, "false")
    if isinstance(value, int | float):
        return (0, value)
    if isinstance(value, str):
        return (10, value)
    if isinstance(value, dict):
        return (7, len(value), sorted((term_key(k), term_key(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return (9, [term_key(element) for element in value]) if value else (8,)
    return (11, repr(value))


def dotted(item: Mapping[str, Any], key: str) -> Any:
    """rabbit_mgmt_util:get_dotted_value: a missing key is 0 (``[]`` on the way down)."""
    parts = [part for part in key.split(".") if part]
    value: Any = item
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        value = value.get(part, 0 if last else []) if isinstance(value, dict) else (0 if last else [])
    return value if parts else []


def order(elements: list[Any], getters: Sequence[Getter], reverse: bool) -> list[Any]:
    """``elements`` sorted on the values ``getters`` give, in Erlang's term order, then reversed
    when asked (RabbitMQ reverses the sorted list; ties stay in their sorted order). One stable
    sort per key, the last key first, and a column whose values are all strings, or all
    numbers, compared as such: sorting 10,000 queues by vhost and name allocates a few lists,
    not an object per queue (which would also wake the garbage collector)."""
    ordered = list(elements)
    for get in reversed(getters):
        column = _comparable([get(element) for element in ordered])
        indexes = sorted(range(len(ordered)), key=column.__getitem__)
        ordered = [ordered[index] for index in indexes]
    if reverse:
        ordered.reverse()
    return ordered


class OrderCache:
    """Sorted orders of a list of objects, kept until ``invalidate`` (subscribed to the events
    that add or remove such objects). Only orders on fields that never change for an object
    may be kept."""

    SIZE = 16  # orders kept at most (one per vhost scope and sort asked for)

    def __init__(self) -> None:
        self._orders: dict[Hashable, list[Any]] = {}

    def invalidate(self, *_event: Any) -> None:
        self._orders.clear()

    def get(self, key: Hashable, compute: Callable[[], list[Any]]) -> list[Any]:
        ordered = self._orders.get(key)
        if ordered is None:
            if len(self._orders) >= self.SIZE:
                self._orders.clear()
            ordered = self._orders[key] = compute()
        return ordered


def _comparable(values: list[Any]) -> list[Any]:
    kinds = set(map(type, values))
    if kinds == {str} or kinds <= {int, float}:
        return values
    return [term_key(value) for value in values]


def sort_items(items: list[dict[str, Any]], keys: list[str] | None, reverse: bool) -> list[dict[str, Any]]:
    if not keys or not items:
        return items
    return order(items, [lambda item, key=key: dotted(item, key) for key in keys], reverse)


def _matcher(page: Pagination) -> Callable[[Any], bool] | None:
    if not page.name:
        return None
    if page.use_regex:
        regex = re.compile(page.name, re.IGNORECASE)
        return lambda name: isinstance(name, str) and regex.search(name) is not None
    needle = page.name.lower()
    return lambda name: isinstance(name, str) and needle in name.lower()


def paginate(ordered: list[Any], page: Pagination, name_of: Getter) -> tuple[dict[str, Any], list[Any]]:
    """The paginated envelope (without ``items``) and the page's elements; ``ordered`` is the
    sorted list, ``name_of`` gives an element's name for the filter."""
    match = _matcher(page)
    filtered = ordered if match is None else [element for element in ordered if match(name_of(element))]
    offset = (page.page - 1) * page.page_size
    if offset > len(filtered):  # lists:nthtail fails: RabbitMQ says so rather than answering []
        raise HttpError(
            400,
            "page_out_of_range",
            f"Page out of range, page: {page.page} page size: {page.page_size}, len: {len(filtered)}",
        )
    chosen = filtered[offset : offset + page.page_size]
    envelope = {
        "total_count": len(ordered),
        "item_count": len(chosen),
        "filtered_count": len(filtered),
        "page": page.page,
        "page_size": page.page_size,
        "page_count": (len(filtered) + page.page_size - 1) // page.page_size,
    }
    return envelope, chosen


def reply_list(
    query: Mapping[str, str], items: list[dict[str, Any]], default_sort: Sequence[str], paginated: bool = False
) -> Any:
    """rabbit_mgmt_util:reply_list (``paginated``: reply_list_or_paginate): columns are cut
    first, then the list is sorted (and paged)."""
    page = pagination(query) if paginated else None
    cols = columns(query)
    items = [extract(item, cols) for item in items] if cols is not None else items
    ordered = sort_items(items, sort_keys(query, default_sort), query.get("sort_reverse") == "true")
    if page is None:
        return ordered
    envelope, chosen = paginate(ordered, page, lambda item: item.get("name"))
    envelope["items"] = chosen
    return envelope


def augmented(
    query: Mapping[str, str],
    objects: list[Any],
    default_sort: Sequence[str],
    basic: Mapping[str, Getter],
    full: Callable[[Any], dict[str, Any]],
    cached: tuple[OrderCache, Hashable, frozenset[str]] | None = None,
) -> Any:
    """rabbit_mgmt_util:augment_resources for a list of objects: ``basic`` maps the cheap
    fields to getters, ``full`` builds an object's whole item. Only what the sort, the filter
    and the requested columns need is computed. ``cached``: (the cache, what ``objects`` are
    (their scope), the fields of ``basic`` an object keeps for life)."""
    page = pagination(query)
    cols = columns(query)
    keys = sort_keys(query, default_sort)
    reverse = query.get("sort_reverse") == "true"
    sort_is_basic = keys is None or all(key in basic for key in keys)
    if not sort_is_basic:  # sorting on a statistic: every item in full (RabbitMQ's slow path too)
        items = sort_items([full(obj) for obj in objects], keys, reverse)
        if page is None:
            return [extract(item, cols) for item in items] if cols is not None else items
        envelope, chosen = paginate(items, page, lambda item: item.get("name"))
        envelope["items"] = [extract(item, cols) for item in chosen] if cols is not None else chosen
        return envelope
    if not keys or not objects:
        ordered = objects
    elif cached is not None and all(key in cached[2] for key in keys):
        cache, scope, _lifelong = cached
        ordered = cache.get((scope, tuple(keys), reverse), lambda: order(objects, [basic[key] for key in keys], reverse))
    else:
        ordered = order(objects, [basic[key] for key in keys], reverse)
    chosen = ordered
    envelope = None
    if page is not None:
        envelope, chosen = paginate(ordered, page, basic["name"])
    if cols is not None and all(column and column[0] in basic for column in cols):
        items = [{column[0]: basic[column[0]](obj) for column in cols} for obj in chosen]
    else:
        items = [full(obj) for obj in chosen]
    if cols is not None:
        items = [extract(item, cols) for item in items]
    if envelope is None:
        return items
    envelope["items"] = items
    return envelope
