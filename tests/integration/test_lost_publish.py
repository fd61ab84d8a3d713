"""A crash between commit and publish: with FLOWSITE_FAULTS=lose_publish no work item is ever
published right after its transaction commits (as if the process died at that moment). Only
the sweeper's re-publishing of recorded-but-unclaimed work can move the executions on."""

from __future__ import annotations

from collections import Counter

import pytest

from . import flows

pytestmark = pytest.mark.integration

# Every step through the broker (no eager follow-ups), so every step's publish is lost.
SYSTEM_OPTIONS = {
    "workers": 1,
    "concurrency": 2,
    "faults": "lose_publish",
    "extra_env": {"FLOWSITE_EAGER_STEPS": "0"},
}
FLOW = "it_lost_publish"
N = 5


def test_work_recorded_but_never_published_is_resent_by_the_sweeper(system):
    system.create_function("it_lp_step", f"{flows.HANDLERS}.work", timeout_seconds=10)
    system.create_flow(FLOW, flows.three_tasks(FLOW, "it_lp_step"))
    names = [f"lp{i}" for i in range(N)]
    for name in names:
        system.start(FLOW, name=name)
    # Three steps, each re-published by the sweeper after FLOWSITE_REDISPATCH_AFTER (3 s).
    statuses = system.wait_all_closed(FLOW, N, timeout=120)
    assert statuses == {"Succeeded": N}, statuses
    starts = Counter(
        (r["execution"], r["entry"], r["attempt"]) for r in system.ledger() if r["phase"] == "start"
    )
    assert len(starts) == 3 * N and set(starts.values()) == {1}, starts
    assert "fault lose_publish" in "".join(p.text() for p in system.procs)
    system.assert_invariants()
