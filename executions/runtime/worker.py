"""What a worker does with a work item: claim it, run its function, record the result.

Idempotent: a second delivery of the same id finds the item claimed and does nothing.

Failure rules this module keeps:

* **A result is never lost to a brief database error.** The transaction that records it is
  retried with back-off for as long as the attempt's lease allows (:func:`_record`); only then
  is it given up, and the sweeper re-runs the attempt with the same ``idempotency_key``.
* **A worker that cannot reach the database stops taking messages.** The Celery task waits for
  the database to answer again (:func:`run_with_database`) instead of failing and dropping the
  message; after ``FLOWSITE_DB_OUTAGE_WAIT`` seconds it hands the message back to the broker.
* **A dead worker is noticed in seconds**: each worker process stamps a liveness row
  (``liveness.py``); a redelivered message whose attempt belongs to a dead process of this
  host is reclaimed at once.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

from ..engine import events as ev
from ..engine.builtins import JsonValueError, check_json_value
from ..models import Execution, WorkItem, WorkKind, WorkStatus
from . import liveness
from .faults import fault
from .transition import (
    apply,
    attempt_id,
    attempt_token,
    db_now,
    fingerprint,
    transition,
    with_token,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
DB_ERRORS = (OperationalError, InterfaceError)


class DatabaseUnavailable(Exception):
    """The database stayed unreachable for longer than ``FLOWSITE_DB_OUTAGE_WAIT``."""


def lease_seconds(function) -> float:
    # The lease covers the function's own time limit plus a grace; past it the sweeper
    # declares the attempt lost even if its worker still stamps its liveness row (a hung
    # handler), and the engine re-runs or fails it.
    timeout = function.timeout_seconds if function else 60
    return timeout + settings.FLOWSITE_LEASE_GRACE


def _claim(item: WorkItem, function, now: datetime) -> bool:
    return bool(
        WorkItem.objects.filter(pk=item.pk, status=WorkStatus.PENDING).update(
            status=WorkStatus.RUNNING,
            started_at=now,
            lease_until=now + timedelta(seconds=lease_seconds(function)),
            worker=liveness.worker_id(),
        )
    )


# --- riding out database outages ---------------------------------------------------------------


def wait_for_database(deadline: float) -> bool:
    """Block until the database answers (True) or ``deadline`` (monotonic) passes (False)."""
    while True:
        connection.close()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            return True
        except DB_ERRORS:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)


def run_with_database(fn: Callable[[], T]) -> T:
    """Run ``fn`` (a whole, idempotent unit of work such as :func:`run_work_item`); when the
    database is unreachable, wait for it and run ``fn`` again rather than fail. The message
    stays with this worker meanwhile, so the worker takes no more; past
    ``FLOWSITE_DB_OUTAGE_WAIT`` seconds :class:`DatabaseUnavailable` lets the caller hand the
    message back to the broker."""
    deadline = time.monotonic() + settings.FLOWSITE_DB_OUTAGE_WAIT
    while True:
        try:
            return fn()
        except DB_ERRORS as exc:
            log.warning("database unavailable (%s); waiting for it", exc)
            if not wait_for_database(deadline):
                raise DatabaseUnavailable(str(exc)) from exc
            log.info("database is back; retrying")


def _record(fn: Callable[[], T], deadline: float, what: str) -> T:
    """Run ``fn`` (one transaction recording a handler's outcome), retrying with back-off on
    database errors until ``deadline`` (monotonic; the attempt's lease): a brief outage must
    not lose a result that took a handler minutes to compute and make it run again."""
    delay = 0.1
    while True:
        try:
            return fn()
        except DB_ERRORS as exc:
            connection.close()
            if time.monotonic() + delay >= deadline:
                log.error("giving up recording %s: %s", what, exc)
                raise
            log.warning("could not record %s (%s); retrying in %.1f s", what, exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


# --- running work items ------------------------------------------------------------------------


def run_work_item(work_id: int) -> str:
    """Run one work item: claim it, run its function, record the result. Idempotent: a second
    delivery of the same id finds the item claimed and returns ``"duplicate"``."""
    from functions.models import Function  # noqa: PLC0415 - app registry order

    liveness.ensure_started()
    item = WorkItem.objects.filter(pk=work_id).first()
    if item is None:
        return "gone"
    if item.status == WorkStatus.RUNNING:
        return _running_already(item)
    if item.status != WorkStatus.PENDING:
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
            status=WorkStatus.CANCELLED, finished_at=db_now(), payload=None
        )
        return "stale"
    return _run_claimed(item, function)


def _running_already(item: WorkItem) -> str:
    """A message for an item that is already running: a duplicate, a redelivery after its
    worker process died (Celery requeues the message of a killed prefork child: reclaim the
    attempt now rather than after the liveness timeout), or our own claim whose commit we could
    not confirm because the connection dropped (run it: nobody else will)."""
    from functions.models import Function  # noqa: PLC0415

    if item.worker == liveness.worker_id() and item.kind == WorkKind.INVOKE:
        log.info("work item %s: resuming our own claim", item.pk)
        return _run_claimed(item, Function.objects.filter(name=item.function_name).first())
    if item.kind == WorkKind.INVOKE and liveness.is_local_and_dead(item.worker):
        log.warning("work item %s: its worker %s is gone; reclaiming it", item.pk, item.worker)
        from .sweeper import report_lost  # noqa: PLC0415 - the sweeper imports this module

        report_lost(item.pk, item.execution_id, item.entry_id, item.attempt)
        return "reclaimed"
    return "duplicate"


def _context(item: WorkItem) -> dict:
    if item.kind == WorkKind.DETACHED:
        # An async-submitted run: its task id (from the submit acknowledgement) is its key.
        return {"attempt": item.attempt, "idempotency_key": item.idempotency_key}
    return {
        "attempt": item.attempt,
        # Stable for every re-run of one logical attempt (lost worker, lost result write).
        "idempotency_key": f"{item.execution_id}-{item.idempotency_key}"
        if item.idempotency_key
        else attempt_id(item),
    }


def _run_claimed(item: WorkItem, function) -> str:
    """Run claimed attempts: this one, then (eagerly) up to FLOWSITE_EAGER_STEPS follow-up
    attempts of the same execution, each claimed and marked started in the transaction that
    recorded the previous result — no broker round trip and one transaction less per step. A
    follow-up claimed this way is never published; if this worker dies before running it, its
    liveness row goes stale and the sweeper reports it lost, as for any other attempt."""
    from functions.services import invoke  # noqa: PLC0415

    eager_left = settings.FLOWSITE_EAGER_STEPS
    while True:
        # Measured from here, a little inside the lease the claim set (which counted from the
        # claim's own moment): past it the sweeper may already have given the attempt away.
        deadline = time.monotonic() + lease_seconds(function) - 1.0
        if fault("crash_in_task"):
            os._exit(137)
        # A callback task's token is stored nowhere: derived here, handed to the handler, and
        # never let back into what is recorded.
        real = (
            attempt_token(item.execution_id, item.entry_id, item.attempt)
            if item.mode == "WaitForCustomCallback"
            else None
        )
        result = invoke(
            function or item.function_name,
            with_token(item.payload, real, fingerprint(real)) if real else item.payload,
            request_id=attempt_id(item),
            extra_context=_context(item),
        )
        if real:
            result = _without_token(result, real)
        if result.ok and (problem := _unusable(result.output)):
            event = ev.TaskFailed(item.entry_id, item.attempt, "FC.InvalidResponse", problem)
        elif result.ok:
            event = ev.TaskSucceeded(item.entry_id, item.attempt, result.output)
        else:
            event = ev.TaskFailed(item.entry_id, item.attempt, result.error, result.cause)
        try:
            outcome, following = _record_result(
                item, event, result.error, eager=eager_left > 0, deadline=deadline
            )
        except DB_ERRORS:
            return "result-lost"
        if following is None:
            return outcome
        item, function = following
        eager_left -= 1


def _without_token(result, real: str):
    """The handler's answer with the callback task's token put back to its fingerprint: a
    handler that returns its event, or fails with it in the message, must not write the
    secret into the history (which the API and the pages show)."""
    mark = fingerprint(real)
    result.output = with_token(result.output, mark, real)  # every ``real`` becomes ``mark``
    result.error = (result.error or "").replace(real, mark)
    result.cause = (result.cause or "").replace(real, mark)
    return result


def _unusable(output) -> str:
    """Why a handler's result cannot go into a flow's history and state (a NUL character, which
    PostgreSQL cannot store, a lone surrogate, a number out of range...), or ""."""
    try:
        check_json_value(output)
    except JsonValueError as exc:
        return f"the handler returned a value flowsite cannot use: {exc}"
    return ""


def _record_result(item: WorkItem, event, error: str, *, eager: bool, deadline: float):
    """Record an attempt's outcome (retrying through database errors until ``deadline``);
    returns ``(outcome, (next item, its function) or None)``."""
    following: dict = {}
    tries = 0

    def finish(execution: Execution, now: datetime) -> bool:
        nonlocal tries
        tries += 1
        return bool(
            WorkItem.objects.filter(pk=item.pk, status=WorkStatus.RUNNING).update(
                status=WorkStatus.DONE, finished_at=now, error=(error or "")[:128], payload=None
            )
        )

    def then(execution: Execution, decision: ev.Decision, now: datetime) -> None:
        following.update(_claim_following(execution, now))

    def record():
        nonlocal tries
        if fault("fail_result_write") and tries < 2:
            tries += 1  # test hook: the write fails twice before it can succeed
            raise OperationalError("fault fail_result_write")
        return transition(item.execution_id, event, claim=finish, then=then if eager else None)

    decision = _record(record, deadline, f"the result of work item {item.pk}")
    if decision is None and tries > 1:
        # A retry found the item finished: most likely our own earlier try committed and only
        # its acknowledgement was lost. Pick up what that commit claimed for us.
        following.update(_claimed_by_lost_commit(item))
        if not following:
            return "result-discarded", None
    elif decision is None:
        return "result-discarded", None
    if not following:
        return "done", None
    return "done", (following["item"], following["function"])


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


def _claimed_by_lost_commit(item: WorkItem) -> dict:
    """The follow-up attempt a committed-but-unacknowledged result transaction claimed for this
    worker (same execution, same worker, started at the very moment the item finished)."""
    from functions.models import Function  # noqa: PLC0415

    done = WorkItem.objects.filter(pk=item.pk).values("status", "worker", "finished_at").first()
    if not done or done["status"] != WorkStatus.DONE or done["worker"] != liveness.worker_id():
        return {}
    following = WorkItem.objects.filter(
        execution_id=item.execution_id,
        kind=WorkKind.INVOKE,
        status=WorkStatus.RUNNING,
        worker=liveness.worker_id(),
        started_at=done["finished_at"],
    ).first()
    if following is None:
        return {}
    return {
        "item": following,
        "function": Function.objects.filter(name=following.function_name).first(),
    }


def _run_detached(item: WorkItem, function) -> str:
    """Run an asynchronously submitted function. Nothing waits for it; its outcome is kept on
    the work item. (Tracked async tasks with their own lifecycle come with a later issue.)"""
    from functions.services import invoke  # noqa: PLC0415

    now = db_now()
    won = WorkItem.objects.filter(pk=item.pk, status=WorkStatus.PENDING).update(
        status=WorkStatus.RUNNING,
        started_at=now,
        lease_until=now + timedelta(seconds=lease_seconds(function)),
        worker=liveness.worker_id(),
    )
    if not won:
        return "duplicate"
    deadline = time.monotonic() + lease_seconds(function) - 1.0
    result = invoke(
        function or item.function_name,
        item.payload,
        request_id=attempt_id(item),
        extra_context=_context(item),
    )

    def record() -> int:
        return WorkItem.objects.filter(pk=item.pk, status=WorkStatus.RUNNING).update(
            status=WorkStatus.DONE,
            finished_at=db_now(),
            error=(result.error or "")[:128],
            payload=None,
        )

    try:
        _record(record, deadline, f"the outcome of detached work item {item.pk}")
    except DB_ERRORS:
        return "result-lost"
    return "done"


def _run_resume(item: WorkItem) -> str:
    def claim(execution: Execution, now: datetime) -> bool:
        return bool(
            WorkItem.objects.filter(pk=item.pk, status=WorkStatus.PENDING).update(
                status=WorkStatus.DONE, started_at=now, finished_at=now, worker=liveness.worker_id()
            )
        )

    decision = transition(item.execution_id, ev.Resume(), claim=claim)
    return "resumed" if decision is not None else "lost-race"
