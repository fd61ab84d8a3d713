"""Writes on flows and executions: the one place the API views and the dashboard call.

Each function is keyword-only, validates its input, raises :class:`flowsite.errors.ServiceError`
with a stable ``code`` on refusal, and does its work in one transaction.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet

from flowsite import audit
from flowsite.access import Perm, require
from flowsite.errors import ServiceError

from .engine import events as ev
from .engine import machine
from .engine.builtins import JsonValueError, check_json_value
from .engine.compiler import compile_definition
from .engine.graph import DefinitionError, FlowGraph
from .models import (
    NAME_RE,
    Execution,
    ExecutionStatus,
    ExecutionValue,
    Flow,
    FlowVersion,
    Heartbeat,
    HistoryEvent,
    QueueMessage,
    StepSummary,
    StepVisit,
    TaskToken,
    Timer,
    WorkItem,
)
from .runtime import transition as runtime
from .runtime.faults import fault

_name = re.compile(NAME_RE)


def _check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _name.match(value):
        raise ServiceError(
            f"{what} must be 1-128 letters, digits, '_' or '-', starting with a letter or '_'",
            code="InvalidArgument",
        )
    return value


# Execution inputs and callback outputs nest at most this deep (the engine's own headroom).
MAX_PAYLOAD_DEPTH = 100


def _check_json_size(value: Any, what: str, *, field: str = "") -> None:
    """``value`` is JSON data flowsite can store and evaluate (valid Unicode, finite numbers in
    double range, at most MAX_PAYLOAD_DEPTH levels; else 400 ``InvalidArgument`` naming where,
    under ``field``), and its compact UTF-8 JSON is within FLOWSITE_MAX_PAYLOAD_BYTES (413)."""
    limit = settings.FLOWSITE_MAX_PAYLOAD_BYTES
    try:
        # Every value takes at least 2 bytes of JSON text ("0,"), so a value with more than
        # limit/2 parts is too large whatever they are: the walk can stop there.
        check_json_value(value, max_depth=MAX_PAYLOAD_DEPTH, max_nodes=limit // 2 + 1)
    except JsonValueError as exc:
        if exc.kind == "nodes":
            raise ServiceError(
                f"{what} is larger than the limit of {limit} bytes",
                code="EntityTooLarge",
                status=413,
            ) from None
        raise ServiceError(
            f"{what} is not acceptable JSON: {exc.message} (at {exc.where(field) or field})",
            code="InvalidArgument",
        ) from None
    size = machine.json_size(value)
    if size > limit:
        raise ServiceError(
            f"{what} is {size} bytes; the limit is {limit} bytes", code="EntityTooLarge", status=413
        )


# --- definitions -------------------------------------------------------------------------------


def definition_compile(definition: Any) -> FlowGraph:
    """Compile and validate a definition, or raise ``InvalidDefinition`` listing every problem."""
    if not isinstance(definition, str):
        raise ServiceError(
            "definition must be the YAML (or JSON) text of the flow", code="InvalidArgument"
        )
    # "surrogatepass": text with a lone surrogate is measured here and refused as not UTF-8 by
    # the loader (400), instead of failing to encode (500).
    size = len(definition.encode("utf-8", "surrogatepass"))
    limit = settings.FLOWSITE_MAX_DEFINITION_BYTES
    if size > limit:
        raise ServiceError(
            f"the definition is {size} bytes; the limit is {limit} bytes",
            code="EntityTooLarge",
            status=413,
        )
    from functions.models import Function  # noqa: PLC0415

    try:
        return compile_definition(
            definition,
            max_bytes=limit,
            known_functions=set(Function.objects.values_list("name", flat=True)),
        )
    except DefinitionError as exc:
        raise ServiceError(
            f"the definition is invalid: {exc}",
            code="InvalidDefinition",
            errors=[d.as_dict() for d in exc.errors],
        ) from None


def _warnings(graph: FlowGraph, name: str) -> list[dict]:
    warnings = [d.as_dict() for d in graph.warnings]
    if graph.name and graph.name != name:
        # Decision 1: CloudFlow requires them to match; flowsite only warns.
        warnings.insert(
            0,
            {
                "path": "Name",
                "line": None,
                "message": f"the definition's Name {graph.name!r} differs from the flow's "
                f"name {name!r}; the flow's name is used",
            },
        )
    return warnings


# --- flows -------------------------------------------------------------------------------------


def flow_create(*, name: str, definition: str, description: str = "", actor) -> Flow:
    actor = require(actor, Perm.MANAGE_FLOWS)
    _check_name(name, "name")
    graph = definition_compile(definition)
    try:
        with transaction.atomic():
            flow = Flow.objects.create(
                name=name,
                definition=definition,
                description=description or "",
                dialect=graph.dialect,
                version=1,
            )
            FlowVersion.objects.create(
                flow=flow,
                version=1,
                definition=definition,
                dialect=graph.dialect,
                created_by=_user(actor),
            )
            audit.record(actor, "flow.create", "flow", name, version=1)
    except IntegrityError:
        raise ServiceError(
            f"a flow named {name!r} already exists", code="FlowAlreadyExists", status=409
        ) from None
    flow.warnings = _warnings(graph, name)
    return flow


def flow_update(
    *, flow: Flow, definition: str | None = None, description: str | None = None, actor
) -> Flow:
    """Change a flow. A new definition makes a new version; running executions keep theirs."""
    actor = require(actor, Perm.MANAGE_FLOWS)
    with transaction.atomic():
        flow = Flow.objects.select_for_update().get(pk=flow.pk)
        flow.warnings = []
        changed = []
        if definition is not None and definition != flow.definition:
            graph = definition_compile(definition)
            flow.version += 1
            flow.definition = definition
            flow.dialect = graph.dialect
            FlowVersion.objects.create(
                flow=flow,
                version=flow.version,
                definition=definition,
                dialect=graph.dialect,
                created_by=_user(actor),
            )
            flow.warnings = _warnings(graph, flow.name)
            changed.append("definition")
        if description is not None and description != flow.description:
            flow.description = description
            changed.append("description")
        flow.save()
        if changed:
            audit.record(
                actor, "flow.update", "flow", flow.name, version=flow.version, changed=changed
            )
    return flow


def flow_delete(*, flow: Flow, actor) -> None:
    """Delete a flow with its versions, executions and history. Outstanding work items go with
    them; a worker holding one finds nothing and drops it."""
    actor = require(actor, Perm.MANAGE_FLOWS)
    with transaction.atomic():
        audit.record(actor, "flow.delete", "flow", flow.name, version=flow.version)
        flow.delete()


def _user(actor):
    user = getattr(actor, "user", None)
    return user if user is not None and getattr(user, "is_authenticated", False) else None


# --- executions --------------------------------------------------------------------------------


def execution_start(
    *,
    flow: Flow,
    name: str | None = None,
    input: Any = None,
    actor,
    again_from: Execution | None = None,
) -> tuple[Execution, bool]:
    """Start an execution of the flow's current version.

    Returns ``(execution, created)``. Same name while that execution runs: the running one
    (``created`` False). Same name after it ended: ``ExecutionAlreadyExists`` (409).
    ``again_from``: this start runs that execution again (recorded as such in the audit log).
    """
    actor = require(actor, Perm.START)
    if name is None or name == "":
        name = f"run-{uuid.uuid4().hex[:20]}"  # names must start with a letter
    _check_name(name, "name")
    if input is None:
        input = {}
    if not isinstance(input, dict):
        raise ServiceError("input must be a JSON object", code="InvalidArgument")
    _check_json_size(input, "the input", field="input")
    try:
        with transaction.atomic():
            now = runtime.db_now()
            existing = Execution.objects.select_for_update().filter(flow=flow, name=name).first()
            if existing is not None:
                return _existing(existing), False
            version = FlowVersion.objects.get(flow=flow, version=flow.version)
            with transaction.atomic():  # savepoint: a concurrent start of the same name
                execution = Execution.objects.create(
                    flow=flow,
                    flow_version=version,
                    name=name,
                    status=ExecutionStatus.STARTING,
                    input=input,
                    started_at=now,
                    started_by=_user(actor),
                    token_salt=runtime.new_salt(),
                    state=machine.new_state(
                        execution_name=name, flow_name=flow.name, input=input, now=now
                    ),
                )
            runtime.apply(execution, ev.Start(input), now=now)
            if again_from is not None:
                audit.record(
                    actor,
                    "execution.run_again",
                    "execution",
                    f"{flow.name}/{name}",
                    again_from=again_from.name,
                    same_input=input == again_from.input,
                )
            else:
                audit.record(actor, "execution.start", "execution", f"{flow.name}/{name}")
    except IntegrityError:
        existing = Execution.objects.filter(flow=flow, name=name).first()
        if existing is None:
            raise
        return _existing(existing), False
    if fault("sleep_in_start_after_commit"):
        import time  # noqa: PLC0415

        time.sleep(2)
    return execution, True


def _existing(execution: Execution) -> Execution:
    if execution.is_open:
        return execution
    raise ServiceError(
        f"an execution named {execution.name!r} already ran ({execution.status}); use another name",
        code="ExecutionAlreadyExists",
        status=409,
    )


def execution_run_again(
    *, execution: Execution, input: Any = None, name: str | None = None, actor
) -> Execution:
    """Start a new execution of the same flow with the same input (or ``input``, edited)."""
    flow = Flow.objects.get(pk=execution.flow_id)
    new, _ = execution_start(
        flow=flow,
        name=name,
        input=execution.input if input is None else input,
        actor=actor,
        again_from=execution,
    )
    return new


def execution_stop(*, execution: Execution, error: str = "", cause: str = "", actor) -> Execution:
    actor = require(actor, Perm.STOP)
    if not isinstance(error, str) or len(error) > 128:
        raise ServiceError(
            "error must be a string of at most 128 characters", code="InvalidArgument"
        )
    if not isinstance(cause, str) or len(cause) > 4096:
        raise ServiceError(
            "cause must be a string of at most 4096 characters", code="InvalidArgument"
        )
    with transaction.atomic():
        decision = runtime.transition(execution.pk, ev.Stop(error=error, cause=cause))
        if decision is not None and not decision.ignored:
            audit.record(
                actor,
                "execution.stop",
                "execution",
                f"{execution.flow.name}/{execution.name}",
                error=error,
                reason=cause,
            )
    execution.refresh_from_db()
    if decision is None or decision.ignored:
        raise ServiceError(
            f"the execution is {execution.status}, not running",
            code="ExecutionNotRunning",
            status=409,
        )
    return execution


def executions_stop(
    *, executions: list[Execution], error: str = "", cause: str = "", actor
) -> dict[str, list[str]]:
    """Stop several executions (the dashboard's bulk stop): each one as :func:`execution_stop`
    does it, in its own transaction. Returns ``{"stopped": [...], "not_running": [...]}``."""
    actor = require(actor, Perm.STOP)
    if len(executions) > MAX_BULK:
        raise ServiceError(f"at most {MAX_BULK} executions at once", code="InvalidArgument")
    done: dict[str, list[str]] = {"stopped": [], "not_running": []}
    for execution in executions:
        try:
            execution_stop(execution=execution, error=error, cause=cause, actor=actor)
            done["stopped"].append(execution.name)
        except ServiceError as exc:
            if exc.code != "ExecutionNotRunning":
                raise
            done["not_running"].append(execution.name)
    return done


MAX_BULK = 200


def executions_delete(*, executions: QuerySet[Execution]) -> tuple[int, int]:
    """Delete ended executions with everything they own (history, work items, timers, tokens,
    values, queue messages); running ones are kept (stop them first). Returns ``(deleted,
    kept running)``. Works in batches, one short transaction each, so deleting a year of
    history never holds a long lock."""
    kept = executions.filter(status__in=ExecutionStatus.open()).count()
    ended = executions.exclude(status__in=ExecutionStatus.open()).order_by()
    deleted = 0
    while True:
        ids = list(ended.values_list("pk", flat=True)[:DELETE_BATCH])
        if not ids:
            return deleted, kept
        with transaction.atomic():
            # Children first: each is one DELETE … WHERE execution_id IN (…) (nothing refers to
            # them, so Django deletes them without loading a row); then the executions, loaded
            # without their heavy columns for the cascade to look at.
            for model in (
                HistoryEvent,
                WorkItem,
                Timer,
                TaskToken,
                ExecutionValue,
                QueueMessage,
                StepVisit,
                StepSummary,
            ):
                model.objects.filter(execution_id__in=ids).delete()
            _, per_model = (
                Execution.objects.filter(pk__in=ids, status__in=ExecutionStatus.closed())
                .only("pk")
                .delete()
            )
            batch_deleted = per_model.get(Execution._meta.label, 0)
        deleted += batch_deleted
        if not batch_deleted:  # pragma: no cover - nothing of this batch could be deleted
            return deleted, kept


DELETE_BATCH = 200


def executions_prune(*, older_than: timedelta, dry_run: bool = False) -> int:
    """Retention: delete ended executions that stopped more than ``older_than`` ago (judged by
    the database's clock). Returns how many were (or, with ``dry_run``, would be) deleted."""
    cutoff = runtime.db_now() - older_than
    old = Execution.objects.filter(status__in=ExecutionStatus.closed(), stopped_at__lt=cutoff)
    if dry_run:
        return old.count()
    deleted, _ = executions_delete(executions=old)
    # Liveness rows of workers long gone (their attempts were reclaimed long ago), and the
    # records of direct function calls that ended before the cut-off.
    Heartbeat.objects.filter(last_seen__lt=cutoff).delete()
    from functions.models import ENDED_STATUSES, Invocation  # noqa: PLC0415 - app order

    Invocation.objects.filter(created_at__lt=cutoff, status__in=ENDED_STATUSES).delete()
    return deleted


# --- callbacks ---------------------------------------------------------------------------------


def _token_row(token: Any) -> TaskToken:
    if not isinstance(token, str) or not token or len(token) > 512:
        raise ServiceError("task_token must be a non-empty string", code="InvalidArgument")
    row = TaskToken.objects.filter(token_hash=runtime.token_hash(token)).first()
    if row is None and runtime.token_was_issued(token):
        # Ours, but its row is gone: the execution ended (spent tokens are cleared then).
        raise _already_completed()
    if row is None:
        raise ServiceError("no task has this token", code="TaskNotExist", status=404)
    if not row.is_open:
        raise _already_completed()
    return row


def _already_completed() -> ServiceError:
    return ServiceError("the task was already completed", code="TaskAlreadyCompleted", status=409)


def _engine_token(row: TaskToken, token: str) -> str:
    """What the engine knows the task by: the token's fingerprint (the engine never holds a
    token), or, for a row made before fingerprints, the token itself."""
    return row.fingerprint or token


def _parse_output(output: Any) -> Any:
    if isinstance(output, str):
        try:
            output = json.loads(output)
        except ValueError:
            raise ServiceError(
                "output must be JSON (an object, or its text)", code="InvalidArgument"
            ) from None
    _check_json_size(output, "the output", field="output")
    return output


def _check_failure(error: Any, cause: Any) -> None:
    if not isinstance(error, str) or not 1 <= len(error) <= 128:
        raise ServiceError("error must be 1-128 characters", code="InvalidArgument")
    if not isinstance(cause, str) or len(cause) > 4096:
        raise ServiceError("cause must be at most 4096 characters", code="InvalidArgument")


def task_report_succeeded(*, token: str, output: Any, actor) -> int:
    """Complete a callback task (a machine, over the API). Returns the id of the history event
    it created."""
    actor = require(actor, Perm.REPORT)
    row = _token_row(token)
    output = _parse_output(output)
    return _report(
        row, ev.CallbackSucceeded(_engine_token(row, token), output), actor, "task.succeed"
    )


def task_report_failed(*, token: str, error: str, cause: str = "", actor) -> int:
    actor = require(actor, Perm.REPORT)
    _check_failure(error, cause)
    row = _token_row(token)
    return _report(
        row,
        ev.CallbackFailed(_engine_token(row, token), error, cause),
        actor,
        "task.fail",
        error=error,
    )


def task_heartbeat(*, token: str, actor) -> None:
    actor = require(actor, Perm.REPORT)
    row = _token_row(token)
    _report(row, ev.CallbackHeartbeat(_engine_token(row, token)), None, "", needs_event=False)


def _waiting_row(task_id: Any, execution_id: Any = None) -> TaskToken:
    """The open task ``task_id``. A task's row is deleted when its execution ends, so a decision
    that comes after another person's (which ended the execution) finds no row: when the form
    also names the task's execution (``execution_id``) and that execution still exists, or when
    a later task row exists (ids only grow, so this one existed), the answer is 409 "already
    decided", not 404."""
    if isinstance(task_id, bool) or not isinstance(task_id, int) or not 0 < task_id < 2**63:
        raise ServiceError("no step is waiting with this id", code="TaskNotExist", status=404)
    row = TaskToken.objects.filter(pk=task_id).first()
    existed = row is None and (
        (
            isinstance(execution_id, int)
            and not isinstance(execution_id, bool)
            and 0 < execution_id < 2**63
            and Execution.objects.filter(pk=execution_id).exists()
        )
        or TaskToken.objects.filter(pk__gt=task_id).exists()
    )
    if existed:
        raise ServiceError(
            "this step is no longer waiting: it was already decided, or its execution ended",
            code="TaskAlreadyCompleted",
            status=409,
        )
    if row is None:
        raise ServiceError("no step is waiting with this id", code="TaskNotExist", status=404)
    if not row.is_open:
        raise ServiceError("this step was already decided", code="TaskAlreadyCompleted", status=409)
    return row


def task_approve(
    *, task_id: int, output: Any = None, actor, execution_id: int | None = None
) -> int:
    """A person approves a step waiting for a callback (the dashboard; needs the approver
    role). ``task_id`` is the waiting task's row id (the page never holds the token);
    ``execution_id``, when the page knows it, lets a late second decision be told apart."""
    actor = require(actor, Perm.APPROVE)
    row = _waiting_row(task_id, execution_id)
    output = {} if output is None or output == "" else _parse_output(output)
    return _report(row, ev.CallbackSucceeded(row.fingerprint, output), actor, "task.approve")


def task_reject(
    *, task_id: int, error: str, cause: str = "", actor, execution_id: int | None = None
) -> int:
    actor = require(actor, Perm.APPROVE)
    _check_failure(error, cause)
    row = _waiting_row(task_id, execution_id)
    return _report(
        row,
        ev.CallbackFailed(row.fingerprint, error, cause),
        actor,
        "task.reject",
        error=error,
        reason=cause,
    )


def _report(row: TaskToken, event, actor, action: str, *, needs_event: bool = True, **detail):
    with transaction.atomic():
        decision = runtime.transition(row.execution_id, event)
        applied = decision is not None and not decision.ignored
        if applied and action:
            execution = (
                Execution.objects.select_related("flow")
                .only("name", "flow__name")
                .get(pk=row.execution_id)
            )
            audit.record(
                actor,
                action,
                "task",
                f"{execution.flow.name}/{execution.name}/{row.state_name}",
                task=row.fingerprint or f"#{row.pk}",
                **detail,
            )
    if not applied:
        raise _already_completed()
    if not needs_event:
        return 0
    return decision.events[0]["event_id"] if decision.events else 0
