"""The flowsite expression language: lexer, Pratt parser and a whitelisting tree interpreter.

Expressions appear in CloudFlow definitions (values of ``.$`` keys, the ``$`` key, Choice
``Condition``, ``ItemsPath``, ``Seconds.$``…) and, in the legacy dialect, in FnF mappings and
conditions. User text is never handed to ``eval``/``exec``/``compile``: it is tokenised and
parsed here into a small tree of node objects, and evaluation walks that tree over JSON values
only. There is no attribute access on Python objects at all: ``$Input.__class__`` is a lookup
of the JSON key ``"__class__"`` (usually yielding ``null``), and the only callable names are the
entries of :data:`executions.engine.builtins.BUILTINS`.

Public API
----------
``compile_expression(text, *, dialect="cloudflow") -> Expression``
    Parses and validates; raises :class:`ExpressionError` (syntax, unknown variable or function,
    wrong argument count, too long, too deep). Definitions call this at upload time, so every
    problem a user can fix is reported before anything runs.
``Expression.evaluate(env, *, now, rng, budget=None) -> Any``
    ``env`` maps root names (``"Input"``, ``"Context"``… or, legacy, ``"input"``, ``"local"``,
    ``"context"``) to JSON values; a root missing from ``env`` is ``null``. Returns a fresh JSON
    value that shares nothing with ``env``; never mutates ``env``. Raises
    :class:`EvaluationError` (type errors, bad built-in arguments, budget exceeded), which the
    interpreter reports as ``FnF.RuntimeError``. ``budget`` (an ``EvalBudget``) is charged for
    the work; several evaluations given one budget are bounded together (the interpreter shares
    one per state entry); without it the evaluation gets a fresh :func:`new_budget`.
``compile_budget(characters)``
    A context manager bounding the expression text compiled within it (the definition compiler
    uses it, so the work of validating one definition is bounded).

Grammar (both dialects)
-----------------------
::

    expr     := or
    or       := and ("||" and)*                      lowest precedence
    and      := equality ("&&" equality)*
    equality := compare (("==" | "!=") compare)*
    compare  := member (("<" | "<=" | ">" | ">=") member)*
    member   := additive ("in" additive)*
    additive := term (("+" | "-") term)*
    term     := unary (("*" | "/" | "%") unary)*
    unary    := ("!" | "-") unary | postfix
    postfix  := primary ( "." KEY | "[" expr "]" | "[*]" )*      ([*]: legacy only)
    primary  := NUMBER | STRING | "true" | "false" | "null" | VARIABLE
              | NAME "(" [expr ("," expr)*] ")" | "(" expr ")"

Strings are ``"..."`` with JSON escapes or ``` `...` ``` raw; numbers are JSON-like (``1``,
``12.5``, ``1e3``; a fraction or exponent makes a float). Variables: CloudFlow ``$Input``,
``$Output``, ``$Context``, ``$Global``, ``$Item``; legacy ``$`` / ``$.x`` (the step input),
``$input``, ``$local``, ``$context``. A KEY after ``.`` is letters, digits and ``_``; any other
key is written ``["a b"]``.

Semantics
---------
* Missing key, out-of-range (or negative) index, indexing ``null`` or a scalar → ``null``.
* ``==``/``!=``: deep JSON equality (``1 == 1.0``; ``true != 1``; object key order ignored).
* ``< <= > >=``: two numbers or two strings (code-point order); if either side is ``null`` the
  result is ``false``; any other mix is an error.
* ``&&``/``||`` short-circuit and need booleans (no truthiness); ``!`` needs a boolean.
* ``+``: numbers, or two strings, or two arrays. ``- * / %``: numbers only. Booleans are not
  numbers. ``/`` of two integers is an integer when exact, else a float; ``%`` takes the sign
  of the dividend (as Go). Division by zero, and integer results outside 64 bits, are errors.
* ``a in b``: element of an array (deep equality), key of an object (``a`` must be a string),
  substring of a string; ``x in null`` is ``false``.
* Legacy ``[*]`` maps the rest of the path over an array's elements (an object's values):
  ``$local[*].result`` → the list of each element's ``result`` (``null`` where missing).
  Nested wildcards give nested lists; ``[*]`` on ``null`` or a scalar gives ``null``.

Bounds (module constants; change them here)
-------------------------------------------
``MAX_EXPRESSION_LENGTH`` characters; ``MAX_DEPTH`` levels of nesting (parentheses, operators,
indexing, wildcards — counted while parsing, so ``((((…))))`` × 10,000 is a clean
``ExpressionError``, never a ``RecursionError``); ``MAX_FUNCTION_NESTING`` levels of built-in
calls (CloudFlow documents 10); per budget (see above) ``MAX_EVAL_STEPS`` node visits and
``MAX_EVAL_WORK`` data units, strings of at most ``MAX_STRING_LENGTH`` characters and arrays of
at most ``MAX_ARRAY_LENGTH`` elements (see :class:`~executions.engine.builtins.EvalBudget`).
An integer literal must fit in 64 bits (``-9223372036854775808`` included); arithmetic results
too, and floats must stay finite: anything else, including an integer too large to meet a
float, is an ``EvaluationError``.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import math
import random
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from .builtins import (
    BUILTINS,
    NOT_LITERAL,
    Builtin,
    BuiltinError,
    EvalBudget,
    EvalContext,
    copy_json,
    is_number,
    json_equal,
    lookup,
    number_result,
    type_name,
)
from .builtins import MAX_INT as _MAX_INT
from .builtins import MIN_INT as _MIN_INT

__all__ = [
    "CLOUDFLOW_ROOTS",
    "DIALECTS",
    "LEGACY_ROOTS",
    "MAX_ARRAY_LENGTH",
    "MAX_DEPTH",
    "MAX_EVAL_STEPS",
    "MAX_EVAL_WORK",
    "MAX_EXPRESSION_LENGTH",
    "MAX_FUNCTION_NESTING",
    "MAX_STRING_LENGTH",
    "EvalBudget",
    "EvaluationError",
    "Expression",
    "ExpressionError",
    "compile_budget",
    "compile_expression",
    "new_budget",
]

MAX_EXPRESSION_LENGTH = 4096
MAX_DEPTH = 64
MAX_FUNCTION_NESTING = 10
MAX_EVAL_STEPS = 100_000
MAX_EVAL_WORK = 1_000_000
MAX_STRING_LENGTH = 1 << 20
MAX_ARRAY_LENGTH = 100_000

DIALECTS = ("cloudflow", "legacy")
# Variable name as written after "$" → key looked up in the evaluation env.
CLOUDFLOW_ROOTS = frozenset({"Input", "Output", "Context", "Global", "Item"})
LEGACY_ROOTS = frozenset({"input", "local", "context"})

_PREVIEW_LENGTH = 120


def _preview(text: str) -> str:
    """The expression quoted for a message, shortened so a 4 KiB expression is not echoed."""
    if len(text) > _PREVIEW_LENGTH:
        text = text[:_PREVIEW_LENGTH] + "…"
    return repr(text)


class ExpressionError(Exception):
    """An expression cannot be compiled. ``offset`` is the 0-based character position."""

    # Positional arguments (not keyword-only) so that pickling round-trips via self.args.
    def __init__(self, message: str, offset: int | None = None, expression: str = "") -> None:
        super().__init__(message, offset, expression)
        self.message = message
        self.offset = offset
        self.expression = expression

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.offset, self.expression))

    def __str__(self) -> str:
        where = f" at offset {self.offset}" if self.offset is not None else ""
        return f"{self.message}{where} in expression {_preview(self.expression)}"


class EvaluationError(Exception):
    """An expression failed at run time (reported as ``FnF.RuntimeError``).

    ``offset`` points at the operator or call that failed when known; ``path`` is set by
    templates and mappings to the definition path of the failing value (for example
    ``States[0].InputConstructor.job_id.$``); it is not included in ``str()``.
    """

    def __init__(
        self,
        message: str,
        expression: str = "",
        offset: int | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message, expression, offset, path)
        self.message = message
        self.expression = expression
        self.offset = offset
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        # Attributes may be updated after construction (templates set ``path``).
        return (type(self), (self.message, self.expression, self.offset, self.path))

    def __str__(self) -> str:
        where = f" at offset {self.offset}" if self.offset is not None else ""
        # ``path`` is deliberately not part of the text: callers prefix their own context.
        return f"{self.message}{where} in expression {_preview(self.expression)}"


# --------------------------------------------------------------------------------------------
# Lexer
# --------------------------------------------------------------------------------------------

_DIGITS = frozenset("0123456789")
_IDENT_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_IDENT_CHARS = _IDENT_START | _DIGITS
_TWO_CHAR_OPS = frozenset({"||", "&&", "==", "!=", "<=", ">="})
_ONE_CHAR_OPS = frozenset("<>+-*/%!()[],")
_KEYWORDS = {"true": True, "false": False, "null": None}
_JSON_ESCAPES = {
    '"': '"',
    "\\": "\\",
    "/": "/",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}
_MAX_NUMBER_LITERAL = 100
_INT_RANGE_MESSAGE = "integer literal out of range (must fit in 64 bits)"


class _Token:
    __slots__ = ("kind", "value", "offset", "text")

    # kind: "num" | "str" | "var" | "key" | "ident" | "op" | "eof"
    def __init__(self, kind: str, value: Any, offset: int, text: str) -> None:
        self.kind = kind
        self.value = value
        self.offset = offset
        self.text = text

    def describe(self) -> str:
        if self.kind == "eof":
            return "end of expression"
        if self.kind == "str":
            return "string"
        if self.kind == "num":
            return f"number {self.text}"
        return repr(self.text)


class _Lexer:
    """Produces tokens on demand, so errors are reported in reading order."""

    def __init__(self, text: str, dialect: str) -> None:
        self.text = text
        self.pos = 0
        self.roots = LEGACY_ROOTS if dialect == "legacy" else CLOUDFLOW_ROOTS
        self.legacy = dialect == "legacy"

    def error(self, message: str, offset: int) -> ExpressionError:
        return ExpressionError(message, offset, self.text)

    def token(self, kind: str, value: Any, start: int, end: int) -> _Token:
        self.pos = end
        return _Token(kind, value, start, self.text[start:end])

    def next(self) -> _Token:
        text = self.text
        n = len(text)
        i = self.pos
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return self.token("eof", None, n, n)
        c = text[i]
        if c in _DIGITS:
            return self.number(i)
        if c == '"':
            return self.string(i)
        if c == "`":
            end = text.find("`", i + 1)
            if end < 0:
                raise self.error("unterminated `...` string", i)
            return self.token("str", text[i + 1 : end], i, end + 1)
        if c == "'":
            raise self.error("strings are written in double quotes or backticks, not '...'", i)
        if c == "$":
            return self.variable(i)
        if c == ".":
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            if j == i + 1:
                raise self.error(
                    "expected a key name after '.' (write [\"...\"] for other keys)", i
                )
            return self.token("key", text[i + 1 : j], i, j)
        if c in _IDENT_START:
            j = i + 1
            while j < n and text[j] in _IDENT_CHARS:
                j += 1
            return self.token("ident", text[i:j], i, j)
        if text[i : i + 2] in _TWO_CHAR_OPS:
            return self.token("op", text[i : i + 2], i, i + 2)
        if c in _ONE_CHAR_OPS:
            return self.token("op", c, i, i + 1)
        if c == "=":
            raise self.error("unexpected '=' (use '==' to compare)", i)
        if c in "&|":
            raise self.error(f"unexpected {c!r} (use '{c * 2}')", i)
        raise self.error(f"unexpected character {c!r}", i)

    def number(self, i: int) -> _Token:
        text = self.text
        n = len(text)
        j = i
        while j < n and text[j] in _DIGITS:
            j += 1
        is_float = False
        # "1.5" is a number; in "1.x" the dot starts a path (and yields null), so a fraction
        # needs a digit after the dot.
        if j + 1 < n and text[j] == "." and text[j + 1] in _DIGITS:
            j += 1
            while j < n and text[j] in _DIGITS:
                j += 1
            is_float = True
        if j < n and text[j] in "eE":
            k = j + 1
            if k < n and text[k] in "+-":
                k += 1
            if k >= n or text[k] not in _DIGITS:
                raise self.error("invalid number: missing exponent digits", i)
            while k < n and text[k] in _DIGITS:
                k += 1
            j = k
            is_float = True
        if j < n and text[j] in _IDENT_CHARS:
            raise self.error(f"invalid number {text[i : j + 1]!r}", i)
        literal = text[i:j]
        if len(literal) > _MAX_NUMBER_LITERAL:
            raise self.error("number literal too long", i)
        value: int | float
        if is_float:
            value = float(literal)
            if value in (float("inf"), float("-inf")):
                raise self.error("number out of range", i)
        else:
            value = int(literal)
            # 2**63 itself is let through for the parser, which accepts it only right after a
            # prefix '-' (the smallest 64-bit integer, -9223372036854775808, is written so).
            if value > _MAX_INT + 1:
                raise self.error(_INT_RANGE_MESSAGE, i)
        return self.token("num", value, i, j)

    def string(self, i: int) -> _Token:
        text = self.text
        n = len(text)
        out: list[str] = []
        j = i + 1
        while True:
            if j >= n:
                raise self.error('unterminated "..." string', i)
            c = text[j]
            if c == '"':
                return self.token("str", "".join(out), i, j + 1)
            if c != "\\":
                out.append(c)
                j += 1
                continue
            if j + 1 >= n:
                raise self.error('unterminated "..." string', i)
            e = text[j + 1]
            if e in _JSON_ESCAPES:
                out.append(_JSON_ESCAPES[e])
                j += 2
            elif e == "u":
                code = self.hex4(j)
                j += 6
                if 0xD800 <= code <= 0xDBFF and text[j : j + 2] == "\\u":
                    low = self.hex4(j)
                    if 0xDC00 <= low <= 0xDFFF:
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                        j += 6
                if 0xD800 <= code <= 0xDFFF:
                    # A lone surrogate cannot be encoded as UTF-8 later on; refuse it now.
                    raise self.error("invalid \\u escape (lone surrogate)", j - 6)
                out.append(chr(code))
            else:
                raise self.error(f"invalid escape \\{e} in string", j)

    def hex4(self, j: int) -> int:
        digits = self.text[j + 2 : j + 6]
        if len(digits) != 4 or not all(d in "0123456789abcdefABCDEF" for d in digits):
            raise self.error("invalid \\u escape (expected 4 hex digits)", j)
        return int(digits, 16)

    def variable(self, i: int) -> _Token:
        text = self.text
        n = len(text)
        j = i + 1
        while j < n and text[j] in _IDENT_CHARS:
            j += 1
        name = text[i + 1 : j]
        if self.legacy:
            if not name:
                return self.token("var", "input", i, j)  # bare "$" (and "$.x"): the step input
            if name in self.roots:
                return self.token("var", name, i, j)
            raise self.error(
                f"unknown variable ${name} (legacy expressions use $, $.path, $input, $local "
                f"or $context){_did_you_mean(name, self.roots, '$')}",
                i,
            )
        if not name:
            raise self.error(
                "expected a variable name after '$' ($Input, $Output, $Context, $Global or $Item)",
                i,
            )
        if name not in self.roots:
            raise self.error(
                f"unknown variable ${name} (use $Input, $Output, $Context, $Global or $Item)"
                f"{_did_you_mean(name, self.roots, '$')}",
                i,
            )
        return self.token("var", name, i, j)


def _did_you_mean(name: str, choices: Any, prefix: str = "") -> str:
    by_lower = {c.lower(): c for c in choices}
    if name.lower() in by_lower:
        return f"; did you mean {prefix}{by_lower[name.lower()]}?"
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.75)
    return f"; did you mean {prefix}{close[0]}?" if close else ""


# --------------------------------------------------------------------------------------------
# Syntax tree and evaluation
#
# Every node has ``run(env, ctx)``. The tree is at most MAX_DEPTH levels deep (checked while
# parsing), so the recursive evaluation stays far below Python's recursion limit. Chains of
# operators of one precedence level (``a || b || c``, ``1 + 2 + 3``) are single n-ary nodes,
# so long flat conditions do not count as deep nesting.
# --------------------------------------------------------------------------------------------


class _Node:
    __slots__ = ("offset", "depth")

    def __init__(self, offset: int, depth: int) -> None:
        self.offset = offset
        self.depth = depth

    def run(self, env: Mapping[str, Any], ctx: EvalContext) -> Any:  # pragma: no cover
        raise NotImplementedError


class _Literal(_Node):
    __slots__ = ("value",)

    def __init__(self, value: Any, offset: int) -> None:
        super().__init__(offset, 1)
        self.value = value  # always a scalar: literal containers do not exist

    def run(self, env: Mapping[str, Any], ctx: EvalContext) -> Any:
        ctx.step()
        return self.value


class _Var(_Node):
    __slots__ = ("name",)

    def __init__(self, name: str, offset: int) -> None:
        super().__init__(offset, 1)
        self.name = name

    def run(self, env: Mapping[str, Any], ctx: EvalContext) -> Any:
        ctx.step()
        return env.get(self.name)


_WILDCARD = object()  # marker in a path's evaluated key list


class _Path(_Node):
    __slots__ = ("base", "segments")

    # segments: ("key", str) | ("index", _Node) | ("wild", None)
    def __init__(self, base: _Node, segments: list[tuple[str, Any]], offset: int) -> None:
        depth = base.depth
        wildcards = 0
        for kind, payload in segments:
            if kind == "index":
                depth = max(depth, payload.depth)
            elif kind == "wild":
                wildcards += 1
        super().__init__(offset, 1 + max(depth, wildcards))
        self.base = base
        self.segments = tuple(segments)

    def run(self, env: Mapping[str, Any], ctx: EvalContext) -> Any:
        ctx.step()
        value = self.base.run(env, ctx)
        keys: list[Any] = []
        # Index expressions cannot refer to the element being visited, so evaluate each once.
        for kind, payload in self.segments:
            if kind == "index":
                keys.append(payload.run(env, ctx))
            elif kind == "key":
                keys.append(payload)
            else:
                keys.append(_WILDCARD)
        try:
            return _walk(value, keys, 0, ctx)
        except BuiltinError as exc:
            exc.offset = self.offset if exc.offset is None else exc.offset
            raise


def _walk(value: Any, keys: list[Any], start: int, ctx: EvalContext) -> Any:
    for i in range(start, len(keys)):
        key = keys[i]
        if key is _WILDCARD:
            if isinstance(value, dict):
                items = list(value.values())
            elif isinstance(value, list):
                items = value
            else:
                return None
            ctx.check_array_length(len(items))
            out = []
            for item in items:
                ctx.step()
                # Recursion only at wildcards, whose count is bounded by MAX_DEPTH.
                out.append(_walk(item, keys, i + 1, ctx))
            return out
        value = lookup(value, key)
    return value


class _Call(_Node):
    __slots__ = ("builtin", "args")

    def __init__(self, builtin: Builtin, args: list[_Node], offset: int) -> None:
        super().__init__(offset, 1 + max((a.depth for a in args), default=0))
        self.builtin = builtin
        self.args = tuple(args)

    def run(self, env: Mapping[str, Any], ctx: EvalContext) -> Any:
        ctx.step()
        args = [arg.run(env, ctx) for arg in self.args]
        try:
            return self.builtin.fn(args, ctx)
        except BuiltinError as exc:
            if exc.offset is None:
                exc.offset = self.offset
                exc.message = f"{self.builtin.name}(): {exc.message}"
            raise


class _Unary(_Node):
    __slots__ = ("op", "operand")

    def __init__(self, op: str, operand: _Node, offset: int) -> None:
        super().__init__(offset, operand.depth + 1)
        self.op = op
        self.operand = operand

    def run(self, env: Mapping[str, Any], ctx: EvalContext) -> Any:
        ctx.step()
        value = self.operand.run(env, ctx)
        if self.op == "!":
            if not isinstance(value, bool):
                raise BuiltinError(f"'!' needs a boolean, got {type_name(value)}", self.offset)
            return not value
        if not is_number(value):
            raise BuiltinError(f"unary '-' needs a number, got {type_name(value)}", self.offset)
        try:
            return number_result(-value)
        except BuiltinError as exc:
            exc.offset = self.offset
            raise


class _Logic(_Node):
    """``a && b && …`` or ``a || b || …``: short-circuit, booleans only."""

    __slots__ = ("op", "operands", "offsets")

    def __init__(self, op: str, left: _Node, right: _Node, offset: int) -> None:
        super().__init__(left.offset, 1 + max(left.depth, right.depth))
        self.op = op
        self.operands = [left, right]
        self.offsets = [offset]

    def add(self, right: _Node, offset: int) -> None:
        self.operands.append(right)
        self.offsets.append(offset)
        self.depth = max(self.depth, right.depth + 1)

    def run(self, env: Mapping[str, Any], ctx: EvalContext) -> Any:
        ctx.step()
        stop_on = self.op == "||"  # || stops at the first true, && at the first false
        for i, operand in enumerate(self.operands):
            value = operand.run(env, ctx)
            if not isinstance(value, bool):
                side = "left" if i == 0 else "right"
                raise BuiltinError(
                    f"'{self.op}' needs boolean operands, got {type_name(value)} on the {side}",
                    self.offsets[max(i - 1, 0)],
                )
            if value is stop_on:
                return stop_on
        return not stop_on


class _Chain(_Node):
    """``a op b op c …`` for the left-associative operators of one precedence level."""

    __slots__ = ("level", "ops", "operands")

    def __init__(self, level: int, left: _Node, op: str, op_offset: int, right: _Node) -> None:
        super().__init__(left.offset, 1 + max(left.depth, right.depth))
        self.level = level
        self.ops = [(op, op_offset)]
        self.operands = [left, right]

    def add(self, op: str, op_offset: int, right: _Node) -> None:
        self.ops.append((op, op_offset))
        self.operands.append(right)
        self.depth = max(self.depth, right.depth + 1)

    def run(self, env: Mapping[str, Any], ctx: EvalContext) -> Any:
        ctx.step()
        value = self.operands[0].run(env, ctx)
        for (op, offset), operand in zip(self.ops, self.operands[1:], strict=True):
            right = operand.run(env, ctx)
            try:
                value = _binary(op, value, right, ctx)
            except BuiltinError as exc:
                exc.offset = offset if exc.offset is None else exc.offset
                raise
        return value


def _binary(op: str, a: Any, b: Any, ctx: EvalContext) -> Any:
    if op == "==":
        return json_equal(a, b, ctx)
    if op == "!=":
        return not json_equal(a, b, ctx)
    if op in ("<", "<=", ">", ">="):
        return _compare(op, a, b)
    if op == "in":
        return _contains(b, a, ctx)
    if op == "+":
        if is_number(a) and is_number(b):
            try:
                return number_result(a + b)
            except OverflowError:  # an integer beyond float range meeting a float
                raise BuiltinError("numeric overflow") from None
        if isinstance(a, str) and isinstance(b, str):
            ctx.check_string_length(len(a) + len(b))
            return a + b
        if isinstance(a, list) and isinstance(b, list):
            ctx.check_array_length(len(a) + len(b))
            return a + b  # a new list; elements are shared but never mutated
        raise BuiltinError(
            f"cannot add {type_name(a)} and {type_name(b)} "
            "('+' takes two numbers, two strings or two arrays; use format() to build text)"
        )
    if not (is_number(a) and is_number(b)):
        raise BuiltinError(f"'{op}' needs two numbers, got {type_name(a)} and {type_name(b)}")
    try:
        if op == "-":
            return number_result(a - b)
        if op == "*":
            return number_result(a * b)
        if b == 0:
            raise BuiltinError("division by zero")
        if op == "/":
            if isinstance(a, int) and isinstance(b, int) and a % b == 0:
                return number_result(a // b)  # exact: keep it an integer (6 / 3 is 2, not 2.0)
            return number_result(a / b)
        # "%": the sign of the dividend, as in Go (-7 % 3 == -1), not Python's floor modulo.
        if isinstance(a, int) and isinstance(b, int):
            r = abs(a) % abs(b)
            return number_result(-r if a < 0 else r)
        return number_result(math.fmod(a, b))
    except OverflowError:
        raise BuiltinError("numeric overflow") from None


def _compare(op: str, a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False  # missing data never satisfies an ordering (Decision 10)
    if not ((is_number(a) and is_number(b)) or (isinstance(a, str) and isinstance(b, str))):
        raise BuiltinError(
            f"cannot compare {type_name(a)} with {type_name(b)} using '{op}' "
            "(ordering needs two numbers or two strings)"
        )
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    return a >= b


def _contains(container: Any, item: Any, ctx: EvalContext) -> bool:
    if container is None:
        return False
    if isinstance(container, list):
        ctx.charge(len(container) + 1)
        return any(json_equal(item, element, ctx) for element in container)
    if isinstance(container, dict):
        if not isinstance(item, str):
            raise BuiltinError(f"'in' on an object needs a string key, got {type_name(item)}")
        return item in container
    if isinstance(container, str):
        if not isinstance(item, str):
            raise BuiltinError(f"'in' on a string needs a string, got {type_name(item)}")
        ctx.charge(len(container) // 64 + 1)
        return item in container
    raise BuiltinError(
        f"'in' needs an array, object or string on the right, got {type_name(container)}"
    )


# --------------------------------------------------------------------------------------------
# Parser (Pratt)
# --------------------------------------------------------------------------------------------

# Binding powers: higher binds tighter. Operators sharing a power form one left-assoc chain.
_BINARY_POWER = {
    "||": 10,
    "&&": 20,
    "==": 30,
    "!=": 30,
    "<": 40,
    "<=": 40,
    ">": 40,
    ">=": 40,
    "in": 50,
    "+": 60,
    "-": 60,
    "*": 70,
    "/": 70,
    "%": 70,
}
_PREFIX_POWER = 80


class _Parser:
    def __init__(self, text: str, dialect: str) -> None:
        self.text = text
        self.dialect = dialect
        self.lexer = _Lexer(text, dialect)
        self.lookahead: _Token | None = None
        self.nesting = 0  # current recursion of expression(): bounded by MAX_DEPTH
        self.calls = 0  # current nesting of built-in calls: bounded by MAX_FUNCTION_NESTING
        self.roots: set[str] = set()

    def error(self, message: str, offset: int | None) -> ExpressionError:
        return ExpressionError(message, offset, self.text)

    def peek(self) -> _Token:
        if self.lookahead is None:
            self.lookahead = self.lexer.next()
        return self.lookahead

    def advance(self) -> _Token:
        token = self.peek()
        self.lookahead = None
        return token

    def is_op(self, token: _Token, value: str) -> bool:
        return token.kind == "op" and token.value == value

    def expect_op(self, value: str, context: str) -> None:
        token = self.advance()
        if not self.is_op(token, value):
            raise self.error(
                f"expected {value!r} {context}, found {token.describe()}", token.offset
            )

    def check_depth(self, node: _Node) -> _Node:
        if node.depth > MAX_DEPTH:
            raise self.error(
                f"expression nested too deeply (limit {MAX_DEPTH} levels)", node.offset
            )
        return node

    def parse(self) -> _Node:
        node = self.expression(0)
        token = self.peek()
        if token.kind != "eof":
            raise self.error(f"unexpected {token.describe()}", token.offset)
        return node

    def expression(self, min_power: int) -> _Node:
        # The nesting check comes before any further recursion, so a pathological input
        # fails after at most MAX_DEPTH Python frames, never with RecursionError.
        self.nesting += 1
        if self.nesting > MAX_DEPTH:
            raise self.error(
                f"expression nested too deeply (limit {MAX_DEPTH} levels)", self.peek().offset
            )
        left = self.prefix()
        while True:
            token = self.peek()
            if token.kind == "op" or (token.kind == "ident" and token.value == "in"):
                power = _BINARY_POWER.get(token.value)
            else:
                power = None
            if power is None or power <= min_power:
                break
            self.advance()
            right = self.expression(power)
            left = self.combine(left, token, right)
        self.nesting -= 1
        return left

    def combine(self, left: _Node, token: _Token, right: _Node) -> _Node:
        op = token.value
        node: _Node
        if op in ("&&", "||"):
            if isinstance(left, _Logic) and left.op == op:
                left.add(right, token.offset)
                node = left
            else:
                node = _Logic(op, left, right, token.offset)
        else:
            level = _BINARY_POWER[op]
            if isinstance(left, _Chain) and left.level == level:
                left.add(op, token.offset, right)
                node = left
            else:
                node = _Chain(level, left, op, token.offset, right)
        return self.check_depth(node)

    def prefix(self) -> _Node:
        token = self.advance()
        kind = token.kind
        node: _Node
        if kind in ("num", "str"):
            if kind == "num" and type(token.value) is int and token.value > _MAX_INT:
                # 2**63 without a '-' before it
                raise self.error(_INT_RANGE_MESSAGE, token.offset)
            node = _Literal(token.value, token.offset)
        elif kind == "var":
            self.roots.add(token.value)
            node = _Var(token.value, token.offset)
        elif kind == "ident":
            name = token.value
            if name in _KEYWORDS:
                node = _Literal(_KEYWORDS[name], token.offset)
            elif self.is_op(self.peek(), "("):
                node = self.call(token)
            elif name == "in":
                raise self.error("unexpected 'in'", token.offset)
            else:
                raise self.error(
                    f"unknown name {name!r} (variables start with '$', e.g. $Input.{name}; "
                    "strings need quotes; keys with '-' or spaces are written [\"...\"])",
                    token.offset,
                )
        elif self.is_op(token, "("):
            node = self.expression(0)
            self.expect_op(")", "to close '('")
        elif self.is_op(token, "!") or self.is_op(token, "-"):
            following = self.peek()
            if token.value == "-" and type(following.value) is int and following.value > _MAX_INT:
                self.advance()  # -9223372036854775808: fits, although its digits alone do not
                return self.postfix(_Literal(-following.value, token.offset))
            operand = self.expression(_PREFIX_POWER)
            if token.value == "-" and isinstance(operand, _Literal) and is_number(operand.value):
                if operand.value == _MIN_INT:  # "--9223372036854775808" would be 2**63
                    raise self.error(_INT_RANGE_MESSAGE, token.offset)
                return _Literal(-operand.value, token.offset)  # fold "-1" into a literal
            return self.check_depth(_Unary(token.value, operand, token.offset))
        elif kind == "eof":
            raise self.error("unexpected end of expression", token.offset)
        else:
            raise self.error(f"unexpected {token.describe()}", token.offset)
        return self.postfix(node)

    def postfix(self, node: _Node) -> _Node:
        segments: list[tuple[str, Any]] = []
        offset = node.offset
        while True:
            token = self.peek()
            if token.kind == "key":
                self.advance()
                segments.append(("key", token.value))
            elif self.is_op(token, "["):
                self.advance()
                if self.is_op(self.peek(), "*"):
                    if self.dialect != "legacy":
                        raise self.error(
                            "the wildcard [*] is only available in legacy (FnF) expressions",
                            token.offset,
                        )
                    self.advance()
                    self.expect_op("]", "after '[*'")
                    segments.append(("wild", None))
                else:
                    index = self.expression(0)
                    self.expect_op("]", "to close '['")
                    segments.append(("index", index))
            else:
                break
        if not segments:
            return node
        if isinstance(node, _Path):  # "(a.b).c" is "a.b.c"
            segments = list(node.segments) + segments
            node = node.base
        return self.check_depth(_Path(node, segments, offset))

    def call(self, name_token: _Token) -> _Node:
        name = name_token.value
        builtin = BUILTINS.get(name)
        if builtin is None:
            raise self.error(
                f"unknown function {name!r} (only the built-in functions can be called)"
                f"{_did_you_mean(name, BUILTINS)}",
                name_token.offset,
            )
        self.advance()  # "("
        self.calls += 1
        if self.calls > MAX_FUNCTION_NESTING:
            raise self.error(
                f"built-in functions nested too deeply (limit {MAX_FUNCTION_NESTING} levels)",
                name_token.offset,
            )
        args: list[_Node] = []
        if not self.is_op(self.peek(), ")"):
            while True:
                args.append(self.expression(0))
                if not self.is_op(self.peek(), ","):
                    break
                self.advance()
        token = self.advance()
        if not self.is_op(token, ")"):
            raise self.error(
                f"expected ',' or ')' in the call to {name}, found {token.describe()}",
                token.offset,
            )
        self.calls -= 1
        if not builtin.accepts(len(args)):
            raise self.error(f"{builtin.arity_message()} (got {len(args)})", name_token.offset)
        if builtin.check is not None:
            # Arguments written as literals are checked now, so that a mistake in them (a
            # format template with the wrong number of placeholders, a bad regex) is found
            # when the definition is saved rather than when a state first runs.
            problem = builtin.check(
                [a.value if isinstance(a, _Literal) else NOT_LITERAL for a in args]
            )
            if problem is not None:
                raise self.error(f"{name}(): {problem}", name_token.offset)
        return self.check_depth(_Call(builtin, args, name_token.offset))


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


class Expression:
    """A compiled expression. Immutable; safe to share between threads and executions."""

    __slots__ = ("text", "dialect", "roots", "_node")
    text: str
    dialect: str
    roots: frozenset[str]  # env keys the expression reads, e.g. {"Input", "Context"}

    def __init__(self, text: str, dialect: str, roots: frozenset[str], node: _Node) -> None:
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "dialect", dialect)
        object.__setattr__(self, "roots", roots)
        object.__setattr__(self, "_node", node)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Expression objects are immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Expression objects are immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle (and deepcopy) as source text; the tree is rebuilt on load.
        return (_recompile, (self.text, self.dialect))

    def __repr__(self) -> str:
        return f"Expression({self.text!r}, dialect={self.dialect!r})"

    def evaluate(
        self,
        env: Mapping[str, Any],
        *,
        now: datetime,
        rng: random.Random,
        budget: EvalBudget | None = None,
    ) -> Any:
        """Evaluate against ``env``; returns a fresh JSON value (see the module docstring).

        ``budget`` is charged for the work done; pass one budget to several evaluations to
        bound them together (the interpreter shares one per state entry). Without it the
        evaluation gets a fresh :func:`new_budget`.
        """
        ctx = EvalContext(
            now=now,
            rng=rng,
            budget=budget if budget is not None else new_budget(),
            max_string=MAX_STRING_LENGTH,
            max_array=MAX_ARRAY_LENGTH,
        )
        try:
            result = self._node.run(env, ctx)
            # Paths return references into env; copying here is what guarantees callers
            # can never mutate env through a result (and it re-validates the JSON types).
            return copy_json(result, ctx)
        except BuiltinError as exc:
            raise EvaluationError(exc.message, self.text, exc.offset) from None
        except RecursionError:
            # Defensive: values are depth-checked, but env data could be pathological.
            raise EvaluationError("value nested too deeply", self.text) from None


def new_budget() -> EvalBudget:
    """A fresh budget of ``MAX_EVAL_STEPS`` steps and ``MAX_EVAL_WORK`` units of work."""
    return EvalBudget(max_steps=MAX_EVAL_STEPS, max_work=MAX_EVAL_WORK)


def _recompile(text: str, dialect: str) -> Expression:
    return compile_expression(text, dialect=dialect)


# The characters compile_expression may still parse in the current compile_budget block.
_COMPILE_BUDGET: ContextVar[list[int] | None] = ContextVar("compile_budget", default=None)


@contextlib.contextmanager
def compile_budget(characters: int) -> Iterator[None]:
    """Within the block, ``compile_expression`` parses at most ``characters`` characters of
    expression text in all (counted whether or not the text was compiled before, so the
    outcome does not depend on the cache); past that it raises ``ExpressionError``. The
    definition compiler uses it to bound the work of validating one definition."""
    token = _COMPILE_BUDGET.set([characters, characters])
    try:
        yield
    finally:
        _COMPILE_BUDGET.reset(token)


def compile_expression(text: str, *, dialect: str = "cloudflow") -> Expression:
    """Parse ``text`` into an :class:`Expression`; raise :class:`ExpressionError` if invalid."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown expression dialect {dialect!r} (expected one of {DIALECTS})")
    if not isinstance(text, str):
        raise ExpressionError(f"an expression must be a string, got {type_name(text)}")
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(
            f"expression too long ({len(text)} characters; the limit is {MAX_EXPRESSION_LENGTH})",
            MAX_EXPRESSION_LENGTH,
            text,
        )
    budget = _COMPILE_BUDGET.get()
    if budget is not None:
        budget[0] -= len(text)
        if budget[0] < 0:
            raise ExpressionError(
                f"too much expression text in all (the limit is {budget[1]} characters)",
                None,
                text,
            )
    return _compile_cached(text, dialect, MAX_EXPRESSION_LENGTH, MAX_DEPTH, MAX_FUNCTION_NESTING)


@functools.lru_cache(maxsize=2048)
def _compile_cached(text: str, dialect: str, *_limits: int) -> Expression:
    # Expressions are immutable, so identical source text can share one compiled tree (a
    # definition is compiled on every upload and possibly on every step). The limits are part
    # of the key so that changing a module constant is never masked by the cache.
    if not text.strip():
        raise ExpressionError("empty expression", 0, text)
    parser = _Parser(text, dialect)
    node = parser.parse()
    return Expression(text, dialect, frozenset(parser.roots), node)
