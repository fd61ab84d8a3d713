"""Reads that the API and the pages share: one query each, with the indexes they need.

Writes live in ``services.py``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from flowsite.errors import ServiceError

from .models import (
    Execution,
    ExecutionStatus,
    Flow,
    FlowVersion,
    HistoryEvent,
    TaskToken,
    WorkItem,
    WorkKind,
    WorkStatus,
)


def flow_get(name: str) -> Flow:
    flow = Flow.objects.filter(name=name).first()
    if flow is None:
        raise ServiceError(f"no flow named {name!r}", code="FlowNotFound", status=404)
    return flow


def executions_of(flow: Flow) -> QuerySet[Execution]:
    """A flow's executions without their heavy columns (engine state, definition texts)."""
    return (
        Execution.objects.filter(flow=flow)
        .select_related("flow", "flow_version")
        .defer("state", "flow__definition", "flow_version__definition")
    )


def execution_get(flow: Flow, name: str) -> Execution:
    execution = executions_of(flow).filter(name=name).first()
    if execution is None:
        raise ServiceError(
            f"flow {flow.name!r} has no execution named {name!r}",
            code="ExecutionNotFound",
            status=404,
        )
    return execution


def runtime_health() -> dict:
    """What ``/healthz`` reports: the sweeper's last round and the live workers, judged by the
    database's clock. ``ok`` is False when no sweeper has stamped its row within three sweep
    intervals: then no timer fires and no lost work is recovered, whatever else works."""
    from django.conf import settings  # noqa: PLC0415
    from django.db.models import Max  # noqa: PLC0415

    from .models import Heartbeat, HeartbeatKind  # noqa: PLC0415
    from .runtime.transition import db_now  # noqa: PLC0415

    now = db_now()
    last = Heartbeat.objects.filter(kind=HeartbeatKind.SWEEPER).aggregate(last=Max("last_seen"))[
        "last"
    ]
    stale_after = 3 * settings.FLOWSITE_SWEEP_INTERVAL
    age = (now - last).total_seconds() if last else None
    live_since = now - timedelta(seconds=settings.FLOWSITE_WORKER_DEAD_AFTER)
    workers = Heartbeat.objects.filter(kind=HeartbeatKind.WORKER, last_seen__gte=live_since)
    return {
        "ok": age is not None and age <= stale_after,
        "sweeper": {
            "last_run": last.isoformat() if last else None,
            "age_seconds": round(age, 3) if age is not None else None,
            "stale_after_seconds": stale_after,
        },
        "workers": workers.count(),
    }


def waiting_for_people_count() -> int:
    """How many steps wait for a callback now (the approvals badge): an index-only count over
    the open tasks (partial index ``tasktoken_open``)."""
    from .models import TaskToken  # noqa: PLC0415

    return TaskToken.objects.filter(is_open=True).count()


# --- the dashboard's pages (overview, flows, executions, approvals) ------------------------------
#
# Every read here is a fixed number of queries whatever the data size: keyset pages over an
# index, grouped counts over an index, ``only()`` for the columns a page shows (an execution's
# engine state, input and output can each be hundreds of KiB).

PAGE_SIZE = 25
# The largest id a cursor may name (PostgreSQL bigint, SQLite integer): a larger number from a
# hand-edited URL is ignored instead of overflowing the database driver.
MAX_ID = 2**63 - 1

LIST_COLUMNS = (
    "id",
    "name",
    "status",
    "started_at",
    "stopped_at",
    "error_code",
    "flow__id",
    "flow__name",
)


@dataclass
class KeysetPage:
    """One page of rows newest first, with the cursors of the pages beside it (None: none)."""

    rows: list
    newer: int | None = None  # ?after=<newer>
    older: int | None = None  # ?before=<older>


def keyset_page(
    queryset: QuerySet,
    *,
    before: int | None = None,
    after: int | None = None,
    size: int = PAGE_SIZE,
) -> KeysetPage:
    """A page of ``queryset`` by descending primary key. ``before``: the rows older than that
    id (the "older" link); ``after``: the rows newer than it (the "newer" link). One query:
    asking for one row more than the page tells whether another page follows."""
    if after is not None:
        rows = list(queryset.filter(pk__gt=after).order_by("pk")[: size + 1])
        more = len(rows) > size
        rows = rows[:size][::-1]
        return KeysetPage(
            rows,
            newer=rows[0].pk if rows and more else None,
            # we came from there: older rows exist (at least the one the cursor named)
            older=rows[-1].pk if rows else after + 1,
        )
    if before is not None:
        rows = list(queryset.filter(pk__lt=before).order_by("-pk")[: size + 1])
        more = len(rows) > size
        rows = rows[:size]
        return KeysetPage(
            rows,
            newer=rows[0].pk if rows else before - 1,
            older=rows[-1].pk if rows and more else None,
        )
    rows = list(queryset.order_by("-pk")[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return KeysetPage(rows, older=rows[-1].pk if more else None)


def executions_light() -> QuerySet[Execution]:
    """Executions with only what a list row shows, and their flow's name."""
    return Execution.objects.select_related("flow").only(*LIST_COLUMNS)


# --- the overview ------------------------------------------------------------------------------

CHART_STATUSES = ("Succeeded", "Failed", "TimedOut", "Stopped", "Running")


def overview_chart(now: datetime) -> list[dict]:
    """Executions started in each of the last 24 hours (the current hour last), counted by
    their status now (Starting counts as Running). One grouped query over ``started_at``."""
    from django.db.models import Count  # noqa: PLC0415
    from django.db.models.functions import TruncHour  # noqa: PLC0415

    first = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
    buckets = [
        {"start": first + timedelta(hours=i), "counts": dict.fromkeys(CHART_STATUSES, 0)}
        for i in range(24)
    ]
    rows = (
        Execution.objects.filter(started_at__gte=first)
        .annotate(hour=TruncHour("started_at", tzinfo=UTC))
        .values("hour", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    for row in rows:
        index = int((row["hour"] - first).total_seconds() // 3600)
        if 0 <= index < 24:
            status = "Running" if row["status"] == ExecutionStatus.STARTING else row["status"]
            if status in buckets[index]["counts"]:
                buckets[index]["counts"][status] += row["n"]
    return buckets


def running_now(limit: int = 6) -> tuple[int, list[Execution]]:
    """How many executions are open, and the newest few (index ``execution_status``)."""
    open_ = Execution.objects.filter(status__in=ExecutionStatus.open())
    return open_.count(), list(executions_light().filter(status__in=ExecutionStatus.open())[:limit])


def latest_failures(limit: int = 8) -> list[Execution]:
    """The newest failed or timed-out executions, with the first 300 characters of their error
    message (the whole one can be long)."""
    from django.db.models.functions import Substr  # noqa: PLC0415

    return list(
        executions_light()
        .filter(status__in=(ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT))
        .annotate(message=Substr("error_message", 1, 300))
        .order_by("-id")[:limit]
    )


# --- flows -------------------------------------------------------------------------------------


FLOW_COUNTS_WINDOW = timedelta(hours=24)


def flows_page(
    *, after: str | None = None, size: int = 50, since: datetime | None = None
) -> tuple[list[Flow], str | None]:
    """A page of flows by name (``after``: the last name of the previous page), each with
    ``last`` (its newest execution or None) and ``counts``: its executions started since
    ``since`` (default: the last 24 hours) by status. Three queries, each reading a bounded
    part of an index: counting every execution ever kept would grow with the retention
    (20 ms at 100,000 executions, read from the index ``(flow_id, started_at, status)``)."""
    from django.db.models import Count, OuterRef, Subquery  # noqa: PLC0415

    newest = Execution.objects.filter(flow=OuterRef("pk")).order_by("-id").values("id")[:1]
    flows = Flow.objects.only("id", "name", "description", "version", "updated_at").annotate(
        last_id=Subquery(newest)
    )
    if after:
        flows = flows.filter(name__gt=after)
    flows = list(flows.order_by("name")[: size + 1])
    more = len(flows) > size
    flows = flows[:size]
    last_ids = [f.last_id for f in flows if f.last_id]
    last = (
        {
            e.flow_id: e
            for e in Execution.objects.filter(id__in=last_ids).only(
                "id", "flow_id", "name", "status", "started_at", "stopped_at"
            )
        }
        if last_ids
        else {}
    )
    counts: dict[int, dict[str, int]] = {f.pk: {} for f in flows}
    if flows:
        grouped = (
            Execution.objects.filter(
                flow_id__in=[f.pk for f in flows],
                started_at__gte=since or (timezone.now() - FLOW_COUNTS_WINDOW),
            )
            .values("flow_id", "status")
            .annotate(n=Count("id"))
            .order_by()
        )
        for row in grouped:
            counts[row["flow_id"]][row["status"]] = row["n"]
    for flow in flows:
        flow.last = last.get(flow.pk)
        flow.counts = [
            (status, counts[flow.pk][status])
            for status in ExecutionStatus.values
            if counts[flow.pk].get(status)
        ]
        flow.total = sum(counts[flow.pk].values())
    return flows, (flows[-1].name if more else None)


def flow_versions(flow: Flow, limit: int = 50) -> list[FlowVersion]:
    return list(
        FlowVersion.objects.filter(flow=flow)
        .select_related("created_by")
        .only("id", "flow_id", "version", "created_at", "created_by__username")
        .order_by("-version")[:limit]
    )


def flow_version_get(flow: Flow, version: int) -> FlowVersion | None:
    return (
        FlowVersion.objects.filter(flow=flow, version=version)
        .select_related("created_by")
        .defer("created_by__password")
        .first()
    )


def flow_recent_executions(flow: Flow, limit: int = 15) -> list[Execution]:
    return list(executions_light().filter(flow=flow).order_by("-id")[:limit])


def execution_input(flow: Flow, name: str) -> dict | None:
    """An execution's input ("run again with edited input" pre-fills the start form)."""
    row = Execution.objects.filter(flow=flow, name=name).values_list("input", flat=True).first()
    return row


# --- the executions list: filters --------------------------------------------------------------

CONDITION_MAX = 500  # characters of a condition
PATH_MAX_PARTS = 8
INDEX_MAX = 100_000
JSON_SAFE_INT = 2**53  # larger integers lose precision in JSON readers (and overflow SQLite)
_OPS = ("!=", ">=", "<=", "=", ">", "<")
_CONDITION = re.compile(
    r"\s*(?P<path>[^\s=!<>]+)\s*(?P<op>!=|>=|<=|=|>|<|contains(?=\s|$))\s*(?P<value>.*?)\s*\Z",
    re.DOTALL,
)
_PATH_PART = re.compile(r"\.?([A-Za-z0-9_-]{1,128})|\[([0-9]{1,12})\]")


class ConditionError(ValueError):
    """A condition on an input field that cannot be used; its text says why."""


@dataclass(frozen=True)
class InputCondition:
    path: tuple[str | int, ...]  # keys and list indexes
    op: str  # "=", "!=", ">", ">=", "<", "<=", "contains"
    value: Any


def parse_condition(text: str) -> InputCondition:
    """``order.customer_id = 42``, ``items[0].sku != "A-1"``, ``tags contains "vip"``.

    The path: up to 8 keys (letters, digits, ``_``, ``-``) or ``[index]``, starting with a key;
    the value: JSON when it parses as JSON (so ``42`` is a number and ``"42"`` a string),
    otherwise the text itself. Anything else raises :class:`ConditionError` with a message
    meant for the person who typed it."""
    if len(text) > CONDITION_MAX:
        raise ConditionError(f"a condition is at most {CONDITION_MAX} characters")
    match = _CONDITION.match(text)
    if match is None:
        raise ConditionError(
            "write a condition as: path operator value, e.g. order.customer_id = 42 "
            "(operators: = != > >= < <= contains)"
        )
    path = _parse_path(match["path"])
    op = match["op"]
    raw = match["value"]
    if raw == "":
        raise ConditionError(f"write a value after {op!r}")
    value = _parse_value(raw)
    if op in (">", ">=", "<", "<=") and (
        isinstance(value, bool) or not isinstance(value, int | float | str)
    ):
        raise ConditionError(f"{op} compares with a number or a string")
    if op == "contains" and (isinstance(value, bool) or not isinstance(value, int | float | str)):
        raise ConditionError("contains takes a string (part of a text) or a list element")
    return InputCondition(path, op, value)


def _parse_path(text: str) -> tuple[str | int, ...]:
    parts: list[str | int] = []
    pos = 0
    while pos < len(text):
        match = _PATH_PART.match(text, pos)
        if (
            match is None
            or (match.group(0).startswith(".") and not parts)
            or (parts and match.group(1) is not None and not match.group(0).startswith("."))
        ):
            raise ConditionError(
                "a path is keys of letters, digits, _ or - joined by dots, with [n] for a "
                "list element, e.g. order.items[0].sku"
            )
        if match.group(1) is not None:
            parts.append(match.group(1))
        else:
            if not parts:
                raise ConditionError("a path starts with a key (the input is an object)")
            index = int(match.group(2))
            if index > INDEX_MAX:
                raise ConditionError(f"a list index is at most {INDEX_MAX}")
            parts.append(index)
        pos = match.end()
        if len(parts) > PATH_MAX_PARTS:
            raise ConditionError(f"a path has at most {PATH_MAX_PARTS} parts")
    if not parts:
        raise ConditionError("write the path of an input field, e.g. order.customer_id")
    return tuple(parts)


def _no_constant(name: str):
    raise ValueError(name)


def _parse_value(raw: str) -> Any:
    try:
        value = json.loads(raw, parse_constant=_no_constant)
    except ValueError:
        return raw  # not JSON: the text itself
    except RecursionError:
        raise ConditionError("the value nests too deeply") from None
    _check_numbers(value)
    return value


def _check_numbers(value: Any, depth: int = 0) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if abs(value) > JSON_SAFE_INT:
            raise ConditionError(f"numbers are at most {JSON_SAFE_INT} (2^53) here")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConditionError("numbers must be finite")
        return
    if depth > 20:
        raise ConditionError("the value nests too deeply")
    items = value.values() if isinstance(value, dict) else value
    for item in items:
        _check_numbers(item, depth + 1)


def condition_sql(condition: InputCondition, vendor: str) -> tuple[str, list]:
    """SQL (a boolean expression over the execution's ``input``) and its parameters. Keys and
    values are always parameters, never spliced into the text."""
    from django.db import connection  # noqa: PLC0415

    q = connection.ops.quote_name
    column = f"{q(Execution._meta.db_table)}.{q('input')}"
    if vendor == "postgresql":
        return _condition_postgresql(condition, column)
    if vendor == "sqlite":
        return _condition_sqlite(condition, column)
    raise ConditionError("input conditions are not supported on this database")


def _nested(path: tuple, value: Any) -> Any:
    for key in reversed(path):
        value = {key: value}
    return value


def _condition_postgresql(c: InputCondition, column: str) -> tuple[str, list]:
    path = [str(p) for p in c.path]
    field = f"({column} #> %s)"
    value = json.dumps(c.value)
    if c.op == "=":
        if all(isinstance(p, str) for p in c.path):
            # Containment is what the GIN index (jsonb_path_ops) serves; the exact comparison
            # after it keeps "=" exact ({"a": {"b": 1, "c": 2}} contains {"a": {"b": 1}}).
            return (
                f"({column} @> %s::jsonb AND {field} = %s::jsonb)",
                [json.dumps(_nested(c.path, c.value)), path, value],
            )
        return f"({field} = %s::jsonb)", [path, value]
    if c.op == "!=":
        return f"({field} IS NOT NULL AND {field} <> %s::jsonb)", [path, path, value]
    if c.op == "contains":
        text = (
            f"(jsonb_typeof({field}) = 'string' AND strpos({field} #>> '{{}}', %s) > 0) OR "
            if isinstance(c.value, str)
            else ""
        )
        params = [path, path, c.value] if text else []
        return (
            f"({text}(jsonb_typeof({field}) = 'array' AND {field} @> %s::jsonb))",
            [*params, path, path, json.dumps([c.value])],
        )
    kind = "string" if isinstance(c.value, str) else "number"
    return (
        f"(jsonb_typeof({field}) = '{kind}' AND {field} {c.op} %s::jsonb)",
        [path, path, value],
    )


def _sqlite_path(path: tuple) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f'."{part}"'
    return out


def _condition_sqlite(c: InputCondition, column: str) -> tuple[str, list]:
    path = _sqlite_path(c.path)
    field = f"json_extract({column}, %s)"
    kind = f"json_type({column}, %s)"

    def equal(value: Any) -> tuple[str, list]:
        if isinstance(value, bool):
            return f"{kind} = %s", [path, "true" if value else "false"]
        if value is None:
            return f"{kind} = 'null'", [path]
        if isinstance(value, int | float):
            return f"({kind} IN ('integer', 'real') AND {field} = %s)", [path, path, value]
        if isinstance(value, str):
            return f"({kind} = 'text' AND {field} = %s)", [path, path, value]
        # objects and lists: their minified JSON texts
        return (
            f"({kind} IN ('object', 'array') AND {field} = json(%s))",
            [path, path, json.dumps(value, separators=(",", ":"), ensure_ascii=False)],
        )

    if c.op == "=":
        return equal(c.value)
    if c.op == "!=":
        sql, params = equal(c.value)
        return f"({kind} IS NOT NULL AND NOT {sql})", [path, *params]
    if c.op == "contains":
        element_type = "'text'" if isinstance(c.value, str) else "'integer', 'real'"
        in_list = (
            f"({kind} = 'array' AND EXISTS (SELECT 1 FROM json_each({column}, %s) AS item "
            f"WHERE item.type IN ({element_type}) AND item.value = %s))"
        )
        if isinstance(c.value, str):
            return (
                f"(({kind} = 'text' AND instr({field}, %s) > 0) OR {in_list})",
                [path, path, c.value, path, path, c.value],
            )
        return in_list, [path, path, c.value]
    types = "'text'" if isinstance(c.value, str) else "'integer', 'real'"
    return f"({kind} IN ({types}) AND {field} {c.op} %s)", [path, path, c.value]


@dataclass
class ExecutionFilter:
    statuses: list[str] = field(default_factory=list)
    flow: str = ""
    prefix: str = ""
    started_from: datetime | None = None
    started_to: datetime | None = None
    condition: InputCondition | None = None


def executions_filtered(f: ExecutionFilter) -> QuerySet[Execution]:
    """The executions list's rows for a validated filter (each filter has its index)."""
    from django.db import connection  # noqa: PLC0415
    from django.db.models import BooleanField  # noqa: PLC0415
    from django.db.models.expressions import RawSQL  # noqa: PLC0415
    from django.db.models.functions import Substr  # noqa: PLC0415
    from django.db.models.lookups import Exact  # noqa: PLC0415

    rows = executions_light()
    if f.statuses:
        rows = rows.filter(status__in=f.statuses)
    if f.flow:
        # The flow's id as a subquery, not a join on its name: with the join PostgreSQL cannot
        # tell which executions match and walked the whole id index (bench/dashboard.py: 78,000
        # rows, 380 ms, for a flow and a time range); with it, the flow's own indexes are used.
        from django.db.models import Subquery  # noqa: PLC0415

        rows = rows.filter(flow_id=Subquery(Flow.objects.filter(name=f.flow).values("pk")[:1]))
    if f.prefix:
        # LIKE finds the rows over the name index; SQLite's LIKE ignores case, so the prefix
        # is compared again exactly (as PostgreSQL's LIKE already does).
        rows = rows.filter(name__startswith=f.prefix).filter(
            Exact(Substr("name", 1, len(f.prefix)), f.prefix)
        )
    if f.started_from is not None:
        rows = rows.filter(started_at__gte=f.started_from)
    if f.started_to is not None:
        rows = rows.filter(started_at__lt=f.started_to)
    if f.condition is not None:
        sql, params = condition_sql(f.condition, connection.vendor)
        rows = rows.filter(RawSQL(sql, params, output_field=BooleanField()))
    return rows


# --- the approvals inbox -----------------------------------------------------------------------


def waiting_tasks() -> QuerySet[TaskToken]:
    """Open callback tasks with their execution and flow names (never a token: rows hold only
    its hash and fingerprint, and neither is loaded here but the fingerprint)."""
    return (
        TaskToken.objects.filter(is_open=True)
        .select_related("execution__flow")
        .only(
            "id",
            "fingerprint",
            "entry_id",
            "attempt",
            "state_name",
            "created_at",
            "execution__id",
            "execution__name",
            "execution__status",
            "execution__flow__id",
            "execution__flow__name",
        )
    )


def with_step_inputs(tasks: list[TaskToken]) -> list[TaskToken]:
    """Attach ``step_input`` to each task: the input of the state entry it waits in (its
    ``StepEntered`` event, found by the unique (execution, event_id) index). One query."""
    from django.db.models import Q  # noqa: PLC0415

    for task in tasks:
        task.step_input = None
    if not tasks:
        return tasks
    wanted = Q()
    for task in tasks:
        wanted |= Q(execution_id=task.execution_id, event_id=task.entry_id)
    events = HistoryEvent.objects.filter(wanted, type="StepEntered").values_list(
        "execution_id", "event_id", "detail"
    )
    found = {(e, i): detail for e, i, detail in events}
    for task in tasks:
        detail = found.get((task.execution_id, task.entry_id)) or {}
        task.step_input = detail.get("input")
    return tasks


def newest_waiting(limit: int = 5) -> list[TaskToken]:
    return list(waiting_tasks().order_by("-id")[:limit])


# --- a function's attempts from flows ----------------------------------------------------------

# What an attempt's row says, as the badges name it.
_ATTEMPT_OUTCOME = {
    WorkStatus.PENDING: "Enqueued",
    WorkStatus.RUNNING: "Running",
    WorkStatus.CANCELLED: "cancelled",
    WorkStatus.LOST: "Failed",
}


def function_attempts(function_name: str, limit: int = 20) -> list[WorkItem]:
    """The latest attempts flows made of a function, newest first, each with ``outcome`` (a
    badge status) and ``duration_ms``. One query on the index ``workitem_function_recent``."""
    rows = list(
        WorkItem.objects.filter(
            function_name=function_name, kind__in=(WorkKind.INVOKE, WorkKind.DETACHED)
        )
        .exclude(function_name="")  # the index's own condition, so the planner picks it
        .select_related("execution__flow")
        .only(
            "id",
            "kind",
            "attempt",
            "state_name",
            "status",
            "created_at",
            "started_at",
            "finished_at",
            "worker",
            "error",
            "execution__name",
            "execution__flow__name",
        )
        .order_by("-id")[:limit]
    )
    for row in rows:
        if row.status == WorkStatus.DONE:
            row.outcome = "Failed" if row.error else "Succeeded"
        else:
            row.outcome = _ATTEMPT_OUTCOME.get(row.status, row.status)
        if row.status == WorkStatus.LOST and not row.error:
            row.error = "worker lost"
        row.duration_ms = (
            (row.finished_at - row.started_at).total_seconds() * 1000
            if row.started_at and row.finished_at
            else None
        )
    return rows
