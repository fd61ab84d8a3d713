"""What a worker does with a work item: claim it, run its function, record the result.

Idempotent: a second delivery of the same id finds the item claimed and does nothing.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..engine import events as ev
from ..models import Execution, WorkItem, WorkKind, WorkStatus
from . import publish
from .faults import fault
from .transition import apply, attempt_id, transition

log = logging.getLogger(__name__)

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


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
                next_dispatch_at=publish.redispatch_at(now),
            )
            transaction.on_commit(lambda: publish.dispatch([detached.pk]))
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
