"""The short version of scripts/jepsen_queues.py: three nodes, two confirming publishers and a
consumer with manual acks on a quorum queue, and on a mirrored classic queue, while nodes are killed with SIGKILL and
restarted or cut off; no confirmed message may be lost and the final drain has each message once
(docs/clustering.md, "Replicated queues", has the long runs)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def load_script() -> object:
    sys.path.insert(0, str(SCRIPTS))  # its own import of broker_process
    try:
        spec = importlib.util.spec_from_file_location("jepsen_queues", SCRIPTS / "jepsen_queues.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["jepsen_queues"] = module  # (its dataclasses look themselves up there)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(SCRIPTS))


@pytest.mark.parametrize("queue_type", ["quorum", "mirrored"])
def test_no_confirmed_message_is_lost_while_nodes_are_killed(queue_type: str) -> None:
    jepsen = load_script()
    result = jepsen.run(seconds=12, seed=11, queue_type=queue_type)  # type: ignore[attr-defined]
    assert result["kills"] + result["partitions"] >= 3
    assert result["confirmed"] > 100
    assert result["lost_count"] == 0, result["lost"]
    assert result["final_drain_duplicates"] == 0
    assert result["final_drain_out_of_order"] == 0
