"""The toolkit both dialect compilers share: paths, JSON type names, typed field access that
records a diagnostic instead of raising, compiled expressions/templates/mappings, and the
per-scope graph checks (references, ``StartAt``, reachability, a way to end).

``Compiler`` is the base class; ``cloudflow.CloudFlowCompiler`` and ``legacy.LegacyCompiler``
add one dialect each through ``build``.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections import deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from itertools import islice
from typing import Any

from ..expressions import ExpressionError, compile_budget, compile_expression
from ..graph import MAX_DUE, MIN_DUE, DefinitionError, Diagnostic, FlowGraph, Scope, State
from ..templates import TemplateError, compile_mappings, compile_template
from ..yamlsafe import LineMap

MAX_RETRY_INTERVAL = 86_400
MAX_RETRY_ATTEMPTS = 100
MAX_BACKOFF_RATE = 100  # with MaxAttempts ≤ 100 the delay stays a finite float
# A literal Wait longer than the whole span a flow can wait in (1970 to 9998) can never end.
MAX_WAIT_SECONDS = int((MAX_DUE - MIN_DUE).total_seconds())
MAX_MAP_CONCURRENCY = 10_000

# Bounds on the work of reporting, so that a definition with thousands of mistakes is refused
# as fast as one with a few: at most MAX_DIAGNOSTICS errors (and as many warnings) are listed,
# the rest counted; at most MAX_HINTS "did you mean" searches are made, each among at most
# MAX_HINT_CANDIDATES names (difflib's cost grows with both).
MAX_DIAGNOSTICS = 100
MAX_HINTS = 20
MAX_HINT_CANDIDATES = 1000
# Parsing expressions is the costliest part of validating a definition (some microseconds a
# character): a definition may hold this much expression text in all. (Real flows hold about
# one character of expressions in twelve of their text: this allows ~800 KB of such a flow.)
MAX_EXPRESSION_TEXT = 64 * 1024


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

# Messages name JSON types (string, number, boolean, null, array, object), whichever
# language (YAML or JSON) the definition was written in.
_KINDS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}
_ARTICLE = {"integer": "an integer", "object": "an object", "array": "an array"}


def _a(kind: str) -> str:
    return _ARTICLE.get(kind, f"a {kind}")


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "a value that is not JSON"


def _hint(word: str, choices: Iterable[str]) -> str:
    """ "; did you mean 'X'?" for the closest of (at most MAX_HINT_CANDIDATES of) ``choices``."""
    candidates = list(islice(choices, MAX_HINT_CANDIDATES))
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    if not close:  # case slips ("next" for "Next") are worth a hint even when short
        lowered = word.lower()
        close = [c for c in candidates if c.lower() == lowered][:1]
    return f"; did you mean '{close[0]}'?" if close else ""


def _shown(value: Any) -> str:
    """A value quoted in a message: a string as ``'text'``, anything else as JSON, shortened
    when long (a message must not echo a megabyte back)."""
    if isinstance(value, str):
        return repr(value) if len(value) <= 80 else f"{value[:80]!r}…"
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = _type_name(value)
    return text if len(text) <= 80 else f"{text[:80]}…"


def _number_text(value: float) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if abs(value) < 10**21:
        return str(value)
    if value.bit_length() <= 10_000:
        return f"a {len(str(abs(value)))}-digit number"
    # str() of an integer of thousands of digits raises ValueError (Python's int-string limit)
    return f"a number of about {int(value.bit_length() * 0.30103)} digits"


# --- ARNs -----------------------------------------------------------------------------------

_FC_FUNCTIONS_ARN = re.compile(r"acs:fc:[^:]*:[^:]*:functions/(?P<fn>[^/\s]+)(?:/[^/\s]+)?")
_FC_SERVICES_ARN = re.compile(r"acs:fc:[^:]*:[^:]*:services/[^/\s]+/functions/(?P<fn>[^/\s]+)")
_MNS_QUEUE_ARN = re.compile(r"acs:mns:[^:]*:[^:]*:/queues/(?P<q>[^/\s]+)/messages")


def _fc_function(arn: str) -> str | None:
    """The local function an FC ARN names (``…:functions/{name}[/{qualifier}]`` or
    ``…:services/{service}/functions/{name}``), or None when ``arn`` is not one."""
    match = _FC_FUNCTIONS_ARN.fullmatch(arn) or _FC_SERVICES_ARN.fullmatch(arn)
    return match.group("fn") if match else None


# --- field sets -----------------------------------------------------------------------------


def _fields(*groups: str) -> set[str]:
    """``_fields("Name Type", "Next End")`` → ``{"Name", "Type", "Next", "End"}``."""
    return {name for group in groups for name in group.split()}


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


class Compiler:
    noun = "state"  # what the dialect calls a state, for messages

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
        self.hints_left = MAX_HINTS
        self.unlisted = {"error": 0, "warning": 0}  # diagnostics past MAX_DIAGNOSTICS

    # ---- diagnostics

    def _diag(self, path: _Path, message: str, severity: str) -> Diagnostic:
        return Diagnostic(path.text, message, self.lines.nearest(path.keys), severity)

    def error(self, path: _Path, message: str) -> None:
        if len(self.errors) < MAX_DIAGNOSTICS:
            self.errors.append(self._diag(path, message, "error"))
        else:
            self.unlisted["error"] += 1

    def warn(self, path: _Path, message: str) -> None:
        if len(self.warnings) < MAX_DIAGNOSTICS:
            self.warnings.append(self._diag(path, message, "warning"))
        else:
            self.unlisted["warning"] += 1

    def error_at_text(self, text: str, message: str, base: _Path, value: Any) -> None:
        """A diagnostic reported by templates/expressions under a textual path below ``base``."""
        if len(self.errors) >= MAX_DIAGNOSTICS:
            self.unlisted["error"] += 1
            return
        keys = _resolve_subpath(base, value, text)
        self.errors.append(Diagnostic(text, message, self.lines.nearest(keys)))

    def hint(self, word: str, choices: Iterable[str]) -> str:
        """``_hint``, for the first MAX_HINTS words of a definition only."""
        if self.hints_left <= 0:
            return ""
        self.hints_left -= 1
        return _hint(word, choices)

    def listed(self, diagnostics: list[Diagnostic], severity: str) -> list[Diagnostic]:
        """``diagnostics`` in document order, plus a note of how many were not listed."""
        out = _sorted(diagnostics)
        more = self.unlisted[severity]
        if more:
            noun = "problem" if severity == "error" else "warning"
            message = f"and {more} more {noun}{'s' * (more > 1)} not listed"
            out.append(Diagnostic("", message, None, severity))
        return out

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

    def in_range(
        self,
        value: int | float,
        path: _Path,
        what: str,
        *,
        minimum: float = 0,
        maximum: float | None = None,
        exclusive_minimum: bool = False,
    ) -> bool:
        """Whether the number ``value`` is finite and within the bounds; else a diagnostic.
        Compares before any conversion, so an integer of hundreds of digits is just too large
        (``float()`` of it would raise OverflowError)."""
        if isinstance(value, float) and not math.isfinite(value):
            self.error(path, f"{what} must be a finite number, got {_number_text(value)}")
            return False
        if value < minimum or (exclusive_minimum and value == minimum):
            relation = "greater than" if exclusive_minimum else "at least"
            bound = _number_text(minimum)
            self.error(path, f"{what} must be {relation} {bound}, got {_number_text(value)}")
            return False
        if maximum is not None and value > maximum:
            self.error(
                path, f"{what} must be at most {_number_text(maximum)}, got {_number_text(value)}"
            )
            return False
        return True

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
        bounds = {"minimum": minimum, "maximum": maximum, "exclusive_minimum": exclusive_minimum}
        return value if self.in_range(value, path / key, key, **bounds) else default

    def strings(self, obj: dict, key: str, path: _Path, *, required: bool = True) -> tuple:
        """A non-empty list of strings (``Errors``/``errors``)."""
        value = self.get(obj, key, path, "array", required=required)
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
                message = f"unknown field '{key}'{self.hint(key, allowed)}"
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
        items = self.get(obj, key, path, "array")
        if items is None:
            return None
        try:
            return compile_mappings(items, path=(path / key).text)
        except TemplateError as exc:
            for where, message in exc.errors:
                self.error_at_text(where, message, path / key, items)
            return None

    def timestamp(self, value: str, path: _Path, what: str) -> str | None:
        """An RFC 3339 date-time with a zone, from 1970 to ``graph.MAX_DUE`` (the latest
        moment a flow can wait for; later ones would overflow once converted to UTC)."""
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "Zz" else text)
        except (ValueError, OverflowError):
            parsed = None
        if parsed is None or "T" not in text.upper() and " " not in text:
            self.error(
                path,
                f"{what} must be an RFC 3339 date-time such as 2024-05-01T12:00:00Z, "
                f"got {_shown(value)}",
            )
            return None
        if parsed.tzinfo is None:
            self.error(path, f"{what} must include a time zone (Z or +hh:mm), got {_shown(value)}")
            return None
        # Aware datetimes compare by their UTC instant without converting (which could overflow).
        if not MIN_DUE <= parsed <= MAX_DUE:
            self.error(
                path,
                f"{what} must be between {MIN_DUE:%Y-%m-%dT%H:%M:%SZ} and "
                f"{MAX_DUE:%Y-%m-%dT%H:%M:%SZ}, got {_shown(value)}",
            )
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

    def _finish(self, kwargs: dict, built: _Built, **extra: Any) -> _Built:
        built.state = State(**kwargs, **extra)
        return built

    # ---- entry point

    def run(self, data: Any) -> FlowGraph:
        graph = None
        if not isinstance(data, dict):
            self.error(
                ROOT, f"the definition must be an object at the top level, got {_type_name(data)}"
            )
        elif self.too_many_states(data):
            pass  # nothing else is looked at: the work would grow with what is refused
        else:
            with compile_budget(MAX_EXPRESSION_TEXT):
                graph = self.build(data)
        if graph is not None:
            self.check_graphs()
        if self.errors or graph is None:
            raise DefinitionError(self.listed(self.errors, "error"))
        return replace(graph, warnings=tuple(self.listed(self.warnings, "warning")))

    def too_many_states(self, doc: dict) -> bool:
        count = self.count_states(doc)
        if count <= self.max_states:
            return False
        self.error(
            ROOT,
            f"the definition has {count} {self.noun}s; at most {self.max_states} are allowed",
        )
        return True

    def count_states(self, doc: dict) -> int:
        """How many states ``doc`` holds in all its scopes: one quick walk, before anything is
        compiled. (Here, neither dialect: none.)"""
        return 0

    def build(self, doc: dict) -> FlowGraph | None:
        """Compile ``doc`` as the subclass's dialect. Here: it is neither dialect, so say why."""
        self.unknown_dialect(doc)
        return None

    def unknown_dialect(self, data: dict) -> None:
        expected = (
            "expected 'Type: StateMachine' (CloudFlow FDL) or 'version: v1' with "
            "'type: flow' (legacy FnF FDL)"
        )
        if "Type" in data:
            self.error(ROOT / "Type", f"Type must be 'StateMachine', got {_shown(data['Type'])}")
        elif "type" in data or "version" in data or "steps" in data:
            if data.get("version") != "v1":
                got = _shown(data["version"]) if "version" in data else "nothing"
                self.error(ROOT / "version", f"a legacy flow needs 'version: v1', got {got}")
            if data.get("type") != "flow":
                got = _shown(data["type"]) if "type" in data else "nothing"
                self.error(ROOT / "type", f"a legacy flow needs 'type: flow', got {got}")
        else:
            self.error(ROOT, f"not a flow definition: {expected}")

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
                elsewhere = _other_scope(owners, target, scope.scope_id)
                if elsewhere:
                    self.error(
                        where,
                        f"'{target}' is a {noun} of another scope ({elsewhere}); "
                        f"only {noun}s of the same list can be named here",
                    )
                else:
                    self.error(
                        where,
                        f"there is no {noun} '{target}' in this scope{self.hint(target, states)}",
                    )
        start = scope.start
        if start is None or not states:
            return
        if start not in states:
            if scope.start_path is not None:
                elsewhere = _other_scope(owners, start, scope.scope_id)
                where = f" (it is in {elsewhere})" if elsewhere else self.hint(start, states)
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


def _other_scope(owners: dict[str, list[str]], name: str, scope_id: str) -> str | None:
    """A scope other than ``scope_id`` that has a state ``name`` (the first such, in O(1):
    ``scope_id`` itself is at most one of the owners)."""
    for owner in owners.get(name, ())[:2]:
        if owner != scope_id:
            return owner
    return None


def _sorted(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """Document order: diagnostics without a line (whole-document ones) first."""
    return sorted(diagnostics, key=lambda d: -1 if d.line is None else d.line)


def _expression_message(exc: ExpressionError) -> str:
    """``"unknown function 'nosuch' at offset 0 in expression 'nosuch($Input)'"``."""
    return str(exc)


def _resolve_subpath(base: _Path, value: Any, text: str) -> tuple:
    """The key path of ``text`` (a path as printed, below ``base``) inside ``value``, as far
    as it can be followed; used only to find a line number.

    Keys may hold dots themselves (``job_id.$``), so at each object the key is the shortest
    prefix of the rest, cut at a ``.`` or ``[``, that the object has. Only a few cuts per level
    are tried and only short paths are followed, so this stays cheap however the keys look
    (a miss just gives the line of an ancestor).
    """
    keys = base.keys
    if not text.startswith(base.text) or len(text) - len(base.text) > _MAX_RESOLVED_PATH:
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
            body = rest[1:]
            cuts = [i for i, ch in enumerate(body) if ch in ".["][:_MAX_CUTS]
            found = next((body[:i] for i in (*cuts, len(body)) if body[:i] in node), None)
            if found is None:
                break
            keys, node, rest = (*keys, found), node[found], body[len(found) :]
        else:
            break
    return keys


_MAX_RESOLVED_PATH = 1024
_MAX_CUTS = 8
