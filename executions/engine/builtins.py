"""Built-in functions of the flowsite expression language, and the JSON value helpers they share.

Contract
--------
* Every built-in is a plain function ``fn(args: list, ctx: EvalContext) -> Any``. ``args`` are
  already-evaluated JSON values (``dict``, ``list``, ``str``, ``int``, ``float``, ``bool``,
  ``None``); they may be shared with the caller's data and **must never be mutated**. A built-in
  returns a JSON value; it may share sub-values of its arguments (the evaluator deep-copies the
  final result of an expression, so callers never see shared data).
* Argument counts are checked when an expression is compiled (``Builtin.min_args`` /
  ``max_args``); argument *types* are checked at run time, and a bad one raises
  :class:`BuiltinError`, which the evaluator turns into ``EvaluationError`` quoting the
  expression (the interpreter reports it as ``FnF.RuntimeError``).
* Time and randomness come from ``ctx.now`` / ``ctx.rng`` only, so evaluation is replayable.
* Cost is bounded: anything proportional to the size of its input or output charges
  ``ctx`` (``charge``, ``check_string_length``, ``check_array_length``) so a crafted expression
  cannot spin or allocate without limit. The charges land on ``ctx.budget`` (an
  :class:`EvalBudget`), which the interpreter shares between all the expressions of one state
  entry; they must be deterministic (never depend on a cache or the clock), so that a replayed
  transition runs out of budget at the same point.
* A built-in may also check its literal arguments when an expression is compiled
  (``Builtin.check``), so that a mistake already visible there is a validation error.
* Booleans are never numbers (``isinstance(True, int)`` is a Python accident we guard against
  everywhere with :func:`is_number` / :func:`is_integer`).
* ``regexMatchString`` does not use Python's backtracking ``re``: it runs a small linear-time
  RE2-style matcher (see the section at the end of this module), as Go's regexp does.

Files to touch to add a built-in
--------------------------------
1. ``executions/engine/builtins.py``: write ``_fn_<name>(args, ctx)`` (check types with the
   ``_want_*`` helpers, charge the budget for anything not O(1)) and register it in the
   "Registry" section with ``_register("<name>", min_args, max_args, _fn_<name>, "<signature>")``.
2. ``tests/engine/test_expressions.py``: a happy path in ``BUILTIN_CASES`` and a wrong-type
   error in ``BUILTIN_TYPE_ERRORS`` (a test fails until both exist); the compile-time arity
   tests are generated from the registry.
3. The user documentation of the expression language (the built-in table).
Nothing else: the parser looks names up in :data:`BUILTINS`, so the function becomes callable,
and unknown-name / arity validation at definition upload picks it up automatically.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import functools
import hashlib
import json
import math
import random
import sys
import uuid as _uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "BUILTINS",
    "Builtin",
    "BuiltinError",
    "EvalBudget",
    "EvalContext",
    "JsonValueError",
    "check_json_value",
    "copy_json",
    "dumps_json",
    "is_integer",
    "is_number",
    "json_equal",
    "lookup",
    "type_name",
]

# Values nested deeper than this are refused: the helpers below recurse, and this keeps them
# (plus the evaluator's own bounded recursion) far below Python's default recursion limit.
MAX_VALUE_DEPTH = 200

# Integers produced by arithmetic must fit in a signed 64-bit integer, as in Go (which the
# managed service is written in); this also stops repeated multiplication from building huge ints.
MIN_INT = -(2**63)
MAX_INT = 2**63 - 1

# regexMatchString limits. The matcher is linear in the input, but Python-speed linear, so its
# work counts _REGEX_UNIT budget units per thread step (about the CPU of other units).
_REGEX_UNIT = 2
_REGEX_CHARGE_BATCH = 4096  # units a search counts locally before charging the budget
MAX_REGEX_PATTERN_LENGTH = 1000
MAX_REGEX_INPUT_LENGTH = 100_000
MAX_REGEX_PROGRAM_SIZE = 10_000
MAX_REGEX_REPEAT = 1000  # same cap as RE2 / Go for {n,m}
MAX_REGEX_NESTING = 50


class BuiltinError(Exception):
    """A built-in rejected its arguments, or the evaluation budget ran out.

    The evaluator re-raises it as ``EvaluationError`` with the expression text attached;
    ``offset`` is filled in by the innermost syntax node that knows where it is.
    """

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message, offset)
        self.message = message
        self.offset = offset

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.offset))


# --------------------------------------------------------------------------------------------
# JSON value helpers
# --------------------------------------------------------------------------------------------


def is_number(value: Any) -> bool:
    """True for JSON numbers; False for booleans (which Python treats as ints)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def type_name(value: Any) -> str:
    """The JSON type name used in error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return f"non-JSON value ({type(value).__name__})"


def check_int(value: int) -> int:
    if not MIN_INT <= value <= MAX_INT:
        raise BuiltinError("integer overflow (results must fit in 64 bits)")
    return value


def number_result(value: int | float) -> int | float:
    """Validate the result of arithmetic: ints in 64-bit range, floats finite."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BuiltinError("numeric overflow (result is not a finite number)")
        return value
    return check_int(value)


class EvalBudget:
    """A work allowance that several evaluations can share.

    Two counters: ``steps`` (syntax nodes visited, including the per-element walks of a legacy
    ``[*]`` wildcard) and ``work`` (data units: one per array element or object member built,
    copied, compared or serialised, one per 64 characters of string produced or scanned, and
    more for the costlier units such as regex matching). Going past either raises
    :class:`BuiltinError` ("evaluation budget exceeded"), which surfaces as ``EvaluationError``.

    The interpreter hands one budget to every expression, template and mapping it evaluates
    for one state entry in one engine step, so the CPU a state entry can spend does not grow
    with the number of expressions its definition holds. Charges are deterministic (they never
    depend on caches or timing), so a replayed transition runs out of budget at the same point.
    """

    __slots__ = ("max_steps", "max_work", "steps", "work")

    def __init__(self, *, max_steps: int = 100_000, max_work: int = 1_000_000) -> None:
        self.max_steps = max_steps
        self.max_work = max_work
        self.steps = 0
        self.work = 0

    def step(self) -> None:
        self.steps += 1
        if self.steps > self.max_steps:
            raise BuiltinError(
                f"evaluation budget exceeded (more than {self.max_steps} evaluation steps)"
            )

    def charge(self, units: int) -> None:
        self.work += units
        if self.work > self.max_work:
            raise BuiltinError(
                f"evaluation budget exceeded (more than {self.max_work} units of work)"
            )

    def __repr__(self) -> str:
        return f"EvalBudget(steps={self.steps}/{self.max_steps}, work={self.work}/{self.max_work})"


class EvalContext:
    """Per-evaluation state handed to built-ins: the clock, the RNG, size caps, and the
    :class:`EvalBudget` the evaluation charges (a fresh one of ``max_steps``/``max_work`` when
    none is given). Single produced strings and arrays are capped as well.
    """

    __slots__ = ("now", "rng", "budget", "max_string", "max_array")

    def __init__(
        self,
        *,
        now: datetime,
        rng: random.Random,
        budget: EvalBudget | None = None,
        max_steps: int = 100_000,
        max_work: int = 1_000_000,
        max_string: int = 1 << 20,
        max_array: int = 100_000,
    ) -> None:
        self.now = now
        self.rng = rng
        self.budget = (
            budget if budget is not None else EvalBudget(max_steps=max_steps, max_work=max_work)
        )
        self.max_string = max_string
        self.max_array = max_array

    def step(self) -> None:
        self.budget.step()

    def charge(self, units: int) -> None:
        self.budget.charge(units)

    def check_string_length(self, length: int) -> None:
        """Call *before* building a string of ``length`` characters."""
        if length > self.max_string:
            raise BuiltinError(
                f"string too long ({length} characters; the limit is {self.max_string})"
            )
        self.charge(length // 64 + 1)

    def check_array_length(self, length: int) -> None:
        """Call *before* building an array (or object) of ``length`` elements."""
        if length > self.max_array:
            raise BuiltinError(f"array too long ({length} elements; the limit is {self.max_array})")
        self.charge(length + 1)


# What visiting one array or object costs on top of one unit per member: creating or walking a
# container is a Python-level call or two, several times a member's cost.
_CONTAINER = 4

# Exact types whose values need no copying, checking or recursion. Container elements of
# these types take a fast path in the helpers below (most JSON data is such scalars), and the
# container is charged once for all its elements.
_PLAIN_SCALARS = frozenset({str, int, bool, type(None)})


def _too_deep() -> BuiltinError:
    return BuiltinError(f"value nested too deeply (more than {MAX_VALUE_DEPTH} levels)")


def copy_json(value: Any, ctx: EvalContext | None = None, _depth: int = 0) -> Any:
    """A deep copy of a JSON value that shares nothing with ``value``.

    Also validates: tuples become lists; object keys must be strings; floats must be finite;
    anything that is not JSON raises :class:`BuiltinError`. With ``ctx`` it charges one unit
    per element and per 64 characters of string, which is what stops a result built from many
    references to one large value (``toArray($Input.big, $Input.big, …)``) from being expanded
    (or later serialised) without limit.
    """
    kind = type(value)
    if kind is str:
        if ctx is not None and len(value) >= 64:
            ctx.charge(len(value) >> 6)
        return value
    if kind in _PLAIN_SCALARS:
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BuiltinError("not a JSON value: non-finite number")
        return value
    if isinstance(value, (str, int)):  # subclasses, e.g. an IntEnum or a bool
        return value
    if _depth >= MAX_VALUE_DEPTH:
        raise _too_deep()
    if isinstance(value, (list, tuple)):
        if ctx is not None:
            ctx.charge(len(value) + _CONTAINER)
        items: list[Any] = []
        text = 0  # characters of the strings copied, charged at the end
        for item in value:
            kind = type(item)
            if kind is str:
                text += len(item)
                items.append(item)
            elif kind in _PLAIN_SCALARS:
                items.append(item)
            else:
                items.append(copy_json(item, ctx, _depth + 1))
        if ctx is not None and text >= 64:
            ctx.charge(text >> 6)
        return items
    if isinstance(value, dict):
        if ctx is not None:
            ctx.charge(len(value) + _CONTAINER)
        out: dict[str, Any] = {}
        text = 0
        for key, item in value.items():
            if not isinstance(key, str):
                raise BuiltinError("not a JSON value: an object key is not a string")
            kind = type(item)
            if kind is str:
                text += len(item)
                out[key] = item
            elif kind in _PLAIN_SCALARS:
                out[key] = item
            else:
                out[key] = copy_json(item, ctx, _depth + 1)
        if ctx is not None and text >= 64:
            ctx.charge(text >> 6)
        return out
    raise BuiltinError(f"not a JSON value: {type_name(value)}")


def json_equal(a: Any, b: Any, ctx: EvalContext | None = None, _depth: int = 0) -> bool:
    """Deep JSON equality: ``1 == 1.0``, ``true != 1``, ``null == null``, key order ignored."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if is_number(a) and is_number(b):
        return a == b
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if _depth >= MAX_VALUE_DEPTH:
        raise _too_deep()
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return False
        if ctx is not None:
            ctx.charge(len(a) + _CONTAINER)
        for x, y in zip(a, b, strict=True):
            kind = type(x)
            if kind is type(y) and kind in _PLAIN_SCALARS:
                if x != y:  # same exact type: Python equality is JSON equality
                    return False
            elif not json_equal(x, y, ctx, _depth + 1):
                return False
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        if len(a) != len(b):
            return False
        if ctx is not None:
            ctx.charge(len(a) + _CONTAINER)
        for key, x in a.items():
            if key not in b:
                return False
            y = b[key]
            kind = type(x)
            if kind is type(y) and kind in _PLAIN_SCALARS:
                if x != y:
                    return False
            elif not json_equal(x, y, ctx, _depth + 1):
                return False
        return True
    return False


def _json_key(value: Any, ctx: EvalContext, _depth: int = 0) -> Any:
    """A hashable key such that ``_json_key(a) == _json_key(b)`` iff ``json_equal(a, b)``.

    Numbers share one tag, so ``1`` and ``1.0`` compare (and hash) equal, as Python already
    guarantees for int/float; booleans get their own tag so ``true`` is not ``1``.
    """
    if value is None:
        return ("z",)
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, (int, float)):
        return ("n", value)
    if isinstance(value, str):
        return ("s", value)
    if _depth >= MAX_VALUE_DEPTH:
        raise _too_deep()
    if isinstance(value, (list, tuple)):
        ctx.charge(3 * len(value) + 4 * _CONTAINER)  # keys cost more than a copy
        keys = []
        for item in value:
            kind = type(item)
            if kind is str:
                keys.append(("s", item))
            elif kind is int or kind is float:
                keys.append(("n", item))
            else:
                keys.append(_json_key(item, ctx, _depth + 1))
        return ("a", tuple(keys))
    if isinstance(value, dict):
        ctx.charge(3 * len(value) + 4 * _CONTAINER)
        return ("o", frozenset((k, _json_key(v, ctx, _depth + 1)) for k, v in value.items()))
    raise BuiltinError(f"not a JSON value: {type_name(value)}")


def _measure(value: Any, ctx: EvalContext, _depth: int = 0) -> int:
    """Roughly the length of ``value``'s compact JSON text, charging ``ctx`` per element.

    Run before handing a value to ``json.dumps``: the C encoder cannot be interrupted, so a
    value that would expand to millions of nodes must be refused first.
    """
    if isinstance(value, str):
        ctx.charge(len(value) // 64)
        return len(value) + 2
    if _depth >= MAX_VALUE_DEPTH:
        raise _too_deep()
    if isinstance(value, (list, tuple)):
        ctx.charge(len(value) + _CONTAINER)
        size = 2
        for item in value:
            kind = type(item)
            if kind is int or kind is bool or item is None:
                size += 8
            else:
                size += _measure(item, ctx, _depth + 1) + 1
        return size
    if isinstance(value, dict):
        ctx.charge(len(value) + _CONTAINER)
        return 2 + sum(len(k) + 4 + _measure(v, ctx, _depth + 1) for k, v in value.items())
    return 8


# The largest integer a JSON value may hold: one a double can still represent (about 1.8e308).
# Past it ``int + float`` raises OverflowError and most JSON tools lose the number.
MAX_JSON_INTEGER = int(sys.float_info.max)


class JsonValueError(ValueError):
    """A value is not acceptable JSON data. ``path`` lists the keys and indexes leading to the
    offending part (outermost first); ``kind`` is what is wrong: ``"type"``, ``"text"`` (a
    string that is not valid Unicode), ``"number"``, ``"depth"``, ``"string"`` (too long),
    ``"array"`` (too many members) or ``"nodes"`` (too many values in all)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.path: list[str | int] = []

    def where(self, root: str = "") -> str:
        """The path as text: ``root.items[3]["a b"]``."""
        out = [root]
        for key in self.path:
            if isinstance(key, int):
                out.append(f"[{key}]")
            elif key.isidentifier():
                out.append(f".{key}" if out != [""] else key)
            else:
                out.append(f"[{_quoted(key)}]")
        return "".join(out)


def _quoted(key: str) -> str:
    """``key`` as a JSON string, escaped to ASCII if it is not valid Unicode (a message holding
    a lone surrogate could not be sent)."""
    shown = json.dumps(key, ensure_ascii=False)
    if not shown.isascii():
        try:
            shown.encode("utf-8")
        except UnicodeEncodeError:
            shown = json.dumps(key)
    return shown


def check_json_value(
    value: Any,
    *,
    max_depth: int = MAX_VALUE_DEPTH,
    max_nodes: int | None = None,
    max_string: int | None = None,
    max_array: int | None = None,
) -> int:
    """Check in one walk that ``value`` is plain JSON data flowsite can store and evaluate.

    Refused (as :class:`JsonValueError`): anything but ``dict`` (string keys), ``list``,
    ``str``, ``int``, ``float``, ``bool`` and ``None``; strings that are not valid Unicode
    (lone surrogates such as ``"\\ud800"``, which cannot be encoded as UTF-8); NaN and
    infinities; integers beyond :data:`MAX_JSON_INTEGER`; nesting deeper than ``max_depth``;
    and, when given, more than ``max_nodes`` values in all, strings longer than
    ``max_string`` characters and arrays or objects of more than ``max_array`` members.
    Returns the number of values. The walk stops at the first problem, so its cost is
    bounded by ``max_nodes`` and ``max_depth`` whatever the value.
    """
    counter = [0]
    _check_json(value, 0, counter, max_depth, max_nodes, max_string, max_array)
    return counter[0] + 1


def _check_json_text(text: str, max_string: int | None) -> None:
    if max_string is not None and len(text) > max_string:
        raise JsonValueError(
            f"string too long ({len(text)} characters; the limit is {max_string})", "string"
        )
    if "\x00" in text:
        # Valid JSON, but PostgreSQL cannot store it (text and jsonb refuse NUL): refused on
        # every backend alike, so a flow does not work on SQLite and break on PostgreSQL.
        raise JsonValueError(
            "a string holds a NUL character (\\u0000), which flowsite cannot store", "text"
        )
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise JsonValueError(
                "a string is not valid Unicode (it holds a lone surrogate such as \\ud800)",
                "text",
            ) from None


def _check_json_scalar(value: Any, max_string: int | None) -> bool:
    """Check a scalar; False when ``value`` is a container (or not JSON at all)."""
    kind = type(value)
    if kind is str:
        _check_json_text(value, max_string)
    elif kind is int:
        if not -MAX_JSON_INTEGER <= value <= MAX_JSON_INTEGER:
            raise JsonValueError("number out of range (larger than a double can hold)", "number")
    elif kind is float:
        if not math.isfinite(value):
            raise JsonValueError("not a JSON value: non-finite number", "number")
    elif kind is not bool and value is not None:
        return False
    return True


def _check_json(
    value: Any,
    depth: int,
    counter: list[int],
    max_depth: int,
    max_nodes: int | None,
    max_string: int | None,
    max_array: int | None,
) -> None:
    if _check_json_scalar(value, max_string):
        return
    is_object = isinstance(value, dict)
    if is_object:
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        raise JsonValueError(f"not a JSON value: {type(value).__name__}", "type")
    if depth >= max_depth:
        raise JsonValueError(f"value nested too deeply (more than {max_depth} levels)", "depth")
    if max_array is not None and len(value) > max_array:
        raise JsonValueError(
            f"{type_name(value)} too long ({len(value)} members; the limit is {max_array})",
            "array",
        )
    counter[0] += len(value)
    if max_nodes is not None and counter[0] >= max_nodes:
        raise JsonValueError(f"more than {max_nodes} values", "nodes")
    key: Any = None
    try:
        for key, item in items:
            if is_object:
                if type(key) is not str:
                    raise JsonValueError("object keys must be strings", "type")
                _check_json_text(key, max_string)
            if not _check_json_scalar(item, max_string):
                _check_json(item, depth + 1, counter, max_depth, max_nodes, max_string, max_array)
    except JsonValueError as exc:
        exc.path.insert(0, key)
        raise


def dumps_json(value: Any, ctx: EvalContext) -> str:
    """Compact JSON text (``{"a":1}``), non-ASCII kept as is, length-checked."""
    estimate = _measure(value, ctx)
    if estimate > ctx.max_string:
        ctx.check_string_length(estimate)  # raises with the standard message
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        # TypeError: a non-JSON object; ValueError: NaN/Infinity or an int over 4300 digits.
        raise BuiltinError(f"cannot serialise value as JSON: {exc}") from None
    ctx.check_string_length(len(text))
    return text


def lookup(container: Any, key: Any) -> Any:
    """``container[key]`` with the expression language's forgiving semantics.

    A missing key, an out-of-range or negative index, indexing ``null`` or a scalar, or using
    a string on an array / an integer on an object all yield ``None``. A key that is neither a
    string nor an integer (integral floats such as ``1.0`` count as integers) is a type error,
    because it can only come from a mistake in the expression, never from missing data.
    """
    if isinstance(key, bool) or not isinstance(key, (str, int, float)):
        raise BuiltinError(f"an index must be a string or an integer, got {type_name(key)}")
    if isinstance(key, float):
        if not key.is_integer():
            raise BuiltinError(f"an array index must be an integer, got {key!r}")
        key = int(key)
    if isinstance(container, dict):
        return container.get(key) if isinstance(key, str) else None
    if isinstance(container, (list, tuple)) and isinstance(key, int):
        return container[key] if 0 <= key < len(container) else None
    return None


# --------------------------------------------------------------------------------------------
# Argument checking helpers
# --------------------------------------------------------------------------------------------


def _want_string(args: list[Any], i: int, what: str = "") -> str:
    value = args[i]
    if not isinstance(value, str):
        raise BuiltinError(f"argument {i + 1}{what} must be a string, got {type_name(value)}")
    return value


def _want_array(args: list[Any], i: int) -> list[Any]:
    value = args[i]
    if not isinstance(value, (list, tuple)):
        raise BuiltinError(f"argument {i + 1} must be an array, got {type_name(value)}")
    return list(value) if isinstance(value, tuple) else value


def _want_object(args: list[Any], i: int) -> dict[str, Any]:
    value = args[i]
    if not isinstance(value, dict):
        raise BuiltinError(f"argument {i + 1} must be an object, got {type_name(value)}")
    return value


def _want_number(args: list[Any], i: int) -> int | float:
    value = args[i]
    if not is_number(value):
        raise BuiltinError(f"argument {i + 1} must be a number, got {type_name(value)}")
    return value


def _want_integer(args: list[Any], i: int) -> int:
    value = args[i]
    if is_integer(value):
        return value
    if isinstance(value, float) and value.is_integer():
        # JSON does not distinguish 3 from 3.0 (and `/` may produce a float); accept both.
        return int(value)
    raise BuiltinError(f"argument {i + 1} must be an integer, got {_describe(value)}")


def _describe(value: Any) -> str:
    return repr(value) if isinstance(value, float) else type_name(value)


# --------------------------------------------------------------------------------------------
# The built-in functions
# --------------------------------------------------------------------------------------------


def _render_for_format(value: Any, ctx: EvalContext) -> str:
    return value if isinstance(value, str) else dumps_json(value, ctx)


def _format_mismatch(template: str, values: int) -> str | None:
    placeholders = template.count("{}")  # as many as split("{}") makes gaps
    if placeholders == values:
        return None
    return f"the template has {placeholders} '{{}}' placeholder(s) but {values} value(s) were given"


def _fn_format(args: list[Any], ctx: EvalContext) -> str:
    # `{}` is the only placeholder; there is no escaping, and a lone `{` or `}` is literal.
    template = _want_string(args, 0, " (the template)")
    values = args[1:]
    ctx.charge(len(template) // 64 + 1)
    mismatch = _format_mismatch(template, len(values))
    if mismatch is not None:
        raise BuiltinError(mismatch)
    pieces = template.split("{}")
    out = [pieces[0]]
    total = len(pieces[0])
    for value, piece in zip(values, pieces[1:], strict=True):
        text = _render_for_format(value, ctx)
        total += len(text) + len(piece)
        ctx.check_string_length(total)  # check as we go, before joining
        out.append(text)
        out.append(piece)
    return "".join(out)


def _fn_length(args: list[Any], ctx: EvalContext) -> int:
    value = args[0]
    if isinstance(value, (list, tuple, dict, str)):
        return len(value)
    raise BuiltinError(f"argument 1 must be an array, object or string, got {type_name(value)}")


def _fn_regex_match_string(args: list[Any], ctx: EvalContext) -> bool:
    # Argument order follows Go's regexp.MatchString(pattern, s): pattern first.
    pattern = _want_string(args, 0, " (the pattern)")
    text = _want_string(args, 1, " (the input)")
    if len(pattern) > MAX_REGEX_PATTERN_LENGTH:
        raise BuiltinError(
            f"pattern too long ({len(pattern)} characters; the limit is {MAX_REGEX_PATTERN_LENGTH})"
        )
    if len(text) > MAX_REGEX_INPUT_LENGTH:
        raise BuiltinError(
            f"input too long ({len(text)} characters; the limit is {MAX_REGEX_INPUT_LENGTH})"
        )
    # Compiling is charged on every call, cached or not: the charge must not depend on what
    # the process happened to compile before (replays would differ), and a state evaluating
    # many distinct patterns pays for each.
    ctx.charge(len(pattern) * _REGEX_UNIT)
    program = _regex_compile(pattern)
    ctx.charge(len(program.code) * _REGEX_UNIT)
    return _regex_search(program, text, ctx)


def _fn_split(args: list[Any], ctx: EvalContext) -> list[str]:
    text = _want_string(args, 0)
    sep = _want_string(args, 1, " (the separator)")
    ctx.charge(len(text) // 64 + 1)
    if sep == "":
        # As Go's strings.Split: an empty separator splits into single characters.
        ctx.check_array_length(len(text))
        return list(text)
    ctx.check_array_length(text.count(sep) + 1)
    return text.split(sep)


def _fn_get(args: list[Any], ctx: EvalContext) -> Any:
    return lookup(args[0], args[1])


def _fn_int_add(args: list[Any], ctx: EvalContext) -> int:
    a, b = args
    for i, value in enumerate((a, b)):
        if not is_integer(value):
            raise BuiltinError(f"argument {i + 1} must be an integer, got {_describe(value)}")
    return check_int(a + b)


def _fn_math_add(args: list[Any], ctx: EvalContext) -> int | float:
    a, b = _want_number(args, 0), _want_number(args, 1)
    try:
        return number_result(a + b)
    except OverflowError:  # an integer beyond float range meeting a float
        raise BuiltinError("numeric overflow") from None


def _fn_random_int(args: list[Any], ctx: EvalContext) -> int:
    low = _want_integer(args, 0)
    high = _want_integer(args, 1)
    if low >= high:
        raise BuiltinError(f"the range [{low}, {high}) is empty (min must be less than max)")
    check_int(low)
    check_int(high)
    return ctx.rng.randrange(low, high)


def _fn_array_contains(args: list[Any], ctx: EvalContext) -> bool:
    array = _want_array(args, 0)
    ctx.charge(len(array) + 1)
    return any(json_equal(item, args[1], ctx) for item in array)


def _fn_array_unique(args: list[Any], ctx: EvalContext) -> list[Any]:
    array = _want_array(args, 0)
    ctx.charge(4 * len(array))  # a key built and hashed per element
    seen: set[Any] = set()
    out = []
    for item in array:
        key = _json_key(item, ctx)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def _fn_to_array(args: list[Any], ctx: EvalContext) -> list[Any]:
    ctx.check_array_length(len(args))
    return list(args)


def _fn_array_get(args: list[Any], ctx: EvalContext) -> Any:
    array = _want_array(args, 0)
    index = _want_integer(args, 1)
    return array[index] if 0 <= index < len(array) else None


def _fn_array_length(args: list[Any], ctx: EvalContext) -> int:
    return len(_want_array(args, 0))


def _fn_array_range(args: list[Any], ctx: EvalContext) -> list[int]:
    # Like ASL's States.ArrayRange: the end is INCLUSIVE when the step lands on it.
    start = _want_integer(args, 0)
    end = _want_integer(args, 1)
    step = _want_integer(args, 2) if len(args) > 2 else 1
    if step == 0:
        raise BuiltinError("the step must not be 0")
    if step > 0:
        count = (end - start) // step + 1 if end >= start else 0
    else:
        count = (start - end) // -step + 1 if start >= end else 0
    ctx.check_array_length(count)  # refuse before building anything
    return [check_int(start + i * step) for i in range(count)]


def _fn_array_partition(args: list[Any], ctx: EvalContext) -> list[list[Any]]:
    array = _want_array(args, 0)
    size = _want_integer(args, 1)
    if size <= 0:
        raise BuiltinError(f"the chunk size must be a positive integer, got {size}")
    ctx.check_array_length(len(array))
    return [array[i : i + size] for i in range(0, len(array), size)]


def _fn_map_keys(args: list[Any], ctx: EvalContext) -> list[str]:
    mapping = _want_object(args, 0)
    ctx.check_array_length(len(mapping))
    return list(mapping.keys())


def _fn_map_values(args: list[Any], ctx: EvalContext) -> list[Any]:
    mapping = _want_object(args, 0)
    ctx.check_array_length(len(mapping))
    return list(mapping.values())


def _fn_from_base64(args: list[Any], ctx: EvalContext) -> str:
    text = _want_string(args, 0)
    ctx.charge(len(text) // 64 + 1)
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise BuiltinError("argument 1 is not valid base64") from None
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BuiltinError("the decoded bytes are not valid UTF-8 text") from None
    ctx.check_string_length(len(decoded))
    return decoded


def _fn_to_base64(args: list[Any], ctx: EvalContext) -> str:
    text = _want_string(args, 0)
    raw = _utf8(text)
    ctx.check_string_length((len(raw) + 2) // 3 * 4)
    return base64.b64encode(raw).decode("ascii")


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Only possible with lone surrogates, which JSON text can smuggle in via \ud800.
        raise BuiltinError("the string is not valid Unicode (lone surrogate)") from None


_HASHES: dict[str, str] = {
    "MD5": "md5",
    "SHA-1": "sha1",
    "SHA1": "sha1",
    "SHA-256": "sha256",
    "SHA256": "sha256",
    "SHA-512": "sha512",
    "SHA512": "sha512",
}


def _fn_hash(args: list[Any], ctx: EvalContext) -> str:
    value = args[0]
    algorithm = _want_string(args, 1, " (the algorithm)")
    name = _HASHES.get(algorithm.upper())
    if name is None:
        raise BuiltinError(
            f"unknown hash algorithm {algorithm!r} (use MD5, SHA-1, SHA-256 or SHA-512)"
        )
    text = value if isinstance(value, str) else dumps_json(value, ctx)
    ctx.charge(len(text) // 64 + 1)
    # usedforsecurity=False: MD5/SHA-1 here are checksums, and FIPS builds refuse them otherwise.
    return hashlib.new(name, _utf8(text), usedforsecurity=False).hexdigest()


def _fn_uuid(args: list[Any], ctx: EvalContext) -> str:
    # Built from the injected RNG (not os.urandom) so that replaying an execution is exact.
    return str(_uuid.UUID(int=ctx.rng.getrandbits(128), version=4))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _fn_string_to_json(args: list[Any], ctx: EvalContext) -> Any:
    text = _want_string(args, 0)
    ctx.charge(len(text) // 64 + 1)
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise BuiltinError("the JSON text is nested too deeply") from None
    except ValueError as exc:
        # JSONDecodeError is a ValueError; so is the int-digits limit and NaN/Infinity.
        raise BuiltinError(f"argument 1 is not valid JSON: {exc}") from None
    # The limits any built value has (array and string sizes, depth) hold for parsed ones too;
    # the walk stops once it has seen more values than the budget has units left.
    budget = ctx.budget
    remaining = max(0, budget.max_work - budget.work)
    try:
        nodes = check_json_value(
            value, max_nodes=remaining // 3 + 1, max_string=ctx.max_string, max_array=ctx.max_array
        )
    except JsonValueError as exc:
        if exc.kind == "nodes":
            ctx.charge(remaining + 1)  # raises the usual "budget exceeded"
        where = f" (at {exc.where('$')})" if exc.path else ""
        raise BuiltinError(f"{exc.message}{where}") from None
    ctx.charge(3 * nodes)  # parsing, then checking each value
    return value  # fresh from json.loads: shares nothing


def _fn_json_to_string(args: list[Any], ctx: EvalContext) -> str:
    return dumps_json(args[0], ctx)


def _fn_json_merge(args: list[Any], ctx: EvalContext) -> dict[str, Any]:
    a = _want_object(args, 0)
    b = _want_object(args, 1)
    ctx.check_array_length(len(a) + len(b))
    # Shallow: keys of b replace keys of a wholesale; nested objects are not merged.
    return {**a, **b}


def _fn_string_to_upper(args: list[Any], ctx: EvalContext) -> str:
    result = _want_string(args, 0).upper()
    ctx.check_string_length(len(result))  # upper() can grow a string ('ß' → 'SS')
    return result


def _fn_string_to_lower(args: list[Any], ctx: EvalContext) -> str:
    result = _want_string(args, 0).lower()
    ctx.check_string_length(len(result))
    return result


def _fn_now(args: list[Any], ctx: EvalContext) -> str:
    now = ctx.now
    # A naive datetime is taken to be UTC already (the engine passes aware UTC datetimes).
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    return f"{now:%Y-%m-%dT%H:%M:%S}.{now.microsecond // 1000:03d}Z"


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


# Stands for an argument that is not a literal in the lists ``Builtin.check`` receives.
NOT_LITERAL: Any = type("NotLiteral", (), {"__repr__": lambda self: "NOT_LITERAL"})()


def _check_format(args: list[Any]) -> str | None:
    if not isinstance(args[0], str):
        return None
    return _format_mismatch(args[0], len(args) - 1)


def _check_regex(args: list[Any]) -> str | None:
    pattern = args[0]
    if not isinstance(pattern, str):
        return None
    if len(pattern) > MAX_REGEX_PATTERN_LENGTH:
        return (
            f"pattern too long ({len(pattern)} characters; the limit is {MAX_REGEX_PATTERN_LENGTH})"
        )
    problem = _regex_compile_cached(pattern)
    return problem if isinstance(problem, str) else None


def _check_hash(args: list[Any]) -> str | None:
    algorithm = args[1]
    if isinstance(algorithm, str) and algorithm.upper() not in _HASHES:
        return f"unknown hash algorithm {algorithm!r} (use MD5, SHA-1, SHA-256 or SHA-512)"
    return None


@dataclass(frozen=True)
class Builtin:
    """One callable name. Aliases are separate entries sharing ``fn``.

    ``check``, when set, is called at compile time with the arguments as written: the value
    of each literal argument, :data:`NOT_LITERAL` for the others. It returns a message for a
    mistake it can already see (the call is then refused), else None.
    """

    name: str
    min_args: int
    max_args: int | None  # None: variadic
    fn: Callable[[list[Any], EvalContext], Any]
    signature: str
    check: Callable[[list[Any]], str | None] | None = None

    def accepts(self, count: int) -> bool:
        return count >= self.min_args and (self.max_args is None or count <= self.max_args)

    def arity_message(self) -> str:
        """ "function format takes at least 1 argument", "… takes 2 arguments", …"""
        lo, hi = self.min_args, self.max_args

        def plural(n: int) -> str:
            return f"{n} argument" + ("" if n == 1 else "s")

        if hi is None:
            expected = f"at least {plural(lo)}"
        elif lo == hi:
            expected = plural(lo) if lo else "no arguments"
        else:
            expected = f"{lo} to {plural(hi)}"
        return f"function {self.name} takes {expected}: {self.signature}"


BUILTINS: dict[str, Builtin] = {}


def _register(
    name: str,
    min_args: int,
    max_args: int | None,
    fn: Callable[[list[Any], EvalContext], Any],
    signature: str,
    check: Callable[[list[Any]], str | None] | None = None,
) -> None:
    BUILTINS[name] = Builtin(name, min_args, max_args, fn, signature, check)


_register("format", 1, None, _fn_format, "format(template, value...)", _check_format)
_register("length", 1, 1, _fn_length, "length(arrayOrObjectOrString)")
_register(
    "regexMatchString",
    2,
    2,
    _fn_regex_match_string,
    "regexMatchString(pattern, string)",
    _check_regex,
)
_register("split", 2, 2, _fn_split, "split(string, separator)")
_register("get", 2, 2, _fn_get, "get(arrayOrObject, indexOrKey)")
_register("intAdd", 2, 2, _fn_int_add, "intAdd(a, b)")
_register("mathAdd", 2, 2, _fn_math_add, "mathAdd(a, b)")
_register("randomInt", 2, 2, _fn_random_int, "randomInt(min, max)")
_register("arrayContains", 2, 2, _fn_array_contains, "arrayContains(array, value)")
_register("arrayUnique", 1, 1, _fn_array_unique, "arrayUnique(array)")
_register("toArray", 0, None, _fn_to_array, "toArray(value...)")
_register("arrayGet", 2, 2, _fn_array_get, "arrayGet(array, index)")
_register("arrayLength", 1, 1, _fn_array_length, "arrayLength(array)")
_register("arrayRange", 2, 3, _fn_array_range, "arrayRange(start, end[, step])")
_register("arrayPartition", 2, 2, _fn_array_partition, "arrayPartition(array, size)")
_register("mapKeys", 1, 1, _fn_map_keys, "mapKeys(object)")
_register("mapValues", 1, 1, _fn_map_values, "mapValues(object)")
_register("fromBase64", 1, 1, _fn_from_base64, "fromBase64(string)")
_register("toBase64", 1, 1, _fn_to_base64, "toBase64(string)")
_register("hash", 2, 2, _fn_hash, "hash(value, algorithm)", _check_hash)
_register("uuid", 0, 0, _fn_uuid, "uuid()")
_register("stringToJson", 1, 1, _fn_string_to_json, "stringToJson(string)")
_register("fromJSON", 1, 1, _fn_string_to_json, "fromJSON(string)")
_register("jsonToString", 1, 1, _fn_json_to_string, "jsonToString(value)")
_register("toJSON", 1, 1, _fn_json_to_string, "toJSON(value)")
_register("jsonMerge", 2, 2, _fn_json_merge, "jsonMerge(object, object)")
_register("stringToUpper", 1, 1, _fn_string_to_upper, "stringToUpper(string)")
_register("stringToLower", 1, 1, _fn_string_to_lower, "stringToLower(string)")
_register("now", 0, 0, _fn_now, "now()")


# --------------------------------------------------------------------------------------------
# regexMatchString: a small RE2-style matcher (Thompson NFA simulation)
#
# Python's `re` backtracks, so `(a+)+$` against thirty "a"s and a "!" runs for minutes and
# cannot be interrupted. The managed service is written in Go, whose regexp is RE2: linear
# time, no backreferences or lookaround. We implement that subset ourselves: the pattern
# compiles to a program of at most MAX_REGEX_PROGRAM_SIZE instructions, and the simulation
# advances a set of threads one character at a time, charging the work budget per thread.
#
# Supported: literals, `.`, `[...]` / `[^...]` classes with ranges, `\d \D \w \W \s \S` (ASCII,
# as in Go), POSIX `[[:alpha:]]`-style classes, escapes `\t \n \r \f \v \a \xHH \x{H…}` and
# escaped punctuation, anchors `^ $ \A \z \b \B`, groups `(…)`, `(?:…)`, `(?P<n>…)`, `(?<n>…)`,
# flags `(?i) (?m) (?s) (?U)` and `(?flags:…)`, alternation `|`, quantifiers `* + ? {n} {n,}
# {n,m}` with optional lazy `?`. Not supported (error): backreferences, lookaround, `\p{…}`.
# Semantics follow Go: `$` without (?m) matches only at the very end of the input; `.` does
# not match "\n" without (?s); the search is unanchored (a match anywhere returns true).
# --------------------------------------------------------------------------------------------


class _RegexSyntaxError(Exception):
    pass


_WORD_RANGES = ((48, 57), (65, 90), (95, 95), (97, 122))
_PERL_CLASSES: dict[str, tuple[tuple[int, int], ...]] = {
    "d": ((48, 57),),
    "w": _WORD_RANGES,
    "s": ((9, 10), (12, 13), (32, 32)),
}
_POSIX_CLASSES: dict[str, tuple[tuple[int, int], ...]] = {
    "alnum": ((48, 57), (65, 90), (97, 122)),
    "alpha": ((65, 90), (97, 122)),
    "ascii": ((0, 127),),
    "blank": ((9, 9), (32, 32)),
    "cntrl": ((0, 31), (127, 127)),
    "digit": ((48, 57),),
    "graph": ((33, 126),),
    "lower": ((97, 122),),
    "print": ((32, 126),),
    "punct": ((33, 47), (58, 64), (91, 96), (123, 126)),
    "space": ((9, 13), (32, 32)),
    "upper": ((65, 90),),
    "word": _WORD_RANGES,
    "xdigit": ((48, 57), (65, 70), (97, 102)),
}
_SIMPLE_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f", "v": "\v", "a": "\a"}
_MAX_CODEPOINT = 0x10FFFF


def _complement(ranges: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    out = []
    nxt = 0
    for lo, hi in sorted(ranges):
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = max(nxt, hi + 1)
    if nxt <= _MAX_CODEPOINT:
        out.append((nxt, _MAX_CODEPOINT))
    return tuple(out)


# Regex AST nodes are tuples: ("char", matcher) | ("assert", kind) | ("cat", [nodes]) |
# ("alt", [nodes]) | ("rep", node, min, max_or_None). A matcher is ("lit", frozenset_of_chars)
# or ("class", starts, ends, negated, ignore_case) or ("any", dot_matches_newline).


class _RegexParser:
    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0
        self.nesting = 0

    def fail(self, message: str) -> _RegexSyntaxError:
        return _RegexSyntaxError(f"invalid pattern: {message} at position {self.i}")

    def parse(self) -> tuple[Any, ...]:
        node = self.alternation({"i": False, "m": False, "s": False})
        if self.i < len(self.p):
            raise self.fail("unexpected )")
        return node

    def alternation(self, flags: dict[str, bool]) -> tuple[Any, ...]:
        self.nesting += 1
        if self.nesting > MAX_REGEX_NESTING:
            raise self.fail("groups nested too deeply")
        flags = dict(flags)  # (?i) inside a group lasts until the group ends
        branches = [self.sequence(flags)]
        while self.i < len(self.p) and self.p[self.i] == "|":
            self.i += 1
            branches.append(self.sequence(flags))
        self.nesting -= 1
        return branches[0] if len(branches) == 1 else ("alt", branches)

    def sequence(self, flags: dict[str, bool]) -> tuple[Any, ...]:
        items: list[tuple[Any, ...]] = []
        p = self.p
        while self.i < len(p) and p[self.i] not in "|)":
            c = p[self.i]
            if c in "*+?" or (c == "{" and self.repeat_at(self.i) is not None):
                raise self.fail("missing argument to repetition operator")
            atom = self.atom(flags)
            if atom is None:  # a bare flag group such as (?i)
                continue
            quantified = False
            while self.i < len(p):
                c = p[self.i]
                if c in "*+?":
                    bounds: tuple[int, int | None] = {"*": (0, None), "+": (1, None), "?": (0, 1)}[
                        c
                    ]
                    self.i += 1
                elif c == "{" and (rep := self.repeat_at(self.i)) is not None:
                    bounds, self.i = rep[:2], rep[2]
                else:
                    break
                if quantified:
                    raise self.fail("invalid nested repetition operator")
                quantified = True
                if self.i < len(p) and p[self.i] == "?":
                    self.i += 1  # lazy: irrelevant when we only ask "is there a match"
                atom = ("rep", atom, bounds[0], bounds[1])
            items.append(atom)
        return items[0] if len(items) == 1 else ("cat", items)

    def repeat_at(self, i: int) -> tuple[int, int | None, int] | None:
        """Parse `{n}`, `{n,}` or `{n,m}` at i; None when it is not one (then `{` is literal)."""
        p = self.p
        j = i + 1
        start = j
        while j < len(p) and p[j].isdigit() and p[j].isascii():
            j += 1
        if j == start or j >= len(p):
            return None
        if j - start > 9:  # far past MAX_REGEX_REPEAT; don't build a huge int from it
            self.i = i
            raise self.fail("invalid repeat count")
        low = int(p[start:j])
        high: int | None = low
        if p[j] == ",":
            j += 1
            start = j
            while j < len(p) and p[j].isdigit() and p[j].isascii():
                j += 1
            if j - start > 9:
                self.i = i
                raise self.fail("invalid repeat count")
            high = int(p[start:j]) if j > start else None
        if j >= len(p) or p[j] != "}":
            return None
        if low > MAX_REGEX_REPEAT or (high is not None and (high > MAX_REGEX_REPEAT or high < low)):
            self.i = i
            raise self.fail("invalid repeat count")
        return low, high, j + 1

    def atom(self, flags: dict[str, bool]) -> tuple[Any, ...] | None:
        p = self.p
        c = p[self.i]
        if c == "(":
            return self.group(flags)
        self.i += 1
        if c == ".":
            return ("char", ("any", flags["s"]))
        if c == "^":
            return ("assert", "bol" if flags["m"] else "bot")
        if c == "$":
            return ("assert", "eol" if flags["m"] else "eot")
        if c == "[":
            return ("char", self.char_class(flags))
        if c == "\\":
            return self.escape(flags)
        return ("char", self.literal(c, flags))

    def group(self, flags: dict[str, bool]) -> tuple[Any, ...] | None:
        p = self.p
        self.i += 1
        inner = flags
        if p.startswith("?", self.i):
            self.i += 1
            if p.startswith("P<", self.i) or (
                p.startswith("<", self.i)
                and not p.startswith("<=", self.i)
                and not p.startswith("<!", self.i)
            ):
                end = p.find(">", self.i)
                if end < 0:
                    raise self.fail("unterminated group name")
                name = p[self.i + (2 if p[self.i] == "P" else 1) : end]
                if not name or not all(ch.isalnum() or ch == "_" for ch in name):
                    raise self.fail("invalid group name")
                self.i = end + 1
            else:
                inner = dict(flags)
                negate = False
                while True:
                    if self.i >= len(p):
                        raise self.fail("missing )")
                    ch = p[self.i]
                    self.i += 1
                    if ch in "ims":
                        inner[ch] = not negate
                    elif ch == "U":
                        pass  # ungreedy: does not change whether a match exists
                    elif ch == "-" and not negate:
                        negate = True
                    elif ch == ")":
                        # (?i): applies to the rest of the enclosing group.
                        flags.update(inner)
                        return None
                    elif ch == ":":
                        break
                    else:
                        raise self.fail(
                            "lookaround is not supported" if ch in "=!<" else f"unknown flag {ch!r}"
                        )
        node = self.alternation(inner)
        if self.i >= len(p) or p[self.i] != ")":
            raise self.fail("missing )")
        self.i += 1
        return node

    def literal(self, c: str, flags: dict[str, bool]) -> tuple[Any, ...]:
        chars = {c, c.lower(), c.upper()} if flags["i"] else {c}
        return ("lit", frozenset(ch for ch in chars if len(ch) == 1))

    def hex_escape(self) -> str:
        p = self.p
        if p.startswith("{", self.i):
            end = p.find("}", self.i)
            digits = p[self.i + 1 : end] if end > 0 else ""
            self.i = end + 1 if end > 0 else len(p)
        else:
            digits = p[self.i : self.i + 2]
            self.i += 2
            if len(digits) != 2:
                raise self.fail("invalid \\x escape")
        try:
            code = int(digits, 16)
        except ValueError:
            raise self.fail("invalid \\x escape") from None
        if not digits or code > _MAX_CODEPOINT:
            raise self.fail("invalid \\x escape")
        return chr(code)

    def escape_char(self, in_class: bool) -> str | tuple[tuple[int, int], ...]:
        """After a backslash: one character, or a set of ranges for \\d \\w \\s and negations."""
        p = self.p
        if self.i >= len(p):
            raise self.fail("trailing backslash")
        c = p[self.i]
        self.i += 1
        if c in _PERL_CLASSES:
            return _PERL_CLASSES[c]
        if c.lower() in _PERL_CLASSES:
            return _complement(_PERL_CLASSES[c.lower()])
        if c in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[c]
        if c == "x":
            return self.hex_escape()
        if c.isdigit():
            raise self.fail("backreferences and octal escapes are not supported")
        if c in "pP":
            raise self.fail("Unicode classes (\\p) are not supported")
        if c.isascii() and c.isalnum() or c == "_":
            if not in_class and c in "bBAz":
                self.i -= 1  # an assertion; handled by escape()
                return ""
            raise self.fail(f"invalid escape \\{c}")
        return c  # escaped punctuation or non-ASCII character: itself

    def escape(self, flags: dict[str, bool]) -> tuple[Any, ...]:
        got = self.escape_char(in_class=False)
        if got == "":
            kind = {"b": "wordb", "B": "nwordb", "A": "bot", "z": "eot"}[self.p[self.i]]
            self.i += 1
            return ("assert", kind)
        if isinstance(got, tuple):
            return ("char", self.make_class(list(got), False, False))
        return ("char", self.literal(got, flags))

    def make_class(
        self, ranges: list[tuple[int, int]], negated: bool, ignore_case: bool
    ) -> tuple[Any, ...]:
        merged: list[list[int]] = []
        for lo, hi in sorted(ranges):
            if merged and lo <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        starts = tuple(r[0] for r in merged)
        ends = tuple(r[1] for r in merged)
        return ("class", starts, ends, negated, ignore_case)

    def char_class(self, flags: dict[str, bool]) -> tuple[Any, ...]:
        p = self.p
        negated = p.startswith("^", self.i)
        if negated:
            self.i += 1
        ranges: list[tuple[int, int]] = []
        first = True
        while True:
            if self.i >= len(p):
                raise self.fail("missing ]")
            c = p[self.i]
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            if p.startswith("[:", self.i):
                end = p.find(":]", self.i + 2)
                name = p[self.i + 2 : end] if end > 0 else ""
                neg = name.startswith("^")
                name = name[1:] if neg else name
                if end < 0 or name not in _POSIX_CLASSES:
                    raise self.fail("invalid POSIX class")
                self.i = end + 2
                cls = _POSIX_CLASSES[name]
                ranges.extend(_complement(cls) if neg else cls)
                continue
            self.i += 1
            if c == "\\":
                got = self.escape_char(in_class=True)
                if isinstance(got, tuple):
                    ranges.extend(got)
                    continue
                low = got
            else:
                low = c
            high = low
            if p.startswith("-", self.i) and self.i + 1 < len(p) and p[self.i + 1] != "]":
                self.i += 1
                c2 = p[self.i]
                self.i += 1
                if c2 == "\\":
                    got = self.escape_char(in_class=True)
                    if isinstance(got, tuple):
                        raise self.fail("invalid character class range")
                    high = got
                else:
                    high = c2
                if ord(high) < ord(low):
                    raise self.fail("invalid character class range")
            ranges.append((ord(low), ord(high)))
        return self.make_class(ranges, negated, flags["i"])


def _regex_size(node: tuple[Any, ...]) -> int:
    """An upper bound on the work of emitting ``node`` once repetitions are expanded.

    Every node counts at least 1, an empty group ``()`` included: emitting it still visits it,
    so ``((){1000}){1000}`` is a million visits even though it produces no instruction.
    """
    kind = node[0]
    if kind in ("char", "assert"):
        return 1
    if kind == "cat":
        return max(1, sum(_regex_size(n) for n in node[1]))
    if kind == "alt":
        return sum(_regex_size(n) + 2 for n in node[1])
    _, sub, low, high = node
    size = _regex_size(sub)
    if high is None:
        return max(1, low * size + size + 2)
    return max(1, low * size + (high - low) * (size + 1))


_SPLIT, _JMP, _ASSERT, _CHAR, _MATCH = range(5)


class _RegexProgram:
    __slots__ = ("code", "anchored")

    def __init__(self, code: list[tuple[Any, ...]]) -> None:
        self.code = code
        # A pattern starting with \A (or ^ without (?m)) can only match at position 0.
        self.anchored = code[0] == (_ASSERT, "bot")


def _regex_emit(node: tuple[Any, ...], code: list[tuple[Any, ...]]) -> None:
    kind = node[0]
    if kind == "char":
        code.append((_CHAR, node[1]))
    elif kind == "assert":
        code.append((_ASSERT, node[1]))
    elif kind == "cat":
        for sub in node[1]:
            _regex_emit(sub, code)
    elif kind == "alt":
        jumps = []
        for sub in node[1][:-1]:
            split_at = len(code)
            code.append((_SPLIT, 0, 0))
            _regex_emit(sub, code)
            jumps.append(len(code))
            code.append((_JMP, 0))
            code[split_at] = (_SPLIT, split_at + 1, len(code))
        _regex_emit(node[1][-1], code)
        for at in jumps:
            code[at] = (_JMP, len(code))
    else:  # rep
        _, sub, low, high = node
        for _ in range(low):
            _regex_emit(sub, code)
        if high is None:
            loop = len(code)
            code.append((_SPLIT, 0, 0))
            _regex_emit(sub, code)
            code.append((_JMP, loop))
            code[loop] = (_SPLIT, loop + 1, len(code))
        else:
            splits = []
            for _ in range(high - low):
                splits.append(len(code))
                code.append((_SPLIT, 0, 0))
                _regex_emit(sub, code)
            for at in splits:
                code[at] = (_SPLIT, at + 1, len(code))


@functools.lru_cache(maxsize=256)
def _regex_compile_cached(pattern: str) -> _RegexProgram | str:
    # Errors are cached as strings (lru_cache does not cache exceptions).
    try:
        tree = _RegexParser(pattern).parse()
    except _RegexSyntaxError as exc:
        return str(exc)
    if _regex_size(tree) > MAX_REGEX_PROGRAM_SIZE:
        return (
            "invalid pattern: too large once repetitions are expanded "
            f"(limit {MAX_REGEX_PROGRAM_SIZE})"
        )
    code: list[tuple[Any, ...]] = []
    _regex_emit(tree, code)
    code.append((_MATCH,))
    return _RegexProgram(code)


def _regex_compile(pattern: str) -> _RegexProgram:
    program = _regex_compile_cached(pattern)
    if isinstance(program, str):
        raise BuiltinError(program)
    return program


def _is_word(text: str, pos: int) -> bool:
    if 0 <= pos < len(text):
        o = ord(text[pos])
        return 48 <= o <= 57 or 65 <= o <= 90 or o == 95 or 97 <= o <= 122
    return False


def _assert_holds(kind: str, text: str, pos: int) -> bool:
    if kind == "bot":
        return pos == 0
    if kind == "eot":
        return pos == len(text)
    if kind == "bol":
        return pos == 0 or text[pos - 1] == "\n"
    if kind == "eol":
        return pos == len(text) or text[pos] == "\n"
    boundary = _is_word(text, pos - 1) != _is_word(text, pos)
    return boundary if kind == "wordb" else not boundary


def _char_matches(matcher: tuple[Any, ...], c: str) -> bool:
    kind = matcher[0]
    if kind == "lit":
        return c in matcher[1]
    if kind == "any":
        return matcher[1] or c != "\n"
    _, starts, ends, negated, ignore_case = matcher
    candidates = (c, c.lower(), c.upper()) if ignore_case else (c,)
    hit = False
    for ch in candidates:
        if len(ch) != 1:
            continue
        o = ord(ch)
        at = bisect.bisect_right(starts, o) - 1
        if at >= 0 and o <= ends[at]:
            hit = True
            break
    return hit != negated


def _regex_search(program: _RegexProgram, text: str, ctx: EvalContext) -> bool:
    """True when the program matches anywhere in ``text`` (Thompson simulation, O(len × size)).

    One loop without a Python call per character or per thread (only character classes call
    ``_char_matches``), and the work charged to the budget in batches of at most
    ``_REGEX_CHARGE_BATCH`` units: on CPython 3.11 a call that lands on a frame-stack chunk
    boundary maps and unmaps memory every time (CPython issue 142183, fixed in 3.13), and a
    hostile-input test saw the same search take 25 times the CPU at one unlucky stack depth.
    The charges add up to what a call per step would charge; a search can run less than one
    batch past the budget before it stops.
    """
    code = program.code
    anchored = program.anchored
    mark = [-1] * len(code)  # mark[pc] == pos: pc already reached at pos
    spent = 0  # units not yet charged
    seeds = [0]  # instructions to expand at pos (a yes/no answer needs no thread priority)
    pos = 0
    end = len(text)
    while True:
        threads: list[int] = []  # the character instructions alive at pos
        stack = seeds
        visited = 0
        while stack:
            pc = stack.pop()
            if mark[pc] == pos:
                continue
            mark[pc] = pos
            visited += 1
            op = code[pc]
            kind = op[0]
            if kind == _CHAR:
                threads.append(pc)
            elif kind == _SPLIT:
                stack.append(op[2])
                stack.append(op[1])
            elif kind == _JMP:
                stack.append(op[1])
            elif kind == _ASSERT:
                if _assert_holds(op[1], text, pos):
                    stack.append(pc + 1)
            else:
                return True
        spent += (visited + len(threads) + 1) * _REGEX_UNIT
        if pos == end:
            break
        if spent >= _REGEX_CHARGE_BATCH:
            ctx.charge(spent)
            spent = 0
        c = text[pos]
        seeds = []
        for pc in threads:
            matcher = code[pc][1]
            kind = matcher[0]
            if kind == "lit":
                hit = c in matcher[1]
            elif kind == "any":
                hit = matcher[1] or c != "\n"
            else:
                hit = _char_matches(matcher, c)
            if hit:
                seeds.append(pc + 1)
        pos += 1
        if not anchored:
            seeds.append(0)  # an unanchored search may start a new attempt at every position
        elif not seeds:
            break  # every thread died and no new attempt may start
    ctx.charge(spent)
    return False
