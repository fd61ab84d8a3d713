"""Compiling a flow definition (CloudFlow FDL or legacy FnF FDL) into a validated ``FlowGraph``.

Contract::

    compile_definition(text, *, max_bytes=1_048_576, known_functions=None, max_states=1000)
        -> graph.FlowGraph
    compile_data(data, lines=None, *, known_functions=None, max_states=1000) -> graph.FlowGraph

``compile_definition`` loads ``text`` (YAML or JSON) with ``yamlsafe.load_document`` and hands
the result to ``compile_data``. Both raise ``graph.DefinitionError`` whose ``errors`` list *every*
problem found, each a ``graph.Diagnostic`` with a path such as
``States[3].Branches[1].States[0].Next`` (legacy: ``steps[0].branches[1].steps[2].goto``) and,
when the text gives it, a 1-based line. A YAML problem is a single diagnostic with path ``""``.

The dialect is chosen by the top-level keys (``Type: StateMachine`` → CloudFlow;
``version: v1`` + ``type: flow`` → legacy). Every field of every state type is checked for
presence and JSON type; unknown fields get a "did you mean" hint; expressions, constructors and
mappings are compiled (``expressions.py`` / ``templates.py``); and each scope is checked as a
graph: ``StartAt`` names a state, names are unique, every ``Next``/``Default``/``goto`` names a
state of the *same* scope, every state is reachable from ``StartAt``, and the scope can end.

Things that are fine but suspicious become ``FlowGraph.warnings`` (severity ``"warning"``): a
function missing from ``known_functions`` (when given), a Fail without ``Detail``, a redundant
legacy ``end: true``, a state caught in a loop with no way out, and the like.

Pure Python: PyYAML and the standard library; no Django, no ``eval``.
"""

from __future__ import annotations

import difflib
import math
import re
from collections import deque
from collections.abc import Callable, Collection, Container, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from .expressions import ExpressionError, compile_expression
from .graph import (
    CatchRule,
    ChoiceBranch,
    ChoiceTarget,
    DefinitionError,
    Diagnostic,
    FailSpec,
    FlowGraph,
    MapSpec,
    RetryRule,
    Scope,
    State,
    StateKind,
    TaskMode,
    TaskSpec,
    WaitSpec,
)
from .templates import TemplateError, compile_mappings, compile_template
from .yamlsafe import LineMap, YamlError, load_document

__all__ = ["compile_data", "compile_definition"]

MAX_TIMEOUT_SECONDS = 604_800  # 7 days: CloudFlow's documented cap for Task Timeout
MAX_LEGACY_TIMEOUT_SECONDS = 31_536_000  # legacy timeoutSeconds: at most an execution's year
MAX_RETRY_INTERVAL = 86_400
MAX_RETRY_ATTEMPTS = 100
MAX_PARALLEL_BRANCHES = 50
MAX_LEGACY_BRANCHES = 100


def compile_definition(
    text: str | bytes,
    *,
    max_bytes: int = 1_048_576,
    known_functions: Container[str] | None = None,
    max_states: int = 1000,
) -> FlowGraph:
    """Parse and validate a definition; raise ``DefinitionError`` listing every problem."""
    try:
        data, lines = load_document(text, max_bytes=max_bytes)
    except YamlError as exc:
        raise DefinitionError([Diagnostic(path="", message=exc.message, line=exc.line)]) from None
    return compile_data(data, lines, known_functions=known_functions, max_states=max_states)


def compile_data(
    data: Any,
    lines: LineMap | None = None,
    *,
    known_functions: Container[str] | None = None,
    max_states: int = 1000,
) -> FlowGraph:
    """Validate already-loaded definition data (``lines`` adds line numbers to diagnostics)."""
    return _Compiler(lines, known_functions, max_states).run(data)


# --- paths ----------------------------------------------------------------------------------


class _Path:
    """Where a value sits: ``keys`` as written (for line look-ups) and ``text`` as shown."""

    __slots__ = ("keys", "text")

    def __init__(self, keys: tuple = (), text: str = ""):
        self.keys = keys
        self.text = text

    def __truediv__(self, key: str) -> _Path:
        return self.key(key)

    def key(self, key: str, shown: str | None = None) -> _Path:
        shown = key if shown is None else shown
        return _Path((*self.keys, key), f"{self.text}.{shown}" if self.text else shown)

    def __getitem__(self, index: int) -> _Path:
        return _Path((*self.keys, index), f"{self.text}[{index}]")

    def __repr__(self) -> str:
        return f"_Path({self.text!r})"


ROOT = _Path()


# --- JSON types -----------------------------------------------------------------------------

_KINDS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "list": lambda v: isinstance(v, list),
    "mapping": lambda v: isinstance(v, dict),
}
_ARTICLE = {"integer": "an integer", "mapping": "a mapping", "list": "a list"}


def _a(kind: str) -> str:
    return _ARTICLE.get(kind, f"a {kind}")


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def _hint(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if not close:  # case slips ("next" for "Next") are worth a hint even when short
        close = [c for c in choices if c.lower() == word.lower()][:1]
    return f"; did you mean '{close[0]}'?" if close else ""


def _number_text(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# --- ARNs -----------------------------------------------------------------------------------

_FC_FUNCTIONS_ARN = re.compile(r"acs:fc:[^:]*:[^:]*:functions/(?P<fn>[^/\s]+)(?:/[^/\s]+)?")
_FC_SERVICES_ARN = re.compile(r"acs:fc:[^:]*:[^:]*:services/[^/\s]+/functions/(?P<fn>[^/\s]+)")
_MNS_QUEUE_ARN = re.compile(r"acs:mns:[^:]*:[^:]*:/queues/(?P<q>[^/\s]+)/messages")


def _fc_function(arn: str) -> str | None:
    match = _FC_FUNCTIONS_ARN.fullmatch(arn) or _FC_SERVICES_ARN.fullmatch(arn)
    return match.group("fn") if match else None


# --- field sets -----------------------------------------------------------------------------


def _fields(*groups: str) -> set[str]:
    """``_fields("Name Type", "Next End")`` → ``{"Name", "Type", "Next", "End"}``."""
    return {name for group in groups for name in group.split()}


_CF_TOP = _fields("Type Name SpecVersion StartAt States Description")
_CF_COMMON = "Name Type Description"
_CF_FLOW = "Next End"
_CF_ALL_CONS = "InputConstructor OutputConstructor GlobalConstructor"
_CF_ERRORS = "Retry Catch"
_CF_DISTRIBUTED = (
    "ItemReader",
    "ItemBatcher",
    "ResultWriter",
    "MaxItems",
    "ToleratedFailedCount",
    "ToleratedFailedPercentage",
)
_CF_FIELDS: dict[str, set[str]] = {
    "Task": _fields(
        _CF_COMMON, _CF_FLOW, _CF_ALL_CONS, _CF_ERRORS,
        "Action TaskMode Parameters Timeout HeartbeatSeconds",
    ),
    "Pass": _fields(_CF_COMMON, _CF_FLOW, _CF_ALL_CONS),
    "Wait": _fields(
        _CF_COMMON, _CF_FLOW, "InputConstructor OutputConstructor",
        "Seconds Seconds.$ Timestamp Timestamp.$",
    ),
    "Choice": _fields(_CF_COMMON, "InputConstructor Branches Default"),
    "Parallel": _fields(_CF_COMMON, _CF_FLOW, _CF_ALL_CONS, _CF_ERRORS, "Branches"),
    "Map": _fields(
        _CF_COMMON, _CF_FLOW, _CF_ALL_CONS, _CF_ERRORS, *_CF_DISTRIBUTED,
        "ItemsPath Processor ItemProcessor MaxConcurrency MaxConcuccency ItemConstructor "
        "ProcessorConfig",
    ),
    "Succeed": _fields(_CF_COMMON, "End InputConstructor OutputConstructor"),
    "Fail": _fields(_CF_COMMON, "End InputConstructor OutputConstructor Code Detail"),
}  # fmt: skip
_CF_ANY_FIELD = set().union(*_CF_FIELDS.values())
_CF_TYPES_WITH: dict[str, list[str]] = {
    name: [t for t, fields in _CF_FIELDS.items() if name in fields] for name in _CF_ANY_FIELD
}
_CF_RETRY_FIELDS = _fields(
    "Errors Description MaxAttempts IntervalSeconds BackoffRate MaxBackoffSeconds"
)
_CF_CATCH_FIELDS = {"Errors", "Description", "Next", "OutputConstructor"}
_CF_PARAMETERS = {"resourceArn", "invocationType", "body", "body.$"}
_TASK_MODES = {mode.value: mode for mode in TaskMode}

_LG_TOP = {"version", "type", "name", "description", "steps", "inputMappings", "outputMappings"}
_LG_COMMON = {"type", "name", "description", "end", "inputMappings", "outputMappings"}
_LG_ERRORS = {"retry", "catch", "errorMappings"}
_LG_FIELDS: dict[str, set[str]] = {
    "task": _LG_COMMON | _LG_ERRORS | {"resourceArn", "pattern", "timeoutSeconds", "serviceParams"},
    "pass": _LG_COMMON,
    "wait": _LG_COMMON | {"duration", "timestamp"},
    "choice": _LG_COMMON | {"choices", "default"},
    "parallel": _LG_COMMON | _LG_ERRORS | {"branches"},
    "foreach": _LG_COMMON | _LG_ERRORS | {"iterationMapping", "steps", "maxConcurrency"},
    "succeed": _LG_COMMON,
    "fail": _LG_COMMON | {"error", "cause"},
}
_LG_ANY_FIELD = set().union(*_LG_FIELDS.values())
_LG_TYPES_WITH: dict[str, list[str]] = {
    name: [t for t, fields in _LG_FIELDS.items() if name in fields] for name in _LG_ANY_FIELD
}
_LG_KINDS = {
    "task": StateKind.TASK,
    "pass": StateKind.PASS,
    "wait": StateKind.WAIT,
    "choice": StateKind.CHOICE,
    "parallel": StateKind.PARALLEL,
    "foreach": StateKind.MAP,
    "succeed": StateKind.SUCCEED,
    "fail": StateKind.FAIL,
}
_LG_PATTERNS = {
    "requestResponse": TaskMode.REQUEST,
    "sync": TaskMode.SYSTEM_CALLBACK,
    "waitForCallback": TaskMode.CUSTOM_CALLBACK,
}


# --- the compiler ---------------------------------------------------------------------------


@dataclass
class _Built:
    """A compiled state plus what the graph check needs to know about it."""

    state: State
    path: _Path
    edges: list[tuple[str, _Path]] = field(default_factory=list)  # (target, where it is named)
    terminal: bool = False  # finishing this state can end its scope


@dataclass
class _PendingScope:
    scope_id: str
    list_path: _Path  # the States / steps list
    start: str | None
    start_path: _Path | None  # None for legacy: the first step is the start
    states: dict[str, _Built]


_MISSING = object()


class _Compiler:
    def __init__(self, lines: LineMap | None, known_functions, max_states: int):
        self.lines = lines or LineMap()
        self.known_functions = known_functions
        self.max_states = max_states
        self.errors: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []
        self.scopes: dict[str, Scope] = {}
        self.pending: list[_PendingScope] = []
        self.functions: set[str] = set()
        self.queues: set[str] = set()
        self.state_count = 0
        self.noun = "state"

    # ---- diagnostics

    def _diag(self, path: _Path, message: str, severity: str) -> Diagnostic:
        return Diagnostic(path.text, message, self.lines.nearest(path.keys), severity)

    def error(self, path: _Path, message: str) -> None:
        self.errors.append(self._diag(path, message, "error"))

    def warn(self, path: _Path, message: str) -> None:
        self.warnings.append(self._diag(path, message, "warning"))

    def error_at_text(self, text: str, message: str, base: _Path, value: Any) -> None:
        """A diagnostic reported by templates/expressions under a textual path below ``base``."""
        keys = _resolve_subpath(base, value, text)
        self.errors.append(Diagnostic(text, message, self.lines.nearest(keys)))

    # ---- typed field access (records a diagnostic instead of raising)

    def get(
        self,
        obj: dict,
        key: str,
        path: _Path,
        kind: str,
        *,
        required: bool = False,
        default: Any = None,
        shown: str | None = None,
    ) -> Any:
        """``obj[key]`` when it has JSON type ``kind``; else a diagnostic and ``default``."""
        if key not in obj:
            if required:
                self.error(path.key(key, shown), f"{shown or key} is required")
            return default
        value = obj[key]
        if not _KINDS[kind](value):
            self.error(
                path.key(key, shown), f"{shown or key} must be {_a(kind)}, got {_type_name(value)}"
            )
            return default
        return value

    def number(
        self,
        obj: dict,
        key: str,
        path: _Path,
        *,
        integer: bool = False,
        minimum: float = 0,
        maximum: float | None = None,
        required: bool = False,
        default: Any = None,
        exclusive_minimum: bool = False,
    ) -> Any:
        value = self.get(
            obj, key, path, "integer" if integer else "number", required=required, default=_MISSING
        )
        if value is _MISSING:
            return default
        if value < minimum or (exclusive_minimum and value == minimum):
            relation = "greater than" if exclusive_minimum else "at least"
            self.error(
                path / key,
                f"{key} must be {relation} {_number_text(minimum)}, got {_number_text(value)}",
            )
            return default
        if maximum is not None and value > maximum:
            self.error(
                path / key,
                f"{key} must be at most {_number_text(maximum)}, got {_number_text(value)}",
            )
            return default
        return value

    def strings(self, obj: dict, key: str, path: _Path, *, required: bool = True) -> tuple:
        """A non-empty list of strings (``Errors``/``errors``)."""
        value = self.get(obj, key, path, "list", required=required)
        if value is None:
            return ()
        if not value:
            self.error(path / key, f"{key} must not be empty")
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item:
                self.error(
                    (path / key)[i], f"{key} must hold non-empty strings, got {_type_name(item)}"
                )
        return tuple(v for v in value if isinstance(v, str))

    def check_fields(
        self,
        obj: dict,
        allowed: Collection[str],
        path: _Path,
        *,
        what: str,
        elsewhere: dict[str, list[str]] | None = None,
        plural: Callable[[str], str] = str,
    ) -> None:
        """Every key of ``obj`` must be in ``allowed``; unknown ones get a "did you mean"."""
        for key in obj:
            if key in allowed:
                continue
            owners = (elsewhere or {}).get(key)
            if owners:
                kinds = ", ".join(plural(o) for o in owners)
                message = f"{key} is not allowed on {what} (only on {kinds})"
            else:
                message = f"unknown field '{key}'{_hint(key, allowed)}"
            self.error(path / key, message)

    # ---- compiled pieces

    def template(self, value: Any, path: _Path, *, dialect: str = "cloudflow") -> Any:
        try:
            return compile_template(value, path=path.text, dialect=dialect)
        except TemplateError as exc:
            for where, message in exc.errors:
                self.error_at_text(where, message, path, value)
            return None

    def expression(
        self, value: Any, path: _Path, *, dialect: str = "cloudflow", what: str | None = None
    ) -> Any:
        what = what or str(path.keys[-1])
        if not isinstance(value, str):
            self.error(path, f"{what} must be an expression string, got {_type_name(value)}")
            return None
        try:
            return compile_expression(value, dialect=dialect)
        except ExpressionError as exc:
            self.error(path, _expression_message(exc))
            return None

    def mappings(self, obj: dict, key: str, path: _Path) -> Any:
        items = self.get(obj, key, path, "list")
        if items is None:
            return None
        try:
            return compile_mappings(items, path=(path / key).text)
        except TemplateError as exc:
            for where, message in exc.errors:
                self.error_at_text(where, message, path / key, items)
            return None

    def timestamp(self, value: str, path: _Path, what: str) -> str | None:
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "Zz" else text)
        except ValueError:
            parsed = None
        if parsed is None or "T" not in text.upper() and " " not in text:
            self.error(
                path,
                f"{what} must be an RFC 3339 date-time such as 2024-05-01T12:00:00Z, got {value!r}",
            )
            return None
        if parsed.tzinfo is None:
            self.error(path, f"{what} must include a time zone (Z or +hh:mm), got {value!r}")
            return None
        return value

    def function_target(self, arn: str, path: _Path) -> str | None:
        name = _fc_function(arn)
        if name is None:
            return None
        self.functions.add(name)
        if self.known_functions is not None and name not in self.known_functions:
            self.warn(path, f"function '{name}' does not exist yet")
        return name

    # ---- entry point

    def run(self, data: Any) -> FlowGraph:
        graph = None
        if not isinstance(data, dict):
            self.error(
                ROOT, f"the definition must be a mapping at the top level, got {_type_name(data)}"
            )
        elif data.get("Type") == "StateMachine":
            graph = self.cloudflow(data)
        elif data.get("version") == "v1" and data.get("type") == "flow":
            self.noun = "step"
            graph = self.legacy(data)
        else:
            self.unknown_dialect(data)
        if graph is not None:
            self.check_graphs()
            if self.state_count > self.max_states:
                self.error(
                    ROOT,
                    f"the definition has {self.state_count} states; at most "
                    f"{self.max_states} are allowed",
                )
        if self.errors or graph is None:
            raise DefinitionError(_sorted(self.errors))
        return replace(graph, warnings=tuple(_sorted(self.warnings)))

    def unknown_dialect(self, data: dict) -> None:
        expected = (
            "expected 'Type: StateMachine' (CloudFlow FDL) or 'version: v1' with "
            "'type: flow' (legacy FnF FDL)"
        )
        if "Type" in data:
            self.error(ROOT / "Type", f"Type must be 'StateMachine', got {data['Type']!r}")
        elif "type" in data or "version" in data or "steps" in data:
            if data.get("version") != "v1":
                got = repr(data["version"]) if "version" in data else "nothing"
                self.error(ROOT / "version", f"a legacy flow needs 'version: v1', got {got}")
            if data.get("type") != "flow":
                got = repr(data["type"]) if "type" in data else "nothing"
                self.error(ROOT / "type", f"a legacy flow needs 'type: flow', got {got}")
        else:
            self.error(ROOT, f"not a flow definition: {expected}")

    # ==== CloudFlow =============================================================================

    def cloudflow(self, doc: dict) -> FlowGraph:
        self.check_fields(doc, _CF_TOP, ROOT, what="the top level")
        version = self.get(doc, "SpecVersion", ROOT, "string")
        if "SpecVersion" not in doc:
            self.warn(ROOT / "SpecVersion", "SpecVersion is missing; assuming v1")
        elif version is not None and version != "v1":
            self.error(ROOT / "SpecVersion", f"SpecVersion must be 'v1', got {version!r}")
        name = self.get(doc, "Name", ROOT, "string")
        description = self.get(doc, "Description", ROOT, "string")
        root = self.cf_scope(doc, ROOT, "States")
        return FlowGraph(
            dialect="cloudflow",
            root=root,
            name=name,
            description=description,
            scopes=self.scopes,
            functions=frozenset(self.functions),
            queues=frozenset(self.queues),
        )

    def cf_scope(self, obj: dict, obj_path: _Path, scope_id: str) -> Scope:
        """A ``{StartAt, States}`` object: the top level, a Parallel branch, a Map processor."""
        start = self.get(obj, "StartAt", obj_path, "string", required=True)
        list_path = obj_path / "States"
        if isinstance(obj.get("States"), dict):
            self.error(
                list_path,
                "States must be a list of states, each with its Name "
                "(not a mapping from names to states as in ASL)",
            )
            items = None
        else:
            items = self.get(obj, "States", obj_path, "list", required=True)
        if items == []:
            self.error(list_path, "States must not be empty")
        built: dict[str, _Built] = {}
        for i, item in enumerate(items or []):
            one = self.cf_state(item, list_path[i])
            if one is None:
                continue
            name = one.state.name
            if name in built:
                self.error(
                    list_path[i] / "Name",
                    f"duplicate state name '{name}' (first at {built[name].path.text})",
                )
                continue
            built[name] = one
        self.pending.append(_PendingScope(scope_id, list_path, start, obj_path / "StartAt", built))
        scope = Scope(
            path=scope_id, start_at=start or "", states={n: b.state for n, b in built.items()}
        )
        self.scopes[scope_id] = scope
        return scope

    def cf_state(self, item: Any, path: _Path) -> _Built | None:
        if not isinstance(item, dict):
            self.error(path, f"a state must be a mapping, got {_type_name(item)}")
            return None
        name = self.get(item, "Name", path, "string", required=True)
        if name == "":
            self.error(path / "Name", "Name must not be empty")
        type_ = self.get(item, "Type", path, "string", required=True)
        compile_state = self._CF_STATES.get(type_) if type_ is not None else None
        if type_ is not None and compile_state is None:
            self.error(path / "Type", f"unknown state type '{type_}'{_hint(type_, _CF_FIELDS)}")
        if compile_state is None:
            return None
        self.state_count += 1
        built = compile_state(self, item, path, name or "")
        return built if name else None  # a nameless state was checked but can't be named

    def cf_common(self, item: dict, path: _Path, name: str, kind: StateKind) -> tuple[dict, _Built]:
        """Fields shared by every state: checks the field set, Description, constructors,
        Next/End, Retry and Catch. Returns the ``State`` keyword arguments and a ``_Built``
        whose ``state`` the caller fills in."""
        allowed = _CF_FIELDS[kind.value]
        what = f"a {kind.value} state"
        for key in item:
            if key in allowed:
                continue
            if key in ("Retry", "Catch"):
                self.error(
                    path / key,
                    f"{key} is not allowed on {what}; only Task, Parallel and Map "
                    "states have Retry and Catch",
                )
            elif key in ("Next", "End") and kind is StateKind.CHOICE:
                self.error(
                    path / key,
                    f"a Choice state has no {key}; its Branches and Default say where to go",
                )
            elif key == "Next" and kind in (StateKind.SUCCEED, StateKind.FAIL):
                self.error(path / key, f"a {kind.value} state ends its scope and has no Next")
            elif key in _CF_ANY_FIELD:
                owners = ", ".join(_CF_TYPES_WITH[key])
                self.error(path / key, f"{key} is not allowed on {what} (only on {owners})")
            else:
                self.error(path / key, f"unknown field '{key}'{_hint(key, allowed)}")
        self.get(item, "Description", path, "string")
        kwargs: dict[str, Any] = {
            "name": name,
            "kind": kind,
            "path": path.text,
            "line": self.lines.get(path.keys),
        }
        for key, attr in (
            ("InputConstructor", "input_constructor"),
            ("OutputConstructor", "output_constructor"),
            ("GlobalConstructor", "global_constructor"),
        ):
            if key in item and key in allowed:
                kwargs[attr] = self.cf_constructor(item[key], path / key)
        built = _Built(state=None, path=path)  # type: ignore[arg-type]
        end = self.get(item, "End", path, "boolean") if "End" in allowed else None
        if kind in (StateKind.SUCCEED, StateKind.FAIL):
            built.terminal = True
        elif kind is not StateKind.CHOICE:
            next_ = self.get(item, "Next", path, "string")
            has_next = "Next" in item
            if has_next and end:
                self.error(path / "End", "a state cannot have both Next and End: true")
            elif not has_next and not end and "End" not in item:
                self.error(path / "Next", "Next is required (or End: true to end the scope)")
            elif not has_next and end is False:
                self.error(path / "End", "End: false needs a Next")
            if next_ is not None and not end:
                kwargs["next"] = next_
                built.edges.append((next_, path / "Next"))
            else:
                # End: true, or a Next/End already reported as wrong: either way, don't pile
                # "unreachable"/"can never end" on top of it.
                built.terminal = True
        if "Retry" in item and "Retry" in allowed:
            kwargs["retry"] = self.cf_retry(item["Retry"], path / "Retry")
        if "Catch" in item and "Catch" in allowed:
            kwargs["catch"] = self.cf_catch(item["Catch"], path / "Catch", built)
        return kwargs, built

    def cf_constructor(self, value: Any, path: _Path) -> Any:
        if not isinstance(value, dict):
            self.error(path, f"{path.keys[-1]} must be a mapping, got {_type_name(value)}")
            return None
        return self.template(value, path)

    def cf_retry(self, value: Any, path: _Path) -> tuple[RetryRule, ...]:
        if not isinstance(value, list):
            self.error(path, f"Retry must be a list of rules, got {_type_name(value)}")
            return ()
        rules = []
        catch_all_at: int | None = None
        for i, rule in enumerate(value):
            p = path[i]
            if not isinstance(rule, dict):
                self.error(p, f"a Retry rule must be a mapping, got {_type_name(rule)}")
                continue
            self.check_fields(rule, _CF_RETRY_FIELDS, p, what="a Retry rule")
            self.get(rule, "Description", p, "string")
            errors = self.strings(rule, "Errors", p)
            if catch_all_at is not None:
                self.warn(
                    p,
                    f"this rule is never used: Retry[{catch_all_at}] (FnF.ALL) "
                    "matches every error first",
                )
            if "FnF.ALL" in errors and catch_all_at is None:
                catch_all_at = i
            attempts = self.number(
                rule,
                "MaxAttempts",
                p,
                integer=True,
                required=True,
                maximum=MAX_RETRY_ATTEMPTS,
                default=0,
            )
            interval = self.number(
                rule, "IntervalSeconds", p, required=True, maximum=MAX_RETRY_INTERVAL, default=0
            )
            rate = self.number(rule, "BackoffRate", p, minimum=1, default=1.0)
            cap = self.number(rule, "MaxBackoffSeconds", p, maximum=MAX_RETRY_INTERVAL)
            rules.append(
                RetryRule(
                    errors=errors,
                    max_attempts=attempts,
                    interval_seconds=float(interval),
                    backoff_rate=float(rate),
                    max_backoff_seconds=None if cap is None else float(cap),
                    path=p.text,
                )
            )
        return tuple(rules)

    def cf_catch(self, value: Any, path: _Path, built: _Built) -> tuple[CatchRule, ...]:
        if not isinstance(value, list):
            self.error(path, f"Catch must be a list of rules, got {_type_name(value)}")
            return ()
        rules = []
        for i, rule in enumerate(value):
            p = path[i]
            if not isinstance(rule, dict):
                self.error(p, f"a Catch rule must be a mapping, got {_type_name(rule)}")
                continue
            self.check_fields(rule, _CF_CATCH_FIELDS, p, what="a Catch rule")
            self.get(rule, "Description", p, "string")
            errors = self.strings(rule, "Errors", p)
            next_ = self.get(rule, "Next", p, "string", required=True)
            output = None
            if "OutputConstructor" in rule:
                output = self.cf_constructor(rule["OutputConstructor"], p / "OutputConstructor")
            if next_ is not None:
                built.edges.append((next_, p / "Next"))
            rules.append(
                CatchRule(errors=errors, next=next_ or "", output_constructor=output, path=p.text)
            )
        return tuple(rules)

    def _finish(self, kwargs: dict, built: _Built, **extra: Any) -> _Built:
        built.state = State(**kwargs, **extra)
        return built

    # ---- CloudFlow state types

    def cf_task(self, item: dict, path: _Path, name: str) -> _Built:
        kwargs, built = self.cf_common(item, path, name, StateKind.TASK)
        action = self.get(item, "Action", path, "string", required=True)
        if action is not None and action != "FC:InvokeFunction":
            self.error(
                path / "Action",
                f"Action '{action}' is not supported; flowsite supports FC:InvokeFunction",
            )
        mode_text = self.get(item, "TaskMode", path, "string", default="RequestComplete")
        mode = _TASK_MODES.get(mode_text)
        if mode is None:
            self.error(
                path / "TaskMode",
                f"TaskMode must be one of {', '.join(_TASK_MODES)}, "
                f"got {mode_text!r}{_hint(mode_text, _TASK_MODES)}",
            )
            mode = TaskMode.REQUEST
        timeout = self.cf_timeout(item, path)
        heartbeat = self.number(
            item, "HeartbeatSeconds", path, exclusive_minimum=True, maximum=MAX_TIMEOUT_SECONDS
        )
        if "HeartbeatSeconds" in item and mode is not TaskMode.CUSTOM_CALLBACK:
            self.error(
                path / "HeartbeatSeconds", "HeartbeatSeconds needs TaskMode: WaitForCustomCallback"
            )
            heartbeat = None
        arn, function, invocation, body = "", None, "sync", None
        params_path = path / "Parameters"
        params = self.get(item, "Parameters", path, "mapping", required=True)
        if params is not None:
            self.check_fields(params, _CF_PARAMETERS, params_path, what="FC:InvokeFunction")
            arn = self.get(params, "resourceArn", params_path, "string", required=True) or ""
            if arn:
                function = self.function_target(arn, params_path / "resourceArn")
                if function is None:
                    self.error(
                        params_path / "resourceArn",
                        f"resourceArn {arn!r} is not a Function Compute function ARN "
                        "(acs:fc:{region}:{account}:functions/{name} or "
                        "acs:fc:::services/{service}/functions/{name})",
                    )
            invocation_text = self.get(
                params, "invocationType", params_path, "string", default="Sync"
            )
            if invocation_text not in ("Sync", "Async"):
                self.error(
                    params_path / "invocationType",
                    f"invocationType must be Sync or Async, got {invocation_text!r}",
                )
            invocation = "async" if invocation_text == "Async" else "sync"
            if "body" in params and "body.$" in params:
                self.error(params_path / "body.$", "use either body or body.$, not both")
            elif "body" in params:
                body = self.template(params["body"], params_path / "body")
            elif "body.$" in params:
                # an expression for the whole body: the template {"$": expr}, whose errors
                # then read "...Parameters.body.$", just where the user wrote it
                body = self.template({"$": params["body.$"]}, params_path.key("body.$", "body"))
        task = TaskSpec(
            target="function",
            resource=arn,
            function=function,
            mode=mode,
            invocation=invocation,
            body=body,
            timeout_seconds=timeout,
            heartbeat_seconds=None if heartbeat is None else float(heartbeat),
        )
        return self._finish(kwargs, built, task=task)

    def cf_timeout(self, item: dict, path: _Path) -> float | None:
        if "Timeout" not in item:
            return None
        value = item["Timeout"]
        seconds: float | None = None
        if isinstance(value, str):
            try:
                seconds = float(value.strip())
            except ValueError:
                seconds = None
            if seconds is None or not math.isfinite(seconds):
                self.error(path / "Timeout", f"Timeout must be a number of seconds, got {value!r}")
                return None
        elif isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        else:
            self.error(
                path / "Timeout", f"Timeout must be a number of seconds, got {_type_name(value)}"
            )
            return None
        if not 0 <= seconds <= MAX_TIMEOUT_SECONDS:
            self.error(
                path / "Timeout",
                f"Timeout must be between 0 and {MAX_TIMEOUT_SECONDS} "
                f"seconds, got {_number_text(seconds)}",
            )
            return None
        return seconds or None

    def cf_pass(self, item: dict, path: _Path, name: str) -> _Built:
        kwargs, built = self.cf_common(item, path, name, StateKind.PASS)
        return self._finish(kwargs, built)

    def cf_wait(self, item: dict, path: _Path, name: str) -> _Built:
        kwargs, built = self.cf_common(item, path, name, StateKind.WAIT)
        given = [k for k in ("Seconds", "Seconds.$", "Timestamp", "Timestamp.$") if k in item]
        if len(given) != 1:
            where = path / given[1] if len(given) > 1 else path
            self.error(
                where,
                "a Wait state needs exactly one of Seconds, Seconds.$, Timestamp "
                f"and Timestamp.$, got {len(given)}",
            )
        spec: dict[str, Any] = {}
        if "Seconds" in item:
            value = item["Seconds"]
            if isinstance(value, str) and value.startswith("$"):
                self.error(
                    path / "Seconds", "Seconds must be a number; write Seconds.$ for an expression"
                )
            else:
                spec["seconds"] = self.number(item, "Seconds", path)
                if spec["seconds"] is not None:
                    spec["seconds"] = float(spec["seconds"])
        if "Seconds.$" in item:
            spec["seconds_expr"] = self.expression(item["Seconds.$"], path / "Seconds.$")
        if "Timestamp" in item:
            value = self.get(item, "Timestamp", path, "string")
            if value is not None:
                if value.startswith("$"):
                    self.error(
                        path / "Timestamp",
                        "Timestamp must be an RFC 3339 date-time; "
                        "write Timestamp.$ for an expression",
                    )
                else:
                    spec["timestamp"] = self.timestamp(value, path / "Timestamp", "Timestamp")
        if "Timestamp.$" in item:
            spec["timestamp_expr"] = self.expression(item["Timestamp.$"], path / "Timestamp.$")
        return self._finish(kwargs, built, wait=WaitSpec(**spec))

    def cf_choice(self, item: dict, path: _Path, name: str) -> _Built:
        kwargs, built = self.cf_common(item, path, name, StateKind.CHOICE)
        branches = []
        items = self.get(item, "Branches", path, "list", required=True)
        if items == []:
            self.error(path / "Branches", "Branches must not be empty")
        for i, branch in enumerate(items or []):
            p = (path / "Branches")[i]
            if not isinstance(branch, dict):
                self.error(p, f"a Choice branch must be a mapping, got {_type_name(branch)}")
                continue
            self.check_fields(
                branch, {"Condition", "Next", "Description"}, p, what="a Choice branch"
            )
            self.get(branch, "Description", p, "string")
            condition = None
            if "Condition" not in branch:
                self.error(p / "Condition", "Condition is required")
            else:
                condition = self.expression(branch["Condition"], p / "Condition")
            next_ = self.get(branch, "Next", p, "string", required=True)
            if next_ is not None:
                built.edges.append((next_, p / "Next"))
            branches.append(
                ChoiceBranch(condition=condition, target=ChoiceTarget(next=next_), path=p.text)
            )
        default = self.get(item, "Default", path, "string", required=True)
        if default is not None:
            built.edges.append((default, path / "Default"))
        return self._finish(
            kwargs, built, choices=tuple(branches), default=ChoiceTarget(next=default)
        )

    def cf_parallel(self, item: dict, path: _Path, name: str) -> _Built:
        kwargs, built = self.cf_common(item, path, name, StateKind.PARALLEL)
        scopes = []
        items = self.get(item, "Branches", path, "list", required=True)
        if items == []:
            self.error(path / "Branches", "Branches must not be empty")
        elif items is not None and len(items) > MAX_PARALLEL_BRANCHES:
            self.error(
                path / "Branches",
                f"a Parallel state has at most {MAX_PARALLEL_BRANCHES} branches, got {len(items)}",
            )
        for i, branch in enumerate(items or []):
            p = (path / "Branches")[i]
            if not isinstance(branch, dict):
                self.error(p, f"a Parallel branch must be a mapping, got {_type_name(branch)}")
                continue
            self.check_fields(
                branch, {"StartAt", "States", "Description"}, p, what="a Parallel branch"
            )
            self.get(branch, "Description", p, "string")
            scopes.append(self.cf_scope(branch, p, p.text))
        return self._finish(kwargs, built, branches=tuple(scopes))

    def cf_map(self, item: dict, path: _Path, name: str) -> _Built:
        kwargs, built = self.cf_common(item, path, name, StateKind.MAP)
        for key in _CF_DISTRIBUTED:
            if key in item:
                self.error(path / key, f"{key} is not supported yet (distributed Map)")
        config = self.get(item, "ProcessorConfig", path, "mapping")
        if config is not None:
            config_path = path / "ProcessorConfig"
            self.check_fields(config, {"ExecutionMode"}, config_path, what="ProcessorConfig")
            mode = self.get(config, "ExecutionMode", config_path, "string")
            if mode is not None and mode.lower() != "inline":
                self.error(
                    config_path / "ExecutionMode",
                    f"distributed Map is not supported yet (ExecutionMode {mode!r})",
                )
        items = None
        if "ItemsPath" not in item:
            self.error(path / "ItemsPath", "ItemsPath is required")
        else:
            items = self.expression(item["ItemsPath"], path / "ItemsPath")
        concurrency = 0
        if "MaxConcurrency" in item and "MaxConcuccency" in item:
            self.error(
                path / "MaxConcuccency", "use either MaxConcurrency or MaxConcuccency, not both"
            )
        else:
            key = "MaxConcuccency" if "MaxConcuccency" in item else "MaxConcurrency"
            concurrency = self.number(item, key, path, integer=True, default=0)
        item_constructor = None
        if "ItemConstructor" in item:
            item_constructor = self.cf_constructor(
                item["ItemConstructor"], path / "ItemConstructor"
            )
        processor = None
        if "Processor" in item and "ItemProcessor" in item:
            self.error(path / "ItemProcessor", "use either Processor or ItemProcessor, not both")
        # the older spelling ItemProcessor is accepted; the scope is "...Processor" either way
        spelled = (
            "ItemProcessor" if "ItemProcessor" in item and "Processor" not in item else "Processor"
        )
        body = self.get(item, spelled, path, "mapping", required=True)
        if body is not None:
            p = path.key(spelled, "Processor")
            self.check_fields(body, {"StartAt", "States", "Description"}, p, what=spelled)
            self.get(body, "Description", p, "string")
            processor = self.cf_scope(body, p, p.text)
        spec = MapSpec(
            items=items,
            processor=processor,
            max_concurrency=concurrency,
            item_constructor=item_constructor,
        )
        return self._finish(kwargs, built, map=spec)

    def cf_succeed(self, item: dict, path: _Path, name: str) -> _Built:
        kwargs, built = self.cf_common(item, path, name, StateKind.SUCCEED)
        return self._finish(kwargs, built)

    def cf_fail(self, item: dict, path: _Path, name: str) -> _Built:
        kwargs, built = self.cf_common(item, path, name, StateKind.FAIL)
        code = self.get(item, "Code", path, "string")
        detail = self.get(item, "Detail", path, "string")
        if "Detail" not in item:
            self.warn(path, f"Fail state '{name}' has no Detail")
        return self._finish(kwargs, built, fail=FailSpec(code=code, detail=detail))

    _CF_STATES: dict[str, Callable[[_Compiler, dict, _Path, str], _Built]] = {
        "Task": cf_task,
        "Pass": cf_pass,
        "Wait": cf_wait,
        "Choice": cf_choice,
        "Parallel": cf_parallel,
        "Map": cf_map,
        "Succeed": cf_succeed,
        "Fail": cf_fail,
    }

    # ==== legacy FnF ============================================================================

    def legacy(self, doc: dict) -> FlowGraph:
        self.check_fields(doc, _LG_TOP, ROOT, what="a legacy flow")
        name = self.get(doc, "name", ROOT, "string")
        description = self.get(doc, "description", ROOT, "string")
        input_mappings = self.mappings(doc, "inputMappings", ROOT)
        output_mappings = self.mappings(doc, "outputMappings", ROOT)
        root = self.lg_scope(doc, ROOT, "steps")
        return FlowGraph(
            dialect="legacy",
            root=root,
            name=name,
            description=description,
            input_mappings=input_mappings,
            output_mappings=output_mappings,
            scopes=self.scopes,
            functions=frozenset(self.functions),
            queues=frozenset(self.queues),
        )

    def lg_scope(self, obj: dict, obj_path: _Path, scope_id: str) -> Scope:
        """The ``steps`` list of ``obj``: the flow, a parallel branch, a foreach, a choice
        branch. Steps run in list order; the first one is the start."""
        items = self.get(obj, "steps", obj_path, "list", required=True)
        list_path = obj_path / "steps"
        if items == []:
            self.error(list_path, "steps must not be empty")
        items = items or []
        names = [s.get("name") if isinstance(s, dict) else None for s in items]
        built: dict[str, _Built] = {}
        for i, item in enumerate(items):
            following = names[i + 1] if i + 1 < len(items) else None
            following = following if isinstance(following, str) and following else None
            one = self.lg_step(item, list_path[i], following, last=i + 1 == len(items))
            if one is None:
                continue
            name = one.state.name
            if name in built:
                self.error(
                    list_path[i] / "name",
                    f"duplicate step name '{name}' (first at {built[name].path.text})",
                )
                continue
            built[name] = one
        start = names[0] if names and isinstance(names[0], str) and names[0] else None
        self.pending.append(_PendingScope(scope_id, list_path, start, None, built))
        scope = Scope(
            path=scope_id, start_at=start or "", states={n: b.state for n, b in built.items()}
        )
        self.scopes[scope_id] = scope
        return scope

    def lg_step(
        self, item: Any, path: _Path, following: str | None, *, last: bool
    ) -> _Built | None:
        if not isinstance(item, dict):
            self.error(path, f"a step must be a mapping, got {_type_name(item)}")
            return None
        name = self.get(item, "name", path, "string", required=True)
        if name == "":
            self.error(path / "name", "name must not be empty")
        type_ = self.get(item, "type", path, "string", required=True)
        compile_step = self._LG_STEPS.get(type_) if type_ is not None else None
        if type_ is not None and compile_step is None:
            self.error(path / "type", f"unknown step type '{type_}'{_hint(type_, _LG_FIELDS)}")
        if compile_step is None:
            return None
        self.state_count += 1
        built = compile_step(self, item, path, name or "", following, last)
        return built if name else None  # a nameless step was checked but can't be named

    def lg_common(
        self, item: dict, path: _Path, name: str, type_: str, following: str | None, last: bool
    ) -> tuple[dict, _Built]:
        """Fields every step has: the field set, ``end`` and the implicit next, mappings,
        retry/catch/errorMappings where allowed."""
        self.check_fields(
            item,
            _LG_FIELDS[type_],
            path,
            what=f"a {type_} step",
            elsewhere=_LG_TYPES_WITH,
            plural=lambda t: f"{t} steps",
        )
        self.get(item, "description", path, "string")
        kwargs: dict[str, Any] = {
            "name": name,
            "kind": _LG_KINDS[type_],
            "path": path.text,
            "line": self.lines.get(path.keys),
        }
        built = _Built(state=None, path=path)  # type: ignore[arg-type]
        end = self.get(item, "end", path, "boolean")
        if end and last:
            self.warn(path / "end", "end: true on the last step is redundant")
        if type_ in ("succeed", "fail") or end or following is None:
            built.terminal = True
        else:
            kwargs["next"] = following
            if type_ != "choice":  # a choice takes its own next only in some cases: lg_choice
                built.edges.append((following, path))
        kwargs["input_mappings"] = self.mappings(item, "inputMappings", path)
        kwargs["output_mappings"] = self.mappings(item, "outputMappings", path)
        if "errorMappings" in _LG_FIELDS[type_]:
            kwargs["error_mappings"] = self.mappings(item, "errorMappings", path)
            kwargs["retry"] = self.lg_retry(item, path)
            kwargs["catch"] = self.lg_catch(item, path, built)
            if "errorMappings" in item and not item.get("catch"):
                self.warn(path / "errorMappings", "errorMappings has no effect without catch")
        return kwargs, built

    def lg_retry(self, item: dict, path: _Path) -> tuple[RetryRule, ...]:
        rules = []
        fields = {"errors", "intervalSeconds", "maxIntervalSeconds", "maxAttempts", "multiplier"}
        for i, rule in enumerate(self.get(item, "retry", path, "list") or []):
            p = (path / "retry")[i]
            if not isinstance(rule, dict):
                self.error(p, f"a retry rule must be a mapping, got {_type_name(rule)}")
                continue
            self.check_fields(rule, fields, p, what="a retry rule")
            errors = self.strings(rule, "errors", p)
            interval = self.number(
                rule, "intervalSeconds", p, maximum=MAX_RETRY_INTERVAL, default=1
            )
            cap = self.number(
                rule,
                "maxIntervalSeconds",
                p,
                maximum=MAX_RETRY_INTERVAL,
                exclusive_minimum=True,
                default=MAX_RETRY_INTERVAL,
            )
            attempts = self.number(
                rule, "maxAttempts", p, integer=True, maximum=MAX_RETRY_ATTEMPTS, default=3
            )
            multiplier = self.number(rule, "multiplier", p, minimum=1, default=2)
            rules.append(
                RetryRule(
                    errors=errors,
                    max_attempts=attempts,
                    interval_seconds=float(interval),
                    backoff_rate=float(multiplier),
                    max_backoff_seconds=float(cap),
                    path=p.text,
                )
            )
        return tuple(rules)

    def lg_catch(self, item: dict, path: _Path, built: _Built) -> tuple[CatchRule, ...]:
        rules = []
        for i, rule in enumerate(self.get(item, "catch", path, "list") or []):
            p = (path / "catch")[i]
            if not isinstance(rule, dict):
                self.error(p, f"a catch rule must be a mapping, got {_type_name(rule)}")
                continue
            self.check_fields(rule, {"errors", "goto"}, p, what="a catch rule")
            errors = self.strings(rule, "errors", p)
            goto = self.get(rule, "goto", p, "string", required=True)
            if goto is not None:
                built.edges.append((goto, p / "goto"))
            rules.append(CatchRule(errors=errors, next=goto or "", path=p.text))
        return tuple(rules)

    # ---- legacy step types

    def lg_task(self, item, path, name, following, last) -> _Built:
        kwargs, built = self.lg_common(item, path, name, "task", following, last)
        arn = self.get(item, "resourceArn", path, "string", required=True) or ""
        target, function, queue = "function", None, None
        if arn:
            function = self.function_target(arn, path / "resourceArn")
            queue_match = _MNS_QUEUE_ARN.fullmatch(arn)
            if queue_match:
                target, queue = "queue", queue_match.group("q")
                self.queues.add(queue)
            elif function is None:
                self.error(
                    path / "resourceArn",
                    f"resourceArn {arn!r} is not supported; flowsite supports Function "
                    "Compute functions (acs:fc:{region}:{account}:services/{service}/"
                    "functions/{name}) and MNS queues "
                    "(acs:mns:{region}:{account}:/queues/{name}/messages)",
                )
        pattern = self.get(item, "pattern", path, "string", default="requestResponse")
        mode = _LG_PATTERNS.get(pattern)
        if mode is None:
            self.error(
                path / "pattern",
                f"pattern must be one of {', '.join(_LG_PATTERNS)}, "
                f"got {pattern!r}{_hint(pattern, _LG_PATTERNS)}",
            )
            mode = TaskMode.REQUEST
        timeout = self.number(item, "timeoutSeconds", path, maximum=MAX_LEGACY_TIMEOUT_SECONDS)
        params = None
        if "serviceParams" in item:
            value = self.get(item, "serviceParams", path, "mapping")
            if value is not None:
                params = self.template(value, path / "serviceParams", dialect="legacy")
        task = TaskSpec(
            target=target,
            resource=arn,
            function=function,
            queue=queue,
            mode=mode,
            # ``sync`` submits an asynchronous job and waits for its end; the other two call
            # the function and wait for its response (a callback step then waits on).
            invocation="async" if mode is TaskMode.SYSTEM_CALLBACK else "sync",
            service_params=params,
            timeout_seconds=float(timeout) if timeout else None,
        )
        return self._finish(kwargs, built, task=task)

    def lg_pass(self, item, path, name, following, last) -> _Built:
        kwargs, built = self.lg_common(item, path, name, "pass", following, last)
        return self._finish(kwargs, built)

    def lg_wait(self, item, path, name, following, last) -> _Built:
        kwargs, built = self.lg_common(item, path, name, "wait", following, last)
        given = [k for k in ("duration", "timestamp") if k in item]
        if len(given) != 1:
            self.error(
                path / given[1] if given else path,
                "a wait step needs exactly one of duration and timestamp",
            )
        spec: dict[str, Any] = {}
        if "duration" in item:
            value = item["duration"]
            if isinstance(value, str) and value.startswith("$"):
                spec["seconds_expr"] = self.expression(value, path / "duration", dialect="legacy")
            elif isinstance(value, str):
                self.error(
                    path / "duration",
                    f"duration must be a number of seconds or a $ expression, got {value!r}",
                )
            else:
                seconds = self.number(item, "duration", path)
                spec["seconds"] = None if seconds is None else float(seconds)
        if "timestamp" in item:
            value = self.get(item, "timestamp", path, "string")
            if value is not None and value.startswith("$"):
                spec["timestamp_expr"] = self.expression(
                    value, path / "timestamp", dialect="legacy"
                )
            elif value is not None:
                spec["timestamp"] = self.timestamp(value, path / "timestamp", "timestamp")
        return self._finish(kwargs, built, wait=WaitSpec(**spec))

    def lg_choice(self, item, path, name, following, last) -> _Built:
        kwargs, built = self.lg_common(item, path, name, "choice", following, last)
        # Where the step's own ``next`` is taken (inline steps finished, or nothing matched).
        falls_through = "default" not in item
        branches = []
        items = self.get(item, "choices", path, "list", required=True)
        if items == []:
            self.error(path / "choices", "choices must not be empty")
        for i, branch in enumerate(items or []):
            p = (path / "choices")[i]
            if not isinstance(branch, dict):
                self.error(p, f"a choice must be a mapping, got {_type_name(branch)}")
                continue
            self.check_fields(branch, {"condition", "steps", "goto"}, p, what="a choice")
            condition = None
            if "condition" not in branch:
                self.error(p / "condition", "condition is required")
            else:
                condition = self.expression(branch["condition"], p / "condition", dialect="legacy")
            target = self.lg_choice_target(branch, p, built, "a choice")
            falls_through |= target.scope is not None
            branches.append(ChoiceBranch(condition=condition, target=target, path=p.text))
        default = None
        if "default" in item:
            value = self.get(item, "default", path, "mapping")
            if value is not None:
                self.check_fields(value, {"steps", "goto"}, path / "default", what="default")
                default = self.lg_choice_target(value, path / "default", built, "default")
                falls_through |= default.scope is not None
        if falls_through and "next" in kwargs:
            built.edges.append((kwargs["next"], path))
        built.terminal = falls_through and "next" not in kwargs
        return self._finish(kwargs, built, choices=tuple(branches), default=default)

    def lg_choice_target(self, obj: dict, path: _Path, built: _Built, what: str) -> ChoiceTarget:
        if "steps" in obj and "goto" in obj:
            self.error(path / "goto", f"{what} has either steps or goto, not both")
        elif "steps" not in obj and "goto" not in obj:
            self.error(path, f"{what} needs steps or goto")
        if "steps" in obj:
            return ChoiceTarget(scope=self.lg_scope(obj, path, path.text))
        goto = self.get(obj, "goto", path, "string")
        if goto is not None:
            built.edges.append((goto, path / "goto"))
        return ChoiceTarget(next=goto)

    def lg_parallel(self, item, path, name, following, last) -> _Built:
        kwargs, built = self.lg_common(item, path, name, "parallel", following, last)
        scopes = []
        items = self.get(item, "branches", path, "list", required=True)
        if items == []:
            self.error(path / "branches", "branches must not be empty")
        elif items is not None and len(items) > MAX_LEGACY_BRANCHES:
            self.error(
                path / "branches",
                f"a parallel step has at most {MAX_LEGACY_BRANCHES} branches, got {len(items)}",
            )
        for i, branch in enumerate(items or []):
            p = (path / "branches")[i]
            if not isinstance(branch, dict):
                self.error(p, f"a branch must be a mapping, got {_type_name(branch)}")
                continue
            self.check_fields(branch, {"steps"}, p, what="a branch")
            scopes.append(self.lg_scope(branch, p, p.text))
        return self._finish(kwargs, built, branches=tuple(scopes))

    def lg_foreach(self, item, path, name, following, last) -> _Built:
        kwargs, built = self.lg_common(item, path, name, "foreach", following, last)
        mapping = self.get(item, "iterationMapping", path, "mapping", required=True)
        collection, item_key, index_key = None, "item", None
        if mapping is not None:
            p = path / "iterationMapping"
            self.check_fields(mapping, {"collection", "item", "index"}, p, what="iterationMapping")
            if "collection" not in mapping:
                self.error(p / "collection", "collection is required")
            else:
                collection = self.expression(
                    mapping["collection"], p / "collection", dialect="legacy"
                )
            item_key = self.get(mapping, "item", p, "string", default="item")
            index_key = self.get(mapping, "index", p, "string")
            for key, value in (("item", item_key), ("index", index_key)):
                if value == "":
                    self.error(p / key, f"{key} must not be empty")
            if index_key is not None and index_key == item_key:
                self.error(p / "index", "index and item must name different keys")
        concurrency = self.number(item, "maxConcurrency", path, integer=True, default=0)
        processor = self.lg_scope(item, path, f"{path.text}.steps")
        spec = MapSpec(
            items=collection,
            processor=processor,
            max_concurrency=concurrency,
            item_key=item_key or "item",
            index_key=index_key,
        )
        return self._finish(kwargs, built, map=spec)

    def lg_succeed(self, item, path, name, following, last) -> _Built:
        kwargs, built = self.lg_common(item, path, name, "succeed", following, last)
        return self._finish(kwargs, built)

    def lg_fail(self, item, path, name, following, last) -> _Built:
        kwargs, built = self.lg_common(item, path, name, "fail", following, last)
        error = self.get(item, "error", path, "string")
        cause = self.get(item, "cause", path, "string")
        return self._finish(kwargs, built, fail=FailSpec(code=error, detail=cause))

    _LG_STEPS: dict[str, Callable[..., _Built]] = {
        "task": lg_task,
        "pass": lg_pass,
        "wait": lg_wait,
        "choice": lg_choice,
        "parallel": lg_parallel,
        "foreach": lg_foreach,
        "succeed": lg_succeed,
        "fail": lg_fail,
    }

    # ==== graph checks ==========================================================================

    def check_graphs(self) -> None:
        """Per scope: references, StartAt, reachability, a way to end. Run once every scope is
        known, so a reference into another scope can say which one."""
        owners: dict[str, list[str]] = {}
        for pending in self.pending:
            for name in pending.states:
                owners.setdefault(name, []).append(pending.scope_id)
        for pending in self.pending:
            self.check_scope(pending, owners)

    def check_scope(self, scope: _PendingScope, owners: dict[str, list[str]]) -> None:
        states = scope.states
        noun = self.noun
        for built in states.values():
            for target, where in built.edges:
                if target in states:
                    continue
                # Where a reference is broken, assume the fix leads somewhere that ends, so
                # "can never end" is not piled on top of this error.
                built.terminal = True
                elsewhere = [s for s in owners.get(target, []) if s != scope.scope_id]
                if elsewhere:
                    self.error(
                        where,
                        f"'{target}' is a {noun} of another scope ({elsewhere[0]}); "
                        f"only {noun}s of the same list can be named here",
                    )
                else:
                    self.error(
                        where, f"there is no {noun} '{target}' in this scope{_hint(target, states)}"
                    )
        start = scope.start
        if start is None or not states:
            return
        if start not in states:
            if scope.start_path is not None:
                elsewhere = [s for s in owners.get(start, []) if s != scope.scope_id]
                where = f" (it is in {elsewhere[0]})" if elsewhere else _hint(start, states)
                self.error(
                    scope.start_path, f"StartAt names no state of this scope: '{start}'{where}"
                )
            return
        seen = _reachable(start, states)
        for name, built in states.items():
            if name not in seen:
                self.error(built.path, f"{noun} '{name}' is unreachable from '{start}'")
        if not any(states[name].terminal for name in seen):
            ends = "Succeed, Fail or End: true" if noun == "state" else "end or the last step"
            self.error(
                scope.list_path, f"this scope can never end: no path from '{start}' reaches {ends}"
            )
            return
        # Reachable states from which no end can be reached loop forever: allowed, but odd.
        can_end = _can_end(states)
        for name in seen:
            if name not in can_end:
                self.warn(
                    states[name].path,
                    f"{noun} '{name}' can never reach the end of its "
                    "scope (it loops with no way out)",
                )


# --- helpers --------------------------------------------------------------------------------


def _reachable(start: str, states: dict[str, _Built]) -> set[str]:
    seen = {start}
    queue = deque([start])
    while queue:
        for target, _ in states[queue.popleft()].edges:
            if target in states and target not in seen:
                seen.add(target)
                queue.append(target)
    return seen


def _can_end(states: dict[str, _Built]) -> set[str]:
    incoming: dict[str, list[str]] = {}
    for name, built in states.items():
        for target, _ in built.edges:
            incoming.setdefault(target, []).append(name)
    done = {name for name, built in states.items() if built.terminal}
    queue = deque(done)
    while queue:
        for source in incoming.get(queue.popleft(), []):
            if source not in done:
                done.add(source)
                queue.append(source)
    return done


def _sorted(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """Document order: diagnostics without a line (whole-document ones) first."""
    return sorted(diagnostics, key=lambda d: -1 if d.line is None else d.line)


def _expression_message(exc: ExpressionError) -> str:
    """``"unknown function 'nosuch' at offset 0 in expression 'nosuch($Input)'"``."""
    return str(exc)


def _resolve_subpath(base: _Path, value: Any, text: str) -> tuple:
    """The key path of ``text`` (a path as printed, below ``base``) inside ``value``, as far
    as it can be followed; used only to find a line number."""
    keys = base.keys
    if not text.startswith(base.text):
        return keys
    rest = text[len(base.text) :]
    node = value
    while rest:
        if rest[0] == "[" and isinstance(node, list):
            match = re.match(r"\[(\d+)\]", rest)
            if not match or int(match.group(1)) >= len(node):
                break
            index = int(match.group(1))
            keys, node, rest = (*keys, index), node[index], rest[match.end() :]
        elif rest[0] == "." and isinstance(node, dict):
            best = None
            for key in node:
                tail = rest[1 + len(key) :]
                fits = rest[1:].startswith(key) and (not tail or tail[0] in ".[")
                if fits and (best is None or len(key) > len(best)):
                    best = key
            if best is None:
                break
            keys, node, rest = (*keys, best), node[best], rest[1 + len(best) :]
        else:
            break
    return keys
