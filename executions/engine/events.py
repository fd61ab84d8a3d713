"""What goes into the engine (events) and what comes out (commands).

The engine is one call: ``machine.step(graph, state, event, now=..., ...)``. Events are facts
that happened outside the engine (a task attempt started or ended, a timer fired, a callback
was reported, a person asked to stop). Commands are work the runtime must carry out *in the
same database transaction* that stores the new state and history (record a task attempt and
publish it after commit, store a timer, register a callback token, ...).

Every event that refers to an attempt or a timer carries enough to recognise a stale or
duplicated delivery: the engine answers those with an empty decision and an ``ignored``
reason, never by advancing the execution twice.

Commands are carried out in the order given: a ``DropValues`` followed by a ``PutValue`` of a key
under the dropped prefix must leave the new value stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# --- events in ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    input: Any


@dataclass(frozen=True)
class TaskStarted:
    """A worker claimed attempt ``attempt`` of entry ``entry`` and is about to run it."""

    entry: int
    attempt: int


@dataclass(frozen=True)
class TaskSucceeded:
    entry: int
    attempt: int
    output: Any  # the function output envelope ({"Body", "StatusCode", "Headers"})


@dataclass(frozen=True)
class TaskFailed:
    entry: int
    attempt: int
    error: str
    cause: str = ""


@dataclass(frozen=True)
class TaskLost:
    """The attempt's lease ran out with no result: its worker died (or hung)."""

    entry: int
    attempt: int


@dataclass(frozen=True)
class TimerFired:
    key: str


@dataclass(frozen=True)
class CallbackSucceeded:
    token: str
    output: Any


@dataclass(frozen=True)
class CallbackFailed:
    token: str
    error: str
    cause: str = ""


@dataclass(frozen=True)
class CallbackHeartbeat:
    token: str


@dataclass(frozen=True)
class Stop:
    error: str = ""
    cause: str = ""


@dataclass(frozen=True)
class Resume:
    """Continue inline work that was cut short by the per-step budget."""


Event = (
    Start
    | TaskStarted
    | TaskSucceeded
    | TaskFailed
    | TaskLost
    | TimerFired
    | CallbackSucceeded
    | CallbackFailed
    | CallbackHeartbeat
    | Stop
    | Resume
)


# --- commands out ------------------------------------------------------------------------------


@dataclass(frozen=True)
class InvokeFunction:
    """Run function ``function`` with ``event`` (a JSON value; the handler gets its JSON text).

    ``idempotency_key`` names the logical attempt: the same for every re-run of this attempt
    after a lost worker (``TaskLost`` re-creates it under a new ``attempt`` number), different for
    every retry a ``Retry`` rule makes. Unique within the execution; the runtime prefixes the
    execution id before handing it to the handler.
    """

    entry: int
    attempt: int
    function: str
    event: Any
    state_name: str
    invocation: str = "sync"  # "sync" | "async"
    mode: str = "RequestComplete"
    timeout_seconds: float | None = None
    token: str | None = None
    idempotency_key: str = ""


@dataclass(frozen=True)
class SubmitAsync:
    """Run function ``function`` with ``event`` on its own, detached from the execution
    (``invocationType: Async`` under ``RequestComplete``). The engine has already completed the
    Task with the acknowledgement naming ``task_id``; nothing reports back to the execution.

    ``task_id`` follows Function Compute's async task id rules (starts with a letter; letters,
    digits, ``_`` and ``-``; at most 128 characters) and is unique.
    """

    entry: int
    attempt: int
    function: str
    event: Any
    task_id: str
    state_name: str


@dataclass(frozen=True)
class SendToQueue:
    """Put ``body`` on flowsite's pull queue ``queue`` (legacy MNS task targets)."""

    entry: int
    attempt: int
    queue: str
    body: Any
    token: str | None = None


@dataclass(frozen=True)
class CancelTask:
    """Attempt ``attempt`` of ``entry`` no longer matters: do not start it; ignore its result."""

    entry: int
    attempt: int


@dataclass(frozen=True)
class StartTimer:
    """Create, or move (same key), the timer ``key`` to fire at ``due_at``."""

    key: str
    due_at: datetime
    entry: int


@dataclass(frozen=True)
class CancelTimer:
    key: str


@dataclass(frozen=True)
class OpenToken:
    """A callback task of ``entry`` now waits for a report on ``token`` (the engine's name for
    it: a fingerprint; the runtime knows the secret token of ``attempt``)."""

    token: str
    entry: int
    state_name: str
    attempt: int = 1


@dataclass(frozen=True)
class CloseToken:
    token: str


@dataclass(frozen=True)
class PutValue:
    """Store ``value`` under ``key`` for this execution, replacing any value stored there.

    Values live beside the execution's state instead of in it (Map items, branch and iteration
    results, large inputs a container or the execution keeps for its whole life), so storing the
    state does not rewrite them on every transition. ``key`` is an ASCII string of at most 64
    characters chosen by the engine. The engine reads values back through the ``values`` lookup
    passed to ``machine.step`` in later transitions."""

    key: str
    value: Any


@dataclass(frozen=True)
class DropValues:
    """Delete this execution's stored values whose key starts with ``prefix``."""

    prefix: str


@dataclass(frozen=True)
class ScheduleResume:
    """The inline budget ran out: feed ``Resume`` to this execution soon, from a worker."""


@dataclass(frozen=True)
class Finish:
    status: str  # Succeeded | Failed | Stopped
    output: Any = None
    error: str = ""
    cause: str = ""


Command = (
    InvokeFunction
    | SubmitAsync
    | SendToQueue
    | CancelTask
    | StartTimer
    | CancelTimer
    | OpenToken
    | CloseToken
    | PutValue
    | DropValues
    | ScheduleResume
    | Finish
)


@dataclass
class Decision:
    state: dict
    events: list[dict] = field(default_factory=list)
    commands: list = field(default_factory=list)
    ignored: str | None = None  # why the event changed nothing (stale, duplicate, unknown)

    @property
    def status(self) -> str:
        return self.state["status"]
