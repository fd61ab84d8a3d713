"""The runtime under failure, one piece at a time and in-process: result writes that hit database
errors, one clock for deadlines (a skewed app clock, a heartbeat racing the sweeper), dead
workers, outages, bookkeeping cleared at the end, retention.

Real worker processes, broker and database restarts are in tests/integration."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.db import OperationalError

from executions import services
from executions.engine import events as ev
from executions.models import (
    Execution,
    ExecutionStatus,
    ExecutionValue,
    Heartbeat,
    HeartbeatKind,
    HistoryEvent,
    QueueMessage,
    TaskToken,
    Timer,
    WorkItem,
    WorkStatus,
)
from executions.runtime import liveness, publish, sweeper, transition, worker
from executions.runtime.transition import db_now
from flowsite.access import SYSTEM
from functions import services as function_services
from tests.runtime import handlers

pytestmark = pytest.mark.django_db

TASK_THEN_WAIT = """\
Type: StateMachine
Name: rel
SpecVersion: v1
StartAt: Call
States:
  - Type: Task
    Name: Call
    Action: FC:InvokeFunction
    Parameters:
      invocationType: Sync
      resourceArn: acs:fc:r:1:functions/rel_record/LATEST
    Next: Pause
  - Type: Wait
    Name: Pause
    Seconds: 30
    Next: Done
  - Type: Pass
    Name: Done
    End: true
"""

CALLBACK_WITH_HEARTBEAT = """\
Type: StateMachine
Name: hb
SpecVersion: v1
StartAt: Ask
States:
  - Type: Task
    Name: Ask
    Action: FC:InvokeFunction
    TaskMode: WaitForCustomCallback
    HeartbeatSeconds: 10
    Parameters:
      invocationType: Sync
      resourceArn: acs:fc:r:1:functions/rel_record/LATEST
      body:
        token.$: $Context.Current.TaskToken
    End: true
"""


@pytest.fixture(autouse=True)
def _calls():
    handlers.CALLS.clear()
    function_services.function_create(
        name="rel_record", handler="rthandlers.record", actor=function_services.SYSTEM
    )


@pytest.fixture
def published(monkeypatch):
    sent: list[int] = []
    monkeypatch.setattr(publish, "dispatch", lambda ids, **kw: sent.extend(ids) or len(ids))
    return sent


def start(definition: str, name: str = "rel", input: dict | None = None) -> Execution:
    flow = services.flow_create(name=name, definition=definition, actor=SYSTEM)
    execution, _ = services.execution_start(flow=flow, input=input or {"n": 1}, actor=SYSTEM)
    return execution


def types(execution: Execution) -> list[str]:
    return list(execution.events.order_by("event_id").values_list("type", flat=True))


# --- results are never lost ----------------------------------------------------------------


def test_a_result_write_that_fails_twice_is_retried_and_recorded_once(monkeypatch):
    execution = start(TASK_THEN_WAIT)
    item = WorkItem.objects.get(execution=execution)
    real = worker.transition
    failures = []

    def flaky(execution_id, event, **kwargs):
        if isinstance(event, ev.TaskSucceeded) and len(failures) < 2:
            failures.append(event)
            raise OperationalError("server closed the connection unexpectedly")
        return real(execution_id, event, **kwargs)

    monkeypatch.setattr(worker, "transition", flaky)
    assert worker.run_work_item(item.pk) == "done"
    assert len(failures) == 2
    assert handlers.CALLS == [{"n": 1}]  # the handler ran once
    execution.refresh_from_db()
    assert types(execution).count("TaskSucceeded") == 1
    item.refresh_from_db()
    assert item.status == WorkStatus.DONE
    assert item.payload is None  # a finished attempt keeps no payload


def test_a_result_write_gives_up_only_when_the_lease_runs_out(monkeypatch, settings):
    settings.FLOWSITE_LEASE_GRACE = 0
    function_services.function_update(
        function=function_services.function_get("rel_record"),
        timeout_seconds=1,
        actor=function_services.SYSTEM,
    )
    execution = start(TASK_THEN_WAIT)
    item = WorkItem.objects.get(execution=execution)
    calls = []

    def down(execution_id, event, **kwargs):
        if isinstance(event, ev.TaskStarted):
            return transition.transition(execution_id, event, **kwargs)
        calls.append(event)
        raise OperationalError("the database is down")

    monkeypatch.setattr(worker, "transition", down)
    # With a 1 s lease (timeout 1 s, no grace) the worker stops trying at once: it must not
    # record a result after the sweeper may have given the attempt to someone else.
    assert worker.run_work_item(item.pk) == "result-lost"
    assert len(calls) == 1
    item.refresh_from_db()
    assert item.status == WorkStatus.RUNNING  # the sweeper will reclaim it


def test_a_claim_whose_commit_was_lost_is_resumed_by_its_own_worker():
    """The claim committed but the connection died before the worker saw the commit: the task
    retries, finds the item running under its own id, and runs it (nobody else will)."""
    execution = start(TASK_THEN_WAIT)
    item = WorkItem.objects.get(execution=execution)
    transition.transition(
        execution.pk,
        ev.TaskStarted(item.entry_id, item.attempt),
        claim=lambda ex, now: bool(
            WorkItem.objects.filter(pk=item.pk).update(
                status=WorkStatus.RUNNING,
                started_at=now,
                lease_until=now + timedelta(seconds=90),
                worker=liveness.worker_id(),
            )
        ),
    )
    assert worker.run_work_item(item.pk) == "done"
    assert handlers.CALLS == [{"n": 1}]
    # Another process's running item is a duplicate delivery: left alone.
    other = start(TASK_THEN_WAIT, name="rel2")
    other_item = WorkItem.objects.get(execution=other)
    WorkItem.objects.filter(pk=other_item.pk).update(
        status=WorkStatus.RUNNING, worker="elsewhere:1", started_at=db_now()
    )
    assert worker.run_work_item(other_item.pk) == "duplicate"


def test_the_task_waits_for_the_database_and_then_runs(monkeypatch):
    attempts = []

    def flaky():
        attempts.append(1)
        if len(attempts) < 3:
            raise OperationalError("could not connect to server")
        return "done"

    monkeypatch.setattr(worker, "wait_for_database", lambda deadline: True)
    assert worker.run_with_database(flaky) == "done"
    assert len(attempts) == 3

    monkeypatch.setattr(worker, "wait_for_database", lambda deadline: False)
    with pytest.raises(worker.DatabaseUnavailable):
        worker.run_with_database(lambda: (_ for _ in ()).throw(OperationalError("down")))


# --- one clock -----------------------------------------------------------------------------


@pytest.mark.parametrize("skew", [-60, 60])
def test_deadlines_follow_the_database_clock_not_a_skewed_app_clock(skew, published):
    """An app server whose clock is 60 s off sets the Wait's deadline from the database's
    clock; the timer is not due early, and fires exactly once when due."""
    with time_machine.travel(db_now() + timedelta(seconds=skew), tick=True):
        execution = start(TASK_THEN_WAIT)
        worker.run_work_item(WorkItem.objects.get(execution=execution).pk)
        timer = Timer.objects.get(execution=execution)
        expected = db_now() + timedelta(seconds=30)
        assert abs((timer.due_at - expected).total_seconds()) < 5
        assert sweeper.fire_due_timers(batch=10) == 0  # not early, whatever the app clock says
        Timer.objects.filter(pk=timer.pk).update(due_at=db_now() - timedelta(milliseconds=1))
        assert sweeper.fire_due_timers(batch=10) == 1
        assert sweeper.fire_due_timers(batch=10) == 0
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.SUCCEEDED
    fired = HistoryEvent.objects.get(execution=execution, type="StepExited", step_name="Pause")
    assert fired.time >= timer.due_at - timedelta(seconds=31)


def _callback_waiting(tokens: list[str], monkeypatch) -> Execution:
    """An execution whose Task waits for a callback; ``tokens`` gets its (secret) token."""
    execution = start(CALLBACK_WITH_HEARTBEAT, name="hb")
    worker.run_work_item(WorkItem.objects.get(execution=execution).pk)
    tokens.append(transition.token_of(TaskToken.objects.get(execution=execution, is_open=True)))
    return execution


def test_a_heartbeat_that_moves_the_timer_before_the_claim_wins(monkeypatch):
    tokens: list[str] = []
    execution = _callback_waiting(tokens, monkeypatch)
    heartbeat = Timer.objects.get(execution=execution, key__startswith="heartbeat")
    Timer.objects.filter(pk=heartbeat.pk).update(due_at=db_now() - timedelta(seconds=1))
    real = sweeper.transition

    def heartbeat_first(execution_id, event, **kwargs):
        # The heartbeat lands after the sweeper found the timer due, before its claim.
        services.task_heartbeat(token=tokens[0], actor=SYSTEM)
        return real(execution_id, event, **kwargs)

    monkeypatch.setattr(sweeper, "transition", heartbeat_first)
    assert sweeper.fire_due_timers(batch=10) == 0
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.RUNNING
    assert "TaskTimedOut" not in types(execution)
    moved = Timer.objects.get(pk=heartbeat.pk)
    assert moved.fired_at is None and moved.due_at > db_now() + timedelta(seconds=8)


def test_a_timer_that_fired_first_makes_the_heartbeat_lose(monkeypatch):
    tokens: list[str] = []
    execution = _callback_waiting(tokens, monkeypatch)
    Timer.objects.filter(execution=execution).update(due_at=db_now() - timedelta(seconds=1))
    assert sweeper.fire_due_timers(batch=10) == 1
    with pytest.raises(services.ServiceError) as refused:
        services.task_heartbeat(token=tokens[0], actor=SYSTEM)
    assert refused.value.code == "TaskAlreadyCompleted"
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.FAILED
    assert execution.error_code == "FnF.HeartbeatTimeout"
    assert types(execution).count("TaskTimedOut") == 1


# --- dead workers ----------------------------------------------------------------------------


def _running(execution: Execution, worker_name: str, started_ago: float) -> WorkItem:
    item = WorkItem.objects.get(execution=execution, status=WorkStatus.PENDING)
    started = db_now() - timedelta(seconds=started_ago)
    transition.transition(
        execution.pk,
        ev.TaskStarted(item.entry_id, item.attempt),
        claim=lambda ex, now: bool(
            WorkItem.objects.filter(pk=item.pk).update(
                status=WorkStatus.RUNNING,
                started_at=started,
                lease_until=db_now() + timedelta(hours=1),  # a long function
                worker=worker_name,
            )
        ),
    )
    return WorkItem.objects.get(pk=item.pk)


def test_a_dead_workers_attempts_are_reclaimed_whatever_the_functions_timeout(settings):
    settings.FLOWSITE_WORKER_DEAD_AFTER = 20
    dead = _running(start(TASK_THEN_WAIT, name="d1"), "gone:1", started_ago=60)
    Heartbeat.objects.create(
        name="gone:1",
        kind=HeartbeatKind.WORKER,
        started_at=db_now() - timedelta(minutes=5),
        last_seen=db_now() - timedelta(seconds=25),
    )
    no_row = _running(start(TASK_THEN_WAIT, name="d2"), "never-stamped:2", started_ago=60)
    alive = _running(start(TASK_THEN_WAIT, name="d3"), "alive:3", started_ago=60)
    liveness.stamp("alive:3", HeartbeatKind.WORKER)
    fresh = _running(start(TASK_THEN_WAIT, name="d4"), "new:4", started_ago=1)

    assert sweeper.reap_dead_workers(batch=10) == 2
    for item in (dead, no_row):
        item.refresh_from_db()
        assert item.status == WorkStatus.LOST
        rerun = WorkItem.objects.get(execution=item.execution, attempt=item.attempt + 1)
        assert rerun.status == WorkStatus.PENDING
        # A lost worker's re-run is the same logical attempt: same idempotency key.
        assert rerun.idempotency_key == item.idempotency_key
    for item in (alive, fresh):
        item.refresh_from_db()
        assert item.status == WorkStatus.RUNNING
    assert sweeper.reap_dead_workers(batch=10) == 0


def test_a_direct_invocation_whose_worker_died_fails_at_once(settings):
    from functions.models import Invocation, InvocationStatus

    settings.FLOWSITE_WORKER_DEAD_AFTER = 20
    function = function_services.function_get("rel_record")

    def running(request_id: str, worker_name: str, started_ago: float) -> Invocation:
        return Invocation.objects.create(
            request_id=request_id,
            function=function,
            function_name=function.name,
            status=InvocationStatus.RUNNING,
            payload=b"{}",
            worker=worker_name,
            started_at=db_now() - timedelta(seconds=started_ago),
        )

    dead = running("r-dead", "gone:9", 60)
    alive = running("r-alive", "alive:9", 60)
    liveness.stamp("alive:9", HeartbeatKind.WORKER)
    assert sweeper.reap_dead_workers(batch=10) == 1
    dead.refresh_from_db()
    alive.refresh_from_db()
    assert dead.status == InvocationStatus.FAILED and dead.error == "FC.WorkerLost"
    assert alive.status == InvocationStatus.RUNNING


def test_the_loop_does_not_judge_liveness_right_after_a_database_outage(monkeypatch, settings):
    settings.FLOWSITE_WORKER_DEAD_AFTER = 20
    settings.FLOWSITE_WORKER_HEARTBEAT = 5
    _running(start(TASK_THEN_WAIT), "stale-after-outage:1", started_ago=60)
    loop = sweeper.Sweeper(interval=1)
    monkeypatch.setattr(loop.broker, "look", lambda: False)
    counts = loop.sweep_once()
    assert counts["dead"] == 0  # just started: every worker gets time to stamp again
    loop.db_up_since -= 7.5  # a heartbeat interval and a margin later
    assert loop.sweep_once()["dead"] == 1


# --- outages ---------------------------------------------------------------------------------


def test_after_an_outage_every_pending_item_is_republished_at_once(published, monkeypatch):
    first = start(TASK_THEN_WAIT, name="o1")
    second = start(TASK_THEN_WAIT, name="o2")
    pending = set(
        WorkItem.objects.filter(execution__in=[first, second]).values_list("pk", flat=True)
    )
    loop = sweeper.Sweeper(interval=1)
    monkeypatch.setattr(loop.broker, "look", lambda: False)
    # A fresh sweeper assumes messages may have been lost while nobody was watching.
    loop.sweep_once()
    assert set(published) == pending
    published.clear()
    loop.sweep_once()  # no outage since: the per-item deadlines apply again
    assert published == []
    monkeypatch.setattr(loop.broker, "look", lambda: True)  # the broker restarted
    loop.sweep_once()
    assert set(published) == pending


def test_a_failed_publish_makes_the_items_due_for_the_next_sweep(monkeypatch):
    execution = start(TASK_THEN_WAIT)
    item = WorkItem.objects.get(execution=execution)
    assert item.next_dispatch_at > db_now() + timedelta(seconds=5)
    sent = []

    class DownBroker:
        def send_task(self, *args, **kwargs):
            sent.append(args)
            raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(publish, "current_app", DownBroker())
    assert publish.dispatch([item.pk, item.pk + 1000]) == 0
    assert len(sent) == 1  # stopped at the first failure
    item.refresh_from_db()
    assert item.next_dispatch_at <= db_now()


# --- bookkeeping and retention ---------------------------------------------------------------


def test_an_ended_execution_keeps_history_but_no_bookkeeping(monkeypatch):
    tokens: list[str] = []
    execution = _callback_waiting(tokens, monkeypatch)
    QueueMessage.objects.create(
        queue="q", body={}, execution=execution, created_at=db_now(), visible_at=db_now()
    )
    ExecutionValue.objects.create(execution=execution, key="res:1:0", value={"x": 1})
    assert TaskToken.objects.filter(execution=execution).exists()
    assert Timer.objects.filter(execution=execution).exists()
    services.task_report_succeeded(token=tokens[0], output={"ok": True}, actor=SYSTEM)
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.SUCCEEDED
    assert not TaskToken.objects.filter(execution=execution).exists()
    assert not Timer.objects.filter(execution=execution).exists()
    assert not ExecutionValue.objects.filter(execution=execution).exists()
    assert not QueueMessage.objects.filter(execution=execution).exists()
    assert not WorkItem.objects.filter(execution=execution, payload__isnull=False).exists()
    assert execution.events.count() == execution.event_count  # history stays


def test_prune_deletes_exactly_the_old_ended_executions_with_their_rows(settings):
    def make(name: str, *, status: str, ended_days_ago: float | None) -> Execution:
        execution = start(TASK_THEN_WAIT, name=name)
        item = WorkItem.objects.get(execution=execution)
        ExecutionValue.objects.create(execution=execution, key="v", value=[1])
        Timer.objects.create(execution=execution, key="k", entry_id=1, due_at=db_now())
        QueueMessage.objects.create(
            queue="q", body={}, execution=execution, created_at=db_now(), visible_at=db_now()
        )
        stopped = None if ended_days_ago is None else db_now() - timedelta(days=ended_days_ago)
        Execution.objects.filter(pk=execution.pk).update(status=status, stopped_at=stopped)
        WorkItem.objects.filter(pk=item.pk).update(status=WorkStatus.DONE)
        return execution

    old_ok = make("old-ok", status=ExecutionStatus.SUCCEEDED, ended_days_ago=31)
    old_failed = make("old-failed", status=ExecutionStatus.FAILED, ended_days_ago=40)
    recent = make("recent", status=ExecutionStatus.SUCCEEDED, ended_days_ago=29)
    running = make("running", status=ExecutionStatus.RUNNING, ended_days_ago=None)
    old_worker = Heartbeat.objects.create(
        name="w:1",
        kind=HeartbeatKind.WORKER,
        started_at=db_now() - timedelta(days=60),
        last_seen=db_now() - timedelta(days=45),
    )
    keep_ids = {recent.pk, running.pk}

    def rows(model) -> set[int]:
        return set(model.objects.values_list("execution_id", flat=True))

    assert services.executions_prune(older_than=timedelta(days=30), dry_run=True) == 2
    assert Execution.objects.count() == 4
    assert services.executions_prune(older_than=timedelta(days=30)) == 2
    assert set(Execution.objects.values_list("pk", flat=True)) == keep_ids
    for model in (HistoryEvent, WorkItem, Timer, ExecutionValue, QueueMessage):
        assert rows(model) == keep_ids, model.__name__
    assert not Execution.objects.filter(pk__in=[old_ok.pk, old_failed.pk]).exists()
    assert not Heartbeat.objects.filter(pk=old_worker.pk).exists()
    assert services.executions_prune(older_than=timedelta(days=30)) == 0


def test_the_prune_command_uses_the_retention_setting(settings, capsys):
    from django.core.management import call_command

    settings.FLOWSITE_RETENTION_DAYS = 7
    execution = start(TASK_THEN_WAIT)
    Execution.objects.filter(pk=execution.pk).update(
        status=ExecutionStatus.STOPPED, stopped_at=db_now() - timedelta(days=8)
    )
    call_command("flowsite_prune", "--dry-run")
    assert "would delete 1 execution" in capsys.readouterr().out
    assert Execution.objects.filter(pk=execution.pk).exists()
    call_command("flowsite_prune")
    assert "deleted 1 execution" in capsys.readouterr().out
    assert not Execution.objects.filter(pk=execution.pk).exists()


# --- values no database can store ------------------------------------------------------------


def test_a_handler_result_holding_nul_fails_the_task_instead_of_the_write():
    """PostgreSQL refuses NUL in jsonb: such a result would make the result write fail over and
    over. It fails the Task with FC.InvalidResponse on every backend instead."""
    function_services.function_create(
        name="rel_nul", handler="apihandlers.nul_result", actor=function_services.SYSTEM
    )
    execution = start(TASK_THEN_WAIT.replace("rel_record", "rel_nul"), name="nul")
    assert worker.run_work_item(WorkItem.objects.get(execution=execution).pk) == "done"
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.FAILED
    assert execution.error_code == "FC.InvalidResponse"
    assert "NUL" in execution.error_message


def test_inputs_and_callback_outputs_holding_nul_are_refused():
    flow = services.flow_create(name="nul-in", definition=TASK_THEN_WAIT, actor=SYSTEM)
    with pytest.raises(services.ServiceError) as refused:
        services.execution_start(flow=flow, input={"a": ["ok", "b\x00d"]}, actor=SYSTEM)
    assert refused.value.code == "InvalidArgument"
    assert "input.a[1]" in refused.value.message


# --- task tokens are secret --------------------------------------------------------------------


def test_the_token_is_stored_nowhere_and_only_the_handler_gets_it(monkeypatch):
    """The engine, the history, the work item and the token row hold the token's fingerprint
    (and its hash); the handler's event gets the token itself, derived again by the worker."""
    seen: list = []
    from functions import services as fs

    real_invoke = fs.invoke

    def spy(function, event, **kwargs):
        seen.append(event)
        return real_invoke(function, event, **kwargs)

    monkeypatch.setattr(fs, "invoke", spy)
    tokens: list[str] = []
    execution = _callback_waiting(tokens, monkeypatch)
    token = tokens[0]
    row = TaskToken.objects.get(execution=execution)
    assert row.fingerprint == transition.fingerprint(token) and row.fingerprint.startswith("tt:")
    assert seen == [{"token": token}]  # the handler got the real token
    execution.refresh_from_db()
    stored = [
        str(execution.state),
        str(list(execution.events.values_list("detail", flat=True))),
        str(list(WorkItem.objects.filter(execution=execution).values_list("payload", flat=True))),
        str(list(TaskToken.objects.values_list("token_hash", "fingerprint"))),
    ]
    for text in stored:
        assert token not in text
    assert row.fingerprint in stored[1]  # the history names the task by its fingerprint
