"""F3: the broker loses every message (Redis SIGKILLed with no persistence and restarted empty;
the embedded broker's queue folder wiped). Recovery must come from the database alone: the
sweeper re-publishes unclaimed work, timers live in the database. Starts accepted while the
broker is down are recorded (201) and run once it is back."""

from __future__ import annotations

import re
import time

import pytest

from . import flows
from .harness import wait_until

pytestmark = pytest.mark.integration

SYSTEM_OPTIONS = {"workers": 2, "concurrency": 2}
FLOW = "it_broker"
N = 12


@pytest.fixture(scope="module")
def broker_flow(system):
    system.create_function("it_step", f"{flows.HANDLERS}.work", timeout_seconds=10)
    system.create_flow(FLOW, flows.task_wait_task(FLOW, "it_step", wait_seconds=2, sleep=0.6))
    return system


def open_timers(system) -> int:
    return system.scalar("SELECT COUNT(*) FROM executions_timer WHERE fired_at IS NULL")


def test_broker_restart_mid_run(broker_flow):
    system = broker_flow
    for i in range(N):
        system.start(FLOW, name=f"mid{i}")
    # Some executions parked between their steps (in the Wait), others still queued or running.
    wait_until(
        lambda: open_timers(system) >= 3,
        30,
        0.05,
        "≥3 executions parked in the Wait",
        system.describe,
    )
    before = system.statuses(FLOW)
    dropped = system.restart_broker()
    t0 = time.monotonic()
    statuses = system.wait_all_closed(FLOW, N, timeout=90)
    republished = sum(
        len(re.findall(r"re-publishing (\d+) unclaimed", p.text())) for p in system.workers if p
    )
    print(
        f"\nbroker restarted ({system.broker_kind}, dropped {dropped} message files) with "
        f"{dict(before)}; all done {time.monotonic() - t0:.1f}s later; "
        f"{republished} sweeps re-published work"
    )
    assert statuses == {"Succeeded": N}, statuses
    events = system.event_types(FLOW)
    for name in (f"mid{i}" for i in range(N)):
        types = events[name]
        assert types["TaskSucceeded"] == 2 and types["StepExited"] == 3, (name, types)
    system.assert_invariants()


def test_start_while_broker_down(broker_flow):
    system = broker_flow
    if system.broker_kind != "redis":
        pytest.skip("the embedded broker has no server to take down")
    system.stop_broker()
    try:
        timings = []
        for i in range(4):
            t = time.monotonic()
            data = system.start(FLOW, name=f"down{i}")  # asserts 201
            timings.append(time.monotonic() - t)
            assert data["status"] in ("Starting", "Running"), data
        # Recorded: each has its first task's work item pending in the database.
        pending = system.scalar(
            "SELECT COUNT(*) FROM executions_workitem w JOIN executions_execution e "
            "ON e.id = w.execution_id WHERE e.name LIKE %s AND w.status = 'pending'",
            ("down%",),
        )
        assert pending == 4, system.describe()
    finally:
        system.start_broker()
    t0 = time.monotonic()
    ends = [system.wait_done(FLOW, f"down{i}", timeout=90)["status"] for i in range(4)]
    print(
        f"\nstarts with the broker down took {[round(t, 2) for t in timings]}s; "
        f"done {time.monotonic() - t0:.1f}s after it came back"
    )
    assert ends == ["Succeeded"] * 4, ends
    # The publish after commit gives up fast (the sweeper re-sends): a start stays quick.
    assert max(timings) < 3, timings
    system.assert_invariants()
