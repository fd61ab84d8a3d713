"""F1: SIGKILL a worker (its whole process group) in the middle of a step.

Every interrupted attempt must be re-run (a new attempt: new ledger start) once its lease runs
out, every execution must end Succeeded, and every state entry must be exited exactly once."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import datetime

import pytest

from . import flows
from .harness import wait_until

pytestmark = pytest.mark.integration

SYSTEM_OPTIONS = {"workers": 2, "concurrency": 2}
FLOW = "it_kill"
FUNCTION_TIMEOUT = 6  # the attempt's lease is this + FLOWSITE_LEASE_GRACE (2 s)
LEASE = FUNCTION_TIMEOUT + 2
SWEEP = 0.5
TASK_SECONDS = 4
N = 6


def _t(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_sigkill_worker_mid_step(system):
    system.create_function("it_slow", f"{flows.HANDLERS}.work", timeout_seconds=FUNCTION_TIMEOUT)
    system.create_flow(FLOW, flows.task_then_pass(FLOW, "it_slow", sleep=TASK_SECONDS))
    names = [f"kill{i}" for i in range(N)]
    for name in names:
        system.start(FLOW, name=name)

    # Pick worker A: one whose ledger shows at least one attempt started and not yet ended.
    def running_by_worker():
        starts, ends = {}, set()
        for row in system.ledger():
            key = (row["execution"], row["entry"], row["attempt"])
            if row["phase"] == "start":
                starts[key] = row["worker"]
            else:
                ends.add(key)
        by_worker = defaultdict(list)
        for key, worker in starts.items():
            if key not in ends:
                by_worker[worker].append(key)
        return dict(by_worker)

    running = wait_until(
        running_by_worker, 30, 0.05, "an attempt running on some worker", system.describe
    )
    tag = max(running, key=lambda w: len(running[w]))
    index = system.worker_names.index(tag)
    killed_at = time.time()
    system.kill_worker(index)
    ledger_at_kill = system.ledger()
    started_on_a = {
        (r["execution"], r["entry"], r["attempt"])
        for r in ledger_at_kill
        if r["phase"] == "start" and r["worker"] == tag
    }
    ended = {
        (r["execution"], r["entry"], r["attempt"]) for r in ledger_at_kill if r["phase"] == "end"
    }
    interrupted = started_on_a - ended
    assert interrupted, f"nothing was running on {tag} when it was killed: {ledger_at_kill}"

    system.start_worker(index)  # the replacement
    system.wait_worker_ready(index)

    # All end Succeeded: recovery needs the lease to run out (LEASE s), a sweep, and a re-run.
    statuses = system.wait_all_closed(FLOW, N, timeout=LEASE + TASK_SECONDS * N + 60)
    assert statuses == {"Succeeded": N}, statuses
    recovered_in = time.time() - killed_at

    ledger = system.ledger()
    for execution, entry, attempt in interrupted:
        again = [
            r
            for r in ledger
            if r["execution"] == execution and r["entry"] == entry and r["attempt"] > attempt
        ]
        assert any(r["phase"] == "start" for r in again), (
            f"attempt {attempt} of {execution} entry {entry} interrupted, never re-run: {ledger}"
        )
        assert any(r["phase"] == "end" and r["worker"] != tag for r in again), again

    for name in names:
        history = system.history(FLOW, name)
        entered = [e for e in history if e["type"] == "StepEntered"]
        for entry in entered:
            exits = [
                e
                for e in history
                if e["type"] in ("StepExited", "StepFailed")
                and e["schedule_event_id"] == entry["event_id"]
            ]
            assert len(exits) == 1 and exits[0]["type"] == "StepExited", (name, entry, exits)
        assert [e["type"] for e in history].count("TaskSucceeded") == 1, history
        # An interrupted attempt is reported lost (TaskFailed FnF.WorkerLost) within
        # lease + 2 x sweep of its start (plus slack for a loaded 2-core machine).
        lost = [e for e in history if e["type"] == "TaskFailed"]
        starts = [e for e in history if e["type"] == "TaskStarted"]
        if name in {k[0] for k in interrupted}:
            assert lost and lost[0]["detail"].get("error") == "FnF.WorkerLost", history
            delay = _t(lost[0]["time"]) - _t(starts[0]["time"])
            assert delay <= LEASE + 2 * SWEEP + 5, f"{name}: lost after {delay:.1f}s"
        assert len(starts) == len(lost) + 1, history

    print(
        f"\ninterrupted attempts: {len(interrupted)}; all {N} done {recovered_in:.1f}s after kill"
    )
    system.assert_invariants()
