"""The ``topic`` exchange type: a word trie, with RabbitMQ's matching rules.

Semantics follow rabbit_db_topic_exchange (split_topic_key, trie_match):

* keys are split on ``.`` and every piece is a word, empty ones included (``"a..b"`` is three
  words, ``"a."`` is ``a`` and an empty word), except that the empty key is *zero* words;
* in a binding key ``*`` matches exactly one word and ``#`` zero or more words;
* a ``*`` or ``#`` in a routing key is an ordinary word (it matches the same binding words a
  literal would, so it needs no case of its own).

Matching walks the trie once per routing key. RabbitMQ's walk re-explores a ``#`` node once per
way of reaching it, which is exponential for binding keys like ``#.a.#.a.#``; here each ``#`` node
remembers, for the current key only, the smallest position it was entered at, so every (node,
position) pair is explored at most once and the walk is O(trie nodes x words) at worst.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from amqp_server.plugin_api import Binding, Destination, ExchangeType, RoutableMessage

_NOTHING: tuple[Destination, ...] = ()
_NO_WORDS: tuple[str, ...] = ()


def split_topic_key(key: str) -> Sequence[str]:
    """RabbitMQ's split: ``""`` is no words at all, not one empty word."""
    return key.split(".") if key else _NO_WORDS


class _Node:
    __slots__ = ("children", "star", "hash", "counts", "out")

    def __init__(self) -> None:
        # Literal words only; the '*' and '#' edges have slots of their own so that the walk
        # reads an attribute instead of doing two more dict lookups per word.
        self.children: dict[str, _Node] = {}
        self.star: _Node | None = None
        self.hash: _Node | None = None
        # destination -> number of bindings ending here that lead to it
        self.counts: dict[Destination, int] = {}
        # the destinations of ``counts``, as route() returns them
        self.out: tuple[Destination, ...] = ()

    def child(self, word: str) -> _Node | None:
        if word == "*":
            return self.star
        if word == "#":
            return self.hash
        return self.children.get(word)

    def add_child(self, word: str) -> _Node:
        node = _Node()
        if word == "*":
            self.star = node
        elif word == "#":
            self.hash = node
        else:
            self.children[word] = node
        return node

    def remove_child(self, word: str) -> None:
        if word == "*":
            self.star = None
        elif word == "#":
            self.hash = None
        else:
            del self.children[word]

    def is_unused(self) -> bool:
        return not self.counts and not self.children and self.star is None and self.hash is None


# Stands in for the per-key scratch dict when the trie has no '#' edge: never written then.
_NO_MEMO: dict[_Node, int] = {}


def _match(
    node: _Node,
    words: Sequence[str],
    i: int,
    n: int,
    hits: list[_Node],
    memo: dict[_Node, int],
) -> None:
    """Append to ``hits`` the nodes with bindings that ``words[i:]`` reaches from ``node``."""
    while True:
        hash_node = node.hash
        if hash_node is not None:
            start = memo.get(hash_node, n + 1)
            if i < start:
                # Positions start..n were explored from this node already.
                memo[hash_node] = i
                for j in range(i, start):
                    _match(hash_node, words, j, n, hits, memo)
        if i == n:
            if node.out:
                hits.append(node)
            return
        star = node.star
        if star is not None:
            _match(star, words, i + 1, n, hits, memo)
        # A '*' or '#' word in the key finds no literal child: the wildcard edges above
        # already cover it.
        child = node.children.get(words[i])
        if child is None:
            return
        node = child
        i += 1


class TopicExchange(ExchangeType):
    """Routes on binding-key patterns with ``*`` (one word) and ``#`` (any number of words)."""

    name = "topic"
    description = "AMQP topic exchange, as per the AMQP specification"

    def __init__(self, exchange_name: str, arguments: Mapping[str, Any]) -> None:
        super().__init__(exchange_name, arguments)
        self._root = _Node()
        self._bindings: set[tuple[Any, ...]] = set()
        # Number of '#' edges in the trie: route() needs its per-key scratch dict only if > 0.
        self._hash_edges = 0

    def add_binding(self, binding: Binding) -> None:
        identity = binding.key
        if identity in self._bindings:
            return
        self._bindings.add(identity)
        node = self._root
        for word in split_topic_key(binding.routing_key):
            child = node.child(word)
            if child is None:
                child = node.add_child(word)
                if word == "#":
                    self._hash_edges += 1
            node = child
        dest = binding.destination
        previous = node.counts.get(dest, 0)
        node.counts[dest] = previous + 1
        if not previous:
            node.out = tuple(node.counts)

    def remove_bindings(self, bindings: Iterable[Binding]) -> None:
        for binding in bindings:
            identity = binding.key
            if identity not in self._bindings:
                continue
            self._bindings.discard(identity)
            path: list[tuple[_Node, str]] = []
            node = self._root
            for word in split_topic_key(binding.routing_key):
                path.append((node, word))
                child = node.child(word)
                if child is None:
                    raise RuntimeError(f"topic trie of {self.exchange_name!r} lost the path of {binding}")
                node = child
            dest = binding.destination
            left = node.counts[dest] - 1
            if left:
                node.counts[dest] = left
                continue
            del node.counts[dest]
            node.out = tuple(node.counts)
            # Prune the nodes left with neither bindings nor children, bottom up.
            while path and node.is_unused():
                parent, word = path.pop()
                parent.remove_child(word)
                if word == "#":
                    self._hash_edges -= 1
                node = parent

    @property
    def node_count(self) -> int:
        """Nodes in the binding-key trie, the root included (1 when there are no bindings).

        Read-only and not used by routing: it exists so that tests (and anyone inspecting an
        exchange) can check that removing bindings prunes the trie instead of leaking nodes,
        without reaching into the trie itself. O(nodes).
        """
        count = 0
        stack = [self._root]
        while stack:
            node = stack.pop()
            count += 1
            stack.extend(node.children.values())
            if node.star is not None:
                stack.append(node.star)
            if node.hash is not None:
                stack.append(node.hash)
        return count

    def route(self, message: RoutableMessage) -> Iterable[Destination]:
        root = self._root
        hits: list[_Node] = []
        memo: dict[_Node, int] = {} if self._hash_edges else _NO_MEMO
        for key in message.routing_keys:
            if memo:
                memo.clear()  # positions are per key
            words = split_topic_key(key)
            _match(root, words, 0, len(words), hits, memo)
        if not hits:
            return _NOTHING
        if len(hits) == 1:
            return hits[0].out
        # Several patterns (or CC keys) matched: each destination once.
        out: set[Destination] = set()
        for node in hits:
            out.update(node.out)
        return out

    def delete(self) -> None:
        self._root = _Node()
        self._bindings.clear()
        self._hash_edges = 0
