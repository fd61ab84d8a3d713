"""An in-memory runtime for the pure engine: a fake clock, fake functions, no database.

It carries out the engine's commands the way ``executions/runtime/`` does, but in memory and
deterministically, so tests can assert whole histories (and golden files can pin them). Like
the database, it keeps the state and the values beside it as JSON text between steps (so a
test sees what a transition would write), and it counts what it writes.
"""

from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from executions.engine import events as ev
from executions.engine.compiler import compile_definition
from executions.engine.machine import Limits, new_state, step

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class HandlerError(Exception):
    def __init__(self, error: str, cause: str = ""):
        super().__init__(cause)
        self.error = error
        self.cause = cause


class Sim:
    def __init__(
        self, definition: str, functions: dict[str, Callable] | None = None, *, limits=None
    ):
        self.graph = compile_definition(definition)
        self.functions = functions or {}
        self.limits = limits or Limits()
        self.now = T0
        self.state: dict | None = None
        self.history: list[dict] = []
        self.pending: deque = deque()
        self.cancelled: set[tuple[int, int]] = set()
        self.timers: dict[str, datetime] = {}
        self.tokens: dict[str, int] = {}
        self.queue: list = []
        self.calls: list[tuple[str, Any]] = []
        self.resume = False
        self.finished: ev.Finish | None = None
        self.ignored: list[str] = []
        self._tokens = 0
        self.values: dict[str, str] = {}  # key -> JSON text, as the runtime's rows
        self.lookups: list[list[str]] = []  # each call of the engine's ``values`` lookup
        self.submitted: list[ev.SubmitAsync] = []
        self.steps = 0  # transitions written (ignored events write nothing)
        self.state_bytes = 0  # JSON text of the state written over all transitions
        self.value_bytes = 0  # JSON text of the values written
        self.max_state_bytes = 0
        self._stored: str | None = None

    # -- engine plumbing

    def _token(self, entry: int, attempt: int) -> str:
        self._tokens += 1
        return f"tok{self._tokens}"

    def _lookup(self, keys: list[str]) -> dict[str, Any]:
        self.lookups.append(list(keys))
        return {k: json.loads(self.values[k]) for k in keys if k in self.values}

    def feed(self, event) -> ev.Decision:
        d = step(
            self.graph,
            self.state,
            event,
            now=self.now,
            rng=random.Random(7),
            new_token=self._token,
            limits=self.limits,
            values=self._lookup,
        )
        if d.ignored:
            self.ignored.append(d.ignored)
            # The runtime stores nothing for an ignored event: the next step sees the last
            # stored state, whatever this one did to its copy.
            if self._stored is not None:
                d.state = json.loads(self._stored)
        else:
            self._stored = json.dumps(d.state)
            self.steps += 1
            self.state_bytes += len(self._stored)
            self.max_state_bytes = max(self.max_state_bytes, len(self._stored))
            # The next step gets the state as the runtime would load it, sharing nothing.
            d.state = json.loads(self._stored)
        self.state = d.state
        self.history.extend(d.events)
        for c in d.commands:
            self._apply(c)
        return d

    def _apply(self, c) -> None:
        if isinstance(c, ev.InvokeFunction):
            self.pending.append(c)
        elif isinstance(c, ev.CancelTask):
            self.cancelled.add((c.entry, c.attempt))
        elif isinstance(c, ev.StartTimer):
            self.timers[c.key] = c.due_at
        elif isinstance(c, ev.CancelTimer):
            self.timers.pop(c.key, None)
        elif isinstance(c, ev.OpenToken):
            self.tokens[c.token] = c.entry
        elif isinstance(c, ev.CloseToken):
            self.tokens.pop(c.token, None)
        elif isinstance(c, ev.SendToQueue):
            self.queue.append(c)
        elif isinstance(c, ev.SubmitAsync):
            self.submitted.append(c)
        elif isinstance(c, ev.PutValue):
            assert c.key.isascii() and len(c.key) <= 64, c.key
            text = json.dumps(c.value)
            self.value_bytes += len(text)
            self.values[c.key] = text
        elif isinstance(c, ev.DropValues):
            for key in [k for k in self.values if k.startswith(c.prefix)]:
                del self.values[key]
        elif isinstance(c, ev.ScheduleResume):
            self.resume = True
        elif isinstance(c, ev.Finish):
            self.finished = c
            self.values.clear()  # the runtime deletes an ended execution's values
        else:  # pragma: no cover
            raise TypeError(c)

    # -- driving

    def start(self, input: Any = None) -> Sim:
        input = {} if input is None else input
        self.state = new_state(execution_name="run1", flow_name="f", input=input, now=self.now)
        self.feed(ev.Start(input))
        return self

    def run_one_task(self) -> bool:
        while self.pending:
            cmd = self.pending.popleft()
            if (cmd.entry, cmd.attempt) in self.cancelled:
                continue
            self.feed(ev.TaskStarted(cmd.entry, cmd.attempt))
            fn = self.functions[cmd.function]
            self.calls.append((cmd.function, cmd.event))
            try:
                body = fn(json.loads(json.dumps(cmd.event)))
            except HandlerError as exc:
                self.feed(ev.TaskFailed(cmd.entry, cmd.attempt, exc.error, exc.cause))
            else:
                envelope = {"Body": body, "StatusCode": 200, "Headers": {"x-fc-request-id": "r"}}
                self.feed(ev.TaskSucceeded(cmd.entry, cmd.attempt, envelope))
            return True
        return False

    def fire_next_timer(self) -> bool:
        if not self.timers:
            return False
        key = min(self.timers, key=lambda k: (self.timers[k], k))
        due = self.timers.pop(key)
        self.now = max(self.now, due)
        self.feed(ev.TimerFired(key))
        return True

    def run(self, input: Any = None, *, max_steps: int = 10_000) -> Sim:
        if self.state is None:
            self.start(input)
        self.settle(max_steps=max_steps)
        return self

    def settle(self, *, max_steps: int = 10_000, timers: bool = True) -> Sim:
        for _ in range(max_steps):
            if self.finished:
                return self
            if self.resume:
                self.resume = False
                self.feed(ev.Resume())
            elif self.run_one_task() or timers and self.fire_next_timer():
                pass
            else:
                return self
        raise AssertionError("the simulation did not settle")

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    # -- reading

    @property
    def status(self) -> str:
        return self.state["status"]

    @property
    def output(self):
        return self.state["result"]["output"] if self.state["result"] else None

    @property
    def error(self) -> tuple[str, str] | None:
        r = self.state["result"]
        return (r["error"], r["cause"]) if r else None

    def types(self) -> list[str]:
        return [e["type"] for e in self.history]

    def compact(self) -> list[str]:
        return [
            f"{e['event_id']} {e['schedule_event_id']} {e['type']} {e['step_name']}".rstrip()
            for e in self.history
        ]

    def check_invariants(self) -> None:
        ids = [e["event_id"] for e in self.history]
        assert ids == list(range(1, len(ids) + 1)), "event ids must run 1..N without gaps"
        for e in self.history:
            assert e["schedule_event_id"] < e["event_id"]
        terminal = [
            e
            for e in self.history
            if e["type"] in ("ExecutionSucceeded", "ExecutionFailed", "ExecutionStopped")
        ]
        if self.status != "Running":
            assert len(terminal) == 1 and terminal[0] is self.history[-1]
        else:
            assert not terminal
        entered = {e["event_id"] for e in self.history if e["type"] == "StepEntered"}
        closes: dict[int, int] = {}
        for e in self.history:
            if e["type"] in ("StepExited", "StepFailed"):
                closes[e["schedule_event_id"]] = closes.get(e["schedule_event_id"], 0) + 1
        assert all(n == 1 for n in closes.values()), "a state entry closed twice"
        assert set(closes) <= entered
