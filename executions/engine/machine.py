"""The interpreter: ``step(graph, state, event, now=...) -> Decision``.

Contract
--------
* Pure: no I/O, no clock, no global randomness. ``now``, ``rng`` (for ``uuid()``/``randomInt``)
  and ``new_token(entry, attempt)`` (what the engine calls a callback task's token; the runtime
  passes a fingerprint of the secret token, which the engine never holds) come in as arguments.
* ``state`` is a JSON-serialisable dict made by :func:`new_state`; ``step`` takes ownership of it
  and returns it updated in ``Decision.state`` (the runtime loads it fresh from the database for
  every transition, so no copy is made).
* Inline work (Pass, Choice, entering and leaving scopes, Wait with nothing to wait for) is done
  within one call, up to ``Limits.inline_budget`` state entries; past that the pending work is
  kept in the state and a ``ScheduleResume`` command asks the runtime to continue from a worker.
  A definition that loops through Pass/Choice forever therefore never blocks a request.
* Event ids (``event_id``) are allocated here, strictly increasing from 1 with no gaps; an
  entry into a state is identified by the id of its ``StepEntered`` event, and a branch or
  iteration by the id of its ``BranchEntered``/``IterationEntered`` event.
* A stale or duplicated event (wrong attempt, closed entry, unknown timer or token, finished
  execution) returns a decision with no events and ``ignored`` set.
* Commands are carried out in the order given (a ``DropValues`` before a ``PutValue`` under the
  same prefix leaves the new value).
* Whatever JSON a flow hands it (inputs, function results, callback outputs, expression results),
  the engine fails the state (or the execution) with a named error; an exception escaping
  ``step`` is a bug, which the runtime turns into ``FnF.InternalError``.

Values beside the state
-----------------------
The runtime loads and rewrites the whole state on every transition, so the state holds only
what is bounded by the work in flight. What could grow with a container's size, or is large
and kept for an execution's or a container's whole life, lives beside it as *values*:

* ``PutValue(key, value)`` stores a value (replacing one stored under that key) and
  ``DropValues(prefix)`` deletes the keys starting with ``prefix``; the runtime also deletes an
  execution's values when it ends.
* ``values`` (an argument of ``step``) is a read-only lookup: given a list of keys it returns
  ``{key: value}`` for those that are stored (missing keys are absent). The engine reads through
  it only what it stored in *earlier* steps, asking for all the keys one need covers at once
  (every result of a container when it completes; the items to start next). Values put during
  a step are read from the engine's own cache, since the runtime carries out ``PutValue`` only
  after ``step`` returns.
* Keys (ASCII, at most 64 characters): ``e<entry>:res:<i>`` the output of branch or iteration
  ``i``; ``e<entry>:item:<i>`` Map item ``i`` not started in the step that evaluated the items;
  ``e<entry>:in`` a Parallel's or Map's constructed input; ``x:input`` the execution's input;
  ``x:root`` a legacy flow's input after its ``inputMappings``. The last three only when their
  compact JSON is larger than ``Limits.inline_value_bytes`` (smaller ones stay in the state, in
  the field of the same name; a stored one leaves ``<field>@`` = its key there instead).
  Everything under ``e<entry>:`` is dropped when the entry closes; results and items also when
  a Retry re-runs the container.
* A container keeps, per entry, the number of results collected and their running size, and
  fails with ``FnF.DataLimitExceeded`` as soon as that passes ``Limits.max_payload_bytes``.

History event types and their ``schedule_event_id``
  ExecutionStarted (0) · StepEntered (→ the scope's entering event) · StepStarted, StepExited,
  StepFailed (→ StepEntered) · TaskScheduled (→ StepEntered) · TaskStarted, TaskSubmitted,
  TaskSubmitFailed, TaskSucceeded, TaskFailed, TaskTimedOut (→ TaskScheduled) · BranchEntered,
  BranchExited, IterationEntered, IterationExited (→ the container's StepEntered) ·
  ExecutionSucceeded, ExecutionFailed, ExecutionStopped (→ 1).
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from . import events as ev
from .builtins import type_name
from .compiler import fc_function_name
from .expressions import EvalBudget, EvaluationError, new_budget
from .graph import MAX_DUE, FlowGraph, Scope, State, StateKind, TaskMode

ERR_ALL = "FnF.ALL"
ERR_TIMEOUT = "FnF.Timeout"
ERR_TIMEOUT_ALIAS = "FnF.TaskTimeout"
ERR_HEARTBEAT = "FnF.HeartbeatTimeout"
ERR_RUNTIME = "FnF.RuntimeError"
ERR_DATA_LIMIT = "FnF.DataLimitExceeded"
ERR_HISTORY_LIMIT = "FnF.HistoryLimitExceeded"
ERR_WORKER_LOST = "FnF.WorkerLost"
ERR_INVALID_RESPONSE = "FC.InvalidResponse"
ERR_INTERNAL = "FnF.InternalError"
# The error of a Fail state (legacy: fail step) that names none: never an empty error name.
ERR_FAIL = "FnF.Fail"

# Events of one task attempt (their ``schedule_event_id`` is the attempt's TaskScheduled), and
# the execution's own events (no state entry).
_ATTEMPT_EVENTS = frozenset(
    {"TaskStarted", "TaskSubmitted", "TaskSubmitFailed", "TaskSucceeded", "TaskFailed",
     "TaskTimedOut"}
)  # fmt: skip
_EXECUTION_EVENTS = frozenset(
    {"ExecutionStarted", "ExecutionSucceeded", "ExecutionFailed", "ExecutionStopped"}
)

# ``graph.MAX_DUE`` is the latest deadline the engine sets: a Wait that would end later fails;
# a timeout, heartbeat or retry delay that long is cut to it.

RUNNING = "Running"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
STOPPED = "Stopped"


@dataclass(frozen=True)
class Limits:
    max_payload_bytes: int = 256 * 1024
    max_history_events: int = 25_000
    inline_budget: int = 1000
    map_max_concurrency: int = 100
    max_lost_attempts: int = 3
    # A value kept for a container's or the execution's whole life (their input) stays in the
    # state up to this size (compact JSON bytes); a larger one is stored beside it (PutValue).
    inline_value_bytes: int = 1024


class StepFailure(Exception):
    """A state failed; carries the error name and cause. Internal to the interpreter."""

    def __init__(self, error: str, cause: str):
        super().__init__(f"{error}: {cause}")
        self.error = error
        self.cause = cause


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


# A NUL character, as json.dumps writes it: ``\u0000`` not itself escaped (``\\u0000`` is a
# backslash followed by the text "u0000").
_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _size(value: Any, what: str) -> int:
    """``json_size``, or a StepFailure for a value that cannot be written as JSON text, or that
    holds a NUL character (valid JSON, but PostgreSQL cannot store it: refused everywhere)."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        if "\\u0000" in text and _NUL.search(text):
            raise StepFailure(ERR_RUNTIME, f"{what} holds a NUL character (\\u0000)")
        return len(text.encode())
    except UnicodeEncodeError:
        problem = "contains a string that is not valid Unicode (a lone surrogate)"
    except RecursionError:
        problem = "is nested too deeply"
    except ValueError:  # the interpreter's limit on the digits of an integer it will print
        problem = "contains a number with too many digits"
    except TypeError:
        problem = "contains a value that is not JSON"
    raise StepFailure(ERR_RUNTIME, f"{what} {problem}")


def _preview(value: Any) -> str:
    """A short JSON rendering of ``value`` for messages (ASCII, so any string is safe to store)."""
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (ValueError, TypeError, RecursionError):
        return type_name(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_number(value: Any) -> bool:
    """A JSON number that is finite (booleans are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return not isinstance(value, float) or math.isfinite(value)


def new_state(*, execution_name: str, flow_name: str, input: Any, now: datetime) -> dict:
    return {
        "v": 2,
        "status": RUNNING,
        "next_event_id": 1,
        "exec": {"name": execution_name, "flow": flow_name, "input": input, "start": _iso(now)},
        "globals": {},
        "entries": {},
        "scopes": {},
        "tokens": {},
        "timers": {},
        "queue": [],
        "result": None,
    }


def step(
    graph: FlowGraph,
    state: dict,
    event: ev.Event,
    *,
    now: datetime,
    rng: random.Random | None = None,
    new_token: Callable[[int, int], str] | None = None,
    limits: Limits = Limits(),
    values: Callable[[list[str]], dict[str, Any]] | None = None,
) -> ev.Decision:
    """Apply ``event``. ``values`` looks up values stored by earlier steps (see the module
    docstring); without it every such value counts as missing."""
    run = _Run(graph, state, now, rng or random.Random(0), new_token, limits, values)
    run.handle(event)
    commands = _without_dropped_puts(run.commands)
    return ev.Decision(state=state, events=run.events, commands=commands, ignored=run.ignored)


def _without_dropped_puts(commands: list) -> list:
    """A value put and dropped within the same step (a container that ran inline from start to
    end) need not be written at all: leave out every PutValue a later DropValues covers."""
    if not any(isinstance(c, ev.DropValues) for c in commands):
        return commands
    kept: list = []
    drops: list[str] = []
    for command in reversed(commands):
        if isinstance(command, ev.DropValues):
            drops.append(command.prefix)
        elif isinstance(command, ev.PutValue) and command.key.startswith(tuple(drops)):
            continue
        kept.append(command)
    kept.reverse()
    return kept


def abort(
    graph: FlowGraph,
    state: dict,
    *,
    now: datetime,
    error: str,
    cause: str,
    limits: Limits = Limits(),
) -> ev.Decision:
    """End a running execution as Failed, closing everything it has open.

    For the runtime's last resort: ``state`` must be the last *stored* state (``step`` may have
    left a half-updated one behind when it raised)."""
    run = _Run(graph, state, now, random.Random(0), None, limits, None)
    if not run.running:
        run.ignore(f"the execution is {state['status']}")
    else:
        run.fail_execution(error, cause)
    return ev.Decision(state=state, events=run.events, commands=run.commands, ignored=run.ignored)


def matches(rule_errors: tuple[str, ...], error: str) -> bool:
    for name in rule_errors:
        if name in (ERR_ALL, error):
            return True
        if name == ERR_TIMEOUT_ALIAS and error == ERR_TIMEOUT:
            return True
    return False


def retry_delay(rule, retry_number: int) -> float:
    """Seconds before retry ``retry_number`` (1-based) of a rule: interval × rate^(n-1), capped
    by MaxBackoffSeconds; ``math.inf`` when that is beyond floating point (callers cut it to
    ``MAX_DUE``)."""
    try:
        growth = float(rule.backoff_rate) ** (retry_number - 1)
    except OverflowError:
        growth = math.inf
    try:
        interval = float(rule.interval_seconds)
    except OverflowError:
        interval = math.inf
    delay = interval * growth if interval else 0.0
    cap = rule.max_backoff_seconds
    if cap is not None and cap < min(delay, 1e300):  # (compared exactly, then safe to convert)
        delay = float(cap)
    return max(0.0, delay)


class _Env(Mapping):
    """The variables one evaluation sees (``env`` of ``Expression.evaluate``), some of them
    built only when an expression reads them: ``$Context`` (and ``$Input`` of a container) may
    have to be read back from the stored values, which only an expression that uses them should
    pay for. A root that is neither known nor pending is missing (``null``)."""

    __slots__ = ("_known", "_pending", "entry")

    def __init__(
        self,
        known: dict[str, Any],
        pending: dict[str, Callable[[], Any]],
        entry: int | None = None,
    ):
        self._known = known
        self._pending = pending
        self.entry = entry  # whose evaluation budget the expressions charge (``_Run.budget``)

    def __getitem__(self, name: str) -> Any:
        if name not in self._known:
            self._known[name] = self._pending.pop(name)()  # KeyError: missing
        return self._known[name]

    def __iter__(self):
        return iter([*self._known, *self._pending])

    def __len__(self) -> int:
        return len(self._known) + len(self._pending)


class _Run:
    def __init__(self, graph, state, now, rng, new_token, limits, values):
        self.g: FlowGraph = graph
        self.s: dict = state
        self.now: datetime = now
        self.rng = rng
        self.new_token = new_token
        self.limits: Limits = limits
        self.events: list[dict] = []
        self.commands: list = []
        self.ignored: str | None = None
        self.legacy = graph.dialect == "legacy"
        self.budgets: dict[int | None, EvalBudget] = {}  # evaluation budget per entry: budget()
        self.lookup: Callable[[list[str]], dict[str, Any]] | None = values
        # Values put or read in this step; a key under a prefix dropped in this step is missing
        # unless put again (the runtime has not deleted it yet when ``lookup`` is asked).
        self.cache: dict[str, Any] = {}
        self.dropped: list[str] = []
        self.scheduled: dict[int, int] = {}  # TaskScheduled id -> its entry, for this step's events

    # ------------------------------------------------------------------ plumbing

    def emit(self, type_: str, sched: int, step_name: str = "", **detail) -> int:
        """Append a history event. An event of a state entry also carries ``entry`` (the id of
        the entry's StepEntered) beside its detail: not history, but what the runtime keeps its
        per-state read model by (``executions/detail.py``) without searching older events."""
        eid = self.s["next_event_id"]
        self.s["next_event_id"] = eid + 1
        event = {
            "event_id": eid,
            "schedule_event_id": sched,
            "type": type_,
            "step_name": step_name,
            "time": self.now,
            "detail": detail,
        }
        if type_ == "StepEntered":
            event["entry"] = eid
        elif type_ in _ATTEMPT_EVENTS:
            event["entry"] = self.attempt_owner(sched)
        elif type_ not in _EXECUTION_EVENTS:
            event["entry"] = sched  # StepStarted/Exited/Failed, TaskScheduled, Branch*, Iteration*
        if type_ == "TaskScheduled":
            self.scheduled[eid] = sched
        self.events.append(event)
        return eid

    def attempt_owner(self, sched: int) -> int:
        """The entry whose attempt ``sched`` (a TaskScheduled id) is: events of an attempt are
        emitted while its entry is open and holds it as its current one."""
        if sched in self.scheduled:
            return self.scheduled[sched]
        for entry in self.s["entries"].values():
            if entry.get("sched") == sched:
                return entry["id"]
        return 0  # pragma: no cover - an attempt event always has an open entry

    def ignore(self, reason: str) -> None:
        self.ignored = reason

    def entry(self, eid) -> dict | None:
        return self.s["entries"].get(str(eid))

    def scope(self, sid) -> dict:
        return self.s["scopes"][str(sid)]

    def state_of(self, entry: dict) -> State:
        return self.g.state(self.scope(entry["scope"])["path"], entry["state"])

    def check_size(self, value: Any, what: str) -> int:
        """``value``'s size (compact UTF-8 JSON); a StepFailure past the payload limit."""
        size = _size(value, what)
        if size > self.limits.max_payload_bytes:
            raise StepFailure(
                ERR_DATA_LIMIT,
                f"{what} is {size} bytes; the limit is {self.limits.max_payload_bytes} bytes",
            )
        return size

    def after(self, seconds: float) -> datetime:
        """``now`` plus ``seconds``, cut to ``MAX_DUE`` (a deadline that far off never comes)."""
        room = (MAX_DUE - self.now).total_seconds()
        if seconds != seconds or seconds >= room:  # NaN, or beyond the room (exact for ints)
            return MAX_DUE
        return self.now + timedelta(seconds=max(0.0, float(seconds)))

    # ------------------------------------------------------------------ values beside the state

    @staticmethod
    def entry_key(entry: dict, suffix: str) -> str:
        return f"e{entry['id']}:{suffix}"

    def put(self, key: str, value: Any, *, owner: dict | None = None) -> None:
        """Store ``value`` beside the state; ``owner`` (an entry) drops it when it closes."""
        self.cache[key] = value
        self.commands.append(ev.PutValue(key, value))
        if owner is not None:
            owner["vals"] = 1

    def drop(self, prefix: str) -> None:
        self.commands.append(ev.DropValues(prefix))
        for key in [k for k in self.cache if k.startswith(prefix)]:
            del self.cache[key]
        self.dropped.append(prefix)

    def release(self, entry: dict) -> None:
        """The entry is closed: drop every value it stored."""
        if entry.pop("vals", None):
            self.drop(self.entry_key(entry, ""))

    def fetch(self, keys: list[str], *, required: bool = False) -> dict[str, Any]:
        """The stored values of ``keys`` (missing ones absent): this step's cache, then one call
        of the runtime's lookup for the rest. ``required``: a missing key is an inconsistency
        between the state and the stored values, not something a flow can cause."""
        found = {k: self.cache[k] for k in keys if k in self.cache}
        wanted = [
            k for k in keys if k not in found and not any(k.startswith(p) for p in self.dropped)
        ]
        if wanted and self.lookup is not None:
            got = self.lookup(wanted)
            for k in wanted:
                if k in got:
                    found[k] = self.cache[k] = got[k]
        if required and len(found) < len(set(keys)):
            missing = sorted(set(keys) - set(found))
            raise LookupError(f"stored values missing: {', '.join(missing[:5])}")
        return found

    def keep(self, holder: dict, field: str, value: Any, key: str, size: int, owner=None) -> None:
        """Hold ``value`` as ``holder[field]`` when small, else store it under ``key`` and
        leave ``holder[field + "@"] = key``."""
        holder.pop(field + "@", None)
        if size <= self.limits.inline_value_bytes:
            holder[field] = value
            return
        holder.pop(field, None)
        holder[field + "@"] = key
        self.put(key, value, owner=owner)

    def kept(self, holder: dict, field: str) -> Any:
        """What :meth:`keep` held (None when neither form is there)."""
        key = holder.get(field + "@")
        if key is None:
            return holder.get(field)
        return self.fetch([key], required=True)[key]

    def exec_input(self) -> Any:
        return self.kept(self.s["exec"], "input")

    def scope_input(self, scope: dict) -> Any:
        """A legacy scope's input (the root's may be stored beside the state)."""
        return self.kept(scope, "input")

    def has_input(self, entry: dict) -> bool:
        return "input" in entry or "input@" in entry or "input=raw" in entry

    def input_of(self, entry: dict) -> Any:
        """The entry's constructed input, or its raw input while that could not be built."""
        if "input" in entry or "input@" in entry:
            return self.kept(entry, "input")
        return entry.get("raw")

    def set_input(self, entry: dict, st: State, value: Any) -> None:
        size = self.check_size(value, f"the input of state '{st.name}'")
        if st.kind in (StateKind.PARALLEL, StateKind.MAP):
            # A container holds its input for its whole life (every iteration started, its
            # output, its Catch) and never rebuilds it: a large one is stored beside the state,
            # and the raw input is no longer needed.
            entry.pop("raw", None)
            self.keep(entry, "input", value, self.entry_key(entry, "in"), size, owner=entry)
        elif value is entry.get("raw"):
            # No InputConstructor: one copy in the state, not two.
            entry.pop("input", None)
            entry["input=raw"] = 1
        else:
            entry.pop("input=raw", None)
            entry["input"] = value

    @property
    def running(self) -> bool:
        return self.s["status"] == RUNNING

    # ------------------------------------------------------------------ expression env

    def _iteration(self, scope: dict) -> dict | None:
        while scope is not None:
            if scope["kind"] == "iteration":
                return scope
            parent = self.entry(scope["parent"]) if scope["parent"] else None
            scope = self.scope(parent["scope"]) if parent else None
        return None

    def context(self, entry: dict, *, output=None, error=None) -> dict:
        ex = self.s["exec"]
        it = self._iteration(self.scope(entry["scope"]))
        if self.legacy:
            ctx = {
                "execution": {
                    "name": ex["name"],
                    "input": self.exec_input(),
                    "startTime": ex["start"],
                },
                "flow": {"name": ex["flow"]},
                "step": {"name": entry["state"]},
                "task": {"token": entry.get("token")},
            }
            if it is not None:
                ctx["item"] = it["item"]
                ctx["index"] = it["index"]
            return ctx
        current = {
            "Name": entry["state"],
            "Input": self.input_of(entry),
            "RetryCount": entry.get("retries", 0),
            "TaskToken": entry.get("token"),
        }
        if output is not None:
            current["Output"] = output
        if error is not None:
            current["Error"] = {"Code": error[0], "Detail": error[1]}
        if it is not None:
            current["Item"] = it["item"]
            current["Index"] = it["index"]
        return {
            "Execution": {
                "Name": ex["name"],
                "Input": self.exec_input(),
                "StartTime": ex["start"],
                "RoleArn": "",
            },
            "Flow": {"Name": ex["flow"]},
            "Current": current,
        }

    def budget(self, env) -> EvalBudget:
        """The evaluation budget of the state entry ``env`` belongs to: every expression,
        template and mapping one entry evaluates within this step shares it, so the work of
        an entry does not grow with the number of expressions its definition holds. Envs
        without an entry (flow-level mappings) share one."""
        key = getattr(env, "entry", None)
        budget = self.budgets.get(key)
        if budget is None:
            budget = self.budgets[key] = new_budget()
        return budget

    def evaluation_spent(self) -> bool:
        """Whether this step's expressions have done one state entry's worth of work in all.
        The inline loop then hands what is left to a worker (``ScheduleResume``): each entry
        keeps its own budget, yet a loop of Pass/Choice states whose expressions all stay
        within theirs costs one step (a request, say) about two budgets' worth at most."""
        limit = new_budget()
        work = steps = 0
        for budget in self.budgets.values():
            work += budget.work
            steps += budget.steps
        return work >= limit.max_work or steps >= limit.max_steps

    def render(self, template, env: dict, what: str):
        try:
            return template.render(env, now=self.now, rng=self.rng, budget=self.budget(env))
        except EvaluationError as exc:
            raise StepFailure(ERR_RUNTIME, f"{what}: {exc}") from None

    def evaluate(self, expr, env: dict, what: str):
        try:
            return expr.evaluate(env, now=self.now, rng=self.rng, budget=self.budget(env))
        except EvaluationError as exc:
            raise StepFailure(ERR_RUNTIME, f"{what}: {exc}") from None

    def apply_mappings(self, mappings, env: dict, what: str) -> dict:
        try:
            return mappings.apply(env, now=self.now, rng=self.rng, budget=self.budget(env))
        except EvaluationError as exc:
            raise StepFailure(ERR_RUNTIME, f"{what}: {exc}") from None

    def state_env(self, entry: dict) -> Mapping[str, Any]:
        """Variables for expressions a state evaluates against its (constructed) input:
        Choice conditions, Wait seconds, Map items, a Task's request."""
        if self.legacy:
            return self.legacy_env(entry, input=self.input_of(entry))
        return self.cloudflow_env(entry)

    def cloudflow_env(self, entry: dict, **known) -> Mapping[str, Any]:
        """``$Input`` (the entry's constructed input unless given), ``$Context``, ``$Global`` and
        whatever else is ``known`` (``Output``, ``Item``); ``output``/``error`` for
        ``$Context.Current`` go in ``known`` under those lower-case names."""
        output = known.pop("output", None)
        error = known.pop("error", None)
        known["Global"] = self.s["globals"]
        pending = {"Context": lambda: self.context(entry, output=output, error=error)}
        if "Input" not in known:
            pending["Input"] = lambda: self.input_of(entry)
        return _Env(known, pending, entry.get("id"))

    def legacy_env(self, entry: dict, *, input=None, local=None) -> Mapping[str, Any]:
        scope = self.scope(entry["scope"])
        known = {"local": scope["local"] if local is None else local}
        pending = {"context": lambda: self.context(entry)}
        if input is None:
            pending["input"] = lambda: self.scope_input(scope)
        else:
            known["input"] = input
        return _Env(known, pending, entry.get("id"))

    # ------------------------------------------------------------------ events

    def handle(self, event) -> None:
        if isinstance(event, ev.Start):
            self.start(event.input)
            self.drain()
            return
        if not self.running:
            self.ignore(f"the execution is {self.s['status']}")
            return
        if self.s.get("v", 1) < 2:
            self.upgrade()
        if isinstance(event, ev.Stop):
            self.cancel_scope(self.root_scope_id(), emit=False)
            self.finish(STOPPED, error=event.error, cause=event.cause)
            return
        elif isinstance(event, ev.TaskStarted):
            self.on_task_started(event)
        elif isinstance(event, ev.TaskSucceeded):
            self.on_task_result(event.entry, event.attempt, ok=True, output=event.output)
        elif isinstance(event, ev.TaskFailed):
            self.on_task_result(
                event.entry, event.attempt, ok=False, error=event.error, cause=event.cause
            )
        elif isinstance(event, ev.TaskLost):
            self.on_task_lost(event)
        elif isinstance(event, ev.TimerFired):
            self.on_timer(event.key)
        elif isinstance(event, ev.CallbackSucceeded | ev.CallbackFailed | ev.CallbackHeartbeat):
            self.on_callback(event)
        elif isinstance(event, ev.Resume):
            if not self.s["queue"]:
                self.ignore("nothing to resume")
                return
        else:  # pragma: no cover - programming error
            raise TypeError(f"unknown event {event!r}")
        self.drain()

    def root_scope_id(self) -> int:
        return self.s["root"]

    def upgrade(self) -> None:
        """Bring a state stored by an earlier version (``"v": 1``: container results and Map
        items inside the state) to this one, storing those beside it. Once per execution."""
        self.s["v"] = 2
        for entry in self.s["entries"].values():
            results = entry.pop("results", None)
            if results is None:
                continue
            entry["done"] = len(results)
            entry["bytes"] = 0
            for index, output in results.items():
                entry["bytes"] += json_size(output) + 1
                self.put(self.entry_key(entry, f"res:{index}"), output, owner=entry)
            for i, item in enumerate(entry.pop("items", ())):
                if i >= entry.get("next_item", 0):
                    self.put(self.entry_key(entry, f"item:{i}"), item, owner=entry)

    def start(self, input: Any) -> None:
        if self.s["next_event_id"] != 1:
            self.ignore("the execution has already started")
            return
        started = self.emit("ExecutionStarted", 0, input=input)
        ex = self.s["exec"]
        try:
            # Kept for the execution's whole life ($Context.Execution.Input).
            size = _size(input, "the execution's input")
        except StepFailure as f:
            self.finish(FAILED, error=f.error, cause=f.cause)
            return
        self.keep(ex, "input", input, "x:input", size)
        root = {
            "id": started,
            "path": self.g.root.path,
            "parent": None,
            "kind": "root",
            "index": 0,
            "active": None,
        }
        if self.legacy:
            root["local"] = {}
            # The root scope's input is the execution's (stored once) unless mapped.
            for field in ("input", "input@"):
                if field in ex:
                    root[field] = ex[field]
            if self.g.input_mappings is not None:
                fake = {"scope": started, "state": "", "token": None}
                self.s["scopes"][str(started)] = root
                try:
                    mapped = self.apply_mappings(
                        self.g.input_mappings,
                        {"input": input, "local": {}, "context": self.context(fake)},
                        "inputMappings",
                    )
                    self.keep(root, "input", mapped, "x:root", _size(mapped, "inputMappings"))
                except StepFailure as f:
                    self.finish(FAILED, error=f.error, cause=f.cause)
                    return
        self.s["scopes"][str(started)] = root
        self.s["root"] = started
        self.s["queue"].append(["enter", started, self.g.root.start_at, input])

    # ------------------------------------------------------------------ the inline loop

    def drain(self) -> None:
        budget = self.limits.inline_budget
        queue = self.s["queue"]
        while queue and self.running:
            if budget <= 0 or self.evaluation_spent():
                self.commands.append(ev.ScheduleResume())
                return
            if self.s["next_event_id"] > self.limits.max_history_events:
                self.fail_execution(
                    ERR_HISTORY_LIMIT,
                    f"the execution's history reached {self.limits.max_history_events} events",
                )
                return
            budget -= 1
            action = queue.pop(0)
            kind = action[0]
            if kind == "enter":
                _, sid, name, raw = action
                if str(sid) in self.s["scopes"]:
                    self.enter(sid, name, raw)
            elif kind == "start_child":  # start the next pending Map iteration(s)
                _, eid = action
                entry = self.entry(eid)
                if entry is not None:
                    self.fill_iterations(entry)

    # ------------------------------------------------------------------ entering states

    def enter(self, sid: int, name: str, raw: Any) -> None:
        scope = self.scope(sid)
        st = self.g.state(scope["path"], name)
        eid = self.emit("StepEntered", scope.get("sched", sid), name, input=raw)
        # Which node of the definition this is, and which branch or iteration (read model only).
        self.events[-1]["path"] = st.path
        if scope["kind"] in ("branch", "iteration"):
            self.events[-1]["where"] = [scope["kind"], scope["index"]]
        entry = {"id": eid, "scope": sid, "state": name, "raw": raw, "retries": 0, "attempt": 0}
        self.s["entries"][str(eid)] = entry
        scope["active"] = eid
        if st.task is not None and st.task.mode is TaskMode.CUSTOM_CALLBACK:
            # The token exists before the input is built: mappings and constructors read it.
            entry["token"] = self.make_token(entry, 1)
        try:
            self.set_input(entry, st, self.build_input(entry, st, raw))
            self.begin(entry, st)
        except StepFailure as f:
            self.fail_entry(entry, f.error, f.cause)

    def build_input(self, entry: dict, st: State, raw: Any) -> Any:
        if self.legacy:
            scope = self.scope(entry["scope"])
            if st.input_mappings is not None:
                return self.apply_mappings(
                    st.input_mappings, self.legacy_env(entry), f"{st.path}.inputMappings"
                )
            scope_input = self.scope_input(scope)
            merged = dict(scope_input) if isinstance(scope_input, dict) else {}
            merged.update(scope["local"])
            return merged
        if st.input_constructor is not None:
            env = self.cloudflow_env(entry, Input=raw)
            built = self.render(st.input_constructor, env, f"{st.path}.InputConstructor")
            if not isinstance(built, dict):
                raise StepFailure(
                    ERR_RUNTIME,
                    f"the InputConstructor of state '{st.name}' must build a JSON object, "
                    f"got {type_name(built)}",
                )
            return built
        return raw

    def begin(self, entry: dict, st: State) -> None:
        kind = st.kind
        if kind in (StateKind.PASS, StateKind.SUCCEED):
            # A legacy pass/succeed step has an empty $local: with no outputMappings it adds
            # nothing to its parent's $local.
            passthrough = {} if self.legacy else self.input_of(entry)
            self.complete(entry, passthrough, end_scope=kind is StateKind.SUCCEED)
        elif kind is StateKind.FAIL:
            spec = st.fail
            if st.global_constructor is not None:
                # Kept for whoever handles the failure: a container's Catch and what follows.
                # ($Output is null: a Fail state has none; an OutputConstructor has no effect.)
                self.update_globals(st, self.cloudflow_env(entry))
            # Without a Code the error still has a name for Catch rules, history and the API.
            self.fail_entry(entry, spec.code or ERR_FAIL, spec.detail or "", no_catch=True)
        elif kind is StateKind.CHOICE:
            self.begin_choice(entry, st)
        elif kind is StateKind.WAIT:
            self.begin_wait(entry, st)
        elif kind is StateKind.TASK:
            self.schedule_attempt(entry, st)
        elif kind is StateKind.PARALLEL:
            self.begin_parallel(entry, st)
        elif kind is StateKind.MAP:
            self.begin_map(entry, st)
        else:  # pragma: no cover
            raise AssertionError(kind)

    def begin_choice(self, entry: dict, st: State) -> None:
        env = self.state_env(entry)
        target = st.default
        for branch in st.choices:
            where = f"{branch.path}.{'condition' if self.legacy else 'Condition'}"
            value = self.evaluate(branch.condition, env, where)
            if value is True:
                target = branch.target
                break
            if value not in (False, None):
                raise StepFailure(
                    ERR_RUNTIME,
                    f"condition {branch.condition.text!r} gave {type_name(value)} "
                    f"{_preview(value)}, not a boolean",
                )
        if target is None or (target.next is None and target.scope is None):
            # legacy: no branch matched and no default: the step just ends
            self.complete(entry, {} if self.legacy else self.input_of(entry))
        elif target.next is not None:
            result = {} if self.legacy else self.input_of(entry)
            self.complete(entry, result, next_state=target.next)
        else:
            entry["phase"] = "children"
            entry["children"] = []
            self.open_child_scope(entry, target.scope, "choice", 0, self.input_of(entry))

    def begin_wait(self, entry: dict, st: State) -> None:
        spec = st.wait
        env = self.state_env(entry)
        if spec.seconds is not None or spec.seconds_expr is not None:
            seconds = spec.seconds
            if spec.seconds_expr is not None:
                seconds = self.evaluate(spec.seconds_expr, env, f"{st.path}.Seconds")
            if not _is_number(seconds) or seconds < 0:
                raise StepFailure(
                    ERR_RUNTIME,
                    f"Wait seconds must be a number ≥ 0, got {type_name(seconds)} "
                    f"{_preview(seconds)}",
                )
            # Compared before any conversion: an integer of hundreds of digits must not reach
            # float() or timedelta(), which would raise OverflowError.
            if seconds > (MAX_DUE - self.now).total_seconds():
                raise StepFailure(
                    ERR_RUNTIME,
                    f"a Wait of {_preview(seconds)} seconds would end after {_iso(MAX_DUE)}, "
                    "the latest time a flow can wait for",
                )
            due = self.now + timedelta(seconds=float(seconds))
        else:
            stamp = spec.timestamp
            if spec.timestamp_expr is not None:
                stamp = self.evaluate(spec.timestamp_expr, env, f"{st.path}.Timestamp")
            due = _parse_timestamp(stamp)
            if due > MAX_DUE:
                raise StepFailure(
                    ERR_RUNTIME,
                    f"Wait timestamp {_preview(stamp)} is after {_iso(MAX_DUE)}, "
                    "the latest time a flow can wait for",
                )
        if due <= self.now:
            self.complete(entry, self.input_of(entry) if not self.legacy else {})
            return
        due = due.astimezone(UTC)  # (safe now: a year of room before datetime.max)
        self.emit("StepStarted", entry["id"], entry["state"], until=_iso(due))
        key = f"wait:{entry['id']}"
        entry["phase"] = "wait"
        entry["timers"] = [key]
        self.s["timers"][key] = entry["id"]
        self.commands.append(ev.StartTimer(key=key, due_at=due, entry=entry["id"]))

    # ------------------------------------------------------------------ tasks

    def schedule_attempt(self, entry: dict, st: State, *, rerun: bool = False) -> None:
        """Start the next attempt of a Task. ``rerun``: the same logical attempt again, after
        its worker was lost (same idempotency key)."""
        spec = st.task
        entry["attempt"] += 1
        attempt = entry["attempt"]
        if not rerun:
            entry["try"] = entry.get("try", 0) + 1
        elif "try" not in entry:  # (stored before logical attempts were counted)
            entry["try"] = max(1, attempt - entry.get("lost", 0))
        callback = spec.mode is TaskMode.CUSTOM_CALLBACK
        if callback and attempt > 1:
            # Each attempt gets its own token, so a late report for an earlier attempt
            # cannot complete a later one; the input (which may carry it) is rebuilt.
            self.close_token(entry)
            entry["token"] = self.make_token(entry, attempt)
            self.set_input(entry, st, self.build_input(entry, st, entry["raw"]))
        payload = self.task_payload(entry, st)
        self.check_size(payload, f"the request of task '{st.name}'")
        resource, function, invocation = self.task_target(entry, st)
        target = function if spec.target == "function" else spec.queue
        sched = self.emit(
            "TaskScheduled",
            entry["id"],
            st.name,
            resource=resource,
            target=target,
            attempt=attempt,
            retry_count=entry["retries"],
            request=payload,
        )
        entry["sched"] = sched
        entry["phase"] = "task"
        entry["timers"] = []
        if spec.target == "queue" and not callback:
            # A message with nobody to wait for: the task is done once it is sent.
            self.commands.append(ev.SendToQueue(entry["id"], attempt, spec.queue, payload))
            self.emit("TaskSucceeded", sched, st.name, output={})
            entry["phase"] = "done"
            self.task_done(entry, st, {})
            return
        if spec.target == "function" and invocation == "async" and spec.mode is TaskMode.REQUEST:
            self.submit_async(entry, st, function, payload)
            return
        if spec.timeout_seconds:
            key = f"timeout:{entry['id']}:{attempt}"
            self.start_timer(entry, key, self.after(spec.timeout_seconds))
        if callback:
            self.s["tokens"][entry["token"]] = entry["id"]
            self.commands.append(ev.OpenToken(entry["token"], entry["id"], st.name, attempt))
        if spec.target == "queue":
            self.commands.append(
                ev.SendToQueue(entry["id"], attempt, spec.queue, payload, entry.get("token"))
            )
            self.submitted(entry, st, {"queue": spec.queue})
            return
        self.commands.append(
            ev.InvokeFunction(
                entry=entry["id"],
                attempt=attempt,
                function=function,
                event=payload,
                state_name=st.name,
                invocation=invocation,
                mode=str(spec.mode),
                timeout_seconds=spec.timeout_seconds,
                token=entry.get("token"),
                # Lost-worker re-runs keep the number; a Retry moves it on.
                idempotency_key=f"{entry['id']}.{entry['try']}",
            )
        )

    def task_target(self, entry: dict, st: State) -> tuple[str, str | None, str]:
        """This attempt's ARN, function and invocation type. ``resourceArn.$`` and
        ``invocationType.$`` are evaluated like the body, against the constructed input, for
        every attempt."""
        spec = st.task
        resource, function, invocation = spec.resource, spec.function, spec.invocation
        if spec.resource_expr is not None:
            where = f"{st.path}.Parameters.resourceArn.$"
            arn = self.evaluate(spec.resource_expr, self.state_env(entry), where)
            function = fc_function_name(arn) if isinstance(arn, str) else None
            if function is None:
                raise StepFailure(
                    ERR_RUNTIME,
                    f"{where} gave {type_name(arn)} {_preview(arn)}, not a Function Compute "
                    "function ARN (acs:fc:{region}:{account}:functions/{name})",
                )
            resource = arn
        if spec.invocation_expr is not None:
            where = f"{st.path}.Parameters.invocationType.$"
            value = self.evaluate(spec.invocation_expr, self.state_env(entry), where)
            if value not in ("Sync", "Async"):
                raise StepFailure(
                    ERR_RUNTIME,
                    f'{where} gave {type_name(value)} {_preview(value)}, not "Sync" or "Async"',
                )
            invocation = value.lower()
        return resource, function, invocation

    def submit_async(self, entry: dict, st: State, function: str, payload: Any) -> None:
        """``invocationType: Async`` under ``RequestComplete``: the runtime runs the function
        detached (``SubmitAsync``) and the Task completes now, its raw output the submit
        acknowledgement. History: TaskScheduled, TaskSubmitted (``taskId``), TaskSucceeded."""
        # Unique per execution and transition (rng is seeded from both), and a valid FC task
        # id: a letter, then hex digits.
        task_id = f"t{self.rng.getrandbits(128):032x}"
        self.commands.append(
            ev.SubmitAsync(
                entry=entry["id"],
                attempt=entry["attempt"],
                function=function,
                event=payload,
                task_id=task_id,
                state_name=st.name,
            )
        )
        ack = {"Body": "", "StatusCode": 202, "Headers": {"x-fc-async-task-id": task_id}}
        self.emit("TaskSubmitted", entry["sched"], st.name, taskId=task_id)
        self.emit("TaskSucceeded", entry["sched"], st.name, output=ack)
        entry["phase"] = "done"
        self.task_done(entry, st, ack)

    def task_payload(self, entry: dict, st: State) -> Any:
        spec = st.task
        if self.legacy:
            if spec.service_params is not None:
                env = self.state_env(entry)
                params = self.render(spec.service_params, env, f"{st.path}.serviceParams")
                if isinstance(params, dict) and "MessageBody" in params:
                    return params["MessageBody"]
                return params
            return self.input_of(entry)
        if spec.body is None:
            return self.input_of(entry)
        return self.render(spec.body, self.state_env(entry), f"{st.path}.Parameters.body")

    def make_token(self, entry: dict, attempt: int) -> str:
        """The callback token of ``attempt`` of ``entry``, as the engine knows it: the runtime
        hands the engine a fingerprint and keeps the secret token out of the state, the history
        and every stored payload (the worker puts the real token into the handler's event)."""
        if self.new_token is not None:
            return self.new_token(entry["id"], attempt)
        return f"t{entry['id']}.{attempt}"

    def start_timer(self, entry: dict, key: str, due: datetime) -> None:
        entry.setdefault("timers", []).append(key)
        self.s["timers"][key] = entry["id"]
        self.commands.append(ev.StartTimer(key=key, due_at=due, entry=entry["id"]))

    def clear_timers(self, entry: dict, *, keep: tuple[str, ...] = ()) -> None:
        remaining = []
        for key in entry.get("timers", []):
            if key in keep:
                remaining.append(key)
                continue
            if self.s["timers"].pop(key, None) is not None:
                self.commands.append(ev.CancelTimer(key))
        entry["timers"] = remaining

    def close_token(self, entry: dict) -> None:
        token = entry.get("token")
        if token and self.s["tokens"].pop(token, None) is not None:
            self.commands.append(ev.CloseToken(token))

    def live_task(self, eid: int, attempt: int) -> tuple[dict, State] | None:
        entry = self.entry(eid)
        if entry is None:
            self.ignore(f"entry {eid} is closed")
            return None
        if entry.get("phase") not in ("task", "running") or entry.get("attempt") != attempt:
            self.ignore(f"entry {eid} is not waiting for attempt {attempt}")
            return None
        return entry, self.state_of(entry)

    def on_task_started(self, event: ev.TaskStarted) -> None:
        found = self.live_task(event.entry, event.attempt)
        if found is None:
            return
        entry, st = found
        if entry["phase"] != "task":
            self.ignore(f"attempt {event.attempt} of entry {event.entry} already started")
            return
        entry["phase"] = "running"
        self.emit("TaskStarted", entry["sched"], st.name, attempt=event.attempt)

    def on_task_result(self, eid, attempt, *, ok, output=None, error="", cause="") -> None:
        found = self.live_task(eid, attempt)
        if found is None:
            return
        entry, st = found
        callback = st.task.mode is TaskMode.CUSTOM_CALLBACK
        try:
            if ok:
                if callback:
                    self.submitted(entry, st, output)
                    return
                self.emit("TaskSucceeded", entry["sched"], st.name, output=output)
                self.clear_timers(entry)
                entry["phase"] = "done"
                self.task_done(entry, st, output)
            else:
                self.emit(
                    "TaskSubmitFailed" if callback else "TaskFailed",
                    entry["sched"],
                    st.name,
                    error=error,
                    cause=cause,
                )
                self.clear_timers(entry)
                self.close_token(entry)
                entry["phase"] = "done"
                self.fail_entry(entry, error, cause)
        except StepFailure as f:
            self.fail_entry(entry, f.error, f.cause)

    def submitted(self, entry: dict, st: State, output: Any) -> None:
        self.emit("TaskSubmitted", entry["sched"], st.name, taskToken=entry["token"], output=output)
        entry["phase"] = "callback"
        if st.task.heartbeat_seconds:
            key = f"heartbeat:{entry['id']}"
            self.start_timer(entry, key, self.after(st.task.heartbeat_seconds))

    def task_done(self, entry: dict, st: State, output: Any) -> None:
        """The task's raw result is in: shape it and leave the state."""
        if self.legacy:
            local = output
            if st.task.target == "function" and st.task.mode is not TaskMode.CUSTOM_CALLBACK:
                local = output.get("Body") if isinstance(output, dict) else None
            if local is None or local == "":
                local = {}
            if not isinstance(local, dict):
                raise StepFailure(
                    ERR_INVALID_RESPONSE,
                    f"a legacy task step needs a JSON object as its result, got {type_name(local)}",
                )
            self.complete(entry, local)
        else:
            self.complete(entry, output)

    def on_task_lost(self, event: ev.TaskLost) -> None:
        found = self.live_task(event.entry, event.attempt)
        if found is None:
            return
        entry, st = found
        cause = f"attempt {event.attempt} ran out of its lease with no result (worker lost)"
        self.emit("TaskFailed", entry["sched"], st.name, error=ERR_WORKER_LOST, cause=cause)
        entry["lost"] = entry.get("lost", 0) + 1
        self.clear_timers(entry)
        if entry["lost"] <= self.limits.max_lost_attempts:
            # A worker dying is the platform's fault, not the user's: re-run the attempt
            # without spending the state's Retry budget, up to a bound so a handler that kills
            # its worker every time (a poison task) still ends.
            try:
                self.schedule_attempt(entry, st, rerun=True)
            except StepFailure as f:
                self.fail_entry(entry, f.error, f.cause)
            return
        entry["phase"] = "done"
        self.close_token(entry)
        self.fail_entry(entry, ERR_WORKER_LOST, cause)

    def on_callback(self, event) -> None:
        eid = self.s["tokens"].get(event.token)
        entry = self.entry(eid) if eid is not None else None
        if entry is None:
            self.ignore("unknown or closed task token")
            return
        st = self.state_of(entry)
        if isinstance(event, ev.CallbackHeartbeat):
            if st.task.heartbeat_seconds:
                key = f"heartbeat:{entry['id']}"
                due = self.after(st.task.heartbeat_seconds)
                self.s["timers"][key] = entry["id"]
                if key not in entry.setdefault("timers", []):
                    entry["timers"].append(key)
                self.commands.append(ev.StartTimer(key=key, due_at=due, entry=entry["id"]))
            # Without HeartbeatSeconds a heartbeat is accepted and changes nothing.
            return
        if entry.get("phase") in ("task", "running"):
            # The report beat the submitting function's own return: the attempt's result
            # no longer matters.
            self.commands.append(ev.CancelTask(entry["id"], entry["attempt"]))
        self.clear_timers(entry)
        self.close_token(entry)
        entry["phase"] = "done"
        try:
            if isinstance(event, ev.CallbackSucceeded):
                self.emit("TaskSucceeded", entry["sched"], st.name, output=event.output)
                self.check_size(event.output, f"the callback output of '{st.name}'")
                self.task_done(entry, st, event.output)
            else:
                self.emit(
                    "TaskFailed", entry["sched"], st.name, error=event.error, cause=event.cause
                )
                self.fail_entry(entry, event.error, event.cause)
        except StepFailure as f:
            self.fail_entry(entry, f.error, f.cause)

    # ------------------------------------------------------------------ timers

    def on_timer(self, key: str) -> None:
        eid = self.s["timers"].pop(key, None)
        entry = self.entry(eid) if eid is not None else None
        if entry is None:
            self.ignore(f"timer {key} is not active")
            return
        if key in entry.get("timers", []):
            entry["timers"].remove(key)
        st = self.state_of(entry)
        kind = key.split(":", 1)[0]
        try:
            if kind == "wait":
                self.complete(entry, {} if self.legacy else self.input_of(entry))
            elif kind == "retry":
                if not self.has_input(entry):  # the InputConstructor itself had failed
                    self.set_input(entry, st, self.build_input(entry, st, entry["raw"]))
                if st.kind is StateKind.TASK:
                    self.schedule_attempt(entry, st)
                else:
                    self.emit("StepStarted", entry["id"], st.name, retry=entry["retries"])
                    self.begin(entry, st)
            elif kind in ("timeout", "heartbeat"):
                error = ERR_TIMEOUT if kind == "timeout" else ERR_HEARTBEAT
                if kind == "timeout":
                    cause = f"the task did not finish within {st.task.timeout_seconds:g} s"
                else:
                    cause = f"no heartbeat within {st.task.heartbeat_seconds:g} s"
                self.emit("TaskTimedOut", entry["sched"], st.name, error=error, cause=cause)
                if entry.get("phase") in ("task", "running"):
                    self.commands.append(ev.CancelTask(entry["id"], entry["attempt"]))
                self.clear_timers(entry)
                self.close_token(entry)
                entry["phase"] = "done"
                self.fail_entry(entry, error, cause)
            else:  # pragma: no cover
                raise AssertionError(key)
        except StepFailure as f:
            self.fail_entry(entry, f.error, f.cause)

    # ------------------------------------------------------------------ containers

    def open_child_scope(self, entry, scope_def: Scope, kind: str, index: int, input, item=None):
        type_ = {"branch": "BranchEntered", "iteration": "IterationEntered"}.get(kind)
        if type_:
            sid = self.emit(type_, entry["id"], entry["state"], index=index, input=input)
        else:  # a legacy choice's inline steps: no event of its own
            sid = f"{entry['id']}c"
        scope = {
            "id": sid,
            "sched": sid if type_ else entry["id"],
            "path": scope_def.path,
            "parent": entry["id"],
            "kind": kind,
            "index": index,
            "active": None,
        }
        if kind == "iteration":
            scope["item"] = item
        if self.legacy:
            scope["input"] = input
            scope["local"] = {}
        self.s["scopes"][str(sid)] = scope
        entry["children"].append(sid)
        self.s["queue"].append(["enter", sid, scope_def.start_at, input])
        return sid

    def begin_children(self, entry: dict, total: int) -> None:
        entry["phase"] = "children"
        entry["children"] = []
        entry["total"] = total
        # Results are stored beside the state as they arrive; the state keeps how many there
        # are and their running size, so the size limit is checked as they come in.
        entry["done"] = 0
        entry["bytes"] = 0

    def begin_parallel(self, entry: dict, st: State) -> None:
        self.begin_children(entry, len(st.branches))
        input = self.input_of(entry)
        for i, branch in enumerate(st.branches):
            self.open_child_scope(entry, branch, "branch", i, input)

    def begin_map(self, entry: dict, st: State) -> None:
        spec = st.map
        items = self.evaluate(spec.items, self.state_env(entry), f"{st.path}.ItemsPath")
        if not isinstance(items, list):
            raise StepFailure(
                ERR_RUNTIME,
                f"the items expression {spec.items.text!r} gave {type_name(items)}, not an array",
            )
        self.begin_children(entry, len(items))
        entry["next_item"] = 0
        if not items:
            self.complete(entry, self.container_result(entry, st))
            return
        self.fill_iterations(entry, items)
        if self.entry(entry["id"]) is entry and entry.get("phase") == "children":
            # The items that must wait for a free slot wait beside the state, one value each:
            # starting one reads one, and no transition rewrites the rest.
            for i in range(entry["next_item"], len(items)):
                self.put(self.entry_key(entry, f"item:{i}"), items[i], owner=entry)

    def fill_iterations(self, entry: dict, items: list | None = None) -> None:
        """Start iterations up to the Map's concurrency; ``items``: all of them, when this step
        evaluated them (else the ones to start are read back, in one lookup)."""
        st = self.state_of(entry)
        spec = st.map
        cap = min(
            spec.max_concurrency or self.limits.map_max_concurrency, self.limits.map_max_concurrency
        )
        first = entry["next_item"]
        indices = range(first, min(entry["total"], first + cap - len(entry["children"])))
        if not indices:
            return
        if items is None:
            keys = [self.entry_key(entry, f"item:{i}") for i in indices]
            found = self.fetch(keys, required=True)
            batch = [found[k] for k in keys]
        else:
            batch = items[indices.start : indices.stop]
        for i, item in zip(indices, batch, strict=True):
            entry["next_item"] = i + 1
            try:
                if self.legacy:
                    parent_input = self.input_of(entry)
                    base = dict(parent_input) if isinstance(parent_input, dict) else {}
                    base[spec.item_key] = item
                    if spec.index_key:
                        base[spec.index_key] = i
                    child_input = base
                elif spec.item_constructor is not None:
                    env = self.cloudflow_env(entry, Item=item)
                    child_input = self.render(
                        spec.item_constructor, env, f"{st.path}.ItemConstructor"
                    )
                else:
                    child_input = item
            except StepFailure as f:
                self.cancel_children(entry)
                self.fail_entry(entry, f.error, f.cause)
                return
            self.open_child_scope(entry, spec.processor, "iteration", i, child_input, item=item)

    def collect(self, entry: dict, st: State, index: int, output: Any) -> None:
        """Store the output of branch or iteration ``index`` beside the state, failing the
        container as soon as the outputs so far pass the payload limit: their sizes plus one
        separator each never exceed the size of the result they add up to."""
        what = "branch" if st.kind is StateKind.PARALLEL else "iteration"
        size = _size(output, f"the output of {what} {index} of '{st.name}'")
        entry["done"] += 1
        entry["bytes"] += size + 1
        limit = self.limits.max_payload_bytes
        if entry["bytes"] > limit:
            raise StepFailure(
                ERR_DATA_LIMIT,
                f"the results of '{st.name}' reached {entry['bytes']} bytes with "
                f"{entry['done']} of {entry['total']} {what} outputs in; "
                f"the limit is {limit} bytes",
            )
        self.put(self.entry_key(entry, f"res:{index}"), output, owner=entry)

    def container_result(self, entry: dict, st: State) -> Any:
        keys = [self.entry_key(entry, f"res:{i}") for i in range(entry["total"])]
        found = self.fetch(keys, required=True)
        ordered = [found[k] for k in keys]
        if self.legacy:
            return ordered  # becomes the step's $local
        if st.kind is StateKind.PARALLEL:
            return {f"Branch{i}": value for i, value in enumerate(ordered)}
        return {"Items": ordered}

    def scope_output(self, scope: dict, last_output: Any) -> Any:
        return scope["local"] if self.legacy else last_output

    def end_scope(self, scope: dict, last_output: Any) -> None:
        output = self.scope_output(scope, last_output)
        del self.s["scopes"][str(scope["id"])]
        if scope["kind"] == "root":
            if self.legacy and self.g.output_mappings is not None:
                fake = {"scope": scope["id"], "state": "", "token": None}
                self.s["scopes"][str(scope["id"])] = scope
                try:
                    output = self.apply_mappings(
                        self.g.output_mappings,
                        {
                            "input": self.scope_input(scope),
                            "local": scope["local"],
                            "context": self.context(fake),
                        },
                        "outputMappings",
                    )
                except StepFailure as f:
                    self.fail_execution(f.error, f.cause)
                    return
                finally:
                    self.s["scopes"].pop(str(scope["id"]), None)
            self.finish(SUCCEEDED, output=output)
            return
        parent = self.entry(scope["parent"])
        parent["children"].remove(scope["id"])
        st = self.state_of(parent)
        try:
            if scope["kind"] == "choice":
                self.complete(parent, output if isinstance(output, dict) else {})
                return
            type_ = "BranchExited" if scope["kind"] == "branch" else "IterationExited"
            self.emit(type_, parent["id"], parent["state"], index=scope["index"], output=output)
            self.collect(parent, st, scope["index"], output)
            if st.kind is StateKind.MAP and parent["next_item"] < parent["total"]:
                self.s["queue"].append(["start_child", parent["id"]])
                return
            if not parent["children"] and parent["done"] == parent["total"]:
                result = self.container_result(parent, st)
                self.check_size(result, f"the combined result of '{st.name}'")
                self.complete(parent, result)
        except StepFailure as f:
            self.cancel_children(parent)
            self.fail_entry(parent, f.error, f.cause)

    def fail_scope(self, scope: dict, error: str, cause: str) -> None:
        del self.s["scopes"][str(scope["id"])]
        if scope["kind"] == "root":
            self.fail_execution(error, cause)
            return
        parent = self.entry(scope["parent"])
        parent["children"].remove(scope["id"])
        if scope["kind"] != "choice":
            type_ = "BranchExited" if scope["kind"] == "branch" else "IterationExited"
            self.emit(type_, parent["id"], parent["state"], index=scope["index"], error=error)
        # One failed branch or iteration fails the whole container (Decision 9).
        self.cancel_children(parent)
        self.fail_entry(parent, error, cause)

    def cancel_children(self, entry: dict) -> None:
        for sid in list(entry.get("children", [])):
            self.cancel_scope(sid, emit=True)
        entry["children"] = []
        # In place: drain() holds a reference to this list.
        self.s["queue"][:] = [
            a for a in self.s["queue"] if not (a[0] == "start_child" and a[1] == entry["id"])
        ]

    def cancel_scope(self, sid, *, emit: bool) -> None:
        scope = self.s["scopes"].pop(str(sid), None)
        if scope is None:
            return
        # Pending inline entries into a cancelled scope must not run.
        self.s["queue"][:] = [a for a in self.s["queue"] if not (a[0] == "enter" and a[1] == sid)]
        if scope["active"] is not None:
            self.cancel_entry(scope["active"], emit=emit)
        if emit and scope["kind"] in ("branch", "iteration"):
            parent = self.entry(scope["parent"])
            type_ = "BranchExited" if scope["kind"] == "branch" else "IterationExited"
            self.emit(type_, parent["id"], parent["state"], index=scope["index"], cancelled=True)

    def cancel_entry(self, eid: int, *, emit: bool) -> None:
        entry = self.s["entries"].pop(str(eid), None)
        if entry is None:
            return
        if entry.get("phase") in ("task", "running"):
            self.commands.append(ev.CancelTask(entry["id"], entry["attempt"]))
        for key in entry.get("timers", []):
            if self.s["timers"].pop(key, None) is not None:
                self.commands.append(ev.CancelTimer(key))
        self.close_token(entry)
        for sid in entry.get("children", []):
            self.cancel_scope(sid, emit=emit)
        if emit:
            self.emit("StepExited", entry["id"], entry["state"], cancelled=True)
            # (Not when the execution ends: the runtime deletes all its values then.)
            self.release(entry)

    # ------------------------------------------------------------------ leaving states

    def complete(self, entry: dict, result: Any, *, next_state: str | None = None, end_scope=False):
        st = self.state_of(entry)
        try:
            output = self.build_output(entry, st, result)
            self.check_size(output, f"the output of state '{st.name}'")
        except StepFailure as f:
            self.fail_entry(entry, f.error, f.cause)
            return
        self.leave(entry, st, output, next_state=next_state or (None if end_scope else st.next))

    def build_output(self, entry: dict, st: State, result: Any) -> Any:
        if self.legacy:
            if st.output_mappings is not None:
                return self.apply_mappings(
                    st.output_mappings,
                    self.legacy_env(entry, input=self.input_of(entry), local=result),
                    f"{st.path}.outputMappings",
                )
            if st.kind in (StateKind.PARALLEL, StateKind.MAP):
                return {}
            return result if isinstance(result, dict) else {}
        env = self.cloudflow_env(entry, Output=result, output=result)
        output = result
        if st.output_constructor is not None:
            output = self.render(st.output_constructor, env, f"{st.path}.OutputConstructor")
        if not isinstance(output, dict):
            # Every CloudFlow state's output is a JSON object (FDL reference 1.6).
            raise StepFailure(
                ERR_RUNTIME,
                f"the output of state '{st.name}' must be a JSON object, got {type_name(output)}",
            )
        if st.global_constructor is not None:
            # $Global inside OutputConstructor is the value before this state's own update.
            self.update_globals(st, env)
        return output

    def update_globals(self, st: State, env: Mapping[str, Any]) -> None:
        update = self.render(st.global_constructor, env, f"{st.path}.GlobalConstructor")
        if not isinstance(update, dict):
            raise StepFailure(
                ERR_RUNTIME,
                f"the GlobalConstructor of state '{st.name}' must build a JSON object, "
                f"got {type_name(update)}",
            )
        merged = dict(self.s["globals"])
        merged.update(update)
        self.check_size(merged, "the execution's $Global")
        self.s["globals"] = merged

    def leave(self, entry: dict, st: State, output: Any, *, next_state: str | None) -> None:
        self.emit("StepExited", entry["id"], st.name, output=output, next=next_state)
        del self.s["entries"][str(entry["id"])]
        self.release(entry)
        scope = self.scope(entry["scope"])
        scope["active"] = None
        if self.legacy:
            local = dict(scope["local"])
            if isinstance(output, dict):
                local.update(output)
            scope["local"] = local
        if next_state is not None:
            self.s["queue"].append(["enter", scope["id"], next_state, output])
        else:
            self.end_scope(scope, output)

    def fail_entry(self, entry: dict, error: str, cause: str, *, no_catch: bool = False) -> None:
        """The state failed: retry it, catch the error, or fail its scope — in that order."""
        st = self.state_of(entry)
        if not no_catch:
            for index, rule in enumerate(st.retry):
                if matches(rule.errors, error):
                    # Each rule has its own count (its budget and its back-off); the entry's
                    # total is $Context.Current.RetryCount.
                    counts = entry.setdefault("rule_retries", {})
                    done = counts.get(str(index), 0)
                    if done < rule.max_attempts:
                        counts[str(index)] = done + 1
                        entry["retries"] += 1
                        entry["phase"] = "retry"
                        entry["last_error"] = [error, cause]
                        if entry.get("vals"):  # a container re-runs whole: fresh items, results
                            self.drop(self.entry_key(entry, "res:"))
                            self.drop(self.entry_key(entry, "item:"))
                        key = f"retry:{entry['id']}:{entry['retries']}"
                        self.start_timer(entry, key, self.after(retry_delay(rule, done + 1)))
                        return
                    break  # only the first matching rule counts
        self.emit("StepFailed", entry["id"], st.name, error=error, cause=cause)
        failed = self.events[-1]
        del self.s["entries"][str(entry["id"])]
        scope = self.scope(entry["scope"])
        scope["active"] = None
        catch = None if no_catch else next((c for c in st.catch if matches(c.errors, error)), None)
        output = None
        if catch is not None:
            try:
                output = self.catch_output(entry, st, catch, error, cause)
                self.check_size(output, f"the Catch output of '{st.name}'")
            except StepFailure as f:
                catch, error, cause = None, f.error, f.cause
        self.release(entry)  # (only now: the Catch output may read the entry's input)
        if catch is None:
            self.fail_scope(scope, error, cause)
            return
        failed["caught"] = catch.next  # beside the detail, like ``entry`` (read model only)
        if self.legacy:
            local = dict(scope["local"])
            local.update(output)
            scope["local"] = local
        self.s["queue"].append(["enter", scope["id"], catch.next, output])

    def catch_output(self, entry, st: State, catch, error: str, cause: str) -> Any:
        if self.legacy:
            if st.error_mappings is None:
                return {}
            return self.apply_mappings(
                st.error_mappings,
                self.legacy_env(
                    entry,
                    input=self.input_of(entry) if self.has_input(entry) else None,
                    local={"error": error, "cause": cause},
                ),
                f"{st.path}.errorMappings",
            )
        if catch.output_constructor is None:
            return {"Error": error, "Cause": cause}
        env = self.cloudflow_env(entry, error=(error, cause))
        output = self.render(catch.output_constructor, env, f"{catch.path}.OutputConstructor")
        if not isinstance(output, dict):
            # It becomes the next state's input in place of the failed state's output.
            raise StepFailure(
                ERR_RUNTIME,
                f"the Catch OutputConstructor of state '{st.name}' must build a JSON object, "
                f"got {type_name(output)}",
            )
        return output

    # ------------------------------------------------------------------ the end

    def fail_execution(self, error: str, cause: str) -> None:
        if str(self.s.get("root")) in self.s["scopes"]:
            self.cancel_scope(self.s["root"], emit=False)
        self.finish(FAILED, error=error, cause=cause)

    def finish(self, status: str, *, output=None, error: str = "", cause: str = "") -> None:
        # Whatever is still open (a Stop, or a failure racing other branches) is dropped: the
        # terminal execution event closes it.
        for eid in list(self.s["entries"]):
            self.cancel_entry(int(eid), emit=False)
        self.s["scopes"] = {}
        self.s["queue"].clear()
        self.s["status"] = status
        type_ = {
            SUCCEEDED: "ExecutionSucceeded",
            FAILED: "ExecutionFailed",
            STOPPED: "ExecutionStopped",
        }
        if status == SUCCEEDED:
            self.emit(type_[status], 1, output=output)
        else:
            self.emit(type_[status], 1, error=error, cause=cause)
        self.s["result"] = {"output": output, "error": error, "cause": cause}
        self.commands.append(ev.Finish(status=status, output=output, error=error, cause=cause))


def _parse_timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise StepFailure(
            ERR_RUNTIME,
            f"Wait timestamp must be an RFC 3339 string, got {type_name(value)} {_preview(value)}",
        )
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except (ValueError, OverflowError):
        raise StepFailure(
            ERR_RUNTIME, f"Wait timestamp {_preview(value)} is not RFC 3339"
        ) from None
    if parsed.tzinfo is None:
        raise StepFailure(ERR_RUNTIME, f"Wait timestamp {_preview(value)} has no time zone")
    return parsed
