"""The runtime adapter, one worker-loop iteration at a time, in-process: claims, duplicates,
lost attempts, re-publishing, timers, version pinning.

Real worker processes are in tests/integration."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from executions import services
from executions.engine import events as ev
from executions.models import Execution, HistoryEvent, Timer, WorkItem, WorkStatus
from executions.runtime import publish, sweeper, transition, worker
from flowsite.access import SYSTEM
from functions import services as function_services

pytestmark = pytest.mark.django_db

TASK_THEN_WAIT = """\
Type: StateMachine
Name: t
SpecVersion: v1
StartAt: Call
States:
  - Type: Task
    Name: Call
    Action: FC:InvokeFunction
    Parameters:
      invocationType: Sync
      resourceArn: acs:fc:r:1:functions/rt_echo/LATEST
    Next: Pause
  - Type: Wait
    Name: Pause
    Seconds: 60
    Next: Done
  - Type: Pass
    Name: Done
    End: true
"""


@pytest.fixture
def published(monkeypatch):
    sent: list[int] = []
    monkeypatch.setattr(publish, "dispatch", lambda ids, **kw: sent.extend(ids))
    return sent


@pytest.fixture
def flow():
    function_services.function_create(
        name="rt_echo", handler="rthandlers.echo", actor=function_services.SYSTEM
    )
    return services.flow_create(name="rt", definition=TASK_THEN_WAIT, actor=SYSTEM)


def types(execution):
    return list(execution.events.order_by("event_id").values_list("type", flat=True))


def test_task_runs_once_even_when_delivered_twice(
    flow, django_capture_on_commit_callbacks, published
):
    with django_capture_on_commit_callbacks(execute=True):
        execution, created = services.execution_start(flow=flow, input={"a": 1}, actor=SYSTEM)
    assert created and len(published) == 1
    (item,) = WorkItem.objects.filter(execution=execution)
    assert worker.run_work_item(item.pk) == "done"
    assert worker.run_work_item(item.pk) == "duplicate"
    execution.refresh_from_db()
    assert types(execution).count("TaskSucceeded") == 1
    assert types(execution)[-2:] == ["StepEntered", "StepStarted"]  # parked in the Wait
    assert Timer.objects.filter(execution=execution, fired_at__isnull=True).count() == 1
    assert WorkItem.objects.get(pk=item.pk).status == WorkStatus.DONE


def test_due_timer_fires_once_and_the_execution_finishes(flow):
    execution, _ = services.execution_start(flow=flow, input={"a": 1}, actor=SYSTEM)
    worker.run_work_item(WorkItem.objects.get(execution=execution).pk)
    assert sweeper.fire_due_timers(batch=10) == 0  # not due yet
    Timer.objects.update(due_at=timezone.now() - timedelta(seconds=1))
    assert sweeper.fire_due_timers(batch=10) == 1
    assert sweeper.fire_due_timers(batch=10) == 0  # a timer fires once
    execution.refresh_from_db()
    assert execution.status == "Succeeded"
    assert execution.output["Body"] == {"a": 1}
    ids = list(execution.events.order_by("event_id").values_list("event_id", flat=True))
    assert ids == list(range(1, len(ids) + 1))


def test_unclaimed_work_is_republished_with_back_off(flow, published):
    execution, _ = services.execution_start(flow=flow, input={}, actor=SYSTEM)
    item = WorkItem.objects.get(execution=execution)
    assert sweeper.redispatch_pending(batch=10) == 0  # not overdue yet
    WorkItem.objects.update(next_dispatch_at=timezone.now() - timedelta(seconds=1))
    assert sweeper.redispatch_pending(batch=10) == 1
    assert published == [item.pk]
    item.refresh_from_db()
    assert item.dispatch_count == 2
    assert item.next_dispatch_at > timezone.now() + timedelta(seconds=20)  # backed off
    assert sweeper.redispatch_pending(batch=10) == 0


def test_lost_attempt_is_rerun_as_a_new_attempt(flow):
    execution, _ = services.execution_start(flow=flow, input={}, actor=SYSTEM)
    item = WorkItem.objects.get(execution=execution)
    # A worker claimed it and died: running, lease expired.
    WorkItem.objects.filter(pk=item.pk).update(
        status=WorkStatus.RUNNING, lease_until=timezone.now() - timedelta(seconds=1)
    )
    transition.transition(execution.pk, ev.TaskStarted(item.entry_id, item.attempt))
    assert sweeper.reap_lost_work(batch=10) == 1
    item.refresh_from_db()
    assert item.status == WorkStatus.LOST
    retry = WorkItem.objects.get(execution=execution, attempt=2)
    assert retry.status == WorkStatus.PENDING
    # The dead worker's result, if it ever came, would be discarded.
    assert worker.run_work_item(item.pk) == "duplicate"
    assert worker.run_work_item(retry.pk) == "done"
    execution.refresh_from_db()
    failed = execution.events.get(type="TaskFailed")
    assert failed.detail["error"] == "FnF.WorkerLost"


def test_an_execution_keeps_the_version_it_started_with(flow):
    execution, _ = services.execution_start(flow=flow, input={"a": 1}, actor=SYSTEM)
    worker.run_work_item(WorkItem.objects.get(execution=execution).pk)
    # v2 renames the state the parked execution goes to next.
    services.flow_update(
        flow=flow, definition=TASK_THEN_WAIT.replace("Done", "Finish"), actor=SYSTEM
    )
    flow.refresh_from_db()
    assert flow.version == 2
    Timer.objects.update(due_at=timezone.now() - timedelta(seconds=1))
    sweeper.fire_due_timers(batch=10)
    execution.refresh_from_db()
    assert execution.status == "Succeeded"
    assert execution.flow_version.version == 1
    assert "Done" in set(execution.events.values_list("step_name", flat=True))
    second, _ = services.execution_start(flow=flow, input={}, actor=SYSTEM)
    assert second.flow_version.version == 2


def test_stop_cancels_outstanding_work_and_timers(flow):
    execution, _ = services.execution_start(flow=flow, input={}, actor=SYSTEM)
    item = WorkItem.objects.get(execution=execution)
    services.execution_stop(execution=execution, error="Manual", cause="test", actor=SYSTEM)
    item.refresh_from_db()
    assert item.status == WorkStatus.CANCELLED
    assert worker.run_work_item(item.pk) == "duplicate"
    execution.refresh_from_db()
    assert execution.status == "Stopped" and execution.error_code == "Manual"
    assert HistoryEvent.objects.filter(execution=execution).last().type == "ExecutionStopped"
    assert not Execution.objects.get(pk=execution.pk).state["entries"]


def test_handler_error_names_the_exception_class(flow):
    function_services.function_update(
        function=function_services.function_get("rt_echo"),
        handler="rthandlers.boom",
        actor=function_services.SYSTEM,
    )
    execution, _ = services.execution_start(flow=flow, input={}, actor=SYSTEM)
    worker.run_work_item(WorkItem.objects.get(execution=execution).pk)
    execution.refresh_from_db()
    assert execution.status == "Failed"
    assert execution.error_code == "RuntimeError"
    assert "boom" in execution.error_message


def test_a_definition_name_that_differs_from_the_flow_name_is_a_warning():
    flow = services.flow_create(name="other", definition=TASK_THEN_WAIT, actor=SYSTEM)
    assert flow.warnings[0]["path"] == "Name"
    assert "'t'" in flow.warnings[0]["message"]


def test_an_engine_bug_fails_the_execution_instead_of_poisoning_it(flow, monkeypatch):
    from executions.engine import machine

    execution, _ = services.execution_start(flow=flow, input={}, actor=SYSTEM)
    worker.run_work_item(WorkItem.objects.get(execution=execution).pk)
    assert Timer.objects.filter(execution=execution, fired_at__isnull=True).count() == 1

    def broken(graph, state, event, **kwargs):
        state["entries"].clear()  # a half-made change that must not be stored
        raise KeyError("oops")

    monkeypatch.setattr(machine, "step", broken)
    Timer.objects.update(due_at=timezone.now() - timedelta(seconds=1))
    assert sweeper.fire_due_timers(batch=10) == 1
    execution.refresh_from_db()
    assert execution.status == "Failed"
    assert execution.error_code == "FnF.InternalError"
    assert "KeyError" in execution.error_message
    assert types(execution)[-1] == "ExecutionFailed"
    ids = list(execution.events.order_by("event_id").values_list("event_id", flat=True))
    assert ids == list(range(1, len(ids) + 1))


ASYNC_SUBMIT = """\
Type: StateMachine
Name: a
SpecVersion: v1
StartAt: Submit
States:
  - Type: Task
    Name: Submit
    Action: FC:InvokeFunction
    TaskMode: RequestComplete
    Parameters:
      invocationType: Async
      resourceArn: acs:fc:r:1:functions/rt_record/LATEST
      body:
        n.$: $Input.n
    OutputConstructor:
      task_id.$: $Output.Headers["x-fc-async-task-id"]
      status.$: $Output.StatusCode
    End: true
"""


def test_async_submit_returns_the_acknowledgement_and_runs_the_function_detached():
    from tests.runtime import handlers

    handlers.CALLS.clear()
    function_services.function_create(
        name="rt_record", handler="rthandlers.record", actor=function_services.SYSTEM
    )
    flow = services.flow_create(name="a", definition=ASYNC_SUBMIT, actor=SYSTEM)
    execution, _ = services.execution_start(flow=flow, input={"n": 7}, actor=SYSTEM)
    # The engine itself completed the step with the acknowledgement, in the starting
    # transaction, and asked for the function to run detached: no invoke item, no round trip.
    assert not WorkItem.objects.filter(execution=execution, kind="invoke").exists()
    execution.refresh_from_db()
    assert execution.status == "Succeeded"
    task_id = execution.output["task_id"]
    assert execution.output["status"] == 202
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,127}", task_id)
    assert handlers.CALLS == []
    detached = WorkItem.objects.get(execution=execution, kind="detached")
    assert detached.idempotency_key == task_id
    assert worker.run_work_item(detached.pk) == "done"
    assert worker.run_work_item(detached.pk) == "duplicate"
    assert handlers.CALLS == [{"n": 7}]


THREE_TASKS = """\
Type: StateMachine
Name: three
SpecVersion: v1
StartAt: One
States:
  - Type: Task
    Name: One
    Action: FC:InvokeFunction
    Parameters: {invocationType: Sync, resourceArn: "acs:fc:r:1:functions/rt_echo/LATEST"}
    Next: Two
  - Type: Task
    Name: Two
    Action: FC:InvokeFunction
    Parameters: {invocationType: Sync, resourceArn: "acs:fc:r:1:functions/rt_echo/LATEST"}
    OutputConstructor:
      $: $Output.Body
    Next: Three
  - Type: Task
    Name: Three
    Action: FC:InvokeFunction
    Parameters: {invocationType: Sync, resourceArn: "acs:fc:r:1:functions/rt_echo/LATEST"}
    End: true
"""


@pytest.mark.parametrize("eager_steps, runs_in_one_go", [(10, 3), (1, 2), (0, 1)])
def test_a_worker_runs_the_following_steps_itself_without_publishing_them(
    settings, django_capture_on_commit_callbacks, published, eager_steps, runs_in_one_go
):
    settings.FLOWSITE_EAGER_STEPS = eager_steps
    function_services.function_create(
        name="rt_echo", handler="rthandlers.echo", actor=function_services.SYSTEM
    )
    flow = services.flow_create(name="three", definition=THREE_TASKS, actor=SYSTEM)
    with django_capture_on_commit_callbacks(execute=True):
        execution, _ = services.execution_start(flow=flow, input={"a": 1}, actor=SYSTEM)
    assert len(published) == 1
    with django_capture_on_commit_callbacks(execute=True):
        assert worker.run_work_item(published[0]) == "done"
    done = WorkItem.objects.filter(execution=execution, status=WorkStatus.DONE).count()
    assert done == runs_in_one_go
    # Only the step that was not run eagerly was published.
    assert len(published) == 1 + (runs_in_one_go < 3)
    execution.refresh_from_db()
    for _ in range(3):
        if execution.status != "Running":
            break
        with django_capture_on_commit_callbacks(execute=True):
            assert worker.run_work_item(published[-1]) == "done"
        execution.refresh_from_db()
    assert execution.status == "Succeeded"
    assert execution.output["Body"]["Body"] == {"a": 1}  # One's envelope, echoed by Three
    assert types(execution).count("TaskStarted") == 3
    ids = list(execution.events.order_by("event_id").values_list("event_id", flat=True))
    assert ids == list(range(1, len(ids) + 1))
