"""A worker killed with SIGKILL while it runs an attempt of a function whose timeout is an hour:
its liveness row goes stale and the sweeper reclaims the attempt in under 30 s (not after the
hour), on both backends, with the product's default liveness settings. The re-run gets the same
``idempotency_key`` as the lost attempt."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from . import flows
from .harness import wait_until

pytestmark = pytest.mark.integration

SYSTEM_OPTIONS = {"workers": 2, "concurrency": 1}
FLOW = "it_lost_fast"
RECLAIM_WITHIN = 30.0


def test_a_killed_workers_attempt_is_reclaimed_within_30_seconds(system):
    system.create_function("it_slow_first", f"{flows.HANDLERS}.slow_first", timeout_seconds=3600)
    system.create_flow(FLOW, flows.task_then_pass(FLOW, "it_slow_first", sleep=600))
    system.start(FLOW, name="lost1")

    def running():
        starts = [r for r in system.ledger() if r["phase"] == "start"]
        return starts[0] if starts else None

    first = wait_until(running, 30, 0.05, "the first attempt to start", system.describe)
    index = system.worker_names.index(first["worker"])
    killed_at = time.time()
    system.kill_worker(index)

    data = system.wait_done(FLOW, "lost1", timeout=90)
    assert data["status"] == "Succeeded", data
    history = system.history(FLOW, "lost1")
    lost = [e for e in history if e["type"] == "TaskFailed"]
    assert lost and lost[0]["detail"]["error"] == "FnF.WorkerLost", history
    reclaimed_at = datetime.fromisoformat(lost[0]["time"].replace("Z", "+00:00")).timestamp()
    took = reclaimed_at - killed_at
    print(f"\nattempt reclaimed {took:.1f}s after its worker was killed (timeout 3600 s)")
    assert took < RECLAIM_WITHIN, f"reclaimed {took:.1f}s after the kill"

    runs = [r for r in system.ledger() if r["phase"] == "start"]
    assert [r["attempt"] for r in runs] == [1, 2], runs
    assert runs[0]["idempotency_key"] and runs[0]["idempotency_key"] == runs[1]["idempotency_key"]
    system.assert_invariants()
