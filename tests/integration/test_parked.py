"""F9/F10/I11: executions parked in a one-hour Wait hold no worker slot and no broker message
(no Celery ETA): the timer lives in the database. Unrelated work runs promptly meanwhile; moving
the timers' due time to the past (the database's clock) releases them all."""

from __future__ import annotations

import time

import pytest

from . import flows
from .harness import wait_until

pytestmark = pytest.mark.integration

SYSTEM_OPTIONS = {"workers": 2, "concurrency": 2}
PARKED = "it_parked"
SHORT = "it_short"
N = 200


def test_parked_executions_hold_no_worker(system):
    system.create_function("it_quick", f"{flows.HANDLERS}.work", timeout_seconds=10)
    system.create_flow(PARKED, flows.pass_wait_pass(PARKED, 3600))
    system.create_flow(SHORT, flows.task_then_pass(SHORT, "it_quick", sleep=0))

    t0 = time.monotonic()
    system.start_many(PARKED, [f"park{i}" for i in range(N)], threads=4)
    started_in = time.monotonic() - t0

    def all_parked():
        running = system.statuses(PARKED)["Running"]
        timers = system.scalar(
            "SELECT COUNT(*) FROM executions_timer t JOIN executions_execution e "
            "ON e.id = t.execution_id JOIN executions_flow f ON f.id = e.flow_id "
            "WHERE f.name = %s AND t.fired_at IS NULL",
            (PARKED,),
        )
        return (running, timers) if running == N and timers == N else None

    wait_until(all_parked, 60, 0.3, f"{N} executions Running with {N} open timers", system.describe)
    # Parked executions own no work item at all: nothing for a worker to hold.
    parked_work = system.sql(
        "SELECT w.id FROM executions_workitem w "
        "JOIN executions_execution e ON e.id = w.execution_id "
        "JOIN executions_flow f ON f.id = e.flow_id WHERE f.name = %s",
        (PARKED,),
    )
    assert parked_work == []

    seen = system.inspect()
    assert all(not tasks for tasks in seen["scheduled"].values()), seen["scheduled"]
    held = [
        task
        for method in ("active", "reserved")
        for tasks in seen[method].values()
        for task in tasks
        if task.get("name") == "executions.run_work"
    ]
    assert held == [], held

    # Unrelated short executions still run promptly: the worker slots are free.
    t1 = time.monotonic()
    shorts = [f"short{i}" for i in range(10)]
    for name in shorts:
        system.start(SHORT, name=name)
    statuses = system.wait_all_closed(SHORT, 10, timeout=30)
    short_seconds = time.monotonic() - t1
    assert statuses == {"Succeeded": 10}, statuses
    assert system.statuses(PARKED) == {"Running": N}

    # Release: every open timer due now (by the database's clock).
    system.sql(f"UPDATE executions_timer SET due_at = {system.ago_sql(1)} WHERE fired_at IS NULL")
    t2 = time.monotonic()
    statuses = system.wait_all_closed(PARKED, N, timeout=90)
    drained = time.monotonic() - t2
    assert statuses == {"Succeeded": N}, statuses
    assert system.scalar("SELECT COUNT(*) FROM executions_timer WHERE fired_at IS NULL") == 0
    events = system.event_types(PARKED)
    assert all(c["StepExited"] == 3 and c["ExecutionSucceeded"] == 1 for c in events.values())
    print(
        f"\n{N} starts in {started_in:.1f}s; 10 short executions in {short_seconds:.1f}s while "
        f"parked; {N} released and done in {drained:.1f}s"
    )
    system.assert_invariants()


SLOW = "it_busy"
TIMED = "it_timed"
BUSY_SECONDS = 8


def test_timers_fire_on_time_while_every_worker_slot_is_busy(system):
    system.create_function("it_busy_fn", f"{flows.HANDLERS}.work", timeout_seconds=30)
    system.create_flow(SLOW, flows.task_then_pass(SLOW, "it_busy_fn", sleep=BUSY_SECONDS))
    system.create_flow(TIMED, flows.pass_wait_pass(TIMED, 1))
    slots = system.n_workers * system.concurrency
    for i in range(slots):
        system.start(SLOW, name=f"busy{i}")

    def all_slots_busy():
        rows = system.ledger()
        started = {
            r["execution"]
            for r in rows
            if r["phase"] == "start" and r["execution"].startswith("busy")
        }
        ended = {
            r["execution"]
            for r in rows
            if r["phase"] == "end" and r["execution"].startswith("busy")
        }
        return len(started - ended) == slots

    wait_until(all_slots_busy, 30, 0.05, f"{slots} long tasks running", system.describe)
    t0 = time.monotonic()
    system.start(TIMED, name="timed")
    done = system.wait_done(TIMED, "timed", timeout=60)
    took = time.monotonic() - t0
    system.wait_all_closed(SLOW, slots, timeout=60)
    assert done["status"] == "Succeeded"
    # Wait 1 s + at most two sweep intervals + slack for a loaded machine.
    assert took <= 1 + 2 * 0.5 + 2.5, f"a 1 s Wait took {took:.1f}s while the workers were busy"
