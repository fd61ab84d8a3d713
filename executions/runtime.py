"""The thin adapter between the pure engine and the database and Celery.

Every transition follows one pattern (:func:`transition`):

1. open a transaction and lock the execution row (``SELECT … FOR UPDATE``; on SQLite the
   IMMEDIATE transaction already serialises writers);
2. optionally *claim* something with a compare-and-set update (a work item, a timer): if the
   claim fails, a duplicate or stale message lost the race and nothing happens;
3. feed one event to ``machine.step``;
4. append its history events, carry out its commands as rows (work items, timers, tokens,
   queue messages) and store the new engine state;
5. commit; only then publish the ids of new work items to Celery.

A publish that never happens (crash after commit, broker down) is repaired by the sweeper,
which re-publishes pending work items whose ``next_dispatch_at`` has passed; a published
message that is delivered twice finds its work item already claimed and does nothing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import secrets
import socket
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import lru_cache

from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F
from django.db.models.functions import Now
from django.utils import timezone

from .engine import events as ev
from .engine import machine
from .engine.compiler import compile_definition
from .engine.graph import FlowGraph
from .models import (
    Execution,
    ExecutionStatus,
    FlowVersion,
    HistoryEvent,
    QueueMessage,
    TaskToken,
    Timer,
    WorkItem,
    WorkKind,
    WorkStatus,
)

log = logging.getLogger(__name__)

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


def limits() -> machine.Limits:
    return machine.Limits(
        max_payload_bytes=settings.FLOWSITE_MAX_PAYLOAD_BYTES,
        max_history_events=settings.FLOWSITE_MAX_HISTORY_EVENTS,
        inline_budget=settings.FLOWSITE_INLINE_BUDGET,
        map_max_concurrency=settings.FLOWSITE_MAP_MAX_CONCURRENCY,
        max_lost_attempts=settings.FLOWSITE_MAX_LOST_ATTEMPTS,
    )


@lru_cache(maxsize=256)
def _compiled(version_id: int, digest: str) -> FlowGraph:
    definition = FlowVersion.objects.values_list("definition", flat=True).get(pk=version_id)
    return compile_definition(definition, max_bytes=settings.FLOWSITE_MAX_DEFINITION_BYTES)


def graph_for(execution: Execution) -> FlowGraph:
    """The compiled graph of the execution's flow version, cached per process (versions are
    immutable; the digest guards against a reused id)."""
    return _compiled(execution.flow_version_id, execution.flow_version.digest)


def locked_execution(execution_id: int) -> Execution | None:
    """Load and lock one execution row (inside a transaction). ``of=("self",)``: on PostgreSQL
    only the execution row is locked, not the flow version that every execution of the same
    flow shares; SQLite ignores the clause (BEGIN IMMEDIATE already serialises writers)."""
    return (
        Execution.objects.select_for_update(of=("self",))
        .select_related("flow_version")
        .defer("flow_version__definition")
        .filter(pk=execution_id)
        .first()
    )


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


# --- faults (tests only) -----------------------------------------------------------------------


def fault(name: str) -> bool:
    """True when fault-injection hook ``name`` is on (FLOWSITE_FAULTS, refused in production)."""
    return name in settings.FLOWSITE_FAULTS.split(",") if settings.FLOWSITE_FAULTS else False


# --- the transition ----------------------------------------------------------------------------


def transition(
    execution_id: int,
    event: ev.Event,
    *,
    claim: Callable[[Execution, datetime], bool] | None = None,
    then: Callable[[Execution, ev.Decision, datetime], None] | None = None,
    now: datetime | None = None,
) -> ev.Decision | None:
    """Apply one event to one execution atomically. Returns None when the claim failed or the
    execution is gone; a decision with ``ignored`` set when the engine refused the event.
    ``then`` runs in the same transaction after an applied (not ignored) event."""
    with transaction.atomic():
        execution = locked_execution(execution_id)
        if execution is None:
            return None
        now = now or timezone.now()
        if claim is not None and not claim(execution, now):
            return None
        decision = apply(execution, event, now=now)
        if then is not None and not decision.ignored:
            then(execution, decision, now)
    if fault("crash_after_commit"):
        os._exit(137)
    return decision


def apply(execution: Execution, event: ev.Event, *, now: datetime) -> ev.Decision:
    """Run the engine on a locked execution and persist the outcome (inside a transaction)."""
    graph = graph_for(execution)
    rng = random.Random(f"{execution.pk}:{execution.revision}")
    try:
        decision = machine.step(
            graph, execution.state, event, now=now, rng=rng, new_token=new_token, limits=limits()
        )
    except Exception as exc:
        # A bug in the engine must not turn this execution into a poison message that every
        # delivery and every sweep trips over again: fail it, closing what it has open. The
        # engine may have half-updated the state it was given, so start from the stored one.
        log.exception("execution %s: the engine failed on %s", execution.pk, type(event).__name__)
        execution.refresh_from_db(fields=["state"])
        decision = machine.abort(
            graph,
            execution.state,
            now=now,
            error=machine.ERR_INTERNAL,
            cause=f"internal error while handling {type(event).__name__}: "
            f"{type(exc).__name__}: {exc}",
            limits=limits(),
        )
    if decision.ignored:
        log.info(
            "execution %s: %s ignored: %s", execution.pk, type(event).__name__, decision.ignored
        )
        return decision
    persist(execution, decision, now=now)
    return decision


def persist(execution: Execution, decision: ev.Decision, *, now: datetime) -> None:
    HistoryEvent.objects.bulk_create(
        [
            HistoryEvent(
                execution_id=execution.pk,
                event_id=e["event_id"],
                schedule_event_id=e["schedule_event_id"],
                type=e["type"],
                step_name=e["step_name"],
                time=e["time"],
                detail=e["detail"],
            )
            for e in decision.events
        ]
    )
    publish: list[int] = []
    for command in decision.commands:
        _carry_out(execution, command, now=now, publish=publish)
    execution.state = decision.state
    execution.revision += 1
    execution.event_count = decision.state["next_event_id"] - 1
    if execution.status == ExecutionStatus.STARTING:
        execution.status = ExecutionStatus.RUNNING
    execution.save(
        update_fields=[
            "state",
            "revision",
            "event_count",
            "status",
            "output",
            "error_code",
            "error_message",
            "stopped_at",
        ]
    )
    # Published after commit; until then the list may still shrink (_claim_following).
    execution.new_work = publish
    if publish:
        transaction.on_commit(lambda ids=publish: dispatch(tuple(ids)) if ids else None)


def redispatch_at(now: datetime) -> datetime:
    """When the sweeper re-publishes a work item that nobody has claimed by then."""
    return now + timedelta(seconds=settings.FLOWSITE_REDISPATCH_AFTER)


def attempt_id(item: WorkItem) -> str:
    """``<execution>-<entry>-<attempt>``: the handler's request id and async task id."""
    return f"{item.execution_id}-{item.entry_id}-{item.attempt}"


def _carry_out(execution: Execution, command, *, now: datetime, publish: list[int]) -> None:
    redispatch = redispatch_at(now)
    if isinstance(command, ev.InvokeFunction):
        item = WorkItem.objects.create(
            execution=execution,
            kind=WorkKind.INVOKE,
            entry_id=command.entry,
            attempt=command.attempt,
            state_name=command.state_name,
            function_name=command.function,
            payload=command.event,
            invocation=command.invocation,
            mode=command.mode,
            timeout_seconds=command.timeout_seconds,
            created_at=now,
            next_dispatch_at=redispatch,
        )
        publish.append(item.pk)
    elif isinstance(command, ev.ScheduleResume):
        item = WorkItem.objects.create(
            execution=execution,
            kind=WorkKind.RESUME,
            entry_id=0,
            attempt=execution.revision + 1,
            created_at=now,
            next_dispatch_at=redispatch,
        )
        publish.append(item.pk)
    elif isinstance(command, ev.CancelTask):
        WorkItem.objects.filter(
            execution=execution,
            kind=WorkKind.INVOKE,
            entry_id=command.entry,
            attempt=command.attempt,
            status__in=[WorkStatus.PENDING, WorkStatus.RUNNING],
        ).update(status=WorkStatus.CANCELLED, finished_at=now)
    elif isinstance(command, ev.StartTimer):
        Timer.objects.update_or_create(
            execution=execution,
            key=command.key,
            defaults={"entry_id": command.entry, "due_at": command.due_at, "fired_at": None},
        )
    elif isinstance(command, ev.CancelTimer):
        Timer.objects.filter(execution=execution, key=command.key, fired_at__isnull=True).delete()
    elif isinstance(command, ev.OpenToken):
        TaskToken.objects.update_or_create(
            token_hash=token_hash(command.token),
            defaults={
                "execution": execution,
                "entry_id": command.entry,
                "state_name": command.state_name,
                "is_open": True,
                "created_at": now,
                "closed_at": None,
            },
        )
    elif isinstance(command, ev.CloseToken):
        TaskToken.objects.filter(token_hash=token_hash(command.token)).update(
            is_open=False, closed_at=now
        )
    elif isinstance(command, ev.SendToQueue):
        QueueMessage.objects.create(
            queue=command.queue,
            body=command.body,
            execution=execution,
            entry_id=command.entry,
            created_at=now,
            visible_at=now,
        )
    elif isinstance(command, ev.Finish):
        execution.status = command.status
        execution.output = command.output
        execution.error_code = command.error[:128]
        execution.error_message = command.cause
        execution.stopped_at = now
    else:  # pragma: no cover - programming error
        raise TypeError(f"unknown command {command!r}")


# --- publishing --------------------------------------------------------------------------------


def dispatch(ids, *, after_commit: bool = True) -> None:
    """Publish work item ids. Never raises: a failed publish is retried by the sweeper."""
    from .tasks import run_work  # noqa: PLC0415 - tasks imports this module

    if after_commit and fault("lose_publish"):
        # Test hook: behave as if the process died between commit and publish.
        log.warning("fault lose_publish: not publishing %s", list(ids))
        return
    for work_id in ids:
        try:
            run_work.apply_async(args=[work_id], retry=False)
            if fault("duplicate_publish"):
                run_work.apply_async(args=[work_id], retry=False)
        except Exception:  # noqa: BLE001 - broker down: the sweeper re-sends
            log.warning(
                "could not publish work item %s; the sweeper will retry", work_id, exc_info=True
            )


# --- workers -----------------------------------------------------------------------------------


def _lease(function, now: datetime) -> datetime:
    # The lease covers the function's own time limit plus a grace; past it the sweeper
    # declares the attempt lost (its worker died) and the engine re-runs or fails it.
    timeout = function.timeout_seconds if function else 60
    return now + timedelta(seconds=timeout + settings.FLOWSITE_LEASE_GRACE)


def _claim(item: WorkItem, function, now: datetime) -> bool:
    return bool(
        WorkItem.objects.filter(pk=item.pk, status=WorkStatus.PENDING).update(
            status=WorkStatus.RUNNING,
            started_at=now,
            lease_until=_lease(function, now),
            worker=WORKER_ID,
        )
    )


def run_work_item(work_id: int) -> str:
    """Run one work item: claim it, run its function, record the result. Idempotent: a second
    delivery of the same id finds the item claimed and returns ``"duplicate"``."""
    from functions.models import Function  # noqa: PLC0415 - app registry order

    item = WorkItem.objects.filter(pk=work_id).first()
    if item is None or item.status != WorkStatus.PENDING:
        return "duplicate"
    if item.kind == WorkKind.RESUME:
        return _run_resume(item)
    function = Function.objects.filter(name=item.function_name).first()
    if item.kind == WorkKind.DETACHED:
        return _run_detached(item, function)

    # The attempt is recorded as started (and committed) before user code runs, so a handler
    # that kills its worker every time is still bounded.
    decision = transition(
        item.execution_id,
        ev.TaskStarted(item.entry_id, item.attempt),
        claim=lambda execution, now: _claim(item, function, now),
    )
    if decision is None:
        return "lost-race"
    if decision.ignored:
        WorkItem.objects.filter(pk=work_id, status=WorkStatus.RUNNING).update(
            status=WorkStatus.CANCELLED, finished_at=timezone.now()
        )
        return "stale"
    return _run_claimed(item, function)


def _run_claimed(item: WorkItem, function) -> str:
    """Run claimed attempts: this one, then (eagerly) up to FLOWSITE_EAGER_STEPS follow-up
    attempts of the same execution, each claimed and marked started in the transaction that
    recorded the previous result — no broker round trip and one transaction less per step. A
    follow-up claimed this way is never published; if this worker dies before running it, its
    lease runs out and the sweeper reports it lost, as for any other attempt."""
    from functions.services import invoke  # noqa: PLC0415

    eager_left = settings.FLOWSITE_EAGER_STEPS
    while True:
        if fault("crash_in_task"):
            os._exit(137)
        if item.invocation == "async" and item.mode == "RequestComplete":
            return _submit_async(item)
        result = invoke(
            function or item.function_name,
            item.payload,
            request_id=attempt_id(item),
            extra_context={"attempt": item.attempt},
        )
        if result.ok:
            event = ev.TaskSucceeded(item.entry_id, item.attempt, result.output)
        else:
            event = ev.TaskFailed(item.entry_id, item.attempt, result.error, result.cause)
        following: dict = {}

        def finish(execution: Execution, now: datetime, pk=item.pk, error=result.error) -> bool:
            return bool(
                WorkItem.objects.filter(pk=pk, status=WorkStatus.RUNNING).update(
                    status=WorkStatus.DONE, finished_at=now, error=(error or "")[:128]
                )
            )

        def then(
            execution: Execution, decision: ev.Decision, now: datetime, into=following
        ) -> None:
            into.update(_claim_following(execution, now))

        follow = then if eager_left > 0 else None
        if transition(item.execution_id, event, claim=finish, then=follow) is None:
            return "result-discarded"
        if not following:
            return "done"
        item, function = following["item"], following["function"]
        eager_left -= 1


def _claim_following(execution: Execution, now: datetime) -> dict:
    """Inside the transaction that just recorded a result: claim the first function attempt it
    created, take it off the publish list, and record it as started."""
    from functions.models import Function  # noqa: PLC0415

    new_work = getattr(execution, "new_work", None)
    if not new_work:
        return {}
    item = (
        WorkItem.objects.filter(pk__in=new_work, kind=WorkKind.INVOKE, status=WorkStatus.PENDING)
        .order_by("pk")
        .first()
    )
    if item is None:
        return {}
    function = Function.objects.filter(name=item.function_name).first()
    if not _claim(item, function, now):
        return {}
    new_work.remove(item.pk)  # the after-commit publish reads this same list
    started = apply(execution, ev.TaskStarted(item.entry_id, item.attempt), now=now)
    if started.ignored:  # pragma: no cover - the attempt was created a moment ago
        WorkItem.objects.filter(pk=item.pk).update(status=WorkStatus.CANCELLED, finished_at=now)
        return {}
    return {"item": item, "function": function}


def _submit_async(item: WorkItem) -> str:
    """``invocationType: Async`` under ``RequestComplete``: the step's output is the submit
    acknowledgement, and the function runs on its own (a ``detached`` work item recorded in
    the same transaction), not holding the step."""
    ack = {"Body": "", "StatusCode": 202, "Headers": {"x-fc-async-task-id": attempt_id(item)}}

    def finish(execution: Execution, now: datetime) -> bool:
        won = WorkItem.objects.filter(pk=item.pk, status=WorkStatus.RUNNING).update(
            status=WorkStatus.DONE, finished_at=now
        )
        if won:
            detached = WorkItem.objects.create(
                execution=execution,
                kind=WorkKind.DETACHED,
                entry_id=item.entry_id,
                attempt=item.attempt,
                state_name=item.state_name,
                function_name=item.function_name,
                payload=item.payload,
                invocation=item.invocation,
                mode=item.mode,
                created_at=now,
                next_dispatch_at=redispatch_at(now),
            )
            transaction.on_commit(lambda: dispatch([detached.pk]))
        return bool(won)

    done = transition(
        item.execution_id, ev.TaskSucceeded(item.entry_id, item.attempt, ack), claim=finish
    )
    return "submitted" if done is not None else "result-discarded"


def _run_detached(item: WorkItem, function) -> str:
    """Run an asynchronously submitted function. Nothing waits for it; its outcome is kept on
    the work item. (Tracked async tasks with their own lifecycle come with a later issue.)"""
    from functions.services import invoke  # noqa: PLC0415

    now = timezone.now()
    timeout = function.timeout_seconds if function else 60
    won = WorkItem.objects.filter(pk=item.pk, status=WorkStatus.PENDING).update(
        status=WorkStatus.RUNNING,
        started_at=now,
        lease_until=now + timedelta(seconds=timeout + settings.FLOWSITE_LEASE_GRACE),
        worker=WORKER_ID,
    )
    if not won:
        return "duplicate"
    result = invoke(
        function or item.function_name,
        item.payload,
        request_id=attempt_id(item),
        extra_context={"attempt": item.attempt},
    )
    WorkItem.objects.filter(pk=item.pk, status=WorkStatus.RUNNING).update(
        status=WorkStatus.DONE, finished_at=timezone.now(), error=(result.error or "")[:128]
    )
    return "done"


def _run_resume(item: WorkItem) -> str:
    def claim(execution: Execution, now: datetime) -> bool:
        return bool(
            WorkItem.objects.filter(pk=item.pk, status=WorkStatus.PENDING).update(
                status=WorkStatus.DONE, started_at=now, finished_at=now, worker=WORKER_ID
            )
        )

    decision = transition(item.execution_id, ev.Resume(), claim=claim)
    return "resumed" if decision is not None else "lost-race"


# --- the sweeper -------------------------------------------------------------------------------


def sweep(*, batch: int = 500) -> dict:
    """Fire due timers, reap lost attempts, re-publish unclaimed work. Safe to run anywhere and
    concurrently: every action is a compare-and-set on the row it acts on."""
    return {
        "timers": fire_due_timers(batch=batch),
        "lost": reap_lost_work(batch=batch),
        "redispatched": redispatch_pending(batch=batch),
    }


def _sweep_one(execution_id: int, event: ev.Event, claim) -> bool:
    """One sweeper transition; a failure is logged and skipped so that one bad row cannot stop
    every other timer. A database outage ends the round (the next one retries)."""
    try:
        return transition(execution_id, event, claim=claim) is not None
    except (OperationalError, InterfaceError):
        raise
    except Exception:
        log.exception("sweeper: %r on execution %s failed; skipped this round", event, execution_id)
        return False


def fire_due_timers(*, batch: int) -> int:
    # Due-ness is judged by the database's clock (one clock for every machine).
    due = list(
        Timer.objects.filter(fired_at__isnull=True, due_at__lte=Now())
        .order_by("due_at")
        .values_list("pk", "execution_id", "key")[:batch]
    )
    fired = 0
    for pk, execution_id, key in due:

        def claim(execution: Execution, now: datetime, pk=pk) -> bool:
            return bool(Timer.objects.filter(pk=pk, fired_at__isnull=True).update(fired_at=now))

        if _sweep_one(execution_id, ev.TimerFired(key), claim):
            fired += 1
    return fired


def reap_lost_work(*, batch: int) -> int:
    # A detached (async-submitted) run whose worker died: nothing waits for it; record it.
    WorkItem.objects.filter(
        kind=WorkKind.DETACHED, status=WorkStatus.RUNNING, lease_until__lte=Now()
    ).update(status=WorkStatus.LOST, finished_at=timezone.now())
    lost = list(
        WorkItem.objects.filter(
            kind=WorkKind.INVOKE, status=WorkStatus.RUNNING, lease_until__lte=Now()
        ).values_list("pk", "execution_id", "entry_id", "attempt")[:batch]
    )
    count = 0
    for pk, execution_id, entry_id, attempt in lost:

        def claim(execution: Execution, now: datetime, pk=pk) -> bool:
            return bool(
                WorkItem.objects.filter(pk=pk, status=WorkStatus.RUNNING).update(
                    status=WorkStatus.LOST, finished_at=now
                )
            )

        if _sweep_one(execution_id, ev.TaskLost(entry_id, attempt), claim):
            count += 1
            log.warning("work item %s (execution %s) lost its worker", pk, execution_id)
    return count


def redispatch_pending(*, batch: int) -> int:
    now = timezone.now()
    due = list(
        WorkItem.objects.filter(status=WorkStatus.PENDING, next_dispatch_at__lte=Now())
        .order_by("next_dispatch_at")
        .values_list("pk", "dispatch_count")[:batch]
    )
    ids = []
    for pk, count in due:
        # Back off: an item still unclaimed after several sends is most likely stuck behind a
        # long queue, and more copies would only make that queue longer.
        delay = settings.FLOWSITE_REDISPATCH_AFTER * min(2**count, 32)
        updated = WorkItem.objects.filter(
            pk=pk, status=WorkStatus.PENDING, dispatch_count=count
        ).update(
            dispatch_count=F("dispatch_count") + 1, next_dispatch_at=now + timedelta(seconds=delay)
        )
        if updated:
            ids.append(pk)
    if ids:
        log.info("re-publishing %d unclaimed work items", len(ids))
        dispatch(ids, after_commit=False)
    return len(ids)
