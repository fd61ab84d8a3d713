"""The validated definition graph: what both FDL dialects compile into.

Contract: a ``FlowGraph`` is immutable once built and has already passed every check of the
``compiler`` package (every ``Next``/``goto``/``Default`` names a state of its own scope, every
state is reachable, every scope can end, every expression compiled). The interpreter
(``machine.py``) never re-validates and never looks at YAML; it only reads these dataclasses.

The interpreter does not care which dialect a flow came from except for *data shaping*, which
differs deeply between the two (constructors and ``$Input``/``$Output`` versus ``$local`` and
mappings); ``FlowGraph.dialect`` selects that, nothing else.

Files to touch to add a state type: ``StateKind`` and a spec dataclass here, the dialect
parsers in ``compiler/cloudflow.py`` and ``compiler/legacy.py``, ``machine.py``
(``_Run._enter_*``), the golden tests under ``tests/engine/golden/``, and ``docs/flows.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .expressions import Expression
    from .templates import Mappings, Template

Dialect = Literal["cloudflow", "legacy"]

# The range of moments a Wait may wait for: a literal Timestamp outside it is refused when the
# definition is saved. The end is a year short of ``datetime.max``, so converting any moment in
# range to another time zone (or to a database's own range) cannot overflow.
MIN_DUE = datetime(1970, 1, 1, tzinfo=UTC)
MAX_DUE = datetime(9998, 12, 31, 23, 59, 59, tzinfo=UTC)


class StateKind(StrEnum):
    TASK = "Task"
    PASS = "Pass"
    WAIT = "Wait"
    CHOICE = "Choice"
    PARALLEL = "Parallel"
    MAP = "Map"  # legacy ``foreach`` compiles to MAP too
    SUCCEED = "Succeed"
    FAIL = "Fail"


class TaskMode(StrEnum):
    REQUEST = "RequestComplete"  # legacy ``requestResponse``
    SYSTEM_CALLBACK = "WaitForSystemCallback"  # legacy ``sync``
    CUSTOM_CALLBACK = "WaitForCustomCallback"  # legacy ``waitForCallback``


@dataclass(frozen=True)
class Diagnostic:
    """One validation finding. ``path`` is like ``States[3].Branches[1].Next``."""

    path: str
    message: str
    line: int | None = None
    severity: Literal["error", "warning"] = "error"

    def as_dict(self) -> dict:
        return {"path": self.path, "line": self.line, "message": self.message}


class DefinitionError(Exception):
    """The definition is invalid; ``errors`` lists every problem found (not only the first)."""

    def __init__(self, errors: list[Diagnostic]):
        self.errors = errors
        first = errors[0] if errors else Diagnostic("", "invalid definition")
        where = f" (line {first.line})" if first.line else ""
        more = f" and {len(errors) - 1} more" if len(errors) > 1 else ""
        super().__init__(f"{first.path or '<document>'}: {first.message}{where}{more}")


@dataclass(frozen=True)
class RetryRule:
    errors: tuple[str, ...]
    max_attempts: int  # retries after the first attempt
    interval_seconds: float
    backoff_rate: float = 1.0  # 1.0 = constant interval
    max_backoff_seconds: float | None = None
    path: str = ""


@dataclass(frozen=True)
class CatchRule:
    errors: tuple[str, ...]
    next: str  # a state of the same scope
    output_constructor: Template | None = None  # CloudFlow only
    path: str = ""


@dataclass(frozen=True)
class TaskSpec:
    """What a Task does.

    ``target`` is ``"function"`` for Function Compute (``FC:InvokeFunction`` or a legacy FC
    ``resourceArn``; ``function`` is the local function name taken from the ARN) or ``"queue"``
    for a legacy MNS queue ARN (``queue`` holds its name; a pull queue served by flowsite).
    """

    target: Literal["function", "queue"]
    resource: str  # the ARN as written ("" when it is computed: ``resource_expr``)
    function: str | None = None  # None when the ARN is only known at run time
    queue: str | None = None
    mode: TaskMode = TaskMode.REQUEST
    invocation: Literal["sync", "async"] = "sync"
    # CloudFlow: ``Parameters.body`` (literal, constructor or ``body.$`` expression), rendered
    # against the constructed ``$Input``. None = the state's input is the event.
    body: Template | None = None
    # Legacy ``serviceParams`` (e.g. MNS ``MessageBody: $``), rendered with the legacy roots.
    service_params: Template | None = None
    timeout_seconds: float | None = None  # None or 0 = never
    heartbeat_seconds: float | None = None
    # CloudFlow ``Parameters.resourceArn.$`` / ``invocationType.$``: evaluated like ``body``
    # (against the constructed ``$Input``) each time an attempt is scheduled; they then stand
    # for ``resource``/``function`` (``compiler.fc_function_name`` reads the ARN) and
    # ``invocation`` ("Sync" → "sync", "Async" → "async").
    resource_expr: Expression | None = None
    invocation_expr: Expression | None = None


@dataclass(frozen=True)
class WaitSpec:
    """Exactly one of the four is set."""

    seconds: float | None = None
    seconds_expr: Expression | None = None
    timestamp: str | None = None  # RFC 3339
    timestamp_expr: Expression | None = None


@dataclass(frozen=True)
class ChoiceTarget:
    """Where a Choice branch (or its default) goes: a sibling state, or (legacy) inline steps.

    Both None (legacy only): the choice step just ends and the flow moves on to the step's own
    ``next``.
    """

    next: str | None = None
    scope: Scope | None = None


@dataclass(frozen=True)
class ChoiceBranch:
    condition: Expression
    target: ChoiceTarget
    path: str = ""


@dataclass(frozen=True)
class MapSpec:
    items: Expression  # CloudFlow ItemsPath / legacy iterationMapping.collection
    processor: Scope
    max_concurrency: int = 0  # 0 = the site-wide cap
    item_constructor: Template | None = None  # CloudFlow ItemConstructor ($Item)
    item_key: str = "item"  # legacy iterationMapping.item
    index_key: str | None = None  # legacy iterationMapping.index


@dataclass(frozen=True)
class FailSpec:
    code: str | None = None  # CloudFlow Code / legacy error
    detail: str | None = None  # CloudFlow Detail / legacy cause


@dataclass(frozen=True)
class State:
    name: str
    kind: StateKind
    path: str  # e.g. "States[3]" or "steps[0].branches[1].steps[2]"
    line: int | None = None
    next: str | None = None  # None: the state ends its scope (End: true / last legacy step)
    # CloudFlow data shaping
    input_constructor: Template | None = None
    output_constructor: Template | None = None
    global_constructor: Template | None = None
    # Legacy data shaping
    input_mappings: Mappings | None = None
    output_mappings: Mappings | None = None
    error_mappings: Mappings | None = None
    retry: tuple[RetryRule, ...] = ()
    catch: tuple[CatchRule, ...] = ()
    # Per-kind specs: exactly the one matching ``kind`` is set (none for Pass/Succeed).
    task: TaskSpec | None = None
    wait: WaitSpec | None = None
    choices: tuple[ChoiceBranch, ...] = ()
    default: ChoiceTarget | None = None  # Choice; required in CloudFlow
    branches: tuple[Scope, ...] = ()  # Parallel
    map: MapSpec | None = None
    fail: FailSpec | None = None


@dataclass(frozen=True)
class Scope:
    """A list of states run one after another: the top level, a Parallel branch, a Map
    processor, or (legacy) the inline steps of a choice branch."""

    path: str  # "States", "States[2].Branches[0]", "steps", "steps[1].steps", ...
    start_at: str
    states: Mapping[str, State]


@dataclass(frozen=True)
class FlowGraph:
    dialect: Dialect
    root: Scope
    name: str | None = None  # the definition's own Name, if any (informational)
    description: str | None = None
    # Legacy flow-level mappings
    input_mappings: Mappings | None = None
    output_mappings: Mappings | None = None
    # Every scope by path, root included, so the interpreter can find a scope from the
    # path it stored in an execution's state.
    scopes: Mapping[str, Scope] = field(default_factory=dict)
    functions: frozenset[str] = frozenset()  # local function names referenced
    queues: frozenset[str] = frozenset()
    warnings: tuple[Diagnostic, ...] = ()

    def state(self, scope_path: str, name: str) -> State:
        return self.scopes[scope_path].states[name]
