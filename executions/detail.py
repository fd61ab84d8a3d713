"""The execution page's reads, and the read model the runtime keeps for them.

The read model
--------------
A page must open a 25,000-event execution as fast as a 10-event one, so it never replays the
history. The transition that changes a state's visit also writes (``record_transition``, called
from ``runtime.transition.persist`` in the same database transaction, at a cost that grows with
the events of that transition only):

* ``StepVisit``: one row per entry into a state (its ``StepEntered``), with its status, times,
  and its latest attempts (event ids and times);
* ``StepSummary``: one row per state reached: visits, how many visits are in each status now,
  the latest one. The step graph is coloured from these: O(states).

The engine tags each event of a state entry with ``entry`` (and ``StepEntered`` with the
state's ``path``, its branch or iteration in ``where``; a caught ``StepFailed`` with
``caught``), outside the event's detail (``engine/machine.py``, ``_Run.emit``). An execution
started before the read model existed (no marker row: the summary of node ``""``, written when
an execution starts) is rebuilt from its history once, the first time its page is opened.

Reads
-----
Each is a fixed number of queries whatever the execution's size: keyset-paged (history by
event id, visits by entry id), JSON details cut to a preview in the database (a page never
carries 50 full 256 KiB payloads), the outstanding work of "why is it waiting?" through
partial indexes over what is open.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import TextField
from django.db.models.functions import Cast, Length, Substr
from django.utils import timezone

from flowsite.errors import ServiceError

from .graph_svg import NodeStatus, node_key
from .models import (
    Execution,
    HistoryEvent,
    StepStatus,
    StepSummary,
    StepVisit,
    TaskToken,
    Timer,
    WorkItem,
    WorkKind,
    WorkStatus,
)

MAX_TRIES = 100  # attempts kept per visit (the latest): a visit's row stays small
HISTORY_PAGE = 25  # rows per history page (rendering is most of the page's time)
VISITS_PAGE = 10
TIMELINE_PAGE = 60
PREVIEW_CHARS = 4000  # JSON text shown in a page before "load the full detail"
OUTSTANDING_LIMIT = 25  # rows of each kind "why is it waiting?" reads

EVENT_TYPES = (
    "ExecutionStarted",
    "StepEntered",
    "StepStarted",
    "TaskScheduled",
    "TaskStarted",
    "TaskSubmitted",
    "TaskSubmitFailed",
    "TaskSucceeded",
    "TaskFailed",
    "TaskTimedOut",
    "BranchEntered",
    "BranchExited",
    "IterationEntered",
    "IterationExited",
    "StepExited",
    "StepFailed",
    "ExecutionSucceeded",
    "ExecutionFailed",
    "ExecutionStopped",
)
FAILURE_TYPES = ("TaskFailed", "TaskTimedOut", "TaskSubmitFailed", "StepFailed", "ExecutionFailed")
_ATTEMPT_EVENTS = frozenset(
    {"TaskStarted", "TaskSubmitted", "TaskSubmitFailed", "TaskSucceeded", "TaskFailed",
     "TaskTimedOut"}
)  # fmt: skip
_ATTEMPT_FAILED = frozenset({"TaskFailed", "TaskSubmitFailed", "TaskTimedOut"})
_TERMINAL = frozenset({"ExecutionSucceeded", "ExecutionFailed", "ExecutionStopped"})
_OPEN = frozenset(StepStatus.open())
# Which status a state shows when several of its visits are open (a Map's iterations).
_SHOWN_FIRST = (
    StepStatus.WAITING_CALLBACK,
    StepStatus.RETRYING,
    StepStatus.RUNNING,
    StepStatus.WAITING_TIMER,
)
STATUS_WORDS = {
    "not_reached": "Not reached",
    StepStatus.RUNNING: "Running",
    StepStatus.WAITING_CALLBACK: "Waiting for a callback",
    StepStatus.WAITING_TIMER: "Waiting on a timer",
    StepStatus.RETRYING: "Retrying",
    StepStatus.SUCCEEDED: "Succeeded",
    StepStatus.FAILED: "Failed",
    StepStatus.CAUGHT: "Failed, caught",
    StepStatus.CANCELLED: "Cancelled",
}


# === the read model ==========================================================================


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _where(event: dict) -> str:
    where = event.get("where")
    if not where or len(where) != 2:
        return ""
    kind, index = where
    return f"branch {index + 1}" if kind == "branch" else f"item {index}"


class _Visit:
    """A visit as the writer handles it (a ``StepVisit`` row without the ORM's per-object cost:
    an inline Pass/Choice loop writes hundreds in one transition)."""

    __slots__ = (
        "pk", "entry_id", "node", "state_name", "where", "status", "entered_at", "exited_at",
        "exit_event_id", "attempts", "retries", "error", "tries",
    )  # fmt: skip

    def __init__(self, **values):
        self.pk = None
        self.exited_at = None
        self.exit_event_id = self.attempts = self.retries = 0
        self.error = ""
        self.tries = []
        for name, value in values.items():
            setattr(self, name, value)


_ROW = ("entry_id", "node", "state_name", "where", "status", "entered_at", "exited_at",
        "exit_event_id", "attempts", "retries", "error", "tries")  # fmt: skip


def _new_visit(event: dict) -> _Visit:
    return _Visit(
        entry_id=event["entry"],
        node=node_key(event.get("path") or ""),
        state_name=(event.get("step_name") or "")[:128],
        where=_where(event),
        status=StepStatus.RUNNING,
        entered_at=event["time"],
    )


def _try_of(visit: _Visit, sched: int) -> dict | None:
    for one in reversed(visit.tries):
        if one.get("s") == sched:
            return one
    return None


def _apply(visit: _Visit, event: dict) -> None:
    """One event of the visit's entry, in history order."""
    kind = event["type"]
    detail = event.get("detail") or {}
    when = event["time"]
    if kind == "StepStarted":
        if "until" in detail:
            visit.status = StepStatus.WAITING_TIMER
        else:  # a container's retry: it runs again
            visit.status = StepStatus.RUNNING
            visit.retries = _int(detail.get("retry"), visit.retries)
    elif kind == "TaskScheduled":
        visit.attempts += 1
        visit.retries = _int(detail.get("retry_count"), visit.retries)
        visit.status = StepStatus.RUNNING
        number = _int(detail.get("attempt"), visit.attempts)
        tries = [*visit.tries, {"n": number, "s": event["event_id"], "at": _iso(when)}]
        visit.tries = tries[-MAX_TRIES:]
    elif kind in _ATTEMPT_EVENTS:
        one = _try_of(visit, event["schedule_event_id"])
        if one is None:  # beyond the attempts kept
            one = {}
        if kind == "TaskStarted":
            one["st"] = _iso(when)
        elif kind == "TaskSubmitted":
            one["sub"] = _iso(when)
            if "taskToken" in detail:
                visit.status = StepStatus.WAITING_CALLBACK
        else:
            one["end"] = _iso(when)
            one["e"] = event["event_id"]
            one["r"] = "ok" if kind == "TaskSucceeded" else kind
            if kind in _ATTEMPT_FAILED:
                one["err"] = str(detail.get("error", ""))[:128]
                visit.error = one["err"]
                # A Retry rule's back-off, unless StepFailed (or a re-run) follows.
                visit.status = StepStatus.RETRYING
            else:
                visit.status = StepStatus.RUNNING
    elif kind in ("BranchExited", "IterationExited"):
        if "error" in detail and not detail.get("cancelled"):
            visit.error = str(detail["error"])[:128]
            visit.status = StepStatus.RETRYING
    elif kind == "StepExited":
        visit.status = StepStatus.CANCELLED if detail.get("cancelled") else StepStatus.SUCCEEDED
        visit.exited_at = when
        visit.exit_event_id = event["event_id"]
    elif kind == "StepFailed":
        visit.status = StepStatus.CAUGHT if event.get("caught") else StepStatus.FAILED
        visit.error = str(detail.get("error", ""))[:128]
        visit.exited_at = when
        visit.exit_event_id = event["event_id"]


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def record_transition(execution_id: int, events: list[dict], now: datetime) -> None:
    """Keep the read model up to date with one transition's events (inside its transaction,
    under the execution's lock). Cost: the rows of the entries these events touch, plus the
    visits still open when the execution ends; at most five statements."""
    touched: list[dict] = []
    starts = False
    ended_at: datetime | None = None
    for event in events:
        if event.get("entry"):
            touched.append(event)
        elif event["type"] == "ExecutionStarted":
            starts = True
        elif event["type"] in _TERMINAL:
            ended_at = event["time"]
    if not touched and not starts and ended_at is None:
        return
    new_ids = {e["entry"] for e in touched if e["type"] == "StepEntered"}
    old_ids = {e["entry"] for e in touched} - new_ids
    visits: dict[int, _Visit] = {}
    before: dict[int, str] = {}
    if not starts and (old_ids or ended_at is not None):  # a start has no earlier visits
        for visit in _read_visits(execution_id, old_ids, still_open=ended_at is not None):
            visits[visit.entry_id] = visit
            before[visit.entry_id] = visit.status
    created: list[_Visit] = []
    changed: set[int] = set()
    for event in touched:
        entry = event["entry"]
        if event["type"] == "StepEntered":
            visit = visits[entry] = _new_visit(event)
            created.append(visit)
            continue
        visit = visits.get(entry)
        if visit is None:  # an entry from before the read model: rebuilt when the page opens
            continue
        _apply(visit, event)
        changed.add(entry)
    if ended_at is not None:
        # The execution's end closes what is still open (a stop; a failure racing branches).
        for entry, visit in visits.items():
            if visit.exited_at is None:
                visit.status = StepStatus.CANCELLED
                visit.exited_at = ended_at
                changed.add(entry)
    updated = [visits[e] for e in changed if e in before]
    adapt = _Adapt()
    _write_visits(execution_id, created, updated, adapt)
    _summarise(execution_id, created, updated, before, adapt, marker=starts)


# Written with plain statements: the ORM's bulk methods cost more per row than the rest of a
# transition of inline states. Values are adapted by the database backend's own operations
# (times, JSON), so both SQLite and PostgreSQL get what their Django fields would send.


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _columns(names) -> str:
    return ", ".join(connection.ops.quote_name(n) for n in names)


def _as_time(value: Any) -> datetime | None:
    """A time as the database gave it back to a plain query (SQLite: UTC text)."""
    if value is None or isinstance(value, datetime):
        return value
    moment = datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class _Adapt:
    """Values as the backend's fields would send them, for one transition: its events share
    one clock reading, so each moment is converted once (this is most of the writer's cost)."""

    def __init__(self):
        self.ops = connection.ops
        self.times: dict[datetime, Any] = {}

    def time(self, value: datetime | None):
        if value is None:
            return None
        done = self.times.get(value)
        if done is None:
            done = self.times[value] = self.ops.adapt_datetimefield_value(value)
        return done

    def json(self, value: Any):
        return self.ops.adapt_json_value(value, None)


_READ = ("id", "entry_id", "node", "status", "exited_at", "attempts", "retries", "error", "tries")


def _read_visits(execution_id: int, entries: set[int], *, still_open: bool) -> list[_Visit]:
    """The visits of ``entries`` (and, with ``still_open``, every visit not left yet)."""
    where = []
    params: list[Any] = [execution_id]
    if entries:
        where.append(f"entry_id IN ({', '.join(['%s'] * len(entries))})")
        params += sorted(entries)
    if still_open:
        where.append("exited_at IS NULL")
    sql = (
        f"SELECT {_columns(_READ)} FROM {_table(StepVisit)} "
        f"WHERE execution_id = %s AND ({' OR '.join(where)})"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    out = []
    for pk, entry, node, status, exited_at, attempts, retries, error, tries in rows:
        if isinstance(tries, str | bytes):  # (SQLite hands JSON back as text)
            tries = json.loads(tries)
        visit = _Visit(
            entry_id=entry, node=node, status=status, attempts=attempts, retries=retries,
            error=error, tries=tries or [], entered_at=None,
        )  # fmt: skip
        visit.pk = pk
        visit.exited_at = _as_time(exited_at)
        out.append(visit)
    return out


def _write_visits(
    execution_id: int, created: list[_Visit], updated: list[_Visit], adapt: _Adapt
) -> None:
    _time, _json = adapt.time, adapt.json
    with connection.cursor() as cursor:
        if created:
            names = ("execution_id", *_ROW)
            marks = ", ".join(["%s"] * len(names))
            cursor.executemany(
                f"INSERT INTO {_table(StepVisit)} ({_columns(names)}) VALUES ({marks})",
                [
                    (
                        execution_id,
                        v.entry_id,
                        v.node,
                        v.state_name,
                        v.where,
                        v.status,
                        _time(v.entered_at),
                        _time(v.exited_at),
                        v.exit_event_id,
                        v.attempts,
                        v.retries,
                        v.error,
                        _json(v.tries),
                    )  # fmt: skip
                    for v in created
                ],
            )
        if updated:
            # exited_at: set once, when the visit is left (COALESCE keeps it as it was).
            cursor.executemany(
                f"UPDATE {_table(StepVisit)} SET status = %s, "
                "exited_at = COALESCE(exited_at, %s), exit_event_id = %s, attempts = %s, "
                "retries = %s, error = %s, tries = %s WHERE id = %s",
                [
                    (
                        v.status,
                        _time(v.exited_at),
                        v.exit_event_id,
                        v.attempts,
                        v.retries,
                        v.error,
                        _json(v.tries),
                        v.pk,
                    )  # fmt: skip
                    for v in updated
                ],
            )


@dataclass
class _Delta:
    visits: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    latest: _Visit | None = None

    def add(self, status: str, n: int) -> None:
        self.counts[status] = self.counts.get(status, 0) + n

    def see(self, visit: _Visit) -> None:
        if self.latest is None or visit.entry_id >= self.latest.entry_id:
            self.latest = visit


_COUNTS = tuple(StepStatus.values)  # the counter columns, named after the statuses


def _summarise(
    execution_id: int,
    created: list[_Visit],
    updated: list[_Visit],
    before: dict[int, str],
    adapt: _Adapt,
    *,
    marker: bool = False,
) -> None:
    """Add this transition's changes to the states' summaries: one statement, no read (the
    counters are added to in the database, the latest visit kept by its entry id)."""
    deltas: dict[str, _Delta] = {}
    for visit in created:
        delta = deltas.setdefault(visit.node, _Delta())
        delta.visits += 1
        delta.add(visit.status, 1)
        delta.see(visit)
    for visit in updated:
        old = before.get(visit.entry_id)
        if old == visit.status:
            continue  # (an attempt started: nothing the summary shows)
        delta = deltas.setdefault(visit.node, _Delta())
        if old is not None:
            delta.add(old, -1)
        delta.add(visit.status, 1)
        delta.see(visit)
    if marker:
        deltas.setdefault("", _Delta())
    if not deltas:
        return
    rows = []
    _time = adapt.time
    for node, delta in deltas.items():
        latest = delta.latest
        rows.append(
            (
                execution_id, node, delta.visits, *(delta.counts.get(c, 0) for c in _COUNTS),
                latest.entry_id if latest else 0,
                latest.status if latest else StepStatus.RUNNING,
                _time(latest.entered_at) if latest else None,
                _time(latest.exited_at) if latest else None,
            )
        )  # fmt: skip
    table = _table(StepSummary)
    q = connection.ops.quote_name
    names = ("execution_id", "node", "visits", *_COUNTS, "last_entry_id", "last_status",
             "last_entered_at", "last_exited_at")  # fmt: skip

    def old(name: str) -> str:
        return f"{table}.{q(name)}"

    def new(name: str) -> str:
        return f"excluded.{q(name)}"

    newer = f"{new('last_entry_id')} > {old('last_entry_id')}"
    same_or_newer = f"{new('last_entry_id')} >= {old('last_entry_id')}"
    sets = [f"{q(n)} = {old(n)} + {new(n)}" for n in ("visits", *_COUNTS)]
    sets += [
        # A new visit (a higher entry id) becomes the latest; a change to the latest one
        # (the same id) moves its status and when it was left; an older one changes neither.
        f"{q('last_status')} = CASE WHEN {same_or_newer} "
        f"THEN {new('last_status')} ELSE {old('last_status')} END",
        f"{q('last_exited_at')} = CASE WHEN {same_or_newer} "
        f"THEN {new('last_exited_at')} ELSE {old('last_exited_at')} END",
        f"{q('last_entered_at')} = CASE WHEN {newer} "
        f"THEN {new('last_entered_at')} ELSE {old('last_entered_at')} END",
        f"{q('last_entry_id')} = CASE WHEN {newer} "
        f"THEN {new('last_entry_id')} ELSE {old('last_entry_id')} END",
    ]
    with connection.cursor() as cursor:
        # SQLite (3.24 and later) and PostgreSQL both speak this upsert.
        cursor.executemany(
            f"INSERT INTO {table} ({_columns(names)}) "
            f"VALUES ({', '.join(['%s'] * len(names))}) "
            f"ON CONFLICT (execution_id, node) DO UPDATE SET {', '.join(sets)}",
            rows,
        )


# --- rebuilding from the history (executions older than the read model) -----------------------

_SMALL_DETAIL = ("until", "retry", "retry_count", "attempt", "error", "cancelled", "index")


def _tagged_history(graph, rows: Iterable[dict]) -> list[dict]:
    """The history's events with the tags the engine gives them today (``entry``, ``path``,
    ``where``, ``caught``), worked out from the events themselves; details cut to the few
    fields the read model reads."""
    scope_path: dict[int, str] = {}
    scope_where: dict[int, list] = {}
    state_of: dict[int, Any] = {}  # entry -> State
    entry_scope: dict[int, int] = {}  # entry -> the event that opened its scope
    scheduled: dict[int, int] = {}  # TaskScheduled -> entry
    failed_in: dict[int, dict] = {}  # scope opener -> its last StepFailed, until caught
    out: list[dict] = []
    for row in rows:
        detail = row["detail"] if isinstance(row["detail"], dict) else {}
        event = {
            "event_id": row["event_id"],
            "schedule_event_id": row["schedule_event_id"],
            "type": row["type"],
            "step_name": row["step_name"],
            "time": row["time"],
            "detail": {k: detail[k] for k in _SMALL_DETAIL if k in detail},
        }
        if "taskToken" in detail:
            event["detail"]["taskToken"] = True
        kind, sched, eid = row["type"], row["schedule_event_id"], row["event_id"]
        if kind == "ExecutionStarted":
            scope_path[eid] = graph.root.path
        elif kind == "StepEntered":
            path = scope_path.get(sched)
            st = None
            if path is None and sched in state_of:  # a legacy choice's inline steps
                choice = state_of[sched]
                targets = [c.target for c in choice.choices] + [choice.default]
                for target in targets:
                    scope = getattr(target, "scope", None)
                    if scope is not None and row["step_name"] in scope.states:
                        st = scope.states[row["step_name"]]
                        break
            elif path is not None:
                st = graph.scopes[path].states.get(row["step_name"])
            event["entry"] = eid
            event["path"] = st.path if st is not None else ""
            if sched in scope_where:
                event["where"] = scope_where[sched]
            if st is not None:
                state_of[eid] = st
            entry_scope[eid] = sched
            caught = failed_in.pop(sched, None)
            if caught is not None:
                caught["caught"] = True
        elif kind in ("BranchEntered", "IterationEntered"):
            event["entry"] = sched
            st = state_of.get(sched)
            index = detail.get("index", 0)
            if st is not None and kind == "BranchEntered" and index < len(st.branches):
                scope_path[eid] = st.branches[index].path
            elif st is not None and st.map is not None:
                scope_path[eid] = st.map.processor.path
            scope_where[eid] = ["branch" if kind == "BranchEntered" else "iteration", index]
        elif kind == "TaskScheduled":
            event["entry"] = sched
            scheduled[eid] = sched
        elif kind in _ATTEMPT_EVENTS:
            event["entry"] = scheduled.get(sched, 0)
        elif kind == "StepFailed":
            event["entry"] = sched
            failed_in[entry_scope.get(sched, -1)] = event
        elif kind not in _TERMINAL:
            event["entry"] = sched
        out.append(event)
    return out


def rebuild(execution: Execution) -> None:
    """Write the read model of ``execution`` again from its history (once, for an execution
    started before the read model existed). Holds the execution's lock, as a transition does,
    so the two cannot interleave."""
    from .runtime.transition import graph_for, locked_execution  # noqa: PLC0415

    graph = graph_for(execution)
    with transaction.atomic():
        if locked_execution(execution.pk) is None:
            return
        StepVisit.objects.filter(execution_id=execution.pk).delete()
        StepSummary.objects.filter(execution_id=execution.pk).delete()
        rows = (
            HistoryEvent.objects.filter(execution_id=execution.pk)
            .order_by("event_id")
            .values("event_id", "schedule_event_id", "type", "step_name", "time", "detail")
            .iterator(chunk_size=1000)
        )
        events = _tagged_history(graph, rows)
        visits: dict[int, _Visit] = {}
        ended_at = None
        for event in events:
            if event.get("entry") and event["type"] == "StepEntered":
                visits[event["entry"]] = _new_visit(event)
            elif event.get("entry") in visits:
                _apply(visits[event["entry"]], event)
            elif event["type"] in _TERMINAL:
                ended_at = event["time"]
        if ended_at is not None:
            for visit in visits.values():
                if visit.exited_at is None:
                    visit.status = StepStatus.CANCELLED
                    visit.exited_at = ended_at
        created = list(visits.values())
        adapt = _Adapt()
        _write_visits(execution.pk, created, [], adapt)
        _summarise(execution.pk, created, [], {}, adapt, marker=True)


# === reads ===================================================================================


def execution_for_page(flow: str, name: str) -> Execution:
    """The execution with its flow, version and starter, without its engine state or the
    definition text (the page reads neither)."""
    execution = (
        Execution.objects.filter(flow__name=flow, name=name)
        .select_related("flow", "flow_version", "started_by")
        .defer("state", "flow__definition", "flow_version__definition", "token_salt")
        .first()
    )
    if execution is None:
        raise ServiceError(
            f"flow {flow!r} has no execution named {name!r}", code="ExecutionNotFound", status=404
        )
    return execution


def describe(status: str, visits: int, counts: dict[str, int]) -> str:
    word = STATUS_WORDS.get(status, status)
    if visits <= 1:
        return word
    parts = ", ".join(
        f"{n} {STATUS_WORDS.get(s, s).lower()}" for s, n in sorted(counts.items()) if n
    )
    return f"{word} — {visits} visits: {parts}" if parts else f"{word} — {visits} visits"


def step_statuses(execution: Execution) -> dict[str, NodeStatus]:
    """Each reached state's status (by node key) from the summaries: O(states). A state with
    open visits shows the most pressing of them, else its latest visit's outcome."""
    rows = list(
        StepSummary.objects.filter(execution_id=execution.pk).only(
            "node", "visits", "last_status", *_COUNTS
        )
    )
    if execution.event_count and not any(row.node == "" for row in rows):
        rebuild(execution)
        return step_statuses(execution) if _has_marker(execution) else {}
    statuses = {}
    for row in rows:
        if not row.node:
            continue
        node, visits, counts, last = row.node, row.visits, row.counts, row.last_status
        status = next((s for s in _SHOWN_FIRST if counts.get(s)), last)
        statuses[node] = NodeStatus(str(status), visits, describe(status, visits, counts))
    return statuses


def _has_marker(execution: Execution) -> bool:
    return StepSummary.objects.filter(execution_id=execution.pk, node="").exists()


# --- "why is it waiting?" -----------------------------------------------------------------------


@dataclass
class Outstanding:
    """One thing the execution waits for."""

    kind: str  # callback | running | pending | resume | wait | retry | heartbeat | timeout
    state: str = ""
    where: str = ""
    since: datetime | None = None
    until: datetime | None = None
    detail: dict = field(default_factory=dict)


@dataclass
class Why:
    kind: str  # starting | ended | nothing | the first item's kind
    items: list[Outstanding] = field(default_factory=list)
    tasks: list[TaskToken] = field(default_factory=list)  # steps waiting for a callback
    more: bool = False


_ORDER = {"callback": 0, "running": 1, "pending": 2, "resume": 3, "wait": 4, "retry": 5}


def why_waiting(execution: Execution) -> Why:
    """What the execution waits for now: callbacks (by fingerprint, never the token), function
    attempts running (where, since, until when) or queued (since, how often published),
    timers (which, when they fire). At most ``OUTSTANDING_LIMIT`` of each."""
    if execution.status == "Starting":
        return Why("starting")
    if not execution.is_open:
        return Why("ended")
    limit = OUTSTANDING_LIMIT
    tasks = list(
        TaskToken.objects.filter(execution_id=execution.pk, is_open=True)
        .only("id", "fingerprint", "entry_id", "attempt", "state_name", "created_at")
        .order_by("created_at")[: limit + 1]
    )
    work = list(
        WorkItem.objects.filter(
            execution_id=execution.pk, status__in=[WorkStatus.PENDING, WorkStatus.RUNNING]
        )
        .only(
            "id",
            "kind",
            "entry_id",
            "attempt",
            "state_name",
            "function_name",
            "status",
            "created_at",
            "dispatch_count",
            "started_at",
            "lease_until",
            "worker",
        )
        .order_by("id")[: limit + 1]
    )
    timers = list(
        Timer.objects.filter(execution_id=execution.pk, fired_at__isnull=True)
        .only("key", "entry_id", "due_at")
        .order_by("due_at")[: limit + 1]
    )
    names = {
        v.entry_id: v
        for v in StepVisit.objects.filter(execution_id=execution.pk, exited_at__isnull=True).only(
            "entry_id", "state_name", "where"
        )[: 4 * limit]
    }
    more = len(tasks) > limit or len(work) > limit or len(timers) > limit
    deadlines: dict[int, list[tuple[str, datetime]]] = {}
    items: list[Outstanding] = []
    for timer in timers[:limit]:
        kind = timer.key.split(":", 1)[0]
        if kind in ("timeout", "heartbeat"):
            deadlines.setdefault(timer.entry_id, []).append((kind, timer.due_at))
            continue
        visit = names.get(timer.entry_id)
        items.append(
            Outstanding(
                kind,
                state=visit.state_name if visit else "",
                where=visit.where if visit else "",
                until=timer.due_at,
            )
        )
    for task in tasks[:limit]:
        visit = names.get(task.entry_id)
        items.append(
            Outstanding(
                "callback",
                state=task.state_name,
                where=visit.where if visit else "",
                since=task.created_at,
                detail={
                    "fingerprint": task.fingerprint,
                    "task_id": task.pk,
                    "deadlines": deadlines.get(task.entry_id, []),
                },
            )
        )
    for item in work[:limit]:
        visit = names.get(item.entry_id)
        if item.kind == WorkKind.RESUME:
            kind = "resume"
        else:
            kind = "running" if item.status == WorkStatus.RUNNING else "pending"
        items.append(
            Outstanding(
                kind,
                state=item.state_name,
                where=visit.where if visit else "",
                since=item.started_at if kind == "running" else item.created_at,
                until=item.lease_until if kind == "running" else None,
                detail={
                    "function": item.function_name,
                    "attempt": item.attempt,
                    "worker": item.worker,
                    "dispatches": item.dispatch_count,
                    "detached": item.kind == WorkKind.DETACHED,
                    "deadlines": deadlines.get(item.entry_id, []),
                },
            )
        )
    # A callback's own function attempt (it submits the request) runs beside the wait.
    items.sort(key=lambda o: (_ORDER.get(o.kind, 9), o.until or o.since or timezone.now()))
    if not items:
        return Why("nothing", tasks=tasks[:limit])
    return Why(items[0].kind, items=items, tasks=tasks[:limit], more=more)


# --- history -----------------------------------------------------------------------------------


@dataclass
class EventRow:
    event_id: int
    schedule_event_id: int
    type: str
    step_name: str
    time: datetime
    size: int  # characters of the detail's JSON text
    preview: str  # the first PREVIEW_CHARS of it
    pretty: str | None  # indented JSON when the whole detail fits in the preview

    @property
    def failure(self) -> bool:
        return self.type in FAILURE_TYPES

    @property
    def cut(self) -> bool:
        return self.pretty is None


def _rows(queryset) -> list[EventRow]:
    text = Cast("detail", TextField())
    values = queryset.annotate(size=Length(text), preview=Substr(text, 1, PREVIEW_CHARS)).values(
        "event_id", "schedule_event_id", "type", "step_name", "time", "size", "preview"
    )
    out = []
    for row in values:
        pretty = None
        if (row["size"] or 0) <= PREVIEW_CHARS:
            try:
                pretty = json.dumps(json.loads(row["preview"]), indent=2, ensure_ascii=False)
            except (TypeError, ValueError):
                pretty = row["preview"]
        out.append(EventRow(**row, pretty=pretty))
    return out


@dataclass
class HistoryPage:
    rows: list[EventRow]
    order: str  # newest | oldest
    type: str
    failures: bool
    next_cursor: int | None
    cursor: int | None = None
    error: str = ""

    @property
    def is_live(self) -> bool:
        """The default view (newest first, unfiltered, first page): new events go on top."""
        return self.order == "newest" and not self.type and not self.failures and not self.cursor

    @property
    def newest(self) -> int:
        """The newest event shown (0: none), where the live view carries on from."""
        return self.rows[0].event_id if self.rows and self.order == "newest" else 0


def history_page(
    execution: Execution,
    *,
    order: str = "newest",
    type: str = "",
    failures: bool = False,
    cursor: int | None = None,
    size: int = HISTORY_PAGE,
) -> HistoryPage:
    error = ""
    if order not in ("newest", "oldest"):
        order, error = "newest", "unknown order; showing the newest events first"
    if type and type not in EVENT_TYPES:
        type, error = "", "unknown event type; showing every type"
    events = HistoryEvent.objects.filter(execution_id=execution.pk)
    if type:
        events = events.filter(type=type)
    if failures:
        events = events.filter(type__in=FAILURE_TYPES)
    if order == "newest":
        if cursor is not None:
            events = events.filter(event_id__lt=cursor)
        events = events.order_by("-event_id")
    else:
        if cursor is not None:
            events = events.filter(event_id__gt=cursor)
        events = events.order_by("event_id")
    rows = _rows(events[: size + 1])
    following = rows[size - 1].event_id if len(rows) > size else None
    return HistoryPage(rows[:size], order, type, failures, following, cursor, error)


def events_since(execution: Execution, since: int, size: int = HISTORY_PAGE) -> list[EventRow]:
    """The newest events after ``since`` (newest first; at most ``size``): the live page."""
    return _rows(
        HistoryEvent.objects.filter(execution_id=execution.pk, event_id__gt=since).order_by(
            "-event_id"
        )[:size]
    )


def event_detail(execution: Execution, event_id: int) -> HistoryEvent:
    event = (
        HistoryEvent.objects.filter(execution_id=execution.pk, event_id=event_id)
        .only("event_id", "type", "step_name", "detail")
        .first()
    )
    if event is None:
        raise ServiceError("no such event in this execution", code="EventNotFound", status=404)
    return event


# --- a state's visits ----------------------------------------------------------------------------


@dataclass
class Attempt:
    number: int
    scheduled: datetime | None
    started: datetime | None
    ended: datetime | None
    outcome: str  # "ok", an event type, or "" while it runs
    error: str
    cause: str
    submitted: datetime | None = None

    @property
    def duration(self) -> float | None:
        start = self.started or self.scheduled
        if start is None or self.ended is None:
            return None
        return (self.ended - start).total_seconds()

    @property
    def queued(self) -> float | None:
        if self.scheduled is None or self.started is None:
            return None
        return (self.started - self.scheduled).total_seconds()


@dataclass
class VisitView:
    visit: StepVisit
    input: EventRow | None
    result: EventRow | None  # StepExited (output) or StepFailed (error and cause)
    attempts: list[Attempt]
    hidden_attempts: int  # attempts made but not listed (only the latest are kept)

    @property
    def input_text(self) -> str | None:
        """The visit's input as indented JSON (None: too long to show whole, or unknown)."""
        return _part(self.input, "input")

    @property
    def output_text(self) -> str | None:
        if self.result is None or self.result.type != "StepExited":
            return None
        return _part(self.result, "output")

    @property
    def next_state(self) -> str:
        value = _parsed(self.result).get("next") if self.result is not None else None
        return value if isinstance(value, str) else ""

    @property
    def cause(self) -> str:
        return _field(self.result, "cause") if self.result is not None else ""

    @property
    def duration(self) -> float | None:
        end = self.visit.exited_at
        if end is None:
            return None
        return (end - self.visit.entered_at).total_seconds()


@dataclass
class VisitsPage:
    key: str
    visits: list[VisitView]
    next_cursor: int | None
    total: int  # from the state's summary (no COUNT)


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


ATTEMPTS_SHOWN = 10


def state_visits(
    execution: Execution, key: str, *, before: int | None = None, size: int = VISITS_PAGE
) -> VisitsPage:
    """The visits of one state, newest first, keyset-paged by entry id; for each its input,
    its output or error, and its latest attempts with their errors. Three queries."""
    total = (
        StepSummary.objects.filter(execution_id=execution.pk, node=key)
        .values_list("visits", flat=True)
        .first()
    ) or 0
    visits = StepVisit.objects.filter(execution_id=execution.pk, node=key)
    if before is not None:
        visits = visits.filter(entry_id__lt=before)
    rows = list(visits.order_by("-entry_id")[: size + 1])
    following = rows[size - 1].entry_id if len(rows) > size else None
    rows = rows[:size]
    wanted: set[int] = set()
    for visit in rows:
        wanted.add(visit.entry_id)
        if visit.exit_event_id:
            wanted.add(visit.exit_event_id)
        for one in visit.tries[-ATTEMPTS_SHOWN:]:
            if one.get("e") and one.get("r") != "ok":
                wanted.add(one["e"])
    events = {}
    if wanted:
        events = {
            row.event_id: row
            for row in _rows(
                HistoryEvent.objects.filter(execution_id=execution.pk, event_id__in=wanted)
            )
        }
    views = []
    for visit in rows:
        attempts = []
        for one in visit.tries[-ATTEMPTS_SHOWN:]:
            end = events.get(one.get("e")) if one.get("r") != "ok" else None
            cause = ""
            if end is not None:
                cause = _field(end, "cause")
            attempts.append(
                Attempt(
                    number=_int(one.get("n"), 0),
                    scheduled=_when(one.get("at")),
                    started=_when(one.get("st")),
                    ended=_when(one.get("end")),
                    outcome=one.get("r", ""),
                    error=one.get("err", ""),
                    cause=cause,
                    submitted=_when(one.get("sub")),
                )
            )
        views.append(
            VisitView(
                visit=visit,
                input=events.get(visit.entry_id),
                result=events.get(visit.exit_event_id) if visit.exit_event_id else None,
                attempts=attempts,
                hidden_attempts=max(0, visit.attempts - len(attempts)),
            )
        )
    return VisitsPage(key, views, following, total)


def _parsed(row: EventRow | None) -> dict:
    """An event's detail, when the page holds all of it."""
    if row is None or row.pretty is None:
        return {}
    try:
        value = json.loads(row.pretty)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _field(row: EventRow, name: str) -> str:
    """A string field of an event's detail ("" when the detail is too long to hold whole)."""
    value = _parsed(row).get(name, "")
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _part(row: EventRow | None, name: str) -> str | None:
    detail = _parsed(row)
    if name not in detail:
        return None
    return json.dumps(detail[name], indent=2, ensure_ascii=False)


# --- the timeline --------------------------------------------------------------------------------

TIMELINE_WIDTH = 1000
TIMELINE_LABEL = 240  # the left column, for state names
TIMELINE_ROW = 22
TIMELINE_AXIS = 26


@dataclass
class Segment:
    x: float
    width: float
    css: str
    title: str


@dataclass
class TimelineRow:
    visit: StepVisit
    y: float
    bar: Segment
    attempts: list[Segment]
    open: bool


@dataclass
class Timeline:
    rows: list[TimelineRow]
    ticks: list[tuple[float, str]]  # (x, "+1.5 s": time after the first visit of the page)
    start: datetime | None
    span: float
    height: float
    next_cursor: int | None
    after: int | None
    width: int = TIMELINE_WIDTH
    label_width: int = TIMELINE_LABEL


def timeline(
    execution: Execution, *, after: int | None = None, size: int = TIMELINE_PAGE
) -> Timeline:
    """Bars for the visits of one page (in the order they began, keyset-paged), with each
    attempt as a segment inside its bar: queued (light), running (dark), failed (red). One
    query; positions are SVG coordinates (no inline styles)."""
    visits = StepVisit.objects.filter(execution_id=execution.pk)
    if after is not None:
        visits = visits.filter(entry_id__gt=after)
    rows = list(visits.order_by("entry_id")[: size + 1])
    following = rows[size - 1].entry_id if len(rows) > size else None
    rows = rows[:size]
    if not rows:
        return Timeline([], [], None, 0.0, TIMELINE_AXIS, None, after)
    now = timezone.now()
    end_of_run = execution.stopped_at or now
    start = min(v.entered_at for v in rows)
    finish = max((v.exited_at or end_of_run) for v in rows)
    span = max((finish - start).total_seconds(), 0.001)
    area = TIMELINE_WIDTH - TIMELINE_LABEL - 10

    def x_of(moment: datetime) -> float:
        offset = (moment - start).total_seconds()
        return round(TIMELINE_LABEL + area * min(max(offset / span, 0.0), 1.0), 2)

    out = []
    for i, visit in enumerate(rows):
        y = TIMELINE_AXIS + i * TIMELINE_ROW
        until = visit.exited_at or end_of_run
        x0, x1 = x_of(visit.entered_at), x_of(until)
        seconds = (until - visit.entered_at).total_seconds()
        bar = Segment(
            x0,
            max(x1 - x0, 2.0),
            visit.status,
            f"{visit.state_name} {visit.where} — {STATUS_WORDS.get(visit.status, visit.status)}, "
            f"{_seconds(seconds)}",
        )
        attempts = []
        for one in visit.tries:
            at, st, end = _when(one.get("at")), _when(one.get("st")), _when(one.get("end"))
            if at is None:
                continue
            number = one.get("n", "?")
            if st is not None or end is not None:
                q_end = st or end
                queued = _seconds((q_end - at).total_seconds())
                attempts.append(
                    Segment(
                        x_of(at),
                        max(x_of(q_end) - x_of(at), 0.0),
                        "queue",
                        f"attempt {number} queued {queued}",
                    )
                )
            if st is not None:
                run_end = end or until
                failed = one.get("r") not in (None, "ok")
                attempts.append(
                    Segment(
                        x_of(st),
                        max(x_of(run_end) - x_of(st), 1.5),
                        "try--failed" if failed else "try",
                        f"attempt {number}: "
                        + (f"{one.get('err') or one.get('r')}, " if failed else "")
                        + _seconds((run_end - st).total_seconds()),
                    )
                )
        out.append(TimelineRow(visit, y, bar, attempts, visit.exited_at is None))
    ticks = [
        (round(TIMELINE_LABEL + area * f, 2), "start" if not f else f"+{_seconds(span * f)}")
        for f in (0, 0.25, 0.5, 0.75, 1)
    ]
    height = TIMELINE_AXIS + len(rows) * TIMELINE_ROW + 4
    return Timeline(out, ticks, start, span, height, following, after)


def _seconds(seconds: float) -> str:
    if seconds < 0.01:
        return f"{seconds * 1000:.2g} ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
