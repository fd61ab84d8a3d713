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
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q, TextField
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
HISTORY_PAGE = 50
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
_VISIT_FIELDS = ["status", "exited_at", "exit_event_id", "attempts", "retries", "error", "tries"]
_SUMMARY_FIELDS = [
    "visits",
    "counts",
    "last_entry_id",
    "last_status",
    "last_entered_at",
    "last_exited_at",
]


# === the read model ==========================================================================


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _where(event: dict) -> str:
    where = event.get("where")
    if not where or len(where) != 2:
        return ""
    kind, index = where
    return f"branch {index + 1}" if kind == "branch" else f"item {index}"


def _new_visit(execution_id: int, event: dict) -> StepVisit:
    return StepVisit(
        execution_id=execution_id,
        entry_id=event["entry"],
        node=node_key(event.get("path") or ""),
        state_name=(event.get("step_name") or "")[:128],
        where=_where(event),
        status=StepStatus.RUNNING,
        entered_at=event["time"],
        tries=[],
    )


def _try_of(visit: StepVisit, sched: int) -> dict | None:
    for one in reversed(visit.tries):
        if one.get("s") == sched:
            return one
    return None


def _apply(visit: StepVisit, event: dict) -> None:
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
        tries = [*visit.tries, {"n": _int(detail.get("attempt"), visit.attempts),
                                "s": event["event_id"], "at": _iso(when)}]  # fmt: skip
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
        visit.tries = list(visit.tries)  # (a changed JSON value, for bulk_update)
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
    visits still open when the execution ends."""
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
    visits: dict[int, StepVisit] = {}
    before: dict[int, str] = {}
    if old_ids or ended_at is not None:
        parts = [Q(entry_id__in=old_ids)] if old_ids else []
        if ended_at is not None:
            parts.append(Q(exited_at__isnull=True))
        wanted = parts[0] if len(parts) == 1 else parts[0] | parts[1]
        for visit in StepVisit.objects.filter(execution_id=execution_id).filter(wanted):
            visits[visit.entry_id] = visit
            before[visit.entry_id] = visit.status
    created: list[StepVisit] = []
    changed: set[int] = set()
    for event in touched:
        entry = event["entry"]
        if event["type"] == "StepEntered":
            visit = visits[entry] = _new_visit(execution_id, event)
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
    if created:
        StepVisit.objects.bulk_create(created)
    updated = [visits[e] for e in changed if e in before]
    if updated:
        StepVisit.objects.bulk_update(updated, _VISIT_FIELDS)
    _summarise(execution_id, created, updated, before, marker=starts)


@dataclass
class _Delta:
    visits: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    latest: StepVisit | None = None

    def add(self, status: str, n: int) -> None:
        self.counts[status] = self.counts.get(status, 0) + n

    def see(self, visit: StepVisit) -> None:
        if self.latest is None or visit.entry_id >= self.latest.entry_id:
            self.latest = visit


def _summarise(
    execution_id: int,
    created: list[StepVisit],
    updated: list[StepVisit],
    before: dict[int, str],
    *,
    marker: bool = False,
) -> None:
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
    rows = {
        row.node: row
        for row in StepSummary.objects.filter(execution_id=execution_id, node__in=list(deltas))
    }
    out = []
    for node, delta in deltas.items():
        row = rows.get(node)
        counts = dict(row.counts) if row is not None else {}
        for status, n in delta.counts.items():
            counts[status] = counts.get(status, 0) + n
            if counts[status] <= 0:
                del counts[status]
        summary = StepSummary(
            execution_id=execution_id,
            node=node,
            visits=(row.visits if row is not None else 0) + delta.visits,
            counts=counts,
            last_entry_id=row.last_entry_id if row is not None else 0,
            last_status=row.last_status if row is not None else StepStatus.RUNNING,
            last_entered_at=row.last_entered_at if row is not None else None,
            last_exited_at=row.last_exited_at if row is not None else None,
        )
        latest = delta.latest
        if latest is not None and latest.entry_id >= summary.last_entry_id:
            summary.last_entry_id = latest.entry_id
            summary.last_status = latest.status
            summary.last_entered_at = latest.entered_at
            summary.last_exited_at = latest.exited_at
        out.append(summary)
    StepSummary.objects.bulk_create(
        out,
        update_conflicts=True,
        unique_fields=["execution", "node"],
        update_fields=_SUMMARY_FIELDS,
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
        visits: dict[int, StepVisit] = {}
        ended_at = None
        for event in events:
            if event.get("entry") and event["type"] == "StepEntered":
                visits[event["entry"]] = _new_visit(execution.pk, event)
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
        StepVisit.objects.bulk_create(created, batch_size=500)
        _summarise(execution.pk, created, [], {}, marker=True)


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
        StepSummary.objects.filter(execution_id=execution.pk).values_list(
            "node", "visits", "counts", "last_status"
        )
    )
    if execution.event_count and not any(node == "" for node, *_ in rows):
        rebuild(execution)
        return step_statuses(execution) if _has_marker(execution) else {}
    statuses = {}
    for node, visits, counts, last in rows:
        if not node:
            continue
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


def _field(row: EventRow, name: str) -> str:
    """A string field of an event's detail (from its preview when the detail is long)."""
    if row.pretty is not None:
        try:
            value = json.loads(row.pretty).get(name, "")
        except (ValueError, AttributeError):
            return ""
        return value if isinstance(value, str) else json.dumps(value)
    return ""


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
