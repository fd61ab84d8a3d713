"""F7: every message delivered twice. With FLOWSITE_FAULTS=duplicate_publish (web and workers)
each work item is published twice; afterwards every work item's message is delivered once more.
Each state must still be entered, run and exited exactly once."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from . import flows
from .harness import wait_until

pytestmark = pytest.mark.integration

# Every step through the broker (no eager follow-ups), so every step's message is duplicated.
SYSTEM_OPTIONS = {
    "workers": 2,
    "concurrency": 2,
    "faults": "duplicate_publish",
    "extra_env": {"FLOWSITE_EAGER_STEPS": "0"},
}
FLOW = "it_dup"
N = 20

RESULT = re.compile(r"Task executions\.run_work\[([\w-]+)\] succeeded in [\d.e-]+s: '([\w-]+)'")


def run_work_results(system) -> dict[str, str]:
    """{celery task id: what run_work returned} from every worker log."""
    results: dict[str, str] = {}
    for proc in system.procs:
        if proc.name.startswith("worker-"):
            results.update(RESULT.findall(proc.text()))
    return results


def test_duplicate_publish_and_redelivery_after_completion(system):
    system.create_function("it_dup_step", f"{flows.HANDLERS}.work", timeout_seconds=10)
    system.create_flow(FLOW, flows.three_tasks(FLOW, "it_dup_step"))
    names = [f"dup{i}" for i in range(N)]
    system.start_many(FLOW, names, threads=2)
    statuses = system.wait_all_closed(FLOW, N, timeout=120)
    assert statuses == {"Succeeded": N}, statuses

    # Each (execution, entry, attempt) ran for real exactly once; three entries per execution.
    ledger = system.ledger()
    starts = Counter(
        (r["execution"], r["entry"], r["attempt"]) for r in ledger if r["phase"] == "start"
    )
    assert all(n == 1 for n in starts.values()), [k for k, n in starts.items() if n > 1]
    per_execution = Counter(k[0] for k in starts)
    assert per_execution == dict.fromkeys(names, 3), per_execution

    events = system.event_types(FLOW)
    for name in names:
        assert events[name]["TaskSucceeded"] == 3, (name, events[name])
        assert events[name]["TaskScheduled"] == 3 and events[name]["TaskStarted"] == 3, events[name]
        assert events[name]["StepExited"] == 3 and events[name]["ExecutionSucceeded"] == 1

    # The fault was really on: the second copies found their work item taken.
    def copies_settled():
        outcomes = Counter(run_work_results(system).values())
        return outcomes if outcomes["done"] == 3 * N and sum(outcomes.values()) >= 6 * N else None

    outcomes = wait_until(
        copies_settled, 30, 0.3, "every duplicate copy to be consumed", system.describe
    )
    assert set(outcomes) <= {"done", "duplicate", "lost-race", "stale"}, outcomes

    # Re-deliver every work item's message after completion: nothing may change.
    work_ids = [row[0] for row in system.sql("SELECT id FROM executions_workitem ORDER BY id")]
    snapshot = (
        system.event_types(FLOW),
        system.sql("SELECT id, status, attempt FROM executions_workitem ORDER BY id"),
        len(ledger),
    )
    system.python(
        "from executions.tasks import run_work\n"
        f"for i in {work_ids!r}:\n"
        "    run_work.apply_async(args=[i], task_id=f'redeliver-{i}')\n"
    )
    wanted = {f"redeliver-{i}" for i in work_ids}

    def redelivered():
        results = run_work_results(system)
        return {k: results[k] for k in wanted} if wanted <= set(results) else None

    replies = wait_until(
        redelivered, 60, 0.3, f"{len(wanted)} re-delivered messages to run", system.describe
    )
    assert set(replies.values()) == {"duplicate"}, Counter(replies.values())
    after = (
        system.event_types(FLOW),
        system.sql("SELECT id, status, attempt FROM executions_workitem ORDER BY id"),
        len(system.ledger()),
    )
    assert after == snapshot
    print(
        f"\nrun_work outcomes under duplicate_publish: {dict(outcomes)}; "
        f"{len(work_ids)} re-deliveries after completion: all no-ops"
    )
    system.assert_invariants()
