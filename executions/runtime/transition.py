"""One transition: the thin adapter between the pure engine and the database.

Every transition follows one pattern (:func:`transition`):

1. open a transaction and lock the execution row (``SELECT … FOR UPDATE``; on SQLite the
   IMMEDIATE transaction already serialises writers);
2. optionally *claim* something with a compare-and-set update (a work item, a timer): if the
   claim fails, a duplicate or stale message lost the race and nothing happens;
3. feed one event to ``machine.step``;
4. append its history events, carry out its commands as rows (work items, timers, tokens,
   queue messages) and store the new engine state;
5. commit; only then publish the ids of new work items (``publish.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import random
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.crypto import salted_hmac

from .. import detail
from ..engine import events as ev
from ..engine import machine
from ..engine.compiler import compile_definition
from ..engine.graph import FlowGraph
from ..models import (
    Execution,
    ExecutionStatus,
    ExecutionValue,
    FlowVersion,
    HistoryEvent,
    QueueMessage,
    TaskToken,
    Timer,
    WorkItem,
    WorkKind,
    WorkStatus,
)
from . import publish
from .faults import fault

log = logging.getLogger(__name__)


def limits() -> machine.Limits:
    return machine.Limits(
        max_payload_bytes=settings.FLOWSITE_MAX_PAYLOAD_BYTES,
        max_history_events=settings.FLOWSITE_MAX_HISTORY_EVENTS,
        inline_budget=settings.FLOWSITE_INLINE_BUDGET,
        map_max_concurrency=settings.FLOWSITE_MAP_MAX_CONCURRENCY,
        max_lost_attempts=settings.FLOWSITE_MAX_LOST_ATTEMPTS,
    )


@lru_cache(maxsize=256)
def compiled_version(version_id: int, digest: str) -> FlowGraph:
    """The compiled graph of a flow version, cached per process (versions are immutable; the
    digest guards against a reused id)."""
    definition = FlowVersion.objects.values_list("definition", flat=True).get(pk=version_id)
    return compile_definition(definition, max_bytes=settings.FLOWSITE_MAX_DEFINITION_BYTES)


def graph_for(execution: Execution) -> FlowGraph:
    """The compiled graph of the execution's flow version (cached per process)."""
    return compiled_version(execution.flow_version_id, execution.flow_version.digest)


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


def db_now() -> datetime:
    """The database's clock: the one clock every deadline is set and judged by, so that app
    servers and workers whose clocks disagree can never fire a timer early or twice (a timer's
    ``due_at`` is compared with the database's ``now()`` by the sweeper)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT clock_timestamp()")
            return cursor.fetchone()[0]
        if connection.vendor == "sqlite":
            cursor.execute("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")
            naive = datetime.fromisoformat(cursor.fetchone()[0])
            return naive.replace(tzinfo=UTC)
    return timezone.now()  # pragma: no cover - other databases are not supported


# --- task tokens ---------------------------------------------------------------------------------
#
# The token of attempt A of state entry E of execution X is
# ``<X>.<E>.<A>.<mac>`` where mac = HMAC(SECRET_KEY, "X.E.A.<the execution's random salt>").
# It is stored nowhere: the database keeps its SHA-256 (to find the task from a report) and its
# fingerprint ``tt:<first 12 hex digits of the SHA-256>``, which is all the engine, the history,
# the API and the pages ever see. The worker running the task's function derives the token
# again and puts it in place of the fingerprint in the handler's event. A report on a token
# whose row is gone (the execution ended and its bookkeeping was cleared) is still recognised
# by its MAC and answered 409 rather than 404.

_TOKEN_SALT = "flowsite.task-token"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def fingerprint(token: str) -> str:
    return f"tt:{token_hash(token)[:12]}"


def new_salt() -> str:
    return secrets.token_hex(16)


def _token_mac(ids: str, salt: str) -> str:
    return salted_hmac(_TOKEN_SALT, f"{ids}.{salt}", algorithm="sha256").hexdigest()[:40]


def task_token(execution_id: int, salt: str, entry: int, attempt: int) -> str:
    ids = f"{execution_id}.{entry}.{attempt}"
    return f"{ids}.{_token_mac(ids, salt)}"


def attempt_token(execution_id: int, entry: int, attempt: int) -> str:
    """The secret token of one attempt of a callback task (one query: the execution's salt)."""
    salt = Execution.objects.filter(pk=execution_id).values_list("token_salt", flat=True)
    return task_token(execution_id, salt.first() or "", entry, attempt)


def token_of(row: TaskToken) -> str:
    """The secret token of a waiting task's row (for tests and tools that act as the external
    party)."""
    return attempt_token(row.execution_id, row.entry_id, row.attempt)


def token_was_issued(token: str) -> bool:
    """True when ``token`` is one flowsite issued (its execution still exists to check it)."""
    parts = token.split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) < 20 for p in parts[:3]):
        return False
    salt = Execution.objects.filter(pk=int(parts[0])).values_list("token_salt", flat=True).first()
    if not salt:
        return False
    expected = task_token(int(parts[0]), salt, int(parts[1]), int(parts[2]))
    return hmac.compare_digest(token, expected)


def token_namer(execution: Execution) -> Callable[[int, int], str]:
    """The engine's ``new_token``: the fingerprint of the entry's attempt's token."""

    def name(entry: int, attempt: int) -> str:
        return fingerprint(task_token(execution.pk, execution.token_salt, entry, attempt))

    return name


def with_token(value, real: str, mark: str):
    """``value`` (a JSON value) with the fingerprint ``mark`` replaced by the token ``real``
    wherever a string holds it (a constructor may have put it inside a longer string)."""
    if isinstance(value, str):
        return value.replace(mark, real) if mark in value else value
    if isinstance(value, list):
        return [with_token(v, real, mark) for v in value]
    if isinstance(value, dict):
        return {with_token(k, real, mark): with_token(v, real, mark) for k, v in value.items()}
    return value


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
        now = now or db_now()
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
            graph,
            execution.state,
            event,
            now=now,
            rng=rng,
            new_token=token_namer(execution),
            limits=limits(),
            values=lambda keys: _values(execution.pk, keys),
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


def _put_values(puts: dict[str, ExecutionValue]) -> None:
    if puts:
        ExecutionValue.objects.bulk_create(
            list(puts.values()),
            update_conflicts=True,
            unique_fields=["execution", "key"],
            update_fields=["value"],
        )
        puts.clear()


def _values(execution_id: int, keys: list[str]) -> dict:
    """The engine's read-back of values it stored beside its state (one query)."""
    return dict(
        ExecutionValue.objects.filter(execution_id=execution_id, key__in=keys).values_list(
            "key", "value"
        )
    )


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
    # The execution page's read model (a row per state visit and per state), in this same
    # transaction; its cost grows with this transition's events only.
    detail.record_transition(execution.pk, decision.events, now)
    new_work: list[int] = []
    puts: dict[str, ExecutionValue] = {}
    for command in decision.commands:
        if isinstance(command, ev.PutValue):
            # Collected and written in one statement (a Map's results arrive several at once).
            puts[command.key] = ExecutionValue(
                execution_id=execution.pk, key=command.key, value=command.value
            )
            continue
        if isinstance(command, ev.DropValues):
            _put_values(puts)
        _carry_out(execution, command, now=now, new_work=new_work)
    _put_values(puts)
    # An execution that ends in its very first transition without a command (a flow of Pass,
    # Choice and the like, run inline by its start) has no bookkeeping rows to clear.
    first_and_bare = execution.revision == 0 and all(
        isinstance(c, ev.Finish) for c in decision.commands
    )
    execution.state = decision.state
    execution.revision += 1
    execution.event_count = decision.state["next_event_id"] - 1
    if execution.status == ExecutionStatus.STARTING:
        execution.status = ExecutionStatus.RUNNING
    if not execution.is_open and not first_and_bare:
        clear_bookkeeping(execution.pk)
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
    execution.new_work = new_work
    if new_work:
        transaction.on_commit(lambda ids=new_work: publish.dispatch(tuple(ids)) if ids else None)


def clear_bookkeeping(execution_id: int) -> None:
    """Delete what only a running execution needs, in the transaction that ends it: its timers
    (fired or not), its task tokens (a late report is still recognised by the token's MAC and
    answered 409), its side values, its unread queue messages, and the payloads of its work
    items (the rows stay, for the record of attempts and workers). An async-submitted
    (detached) run keeps its payload: nothing waits for it, but it still has to run."""
    Timer.objects.filter(execution_id=execution_id).delete()
    TaskToken.objects.filter(execution_id=execution_id).delete()
    ExecutionValue.objects.filter(execution_id=execution_id).delete()
    QueueMessage.objects.filter(execution_id=execution_id).delete()
    WorkItem.objects.filter(execution_id=execution_id, payload__isnull=False).exclude(
        kind=WorkKind.DETACHED
    ).update(payload=None)


def attempt_id(item: WorkItem) -> str:
    """``<execution>-<entry>-<attempt>``: the handler's request id and async task id."""
    return f"{item.execution_id}-{item.entry_id}-{item.attempt}"


def _carry_out(execution: Execution, command, *, now: datetime, new_work: list[int]) -> None:
    redispatch = publish.redispatch_at(now)
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
            idempotency_key=command.idempotency_key,
            created_at=now,
            next_dispatch_at=redispatch,
        )
        new_work.append(item.pk)
    elif isinstance(command, ev.SubmitAsync):
        # The Task already completed with the acknowledgement; the function runs on its own.
        item = WorkItem.objects.create(
            execution=execution,
            kind=WorkKind.DETACHED,
            entry_id=command.entry,
            attempt=command.attempt,
            state_name=command.state_name,
            function_name=command.function,
            payload=command.event,
            invocation="async",
            mode="RequestComplete",
            idempotency_key=command.task_id,
            created_at=now,
            next_dispatch_at=redispatch,
        )
        new_work.append(item.pk)
    elif isinstance(command, ev.DropValues):
        ExecutionValue.objects.filter(execution=execution, key__startswith=command.prefix).delete()
    elif isinstance(command, ev.ScheduleResume):
        item = WorkItem.objects.create(
            execution=execution,
            kind=WorkKind.RESUME,
            entry_id=0,
            attempt=execution.revision + 1,
            created_at=now,
            next_dispatch_at=redispatch,
        )
        new_work.append(item.pk)
    elif isinstance(command, ev.CancelTask):
        WorkItem.objects.filter(
            execution=execution,
            kind=WorkKind.INVOKE,
            entry_id=command.entry,
            attempt=command.attempt,
            status__in=[WorkStatus.PENDING, WorkStatus.RUNNING],
        ).update(status=WorkStatus.CANCELLED, finished_at=now, payload=None)
    elif isinstance(command, ev.StartTimer):
        Timer.objects.update_or_create(
            execution=execution,
            key=command.key,
            defaults={"entry_id": command.entry, "due_at": command.due_at, "fired_at": None},
        )
    elif isinstance(command, ev.CancelTimer):
        Timer.objects.filter(execution=execution, key=command.key, fired_at__isnull=True).delete()
    elif isinstance(command, ev.OpenToken):
        real = task_token(execution.pk, execution.token_salt, command.entry, command.attempt)
        TaskToken.objects.update_or_create(
            token_hash=token_hash(real),
            defaults={
                "fingerprint": command.token,
                "execution": execution,
                "entry_id": command.entry,
                "attempt": command.attempt,
                "state_name": command.state_name,
                "is_open": True,
                "created_at": now,
                "closed_at": None,
            },
        )
    elif isinstance(command, ev.CloseToken):
        # Rows made before fingerprints were recorded under the engine's name, the token.
        TaskToken.objects.filter(execution=execution).filter(
            Q(fingerprint=command.token) | Q(token_hash=token_hash(command.token))
        ).update(is_open=False, closed_at=now)
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
