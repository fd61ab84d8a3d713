"""The demo content: ``manage.py flowsite_demo``, the demo handlers, and the demo flows run
end to end in-process (work items run with ``worker.run_work_item``, timers fired early)."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from executions import services
from executions.models import (
    Execution,
    ExecutionStatus,
    Flow,
    FlowVersion,
    HistoryEvent,
    TaskToken,
    Timer,
    WorkItem,
    WorkStatus,
)
from executions.runtime import sweeper, transition, worker
from flowsite.access import SYSTEM
from functions.models import Function
from functions.services import invoke

pytestmark = pytest.mark.django_db

DEMO = Path(__file__).resolve().parent.parent / "demo"
FLOW_FILES = sorted((DEMO / "flows").glob("*.yaml"))
FLOW_NAMES = {
    "demo-polling",
    "demo-approval",
    "demo-approval-v2",
    "demo-fanout",
    "demo-fanout-legacy",
}
FUNCTIONS = {
    "demo_submit_render": "flowsite_demo_jobs.submit_render",
    "demo_render_status": "flowsite_demo_jobs.render_status",
    "demo_notify_approver": "flowsite_demo_approval.notify_approver",
    "demo_process_part": "flowsite_demo_parts.process_part",
}


def run_demo_command(*args: str) -> str:
    out = io.StringIO()
    call_command("flowsite_demo", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def demo():
    run_demo_command("--quiet")


# --- the command -------------------------------------------------------------------------------


def test_command_creates_functions_and_flows_and_is_idempotent():
    first = run_demo_command()
    assert "demo: 9 created, 0 updated, 0 unchanged" in first
    assert {f.name: f.handler for f in Function.objects.all()} == FUNCTIONS
    assert set(Flow.objects.values_list("name", flat=True)) == FLOW_NAMES
    assert {p.stem for p in FLOW_FILES} == FLOW_NAMES
    versions = FlowVersion.objects.count()

    second = run_demo_command()
    assert "demo: 0 created, 0 updated, 9 unchanged" in second
    assert FlowVersion.objects.count() == versions  # nothing changed, no new versions
    assert Function.objects.count() == len(FUNCTIONS)

    assert run_demo_command("--quiet") == ""


def test_command_puts_back_what_was_changed(demo):
    Function.objects.filter(name="demo_process_part").update(timeout_seconds=1, description="x")
    flow = Flow.objects.get(name="demo-polling")
    services.flow_update(
        flow=flow, definition=flow.definition.replace("Seconds: 3", "Seconds: 30"), actor=SYSTEM
    )
    assert Flow.objects.get(name="demo-polling").version == 2

    out = run_demo_command()
    assert "function demo_process_part: updated (description, timeout_seconds)" in out
    assert "flow demo-polling: updated (now v3)" in out
    assert "demo: 0 created, 2 updated, 7 unchanged" in out
    assert Function.objects.get(name="demo_process_part").timeout_seconds == 30
    assert (
        Flow.objects.get(name="demo-polling").definition
        == (DEMO / "flows" / "demo-polling.yaml").read_text()
    )


def copy_demo(tmp_path: Path) -> Path:
    target = tmp_path / "demo"
    shutil.copytree(DEMO, target)
    return target


def test_command_refuses_an_invalid_flow_and_writes_nothing(tmp_path):
    demo_dir = copy_demo(tmp_path)
    bad = demo_dir / "flows" / "demo-zzz-broken.yaml"
    bad.write_text(
        "Type: StateMachine\nName: x\nSpecVersion: v1\nStartAt: A\nStates:\n"
        "  - Type: Pass\n    Name: A\n    Next: Missing\n",
        encoding="utf-8",
    )
    with pytest.raises(CommandError) as caught:
        run_demo_command("--demo-dir", str(demo_dir))
    message = str(caught.value)
    assert "flow demo-zzz-broken" in message and "InvalidDefinition" in message
    assert "States[0].Next (line 8)" in message
    assert not Flow.objects.exists() and not Function.objects.exists()  # all or nothing


def test_command_refuses_a_bad_function_entry(tmp_path):
    demo_dir = copy_demo(tmp_path)
    manifest = demo_dir / "functions" / "functions.yaml"
    manifest.write_text(
        manifest.read_text(encoding="utf-8")
        + "\n- name: demo_bad\n  handler: not-a-dotted-path\n  timeout_seconds: 5\n",
        encoding="utf-8",
    )
    with pytest.raises(CommandError, match="function demo_bad: InvalidHandler: handler"):
        run_demo_command("--demo-dir", str(demo_dir))
    manifest.write_text("- name: only_a_name\n", encoding="utf-8")
    with pytest.raises(CommandError, match="needs name and handler"):
        run_demo_command("--demo-dir", str(demo_dir))
    assert not Function.objects.exists()


def test_flows_get_descriptions_and_dialects(demo):
    flows = {f.name: f for f in Flow.objects.all()}
    assert flows["demo-polling"].dialect == "cloudflow"
    assert flows["demo-approval"].dialect == "legacy"
    assert flows["demo-fanout-legacy"].dialect == "legacy"
    assert all(f.description for f in flows.values())


@pytest.mark.parametrize("path", FLOW_FILES, ids=lambda p: p.stem)
def test_every_demo_flow_compiles_without_warnings(demo, path):
    graph = services.definition_compile(path.read_text(encoding="utf-8"))
    assert graph.warnings == ()
    assert graph.functions <= set(FUNCTIONS)


# --- the handlers, called directly --------------------------------------------------------------


def body(name: str, event: dict) -> dict:
    result = invoke(name, event)
    assert result.ok, (result.error, result.cause)
    assert result.output["StatusCode"] == 200
    return result.output["Body"]


def test_submit_render_returns_a_job(demo):
    before = time.time()
    job = body("demo_submit_render", {"asset": "trailer.mov", "duration": 20, "max_polls": 4})
    assert set(job) == {"job_id", "asset", "submitted_at", "ready_at", "max_polls"}
    assert job["job_id"].startswith("render-")
    assert job["asset"] == "trailer.mov"
    assert job["max_polls"] == 4
    assert before - 1 <= job["submitted_at"] <= time.time() + 1
    assert job["ready_at"] == pytest.approx(job["submitted_at"] + 20, abs=0.01)
    # Defaults, and a new id each time.
    other = body("demo_submit_render", {})
    assert other["job_id"] != job["job_id"] and other["max_polls"] == 10


def test_render_status_is_running_before_ready_at_and_done_after(demo):
    now = time.time()
    running = body(
        "demo_render_status",
        {"job_id": "render-1", "submitted_at": now - 10, "ready_at": now + 3600, "polls": 2},
    )
    assert running["status"] == "running"
    assert running["polls"] == 3
    assert 0 <= running["progress"] < 100
    assert "artifact" not in running

    done = body(
        "demo_render_status",
        {"job_id": "render-1", "submitted_at": now - 20, "ready_at": now - 1, "polls": 3},
    )
    assert done["status"] == "done"
    assert done["polls"] == 4
    assert done["progress"] == 100
    assert done["artifact"] == "renders/render-1.mp4"

    first_poll = body("demo_render_status", {"job_id": "render-1", "ready_at": now + 60})
    assert first_poll["polls"] == 1

    broken = body(
        "demo_render_status", {"job_id": "render-2", "asset": "a.broken", "ready_at": now - 1}
    )
    assert broken["status"] == "failed"


def test_render_status_rejects_a_bad_event_with_a_named_error(demo):
    missing = invoke("demo_render_status", {"ready_at": 1})
    assert not missing.ok and missing.error == "InvalidRenderRequest"
    no_ready_at = invoke("demo_render_status", {"job_id": "x"})
    assert not no_ready_at.ok and "ready_at is missing" in no_ready_at.cause
    bad_duration = invoke("demo_submit_render", {"duration": "soon"})
    assert not bad_duration.ok and bad_duration.error == "InvalidRenderRequest"


def test_notify_approver_needs_a_token_and_never_echoes_it(demo):
    token = "secret-token-value"
    answer = body(
        "demo_notify_approver",
        {"task_token": token, "request_id": "PO-7", "approver": "dana@example.com"},
    )
    assert answer["notified"] is True
    assert answer["request_id"] == "PO-7" and answer["approver"] == "dana@example.com"
    assert answer["token_fingerprint"] == hashlib.sha256(token.encode()).hexdigest()[:12]
    assert token not in json.dumps(answer)
    missing = invoke("demo_notify_approver", {"request_id": "PO-7"})
    assert not missing.ok and missing.error == "MissingTaskToken"


def test_process_part_checksums_strings_and_json(demo):
    text = body("demo_process_part", {"id": "p1", "data": "hello wörld"})
    raw = "hello wörld".encode()
    assert text == {
        "id": "p1",
        "algorithm": "sha256",
        "checksum": hashlib.sha256(raw).hexdigest(),
        "bytes": len(raw),
    }
    md5 = body("demo_process_part", {"id": 2, "data": "abc", "algorithm": "MD5"})
    assert md5["checksum"] == hashlib.md5(b"abc").hexdigest() and md5["algorithm"] == "md5"
    as_json = body("demo_process_part", {"id": "j", "data": {"b": 1, "a": [1, 2]}})
    assert as_json["checksum"] == hashlib.sha256(b'{"a":[1,2],"b":1}').hexdigest()
    bad = invoke("demo_process_part", {"id": "p", "data": "x", "algorithm": "crc32"})
    assert not bad.ok and bad.error == "InvalidPart"
    assert invoke("demo_process_part", {"id": "p"}).error == "InvalidPart"


# --- the flows, end to end (in-process) ---------------------------------------------------------


def drive(execution: Execution, *, report=None, rounds: int = 100) -> Execution:
    """Run the execution to its end here: pending work items, then ``report`` (a callback that
    may answer a waiting task), then the earliest timer, brought forward to now."""
    for _ in range(rounds):
        execution.refresh_from_db()
        if not execution.is_open:
            return execution
        pending = list(
            WorkItem.objects.filter(execution=execution, status=WorkStatus.PENDING).values_list(
                "pk", flat=True
            )
        )
        if pending:
            for pk in pending:
                worker.run_work_item(pk)
            continue
        if report is not None and report(execution):
            continue
        timer = (
            Timer.objects.filter(execution=execution, fired_at__isnull=True)
            .order_by("due_at")
            .first()
        )
        if timer is None:
            break
        Timer.objects.filter(pk=timer.pk).update(due_at=timezone.now() - timedelta(seconds=1))
        sweeper.fire_due_timers(batch=10)
    execution.refresh_from_db()
    return execution


def start(flow_name: str, input: dict) -> Execution:
    execution, created = services.execution_start(
        flow=Flow.objects.get(name=flow_name), input=input, actor=SYSTEM
    )
    assert created
    return execution


def test_polling_flow_succeeds_once_the_job_is_ready(demo):
    execution = drive(start("demo-polling", {"asset": "trailer.mov", "duration": 0}))
    assert execution.status == ExecutionStatus.SUCCEEDED, (
        execution.error_code,
        execution.error_message,
    )
    assert execution.output["status"] == "done"
    assert execution.output["polls"] == 1
    assert execution.output["artifact"] == f"renders/{execution.output['job_id']}.mp4"
    steps = list(
        HistoryEvent.objects.filter(execution=execution, type="StepEntered").values_list(
            "step_name", flat=True
        )
    )
    assert steps[:5] == [
        "SubmitRender",
        "StartTracking",
        "WaitBeforePoll",
        "CheckRender",
        "IsRenderDone",
    ]


def test_polling_flow_gives_up_after_max_polls(demo):
    execution = drive(
        start("demo-polling", {"asset": "long.mov", "duration": 3600, "max_polls": 2})
    )
    assert execution.status == ExecutionStatus.FAILED
    assert execution.error_code == "超时"
    polls = HistoryEvent.objects.filter(
        execution=execution, type="StepEntered", step_name="CheckRender"
    ).count()
    assert polls == 3  # polls > max_polls


def test_polling_flow_fails_when_the_job_fails(demo):
    execution = drive(start("demo-polling", {"asset": "intro.broken"}))
    assert execution.status == ExecutionStatus.FAILED
    assert execution.error_code == "RenderFailed"


def test_fanout_flow_checksums_every_part_and_the_digests_agree(demo):
    parts = [{"id": f"p{i}", "data": f"chunk {i}"} for i in range(5)]
    execution = drive(start("demo-fanout", {"parts": parts}))
    assert execution.status == ExecutionStatus.SUCCEEDED, (
        execution.error_code,
        execution.error_message,
    )
    output = execution.output
    assert output["count"] == 5
    assert [p["id"] for p in output["parts"]] == [p["id"] for p in parts]
    for part, result in zip(parts, output["parts"], strict=True):
        assert result["checksum"] == hashlib.sha256(part["data"].encode()).hexdigest()
    assert output["digests_agree"] is True
    assert len(output["manifest_sha256"]) == 64


def test_fanout_map_keeps_at_most_three_parts_in_flight(demo):
    execution = start("demo-fanout", {"parts": [{"id": i, "data": str(i)} for i in range(7)]})
    assert WorkItem.objects.filter(execution=execution, status=WorkStatus.PENDING).count() == 3


def test_legacy_fanout_flow_collects_checksums(demo):
    targets = ["alpha", "beta", "gamma"]
    execution = drive(start("demo-fanout-legacy", {"payload": {"targets": targets}}))
    assert execution.status == ExecutionStatus.SUCCEEDED, (
        execution.error_code,
        execution.error_message,
    )
    assert execution.output["checksums"] == [
        hashlib.sha256(t.encode()).hexdigest() for t in targets
    ]
    assert [p["id"] for p in execution.output["parts"]] == [0, 1, 2]


def reporter(decision: str | None):
    """A ``report`` callback for :func:`drive`: answers the open task with ``decision``."""

    def report(execution: Execution) -> bool:
        if (
            decision is None
            or not TaskToken.objects.filter(execution=execution, is_open=True).exists()
        ):
            return False
        submitted = HistoryEvent.objects.filter(execution=execution, type="TaskSubmitted").last()
        if submitted is None:
            return False
        # The history names the task by its token's fingerprint; the token itself is what the
        # external party got from the handler's event (here: derived, as the worker does).
        row = TaskToken.objects.get(execution=execution, is_open=True)
        assert submitted.detail["taskToken"] == row.fingerprint
        services.task_report_succeeded(
            token=transition.token_of(row),
            output=json.dumps({"decision": decision, "comment": "ok"}),
            actor=SYSTEM,
        )
        return True

    return report


APPROVAL_INPUT = {"request_id": "PO-1042", "approver": "dana@example.com", "summary": "a laptop"}


@pytest.mark.parametrize("flow_name", ["demo-approval", "demo-approval-v2"])
def test_approval_flows_wait_for_the_callback(demo, flow_name):
    approved = drive(start(flow_name, APPROVAL_INPUT), report=reporter("approve"))
    assert approved.status == ExecutionStatus.SUCCEEDED, (
        approved.error_code,
        approved.error_message,
    )
    assert approved.output["decision"] == "approve"
    assert approved.output["comment"] == "ok"

    rejected = drive(start(flow_name, APPROVAL_INPUT), report=reporter("reject"))
    assert rejected.status == ExecutionStatus.FAILED
    assert rejected.error_code == "Rejected"


@pytest.mark.parametrize(
    ("flow_name", "error"), [("demo-approval", "FnF.Timeout"), ("demo-approval-v2", "NoAnswer")]
)
def test_approval_flows_time_out_without_an_answer(demo, flow_name, error):
    execution = start(flow_name, APPROVAL_INPUT)
    execution = drive(execution, rounds=1)  # run the notify function only
    assert execution.status == ExecutionStatus.RUNNING
    notify = WorkItem.objects.get(execution=execution)
    assert notify.status == WorkStatus.DONE and notify.function_name == "demo_notify_approver"
    assert notify.payload is None  # a finished attempt's payload is not kept
    scheduled = HistoryEvent.objects.get(execution=execution, type="TaskScheduled")
    assert "task_token" in scheduled.detail["request"]
    timeout = Timer.objects.get(execution=execution, fired_at__isnull=True)
    assert timeout.due_at - execution.started_at == pytest.approx(
        timedelta(hours=1), abs=timedelta(seconds=5)
    )
    execution = drive(execution)
    assert execution.status == ExecutionStatus.FAILED
    assert execution.error_code == error
