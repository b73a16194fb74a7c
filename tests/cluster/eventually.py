"""Bounded waits for the cluster tests: a condition polled on the event loop until it holds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


async def eventually(
    condition: Callable[[], Any], limit: float = 10.0, message: str = "condition not reached"
) -> None:
    """Wait until ``condition()`` is true, failing with ``message`` after ``limit`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not condition():
        assert loop.time() < deadline, message
        await asyncio.sleep(0.02)
