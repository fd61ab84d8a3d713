"""A polling flow (Task submit -> Pass -> Wait 1 s -> Task status -> Choice loop) on real
processes: it ends Succeeded when the job finishes and Failed with ``超时`` when it never does."""

from __future__ import annotations

from collections import Counter

import pytest

from . import flows

pytestmark = pytest.mark.integration

FLOW = "it_polling"


@pytest.fixture(scope="module")
def polling(system):
    system.create_function("it_submit_job", f"{flows.HANDLERS}.submit_job", timeout_seconds=10)
    system.create_function("it_job_status", f"{flows.HANDLERS}.job_status", timeout_seconds=10)
    system.create_flow(FLOW, flows.polling(FLOW))
    return system


def steps(history: list[dict], type_: str) -> Counter:
    return Counter(e["step_name"] for e in history if e["type"] == type_)


def test_job_finishes_and_execution_succeeds(polling):
    system = polling
    started = system.start(FLOW, {"duration": 2.5}, name="finishes")
    assert started["status"] in ("Starting", "Running")
    done = system.wait_done(FLOW, "finishes", timeout=40)
    assert done["status"] == "Succeeded", done
    # The same answer with HTTP Basic instead of the token.
    basic = system.api("GET", f"flows/{FLOW}/executions/finishes/", expect=200, basic_auth=True)
    assert basic.json()["status"] == "Succeeded"
    assert done["output"]["state"] == "done"
    polls = done["output"]["polls"]
    assert 2 <= polls <= 4, done["output"]

    history = system.history(FLOW, "finishes", limit=7)  # small pages: exercise `next`
    assert [e["event_id"] for e in history] == list(range(1, len(history) + 1))
    entered = steps(history, "StepEntered")
    assert entered["Submit"] == 1 and entered["Prepare"] == 1
    # The loop: one Pause (Wait) and one Poll entry per poll, each closed once.
    assert entered["Pause"] == polls and entered["Poll"] == polls, entered
    assert steps(history, "StepExited")["Poll"] == polls
    assert steps(history, "TaskSucceeded")["Poll"] == polls
    assert history[-1]["type"] == "ExecutionSucceeded"
    assert system.assert_invariants()


def test_job_never_finishes_and_execution_fails_with_timeout_code(polling):
    system = polling
    system.start(FLOW, {"duration": None}, name="never")
    done = system.wait_done(FLOW, "never", timeout=40)
    assert done["status"] == "Failed", done
    assert done["error_code"] == "超时", done
    history = system.history(FLOW, "never")
    entered = steps(history, "StepEntered")
    assert entered["Poll"] == 4 and entered["Pause"] == 4, entered
    assert entered["GaveUp"] == 1 and "Finished" not in entered
    assert steps(history, "StepFailed")["GaveUp"] == 1
    last = history[-1]
    assert last["type"] == "ExecutionFailed"
    assert (
        sum(
            1
            for e in history
            if e["type"].startswith("Execution") and e["type"] != "ExecutionStarted"
        )
        == 1
    )
    assert system.assert_invariants()
