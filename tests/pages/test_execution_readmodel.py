"""The execution page's read model (``executions/detail.py``): a row per state visit and per
state, written by the transition that changes them. Executions are driven in-process (work
items run here, timers fired early), as ``tests/test_demo.py`` does.

Also the helpers the other ``test_execution_*`` modules share (flows, clients, driving)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from executions import detail, services
from executions.engine import machine
from executions.engine.compiler import compile_definition
from executions.models import (
    Execution,
    Flow,
    StepStatus,
    StepSummary,
    StepVisit,
    TaskToken,
    Timer,
    WorkItem,
    WorkStatus,
)
from executions.runtime import sweeper, worker
from flowsite.access import SYSTEM
from tests.engine.sim import Sim
from tests.factories import FAIL_FLOW, PASS_FLOW, WAIT_FLOW, FunctionFactory, UserFactory

pytestmark = pytest.mark.django_db

DEMO = Path(__file__).resolve().parents[2] / "demo"

PLAIN_STATIC = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# A function step that always fails, retried twice (after 100 s: the timer is fired early
# here), then caught.
RETRY_CATCH_FLOW = """\
Type: StateMachine
Name: retry
SpecVersion: v1
StartAt: Flaky
States:
  - Type: Task
    Name: Flaky
    Action: FC:InvokeFunction
    Parameters:
      resourceArn: acs:fc:::functions/boom/LATEST
    Retry:
      - Errors: [FnF.ALL]
        MaxAttempts: 2
        IntervalSeconds: 100
    Catch:
      - Errors: [FnF.ALL]
        Next: Recover
    Next: Done
  - Type: Pass
    Name: Recover
    Next: Done
  - Type: Succeed
    Name: Done
"""

# One function step (for running / pending attempts).
TASK_FLOW = """\
Type: StateMachine
Name: task
SpecVersion: v1
StartAt: Call
States:
  - Type: Task
    Name: Call
    Action: FC:InvokeFunction
    Parameters:
      resourceArn: acs:fc:::functions/echo/LATEST
    End: true
"""

# A Parallel whose one branch fails while the other waits: the waiting one is cancelled.
PARALLEL_FAIL_FLOW = """\
Type: StateMachine
Name: par
SpecVersion: v1
StartAt: Both
States:
  - Type: Parallel
    Name: Both
    Branches:
      - StartAt: Slow
        States:
          - Type: Wait
            Name: Slow
            Seconds: 3600
            End: true
      - StartAt: Broken
        States:
          - Type: Task
            Name: Broken
            Action: FC:InvokeFunction
            Parameters:
              resourceArn: acs:fc:::functions/boom/LATEST
            End: true
    End: true
"""

# A Pass/Choice loop that never ends by itself: it fails when its history reaches the limit.
LOOP_FLOW = """\
Type: StateMachine
Name: loop
SpecVersion: v1
StartAt: Step
States:
  - Type: Pass
    Name: Step
    Next: Again
  - Type: Choice
    Name: Again
    Branches:
      - Condition: $Input.stop == true
        Next: Done
    Default: Step
  - Type: Succeed
    Name: Done
"""

# State names, codes and details a hostile flow author may write.
HOSTILE_FLOW = """\
Type: StateMachine
Name: hostile
SpecVersion: v1
StartAt: "<script>alert(1)</script>"
States:
  - Type: Pass
    Name: "<script>alert(1)</script>"
    Next: "\\" onmouseover=\\"alert(2)\\" {}|<>&amp; \\\\back\\\\n"
  - Type: Pass
    Name: "\\" onmouseover=\\"alert(2)\\" {}|<>&amp; \\\\back\\\\n"
    Next: "<div hx-get=\\"/api/v1/flows/\\" hx-trigger=\\"load\\">x</div>"
  - Type: Choice
    Name: "<div hx-get=\\"/api/v1/flows/\\" hx-trigger=\\"load\\">x</div>"
    Branches:
      - Condition: $Input.x == "</text><script>alert(3)</script>"
        Next: "javascript:alert(4)"
    Default: "超时 ✓ ünïcödé ]]> <!--"
  - Type: Fail
    Name: "javascript:alert(4)"
    Code: "<b>bold</b>"
    Detail: "<img src=x onerror=alert(5)>"
  - Type: Pass
    Name: "超时 ✓ ünïcödé ]]> <!--"
    End: true
"""
HOSTILE_NAMES = (
    "<script>alert(1)</script>",
    '" onmouseover="alert(2)" {}|<>&amp; \\back\\n',
    '<div hx-get="/api/v1/flows/" hx-trigger="load">x</div>',
    "javascript:alert(4)",
    "超时 ✓ ünïcödé ]]> <!--",
)
HOSTILE_INPUT = {
    "x": "</text><script>alert(3)</script>",
    "html": '"><img src=x onerror=alert(6)>',
    "hx": '<div hx-get="/api/v1/flows/" hx-trigger="load">y</div>',
    "url": "javascript:alert(7)",
    "sep": "\u2028<svg onload=alert(8)>",
}


def load_demo() -> None:
    call_command("flowsite_demo", "--quiet", stdout=io.StringIO(), stderr=io.StringIO())


def add_functions() -> None:
    FunctionFactory(name="boom", handler="rthandlers.boom")
    FunctionFactory(name="echo", handler="rthandlers.echo")


@pytest.fixture
def demo(db):
    load_demo()


@pytest.fixture
def functions(db):
    add_functions()


def make_flow(name: str, definition: str) -> Flow:
    return services.flow_create(name=name, definition=definition, actor=SYSTEM)


def start(flow: str, input: dict | None = None, name: str | None = None) -> Execution:
    execution, created = services.execution_start(
        flow=Flow.objects.get(name=flow), name=name, input=input or {}, actor=SYSTEM
    )
    assert created
    return execution


def run_pending(execution: Execution) -> int:
    ran = 0
    for pk in WorkItem.objects.filter(execution=execution, status=WorkStatus.PENDING).values_list(
        "pk", flat=True
    ):
        worker.run_work_item(pk)
        ran += 1
    return ran


def fire_next_timer(execution: Execution) -> bool:
    timer = (
        Timer.objects.filter(execution=execution, fired_at__isnull=True).order_by("due_at").first()
    )
    if timer is None:
        return False
    Timer.objects.filter(pk=timer.pk).update(due_at=timezone.now() - timedelta(seconds=1))
    sweeper.fire_due_timers(batch=10)
    return True


def drive(execution: Execution, *, report=None, rounds: int = 200) -> Execution:
    """Run the execution to its end here: pending work, then ``report`` (may answer a waiting
    task), then the earliest timer, brought forward to now."""
    for _ in range(rounds):
        execution.refresh_from_db()
        if not execution.is_open:
            return execution
        if run_pending(execution):
            continue
        if report is not None and report(execution):
            continue
        if not fire_next_timer(execution):
            break
    execution.refresh_from_db()
    return execution


def client_for(*roles: str) -> Client:
    client = Client()
    user = UserFactory(roles=list(roles))
    client.force_login(user)
    client.user = user
    return client


def snapshot(execution: Execution) -> tuple[list, list]:
    visits = list(
        StepVisit.objects.filter(execution=execution)
        .order_by("entry_id")
        .values(
            "entry_id",
            "node",
            "state_name",
            "where",
            "status",
            "attempts",
            "retries",
            "error",
            "exit_event_id",
            "entered_at",
            "exited_at",
            "tries",
        )  # fmt: skip
    )
    summaries = list(
        StepSummary.objects.filter(execution=execution)
        .order_by("node")
        .values(
            "node",
            "visits",
            *StepStatus.values,
            "last_status",
            "last_entry_id",
            "last_entered_at",
            "last_exited_at",
        )  # fmt: skip
    )
    return visits, summaries


def statuses_by_name(execution: Execution) -> dict[str, str]:
    names = dict(StepVisit.objects.filter(execution=execution).values_list("node", "state_name"))
    return {names[k]: s.status for k, s in detail.step_statuses(execution).items()}


def rebuilt(execution: Execution) -> tuple[list, list]:
    detail.rebuild(Execution.objects.select_related("flow_version").get(pk=execution.pk))
    return snapshot(execution)


# --- the engine tags state events ---------------------------------------------------------------


def test_engine_tags_every_event_of_a_state_entry_and_nothing_else():
    graph = compile_definition(RETRY_CATCH_FLOW)
    calls = {"n": 0}

    def boom(event):
        from tests.engine.sim import HandlerError

        calls["n"] += 1
        raise HandlerError("Boom", "always")

    sim = Sim(RETRY_CATCH_FLOW, {"boom": boom}).run({})
    assert sim.status == "Succeeded"
    assert calls["n"] == 3
    by_id = {e["event_id"]: e for e in sim.history}
    for event in sim.history:
        if event["type"].startswith("Execution"):
            assert "entry" not in event
            continue
        entry = by_id[event["entry"]]
        assert entry["type"] == "StepEntered"
        assert entry["step_name"] == event["step_name"]
        # the tags are beside the detail, never in it (the API shows the detail)
        assert not {"entry", "path", "where", "caught"} & set(event["detail"])
    entered = [e for e in sim.history if e["type"] == "StepEntered"]
    assert [e["path"] for e in entered] == ["States[0]", "States[1]", "States[2]"]
    assert graph.root.states["Flaky"].path == "States[0]"
    failed = [e for e in sim.history if e["type"] == "StepFailed"]
    assert [e.get("caught") for e in failed] == ["Recover"]


def test_engine_tags_the_branch_or_iteration_of_an_entry():
    sim = Sim(
        (DEMO / "flows" / "demo-fanout.yaml").read_text(),
        {"demo_process_part": lambda e: {"id": e["id"], "checksum": "x"}},
    ).run({"parts": [{"id": "a", "data": 1}, {"id": "b", "data": 2}]})
    assert sim.status == "Succeeded"
    where = sorted(
        (e["step_name"], tuple(e["where"]))
        for e in sim.history
        if e["type"] == "StepEntered" and "where" in e
    )
    assert where == [
        ("ChecksumPart", ("iteration", 0)),
        ("ChecksumPart", ("iteration", 1)),
        ("DigestInFlow", ("branch", 0)),
        ("DigestInFunction", ("branch", 1)),
    ]


# --- statuses ---------------------------------------------------------------------------------


def test_succeeded_and_failed_states(db):
    make_flow("pass", PASS_FLOW)
    make_flow("fail", FAIL_FLOW)
    assert statuses_by_name(start("pass", {"a": 1})) == {"P": StepStatus.SUCCEEDED}
    assert statuses_by_name(start("fail")) == {"F": StepStatus.FAILED}


def test_waiting_on_a_timer_then_cancelled_by_a_stop(db):
    make_flow("wait", WAIT_FLOW)
    execution = start("wait")
    assert statuses_by_name(execution) == {"W": StepStatus.WAITING_TIMER}
    services.execution_stop(execution=execution, error="Stopped", cause="test", actor=SYSTEM)
    assert statuses_by_name(execution) == {"W": StepStatus.CANCELLED}
    visit = StepVisit.objects.get(execution=execution)
    assert visit.exited_at is not None


def test_running_then_succeeded(functions):
    make_flow("task", TASK_FLOW)
    execution = start("task", {"v": 1})
    assert statuses_by_name(execution) == {"Call": StepStatus.RUNNING}
    drive(execution)
    assert statuses_by_name(execution) == {"Call": StepStatus.SUCCEEDED}
    visit = StepVisit.objects.get(execution=execution)
    assert visit.attempts == 1
    (one,) = visit.tries
    assert one["r"] == "ok" and one["st"] and one["end"] and one["n"] == 1


def test_retrying_then_caught_with_every_attempt_recorded(functions):
    make_flow("retry", RETRY_CATCH_FLOW)
    execution = start("retry")
    run_pending(execution)
    assert statuses_by_name(execution) == {"Flaky": StepStatus.RETRYING}
    assert Timer.objects.filter(execution=execution, key__startswith="retry:").exists()
    drive(execution)
    assert execution.status == "Succeeded"
    assert statuses_by_name(execution) == {
        "Flaky": StepStatus.CAUGHT,
        "Recover": StepStatus.SUCCEEDED,
        "Done": StepStatus.SUCCEEDED,
    }
    visit = StepVisit.objects.get(execution=execution, state_name="Flaky")
    assert visit.attempts == 3 and visit.retries == 2 and visit.error == "RuntimeError"
    assert [t["r"] for t in visit.tries] == ["TaskFailed"] * 3
    assert [t["n"] for t in visit.tries] == [1, 2, 3]


def test_waiting_for_a_callback_then_approved(demo):
    execution = start("demo-approval", {"request_id": "PO-1", "approver": "a@b.c", "summary": "x"})
    run_pending(execution)
    assert statuses_by_name(execution) == {"AskApprover": StepStatus.WAITING_CALLBACK}
    task = TaskToken.objects.get(execution=execution, is_open=True)
    services.task_approve(task_id=task.pk, output={"decision": "approve"}, actor=SYSTEM)
    assert statuses_by_name(execution) == {
        "AskApprover": StepStatus.SUCCEEDED,
        "Route": StepStatus.SUCCEEDED,
        "Approved": StepStatus.SUCCEEDED,
    }


def test_a_failing_branch_cancels_its_sibling(functions):
    make_flow("par", PARALLEL_FAIL_FLOW)
    execution = drive(start("par"), rounds=3)
    assert execution.status == "Failed"
    assert statuses_by_name(execution) == {
        "Both": StepStatus.FAILED,
        "Slow": StepStatus.CANCELLED,
        "Broken": StepStatus.FAILED,
    }


def test_visits_of_a_loop_are_counted(demo):
    execution = drive(start("demo-polling", {"asset": "a.mov", "duration": 600, "max_polls": 2}))
    assert execution.status == "Failed" and execution.error_code == "超时"
    statuses = detail.step_statuses(execution)
    names = dict(StepVisit.objects.filter(execution=execution).values_list("node", "state_name"))
    visits = {names[k]: s.visits for k, s in statuses.items()}
    assert visits == {
        "SubmitRender": 1,
        "StartTracking": 1,
        "WaitBeforePoll": 3,
        "CheckRender": 3,
        "IsRenderDone": 3,
        "GaveUp": 1,
    }
    summary = StepSummary.objects.get(execution=execution, node=detail.node_key("States[2]"))
    assert summary.counts == {"succeeded": 3}
    assert "3 visits" in statuses[summary.node].label


# --- the incremental read model is what the history says ------------------------------------------


@pytest.mark.parametrize(
    ("flow", "input"),
    [
        ("demo-polling", {"asset": "a.mov", "duration": 0}),
        ("demo-polling", {"asset": "a.mov", "duration": 600, "max_polls": 2}),
        ("demo-fanout", {"parts": [{"id": f"p{i}", "data": i} for i in range(7)]}),
        ("demo-fanout-legacy", {"targets": [{"id": "a", "data": "x"}, {"id": "b", "data": 1}]}),
    ],
)
def test_incremental_read_model_equals_a_rebuild_from_history(demo, flow, input):
    execution = drive(start(flow, input))
    assert not execution.is_open
    assert snapshot(execution) == rebuilt(execution)


def test_rebuild_matches_for_retry_catch_parallel_and_callbacks(demo, functions):
    make_flow("retry", RETRY_CATCH_FLOW)
    make_flow("par", PARALLEL_FAIL_FLOW)
    runs = [drive(start("retry")), drive(start("par"))]
    approval = start("demo-approval-v2", {"request_id": "PO-2", "approver": "a", "summary": "s"})
    run_pending(approval)
    task = TaskToken.objects.get(execution=approval, is_open=True)
    services.task_reject(task_id=task.pk, error="No", cause="too dear", actor=SYSTEM)
    runs.append(drive(approval))
    for execution in runs:
        assert snapshot(execution) == rebuilt(execution), execution.flow.name


def test_an_execution_older_than_the_read_model_is_rebuilt_when_its_page_opens(demo, settings):
    settings.STORAGES = PLAIN_STATIC
    execution = drive(start("demo-polling", {"asset": "a.mov", "duration": 600, "max_polls": 1}))
    before = snapshot(execution)
    StepVisit.objects.filter(execution=execution).delete()
    StepSummary.objects.filter(execution=execution).delete()
    client = client_for("viewer")
    response = client.get(f"/flows/demo-polling/executions/{execution.name}/")
    assert response.status_code == 200
    assert snapshot(execution) == before
    assert b"is-failed" in response.content


# --- a large execution ------------------------------------------------------------------------


def big_execution(db, events: int = 25_000) -> Execution:
    """An execution of ``events`` history events: a Pass/Choice loop run by the engine until
    the history limit fails it (each transition runs up to the inline budget)."""
    if not Flow.objects.filter(name="loop").exists():
        make_flow("loop", LOOP_FLOW)
    execution = start("loop")
    drive(execution, rounds=100)
    assert execution.status == "Failed"
    assert execution.error_code == machine.ERR_HISTORY_LIMIT
    assert execution.event_count >= events - 5
    return execution


def test_read_model_of_a_25000_event_execution_is_one_row_per_state(db):
    execution = big_execution(db)
    assert StepSummary.objects.filter(execution=execution).exclude(node="").count() == 2
    step = StepSummary.objects.get(execution=execution, node="States-0")
    assert step.visits > 6000
    assert sum(step.counts.values()) == step.visits
    assert snapshot(execution) == rebuilt(execution)


# --- pure helpers ------------------------------------------------------------------------------


def test_seconds_are_written_for_people():
    assert detail._seconds(0.0004) == "0.4 ms"
    assert detail._seconds(0.25) == "250 ms"
    assert detail._seconds(12.34) == "12.3 s"
    assert detail._seconds(600) == "10.0 min"
    assert detail._seconds(7200 * 3) == "6.0 h"


def test_describe_names_every_status_of_a_state():
    text = detail.describe("running", 5, {"succeeded": 3, "running": 2})
    assert text == "Running — 5 visits: 2 running, 3 succeeded"
    assert detail.describe("succeeded", 1, {"succeeded": 1}) == "Succeeded"


def test_when_reads_what_was_written():
    moment = datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)
    assert detail._when(moment.isoformat()) == moment
    assert detail._when("nonsense") is None
    assert detail._when(None) is None
