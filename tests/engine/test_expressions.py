"""Tests for the expression language (executions/engine/expressions.py and builtins.py).

Pure Python: no Django, no database. Run with
``python3 -m pytest tests/engine/test_expressions.py -p no:cacheprovider -p no:django``.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import copy
import hashlib
import json
import pickle
import random
import re
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from executions.engine import builtins as builtins_module
from executions.engine import expressions as expressions_module
from executions.engine.builtins import BUILTINS
from executions.engine.expressions import (
    EvaluationError,
    Expression,
    ExpressionError,
    compile_expression,
)

NOW = datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)

ENV: dict[str, Any] = {
    "Input": {
        "job_status": "success",
        "n": 7,
        "f": 2.5,
        "s": "hello",
        "t": True,
        "nothing": None,
        "list": [1, 2, 3],
        "empty": [],
        "obj": {"a": 1, "b": [True, None]},
        "a b": "spaced",
        "x-fc-request-id": "req-1",
        "__class__": "just a key",
        "名前": "name",
        "Body": {"job_id": "j-42", "items": [{"id": 1}, {"id": 2}]},
    },
    "Output": {"Body": {"result": "ok", "n": 3}},
    "Context": {"Execution": {"Name": "exec-1", "Input": {"delay": 5}}, "Current": {"Name": "S1"}},
    "Global": {"counter": 1},
}


def ev(text: str, env: dict[str, Any] | None = None, *, dialect: str = "cloudflow",
       seed: int = 0) -> Any:  # fmt: skip
    expression = compile_expression(text, dialect=dialect)
    return expression.evaluate(ENV if env is None else env, now=NOW, rng=random.Random(seed))


def eval_error(text: str, env: dict[str, Any] | None = None, *, dialect: str = "cloudflow"
               ) -> EvaluationError:  # fmt: skip
    expression = compile_expression(text, dialect=dialect)
    with pytest.raises(EvaluationError) as info:
        expression.evaluate(ENV if env is None else env, now=NOW, rng=random.Random(0))
    return info.value


def compile_error(text: str, *, dialect: str = "cloudflow") -> ExpressionError:
    with pytest.raises(ExpressionError) as info:
        compile_expression(text, dialect=dialect)
    return info.value


def same_json(a: Any, b: Any) -> bool:
    """Equality that also tells int from float and bool from int."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True) and type(a) is type(b)


# --------------------------------------------------------------------------------------------
# Literals
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("42", 42),
        ("12.5", 12.5),
        ("1e3", 1000.0),
        ("2E-2", 0.02),
        ("1.5e+2", 150.0),
        ("-1", -1),
        ("- 2.5", -2.5),
        ('"plain"', "plain"),
        ('"esc \\" \\\\ \\/ \\b \\f \\n \\r \\t"', 'esc " \\ / \b \f \n \r \t'),
        ('"\\u00e9\\u4e2d"', "é中"),
        ('"\\ud83d\\ude00"', "😀"),
        ('"unicode raw: ü"', "unicode raw: ü"),
        ('`raw \\n "quotes" ok`', 'raw \\n "quotes" ok'),
        ("``", ""),
        ("true", True),
        ("false", False),
        ("null", None),
    ],
)
def test_literals(text: str, expected: Any) -> None:
    assert same_json(ev(text), expected)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('"unterminated', "unterminated"),
        ("`unterminated", "unterminated"),
        ('"bad \\x escape"', "invalid escape"),
        ('"\\u12"', "4 hex digits"),
        ('"\\ud800"', "lone surrogate"),
        ("'single'", "double quotes or backticks"),
        ("1e", "exponent"),
        ("12abc", "invalid number"),
        ("99999999999999999999", "out of range"),
        ("1e999", "out of range"),
        ("1" * 200, "too long"),
    ],
)
def test_literal_errors(text: str, fragment: str) -> None:
    assert fragment in compile_error(text).message


# --------------------------------------------------------------------------------------------
# Variables and paths
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$Input.Body.job_id", "j-42"),
        ("$Input.list[0]", 1),
        ("$Input.list[2]", 3),
        ("$Input.list[1 + 1]", 3),
        ("$Input.list[$Global.counter]", 2),
        ("$Input.list[1.0]", 2),
        ('$Input["a b"]', "spaced"),
        ('$Input["x-fc-request-id"]', "req-1"),
        ("$Input[`a b`]", "spaced"),
        ("$Input.Body.items[1].id", 2),
        ('$Input.Body["items"][0]["id"]', 1),
        ("$Input.名前", "name"),
        ("$Context.Execution.Input.delay", 5),
        ("$Output.Body.result", "ok"),
        ("$Global.counter", 1),
        ("get($Input.list, 1)", 2),
        ("get($Input, `obj`).b[0]", True),
        ("($Input.obj).a", 1),
        ("($Input).obj.b", [True, None]),
        ("toArray(10, 20)[1]", 20),
        ("$Input.__class__", "just a key"),
        ("$Input.obj.__class__", None),
        ("$Input.obj.__class__.__bases__[0]", None),
        ("$Input.missing", None),
        ("$Input.missing.deeper.still", None),
        ("$Input.nothing.x", None),
        ("$Input.nothing[0]", None),
        ("$Input.list[3]", None),
        ("$Input.list[-1]", None),
        ("$Input.list.length", None),
        ('$Input.list["0"]', None),
        ("$Input.obj[0]", None),
        ("$Input.s[0]", None),
        ("$Input.n.x", None),
        ('"abc".x', None),
        ("$Item", None),  # root missing from env: null
        ("$Item.a", None),
    ],
)
def test_paths(text: str, expected: Any) -> None:
    assert ev(text) == expected


def test_whitespace_is_optional() -> None:
    assert ev('$Input.job_status== "success"') is True
    assert ev('$Input.job_status=="success"&&$Input.n>=7') is True
    assert ev("  \t$Input.n\n+\r1  ") == 8


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("$Input[true]", "index must be a string or an integer, got boolean"),
        ("$Input.list[null]", "got null"),
        ("$Input.list[1.5]", "must be an integer"),
        ("$Input.list[$Input.list]", "got array"),
    ],
)
def test_bad_index_types(text: str, fragment: str) -> None:
    assert fragment in eval_error(text).message


def test_roots() -> None:
    assert compile_expression("$Input.a == $Context.b").roots == frozenset({"Input", "Context"})
    assert compile_expression("1 + 2").roots == frozenset()
    assert compile_expression("jsonMerge($Global, $Output.Body)").roots == {"Global", "Output"}
    assert compile_expression("$.a + $local.b", dialect="legacy").roots == {"input", "local"}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("$input.x", "did you mean $Input?"),
        ("$Inputs", "did you mean $Input?"),
        ("$Foo", "unknown variable $Foo"),
        ("$", "expected a variable name"),
        ("$.x", "expected a variable name"),
        ("Input.x", "unknown name 'Input'"),
        ("$Input.", "expected a key name"),
        ("$Input. x", "expected a key name"),
        ("$Input[*]", "only available in legacy"),
        ("$Input[0", "expected ']'"),
    ],
)
def test_variable_errors(text: str, fragment: str) -> None:
    assert fragment in compile_error(text).message


# --------------------------------------------------------------------------------------------
# Operators
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # arithmetic
        ("1 + 2", 3),
        ("1 + 2.5", 3.5),
        ("$Input.f + $Input.f", 5.0),
        ('"ab" + "cd"', "abcd"),
        ("$Input.list + toArray(4)", [1, 2, 3, 4]),
        ("toArray() + toArray()", []),
        ("10 - 4", 6),
        ("10 - 4.5", 5.5),
        ("6 * 7", 42),
        ("1.5 * 2", 3.0),
        ("7 / 2", 3.5),
        ("6 / 3", 2),
        ("-6 / 3", -2),
        ("7.0 / 2", 3.5),
        ("1 / 3", 1 / 3),
        ("7 % 3", 1),
        ("-7 % 3", -1),
        ("7 % -3", 1),
        ("7.5 % 2", 1.5),
        ("-7.5 % 2", -1.5),
        ("-$Input.n", -7),
        ("--1", 1),
        ("-(-(2))", 2),
        # equality: deep JSON equality
        ("1 == 1", True),
        ("1 == 1.0", True),
        ("1 != 1.0", False),
        ("true == 1", False),
        ("true != 1", True),
        ("false == 0", False),
        ("null == null", True),
        ("null == false", False),
        ('"1" == 1', False),
        ('"a" == "a"', True),
        ("$Input.missing == null", True),
        ("$Input.list == toArray(1, 2, 3)", True),
        ("$Input.list == toArray(1.0, 2, 3.0)", True),
        ("$Input.list == toArray(1, 2)", False),
        ('$Input.obj == stringToJson(`{"b": [true, null], "a": 1.0}`)', True),
        ('$Input.obj == stringToJson(`{"b": [true, null], "a": 2}`)', False),
        ('$Input.obj == stringToJson(`{"b": [1, null], "a": 1}`)', False),
        # ordering
        ("1 < 2", True),
        ("2 < 1", False),
        ("2 <= 2", True),
        ("2.5 > 2", True),
        ("2 >= 2.0", True),
        ('"a" < "b"', True),
        ('"B" < "a"', True),
        ('"abc" >= "abd"', False),
        ('"é" > "z"', True),
        # logic
        ("true && true", True),
        ("true && false", False),
        ("false || true", True),
        ("false || false", False),
        ("!true", False),
        ("!!true", True),
        ("!($Input.n > 3)", False),
        # in
        ("2 in $Input.list", True),
        ("2.0 in $Input.list", True),
        ("5 in $Input.list", False),
        ('"a" in $Input.obj', True),
        ('"z" in $Input.obj', False),
        ('"ell" in $Input.s', True),
        ('"" in $Input.s', True),
        ('"xyz" in $Input.s', False),
        ("1 in $Input.missing", False),
        ("true in $Input.obj.b", True),
        ("1 in $Input.obj.b", False),
        ("null in $Input.obj.b", True),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_operators(text: str, expected: Any) -> None:
    result = ev(text)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("10 - 2 - 3", 5),  # left associative
        ("10 - (2 - 3)", 11),
        ("100 / 10 / 5", 2),
        ("2 * 3 % 4", 2),
        ("-2 * 3", -6),
        ("1 + 2 == 3", True),
        ("1 < 2 == true", True),
        ("1 == 1 && 2 == 2", True),
        ("true || false && false", True),  # && binds tighter than ||
        ("(true || false) && false", False),
        ("!false && false", False),  # ! binds tighter than &&
        ("!(false && false)", True),
        ("1 + 1 in toArray(2)", True),  # + binds tighter than in
        ('"a" in $Input.obj == true', True),  # in binds tighter than ==
        ("2 in $Input.list && 9 in $Input.list || true", True),
        ("$Input.n > 3 && $Input.n < 10", True),
        ("-$Input.list[0]", -1),  # postfix binds tighter than prefix -
        ("!$Input.t", False),
        ("1 - -1", 2),
        ("2 * -3", -6),
    ],
)
def test_precedence(text: str, expected: Any) -> None:
    assert ev(text) == expected


def test_long_flat_chains_are_not_deep() -> None:
    # n-ary nodes: 1000 terms of one precedence level do not count as 1000 levels of nesting.
    assert ev("+".join(["1"] * 1000)) == 1000
    assert ev(" || ".join(["false"] * 400 + ["true"])) is True
    assert ev(" && ".join(["true"] * 400)) is True
    assert ev(" - ".join(["1"] * 100)) == -98


@pytest.mark.parametrize(
    "text",
    [
        "null < 1",
        "null > 1",
        "null <= 1",
        "null >= 1",
        "1 < null",
        "1 >= null",
        "$Input.missing > 1",
        "$Input.missing < 1",
        '$Input.missing <= "a"',
        "null <= null",
        "null >= null",
    ],
)
def test_ordering_with_null_is_false(text: str) -> None:
    assert ev(text) is False


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('"a" > 1', "cannot compare string with number using '>'"),
        ('1 < "a"', "cannot compare number with string"),
        ("true < false", "cannot compare boolean with boolean"),
        ("true > 1", "cannot compare boolean with number"),
        ("$Input.list < $Input.list", "cannot compare array with array"),
        ("$Input.obj >= 1", "cannot compare object with number"),
        ("1 && true", "'&&' needs boolean operands, got number on the left"),
        ("true && 1", "got number on the right"),
        ('false || "yes"', "'||' needs boolean operands, got string"),
        ("$Input.missing || true", "got null"),
        ("!1", "'!' needs a boolean, got number"),
        ("!null", "got null"),
        ('-"a"', "unary '-' needs a number, got string"),
        ("-true", "got boolean"),
        ('"a" + 1', "cannot add string and number"),
        ("1 + true", "cannot add number and boolean"),
        ("$Input.missing + 1", "cannot add null and number"),
        ("$Input.obj + $Input.obj", "cannot add object and object"),
        ("$Input.list + 1", "cannot add array and number"),
        ('"a" - "b"', "'-' needs two numbers, got string and string"),
        ("true * 2", "'*' needs two numbers, got boolean and number"),
        ("$Input.list * 2", "got array and number"),
        ("1 / 0", "division by zero"),
        ("1 / 0.0", "division by zero"),
        ("1 % 0", "division by zero"),
        ("1.5 % 0", "division by zero"),
        ("9223372036854775807 + 1", "integer overflow"),
        ("-9223372036854775807 - 2", "integer overflow"),
        ("4294967296 * 4294967296", "integer overflow"),
        ("1e308 * 10", "numeric overflow"),
        ('1 in "abc"', "'in' on a string needs a string, got number"),
        ("1 in $Input.obj", "'in' on an object needs a string key, got number"),
        ("1 in 2", "'in' needs an array, object or string on the right, got number"),
        ("1 in true", "got boolean"),
    ],
)
def test_type_errors(text: str, fragment: str) -> None:
    error = eval_error(text)
    assert fragment in error.message
    # The error quotes the expression (Decision 10: the failure message names it).
    assert error.expression == text
    assert repr(text) in str(error)


def test_error_offsets_point_at_the_operator() -> None:
    error = eval_error("$Input.n > 1 && $Input.s > 1")
    assert error.offset == len("$Input.n > 1 && $Input.s ")
    error = eval_error("1 + length(3)")
    assert error.offset == 4
    assert error.message.startswith("length(): ")


def test_short_circuit() -> None:
    # The right side would fail (type error / division by zero) if it were evaluated.
    assert ev("false && 1 / 0 == 1") is False
    assert ev("true || 1 / 0 == 1") is True
    assert ev('$Input.missing != null && $Input.missing.x > "a"') is False
    assert ev("false && 5") is False  # the non-boolean right side is never looked at
    assert ev("false || true || 1 / 0 == 1") is True
    # ...but when it is evaluated, it must be a boolean.
    assert "got number on the right" in eval_error("true && 5").message


def test_comparisons_are_not_python_truthiness() -> None:
    assert ev("true == 1") is False
    assert ev("1 in toArray(true)") is False
    assert ev("true in toArray(1)") is False
    assert ev("0 == false") is False
    assert ev("arrayContains(toArray(true), 1)") is False


# --------------------------------------------------------------------------------------------
# Syntax errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment", "offset"),
    [
        ("", "empty expression", 0),
        ("   ", "empty expression", 0),
        ("1 +", "unexpected end of expression", 3),
        ("(1 + 2", "expected ')' to close '('", 6),
        ("1 + 2)", "unexpected ')'", 5),
        ("1 2", "unexpected number 2", 2),
        ("1 = 2", "use '==' to compare", 2),
        ("true & false", "use '&&'", 5),
        ("true | false", "use '||'", 5),
        ("{{7*7}}", "unexpected character '{'", 0),
        ("#", "unexpected character '#'", 0),
        ("length(1,)", "unexpected ')'", 9),
        ("length(1 2)", "expected ',' or ')' in the call to length", 9),
        ("length", "unknown name 'length'", 0),
        ("foo", "unknown name 'foo'", 0),
        ("in", "unexpected 'in'", 0),
        ("1 in", "unexpected end", 4),
        ("a ? b : c", "unexpected character '?'", 2),
        ("$Input.a > > 1", "unexpected '>'", 11),
        ("[1, 2]", "unexpected '['", 0),
    ],
)
def test_syntax_errors(text: str, fragment: str, offset: int) -> None:
    error = compile_error(text)
    assert fragment in error.message
    assert error.offset == offset
    assert error.expression == text
    assert f"at offset {offset}" in str(error)


def test_unknown_function_suggests_a_builtin() -> None:
    error = compile_error("lenght($Input.list)")
    assert "unknown function 'lenght'" in error.message
    assert "did you mean length?" in error.message
    assert "did you mean format?" in compile_error("Format(`{}`, 1)").message


def test_non_string_and_bad_dialect() -> None:
    with pytest.raises(ExpressionError, match="must be a string, got number"):
        compile_expression(5)  # type: ignore[arg-type]
    with pytest.raises(ExpressionError, match="got null"):
        compile_expression(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        compile_expression("1", dialect="jsonpath")


# --------------------------------------------------------------------------------------------
# Safety: escape corpus, limits, budgets, no mutation
# --------------------------------------------------------------------------------------------

ESCAPE_CORPUS = [
    "__import__('os').system('id')",
    '__import__("os").system("id")',
    "().__class__.__bases__[0].__subclasses__()",
    '"".__class__.__mro__[1].__subclasses__()',
    "{{7*7}}",
    "${7*7}",
    "eval('1')",
    'eval("1")',
    'exec("import os")',
    'compile("1", "f", "eval")',
    "open('/etc/passwd')",
    'open("/etc/passwd")',
    'getattr($Input, "__class__")',
    "globals()",
    "lambda: 1",
    "[x for x in ()]",
    "$Input.__class__()",
    "format.__globals__",
    "#{7*7}",
    "<%= 7*7 %>",
    "${{7*7}}",
    "$Input;1",
]


@pytest.mark.parametrize("text", ESCAPE_CORPUS)
def test_escape_corpus_is_rejected_at_compile_time(text: str) -> None:
    for dialect in ("cloudflow", "legacy"):
        with pytest.raises(ExpressionError):
            compile_expression(text, dialect=dialect)


def test_dunder_paths_are_plain_json_keys() -> None:
    # Valid syntax, but only ever a lookup of a JSON key: no Python attribute is reachable.
    env = {"Input": {"__class__": {"__bases__": ["only data"]}}}
    assert ev("$Input.__class__.__bases__[0]", env) == "only data"
    assert ev("$Input.obj.__class__") is None
    assert ev("$Input.__dict__") is None
    assert ev("$Input.s.__len__") is None
    assert ev("$Input.list.__class__") is None
    assert ev('get($Input, "__globals__")') is None

    class Secret:
        token = "must not leak"

        def __getitem__(self, key: str) -> str:
            return "must not leak either"

    # Lookups only ever index dicts and lists; other objects yield null.
    assert ev("$Input.x.token", {"Input": {"x": Secret()}}) is None
    assert ev('$Input.x["token"]', {"Input": {"x": Secret()}}) is None


def test_builtins_cannot_be_reached_by_name_lookup() -> None:
    # Names are resolved against BUILTINS only, never against Python globals.
    for name in ("print", "input", "exit", "copy_json", "lookup", "json", "os", "sys"):
        with pytest.raises(ExpressionError, match="unknown function"):
            compile_expression(f"{name}(1)")


def test_expression_length_limit() -> None:
    text = "1 + " * 1249 + "1"  # 4997 characters
    assert len(text) > 4096
    error = compile_error(text)
    assert "too long" in error.message
    assert error.offset == expressions_module.MAX_EXPRESSION_LENGTH
    assert len(str(error)) < 400  # the message does not echo the whole expression
    ok = "1+" + " " * 4093 + "1"
    assert len(ok) == 4096
    assert ev(ok) == 2
    assert "too long" in compile_error("x" * 5000).message


@pytest.mark.parametrize(
    "build",
    [
        lambda n: "(" * n + "1" + ")" * n,
        lambda n: "!" * n + "true",
        lambda n: "-" * n + "1",
        lambda n: "- " * n + "1",
        lambda n: "$Input.list[" * n + "0" + "]" * n,
        lambda n: "1 + (" * n + "1" + ")" * n,
        lambda n: "(" * n,
        lambda n: "toArray(" * n + ")" * n,
        lambda n: "$Input.list[" * n,
    ],
)
@pytest.mark.parametrize("n", [100, 10_000])
def test_deep_nesting_is_a_clean_error(build: Any, n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # Lift the length limit so the parser itself meets the 10,000 levels.
    monkeypatch.setattr(expressions_module, "MAX_EXPRESSION_LENGTH", 10**6)
    text = build(n)
    started = time.perf_counter()
    with pytest.raises(ExpressionError) as info:
        compile_expression(text)
    assert time.perf_counter() - started < 1.0
    assert "nested too deeply" in info.value.message


def test_ten_thousand_parens_within_default_limits() -> None:
    text = "(" * 10_000 + "1" + ")" * 10_000
    started = time.perf_counter()
    with pytest.raises(ExpressionError):
        compile_expression(text)
    assert time.perf_counter() - started < 1.0


def test_nesting_limits_are_exact() -> None:
    limit = expressions_module.MAX_DEPTH
    assert ev("(" * (limit - 1) + "1" + ")" * (limit - 1)) == 1
    compile_error("(" * (limit + 1) + "1" + ")" * (limit + 1))
    # Built-in nesting: CloudFlow documents at most 10 levels.
    assert ev("length(" * 1 + "toArray(" * 9 + ")" * 10) == 1
    expected: list[Any] = []
    for _ in range(9):
        expected = [expected]
    assert ev("toArray(" * 10 + ")" * 10) == expected
    error = compile_error("toArray(" * 11 + ")" * 11)
    assert "built-in functions nested too deeply" in error.message
    # Side by side is not nesting.
    siblings = ", ".join(["length(toArray(1))"] * 20)
    assert ev(f"toArray({siblings})") == [1] * 20


def test_no_recursion_error_with_low_recursion_limit() -> None:
    # Compilation of pathological input must not depend on a generous recursion limit.
    text = "(" * 4000
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old // 2, 400))
    try:
        with pytest.raises(ExpressionError):
            compile_expression(text)
    finally:
        sys.setrecursionlimit(old)


def test_budget_array_too_long() -> None:
    assert len(ev("arrayRange(1, 100000)")) == 100_000
    error = eval_error("arrayRange(0, 200000)")
    assert "array too long" in error.message
    assert error.message.startswith("arrayRange(): ")
    assert "array too long" in eval_error("arrayRange(0, 9223372036854775807)").message


def test_budget_string_too_long() -> None:
    big = {"Input": {"s": "x" * 800_000}}
    assert "string too long" in eval_error("$Input.s + $Input.s", big).message
    assert "string too long" in eval_error('format("{}{}", $Input.s, $Input.s)', big).message
    assert "string too long" in eval_error("jsonToString(toArray($Input.s, $Input.s))", big).message
    assert "string too long" in eval_error("toBase64($Input.s)", big).message
    assert (
        "string too long"
        in eval_error("stringToUpper($Input.s + `ßßßßß`)", {"Input": {"s": "ß" * 600_000}}).message
    )
    assert len(ev("stringToUpper($Input.s)", big)) == 800_000


def test_budget_large_data_is_refused_not_expanded() -> None:
    # The same 100,000-element array referenced 30 times: 3,000,000 elements if expanded.
    env = {"Input": {"big": list(range(100_000))}}
    many = ", ".join(["$Input.big"] * 30)
    for text in (
        f"toArray({many})",
        f"jsonToString(toArray({many}))",
        f"toArray({many}) == toArray({many})",
        f"hash(toArray({many}), `MD5`)",
        f"arrayUnique(toArray({many}))",
        f'format("{{}}", toArray({many}))',
        f"arrayPartition(toArray({many}), 1)",
    ):
        started = time.perf_counter()
        error = eval_error(text, env)
        assert "budget exceeded" in error.message or "too long" in error.message, text
        assert time.perf_counter() - started < 5.0, text


def test_budget_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(expressions_module, "MAX_EVAL_STEPS", 50)
    assert ev(" + ".join(["1"] * 20)) == 20
    assert "evaluation steps" in eval_error(" + ".join(["1"] * 60)).message
    env = {"local": [{"result": i} for i in range(100)]}
    assert "budget exceeded" in eval_error("$local[*].result", env, dialect="legacy").message


def test_budget_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(expressions_module, "MAX_EVAL_WORK", 1000)
    assert len(ev("arrayRange(1, 100)")) == 100
    assert "budget exceeded" in eval_error("arrayRange(1, 5000)").message
    env = {"Input": {"big": list(range(5000))}}
    assert "budget exceeded" in eval_error("$Input.big", env).message  # copying out is work too


def test_regex_cannot_backtrack_catastrophically() -> None:
    started = time.perf_counter()
    assert ev('regexMatchString(`(a+)+$`, "' + "a" * 30 + '!")') is False
    assert ev('regexMatchString(`^(a|a)*$`, "' + "a" * 40 + 'b")') is False
    assert ev('regexMatchString(`(a*)*b`, "' + "a" * 1000 + '")') is False
    assert ev('regexMatchString(`(x+x+)+y`, "' + "x" * 200 + '")') is False
    assert time.perf_counter() - started < 2.0
    env = {"Input": {"s": "a" * 100_000}}
    started = time.perf_counter()
    with pytest.raises(EvaluationError, match="budget exceeded"):
        ev("regexMatchString(`(a|aa|aaa|aaaa)*(b|c|d)`, $Input.s)", env)
    assert time.perf_counter() - started < 5.0


def test_evaluation_never_mutates_env() -> None:
    env = copy.deepcopy(ENV)
    snapshot = copy.deepcopy(env)
    result = ev("$Input", env)
    assert result == env["Input"]
    assert result is not env["Input"]
    result["Body"]["job_id"] = "changed"
    result["list"].append(99)
    result["obj"]["b"].clear()
    for text in (
        "$Input.obj",
        "$Input.obj.b",
        "toArray($Input.obj)",
        "jsonMerge($Input.obj, $Global)",
        "$Input.list + $Input.list",
        "mapValues($Input.obj)",
        "arrayUnique($Input.list)",
        "arrayPartition($Input.list, 1)",
        "get($Input, `Body`)",
        "stringToJson(jsonToString($Input))",
    ):
        value = ev(text, env)
        _scramble(value)
    assert env == snapshot


def _scramble(value: Any) -> None:
    if isinstance(value, dict):
        for item in list(value.values()):
            _scramble(item)
        value["scrambled"] = True
    elif isinstance(value, list):
        for item in value:
            _scramble(item)
        value.append("scrambled")


def test_results_are_json_only() -> None:
    assert "not a JSON value" in eval_error("$Input", {"Input": {"when": NOW}}).message
    assert "not a JSON value" in eval_error("$Input", {"Input": {1: "int key"}}).message
    assert ev("$Input", {"Input": (1, 2)}) == [1, 2]  # tuples are read as arrays
    # Selecting a JSON part of an env that also holds something else is fine.
    assert ev("$Input.ok", {"Input": {"ok": 1, "when": NOW}}) == 1


def test_deep_env_values() -> None:
    deep: Any = 1
    for _ in range(150):
        deep = [deep]
    assert ev("$Input", {"Input": deep}) == deep
    for _ in range(100):
        deep = [deep]
    assert "nested too deeply" in eval_error("$Input", {"Input": deep}).message


# --------------------------------------------------------------------------------------------
# Legacy dialect
# --------------------------------------------------------------------------------------------

LEGACY_ENV: dict[str, Any] = {
    "input": {"status": "ready", "x": {"y": 1}, "items": [1, 2], "payload": {"workers": 3}},
    "local": [{"result": "a"}, {"result": "b", "other": 1}, {"other": 2}],
    "context": {"task": {"token": "tok-1"}},
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$", LEGACY_ENV["input"]),
        ("$.status", "ready"),
        ("$.x.y", 1),
        ("$.items[1]", 2),
        ('$["status"]', "ready"),
        ("$.payload.workers", 3),
        ("$input.status", "ready"),
        ("$input", LEGACY_ENV["input"]),
        ("$local[0].result", "a"),
        ("$local[*].result", ["a", "b", None]),
        ("$local[*].other", [None, 1, 2]),
        ("$local[*]", LEGACY_ENV["local"]),
        ("$context.task.token", "tok-1"),
        ('$.status == "ready"', True),
        ('$.status != "ready" || $.x.y >= 1', True),
        ("$.missing", None),
        ("$.missing[*].a", None),
        ("$.status[*]", None),
        ("$.x[*]", [1]),  # an object's values
        ("length($local[*].result)", 3),
        ('arrayContains($local[*].result, "b")', True),
        ("format(`{}-{}`, $.status, $context.task.token)", "ready-tok-1"),
    ],
)
def test_legacy(text: str, expected: Any) -> None:
    assert ev(text, LEGACY_ENV, dialect="legacy") == expected


def test_legacy_nested_wildcards() -> None:
    env = {"local": [{"rows": [{"v": 1}, {"v": 2}]}, {"rows": [{"v": 3}]}, {"rows": None}]}
    assert ev("$local[*].rows[*].v", env, dialect="legacy") == [[1, 2], [3], None]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("$Input.x", "unknown variable $Input"),
        ("$locals", "unknown variable $locals"),
        ("$Local", "did you mean $local?"),
        ("$[*", "expected ']'"),
    ],
)
def test_legacy_errors(text: str, fragment: str) -> None:
    assert fragment in compile_error(text, dialect="legacy").message


# --------------------------------------------------------------------------------------------
# Built-in functions
# --------------------------------------------------------------------------------------------


def _sha(name: str, text: str) -> str:
    return hashlib.new(name, text.encode()).hexdigest()


BUILTIN_CASES: list[tuple[str, Any]] = [
    # format
    ('format("hello {}", "world")', "hello world"),
    ("format(`{}-{}-{}-{}`, 1, 2.5, true, null)", "1-2.5-true-null"),
    ("format(`{}`, $Input.obj)", '{"a":1,"b":[true,null]}'),
    ("format(`{} ü {}`, toArray(`é`), `x`)", '["é"] ü x'),
    ("format(`no placeholders`)", "no placeholders"),
    ("format(`{ } {x} {}`, 1)", "{ } {x} 1"),
    # length
    ("length($Input.list)", 3),
    ("length($Input.obj)", 2),
    ('length("héllo")', 5),
    ("length(``)", 0),
    # regexMatchString (pattern first, as Go's regexp.MatchString)
    ("regexMatchString(`^j-\\d+$`, $Input.Body.job_id)", True),
    ('regexMatchString(`\\d`, "abc")', False),
    ('regexMatchString(`ell`, "hello")', True),
    ('regexMatchString(`(?i)HELLO`, "hello")', True),
    ('regexMatchString(`^[a-c]{2,3}$`, "abc")', True),
    ('regexMatchString(`^[a-c]{2,3}$`, "abcd")', False),
    ('regexMatchString(`^a.c$`, "a\\nc")', False),
    ('regexMatchString(`(?s)^a.c$`, "a\\nc")', True),
    ('regexMatchString(`^b$`, "a\\nb")', False),
    ('regexMatchString(`(?m)^b$`, "a\\nb")', True),
    ('regexMatchString(`\\bcat\\b`, "a cat!")', True),
    ('regexMatchString(`\\bcat\\b`, "concat")', False),
    ('regexMatchString(`^(foo|bar)+$`, "foobarfoo")', True),
    ('regexMatchString(`^[^0-9]*$`, "abc")', True),
    ('regexMatchString(`^[[:alpha:]]+$`, "abc")', True),
    ('regexMatchString(`^\\w+@\\w+\\.com$`, "me@host.com")', True),
    ('regexMatchString(`^(?P<year>\\d{4})-(?:\\d\\d)$`, "2024-01")', True),
    ('regexMatchString(`a{,2}`, "a{,2}")', True),  # not a repeat: literal braces
    ('regexMatchString(``, "")', True),
    ('regexMatchString(`\\x41\\x{42}`, "AB")', True),
    # split
    ('split("a,b,c", ",")', ["a", "b", "c"]),
    ('split("abc", "")', ["a", "b", "c"]),
    ('split("", ",")', [""]),
    ('split("a--b", "--")', ["a", "b"]),
    # get
    ("get($Input.list, 1)", 2),
    ('get($Input.obj, "a")', 1),
    ("get($Input.list, 9)", None),
    ('get($Input.obj, "zz")', None),
    ("get(null, 0)", None),
    # intAdd / mathAdd
    ("intAdd(1, 2)", 3),
    ("intAdd(-5, 2)", -3),
    ("mathAdd(1.5, 2)", 3.5),
    ("mathAdd(1, 2)", 3),
    # arrays
    ("arrayContains($Input.list, 2)", True),
    ("arrayContains($Input.list, 2.0)", True),
    ('arrayContains($Input.list, "2")', False),
    ("arrayContains($Input.obj.b, null)", True),
    ('arrayContains(toArray($Input.obj), stringToJson(`{"b":[true,null],"a":1}`))', True),
    ("arrayUnique(toArray(1, 1.0, true, `1`, 1, null, null, true))", [1, True, "1", None]),
    ("arrayUnique(toArray($Input.obj, $Input.obj, $Input.list))", [ENV["Input"]["obj"], [1, 2, 3]]),
    ("arrayUnique(toArray())", []),
    ("toArray()", []),
    ("toArray(1, `a`, null, $Input.list)", [1, "a", None, [1, 2, 3]]),
    ("arrayGet($Input.list, 0)", 1),
    ("arrayGet($Input.list, 3)", None),
    ("arrayGet($Input.list, -1)", None),
    ("arrayGet($Input.list, 2.0)", 3),
    ("arrayLength($Input.list)", 3),
    ("arrayLength(toArray())", 0),
    ("arrayRange(1, 9, 2)", [1, 3, 5, 7, 9]),
    ("arrayRange(1, 8, 2)", [1, 3, 5, 7]),
    ("arrayRange(0, 3)", [0, 1, 2, 3]),
    ("arrayRange(5, 1, -2)", [5, 3, 1]),
    ("arrayRange(1, 0)", []),
    ("arrayRange(3, 3)", [3]),
    ("arrayPartition(arrayRange(1, 5), 2)", [[1, 2], [3, 4], [5]]),
    ("arrayPartition(toArray(), 3)", []),
    ("arrayPartition($Input.list, 10)", [[1, 2, 3]]),
    # maps
    ("mapKeys($Input.obj)", ["a", "b"]),
    ("mapValues($Input.obj)", [1, [True, None]]),
    ("mapKeys(stringToJson(`{}`))", []),
    # base64
    ('toBase64("héllo")', base64.b64encode("héllo".encode()).decode()),
    ('fromBase64("aMOpbGxv")', "héllo"),
    ("fromBase64(toBase64(`round trip ✓`))", "round trip ✓"),
    ('fromBase64("")', ""),
    # hash
    ('hash("abc", "MD5")', _sha("md5", "abc")),
    ('hash("abc", "SHA-1")', _sha("sha1", "abc")),
    ('hash("abc", "SHA-256")', _sha("sha256", "abc")),
    ('hash("abc", "SHA-512")', _sha("sha512", "abc")),
    ('hash("abc", "sha-256")', _sha("sha256", "abc")),
    ('hash($Input.obj, "SHA-256")', _sha("sha256", '{"a":1,"b":[true,null]}')),
    ('hash(12, "MD5")', _sha("md5", "12")),
    # JSON
    ('stringToJson(`{"a": [1, 2.5, "x", null, true]}`)', {"a": [1, 2.5, "x", None, True]}),
    ("fromJSON(`[1]`)", [1]),
    ('stringToJson(`"just a string"`)', "just a string"),
    ("jsonToString($Input.obj)", '{"a":1,"b":[true,null]}'),
    ("toJSON(`é`)", '"é"'),
    ("jsonToString(null)", "null"),
    ('jsonMerge($Input.obj, stringToJson(`{"b": 2, "c": 3}`))', {"a": 1, "b": 2, "c": 3}),
    (
        'jsonMerge(stringToJson(`{"o": {"x": 1}}`), stringToJson(`{"o": {"y": 2}}`))',
        {"o": {"y": 2}},
    ),
    ("jsonMerge($Global, $Output.Body)", {"counter": 1, "result": "ok", "n": 3}),
    # strings
    ('stringToUpper("abc é")', "ABC É"),
    ('stringToLower("ABC É")', "abc é"),
    # time
    ("now()", "2024-01-02T03:04:05.678Z"),
]


@pytest.mark.parametrize(("text", "expected"), BUILTIN_CASES, ids=[c[0] for c in BUILTIN_CASES])
def test_builtin(text: str, expected: Any) -> None:
    result = ev(text)
    assert result == expected
    assert type(result) is type(expected)


# Arguments are computed (``format(`x`)`` is just ``x``) where a literal would already be
# refused when the expression is compiled (see test_literal_arguments_are_checked_at_compile_time).
BUILTIN_TYPE_ERRORS: list[tuple[str, str]] = [
    ("format(1)", "argument 1 (the template) must be a string, got number"),
    ("format(format(`{}`, `{}`))", "1 '{}' placeholder(s) but 0 value(s)"),
    ("format(format(`x`), 1)", "0 '{}' placeholder(s) but 1 value(s)"),
    ("length(1)", "must be an array, object or string, got number"),
    ("length(null)", "got null"),
    ("regexMatchString(1, `a`)", "argument 1 (the pattern) must be a string"),
    ("regexMatchString(`a`, 1)", "argument 2 (the input) must be a string"),
    ("regexMatchString(format(`(`), `a`)", "invalid pattern: missing )"),
    ("regexMatchString(format(`)`), `a`)", "unexpected )"),
    ("regexMatchString(format(`[a`), `a`)", "missing ]"),
    ("regexMatchString(format(`*a`), `a`)", "missing argument to repetition"),
    ("regexMatchString(format(`a**`), `a`)", "invalid nested repetition"),
    ("regexMatchString(format(`(a)\\1`), `aa`)", "backreferences"),
    ("regexMatchString(format(`(?=a)`), `a`)", "lookaround"),
    ("regexMatchString(format(`\\pL`), `a`)", "Unicode classes"),
    ("regexMatchString(format(`a{1001}`), `a`)", "invalid repeat count"),
    ("regexMatchString(format(`a{3,2}`), `a`)", "invalid repeat count"),
    ("regexMatchString(format(`((a{100}){100}){100}`), `a`)", "too large"),
    ("regexMatchString(format(`[z-a]`), `a`)", "invalid character class range"),
    ("regexMatchString(format(`\\q`), `a`)", "invalid escape"),
    ("split(1, `,`)", "argument 1 must be a string, got number"),
    ("split(`a`, null)", "argument 2 (the separator) must be a string, got null"),
    ("get($Input.list, true)", "index must be a string or an integer, got boolean"),
    ("get($Input.list, 0.5)", "must be an integer"),
    ("intAdd(1.5, 1)", "argument 1 must be an integer, got 1.5"),
    ("intAdd(1, true)", "argument 2 must be an integer, got boolean"),
    ('intAdd("1", 1)', "got string"),
    ("intAdd(9223372036854775807, 1)", "integer overflow"),
    ('mathAdd("1", 2)', "argument 1 must be a number, got string"),
    ("mathAdd(1e308, 1e308)", "numeric overflow"),
    ("randomInt(5, 5)", "is empty"),
    ("randomInt(`a`, 1)", "argument 1 must be an integer, got string"),
    ("randomInt(0, 1.5)", "argument 2 must be an integer, got 1.5"),
    ("arrayContains(`abc`, `a`)", "argument 1 must be an array, got string"),
    ("arrayUnique($Input.obj)", "must be an array, got object"),
    ("arrayGet(`x`, 0)", "must be an array, got string"),
    ("arrayGet($Input.list, `0`)", "argument 2 must be an integer, got string"),
    ("arrayLength(`ab`)", "must be an array, got string"),
    ("arrayLength(null)", "got null"),
    ("arrayRange(1, 5, 0)", "step must not be 0"),
    ("arrayRange(`1`, 5)", "argument 1 must be an integer"),
    ("arrayPartition($Input.list, 0)", "positive integer"),
    ("arrayPartition(`abc`, 1)", "must be an array"),
    ("mapKeys($Input.list)", "must be an object, got array"),
    ("mapValues(null)", "must be an object, got null"),
    ("fromBase64(`!!`)", "not valid base64"),
    ("fromBase64(`/w==`)", "not valid UTF-8"),
    ("fromBase64(`é`)", "not valid base64"),
    ("fromBase64(1)", "must be a string"),
    ("toBase64(1)", "must be a string, got number"),
    ('hash("abc", format("SHA-3"))', "unknown hash algorithm 'SHA-3'"),
    ('hash("abc", 1)', "argument 2 (the algorithm) must be a string"),
    ("stringToJson(`{bad`)", "not valid JSON"),
    ("stringToJson(`NaN`)", "not valid JSON"),
    ("stringToJson(`[1e999]`)", "not a JSON value"),
    ("stringToJson(1)", "must be a string"),
    ("fromJSON(`" + "[" * 300 + "]" * 300 + "`)", "nested too deeply"),
    ("jsonMerge($Input.obj, $Input.list)", "argument 2 must be an object, got array"),
    ("jsonMerge(null, $Input.obj)", "argument 1 must be an object, got null"),
    ("stringToUpper(1)", "must be a string"),
    ("stringToLower(null)", "must be a string, got null"),
]


@pytest.mark.parametrize(
    ("text", "fragment"), BUILTIN_TYPE_ERRORS, ids=[c[0] for c in BUILTIN_TYPE_ERRORS]
)
def test_builtin_type_errors(text: str, fragment: str) -> None:
    error = eval_error(text)
    assert fragment in error.message
    name = text.split("(", 1)[0]
    assert error.message.startswith(f"{name}(): ")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("format(`{}`)", "format(): the template has 1 '{}' placeholder(s) but 0 value(s)"),
        ('format("a {} b {}", 1)', "2 '{}' placeholder(s) but 1 value(s)"),
        ("format(`x`, 1)", "0 '{}' placeholder(s) but 1 value(s)"),
        ("regexMatchString(`(`, $Input.s)", "regexMatchString(): invalid pattern: missing )"),
        ("regexMatchString(`(((){1000}){1000}){1000}`, `a`)", "too large"),
        ("regexMatchString(`a{99999999999999999999}`, `a`)", "invalid repeat count"),
        ('hash($Input, "SHA-3")', "hash(): unknown hash algorithm 'SHA-3'"),
    ],
)
def test_literal_arguments_are_checked_at_compile_time(text: str, fragment: str) -> None:
    error = compile_error(text)
    assert fragment in error.message
    assert error.offset == 0


def test_computed_arguments_are_checked_at_run_time() -> None:
    # What a literal cannot show is left to evaluation.
    assert ev("format($Input.tpl, 1, 2)", {"Input": {"tpl": "{}-{}"}}) == "1-2"
    error = eval_error("format($Input.tpl, 1)", {"Input": {"tpl": "{}-{}"}})
    assert "2 '{}' placeholder(s) but 1 value(s)" in error.message
    assert ev("regexMatchString($Input.p, `ab`)", {"Input": {"p": "^a"}}) is True
    assert ev("hash(`a`, $Input.h)", {"Input": {"h": "md5"}}) == hashlib.md5(b"a").hexdigest()


def test_every_builtin_has_a_happy_path_and_a_type_error() -> None:
    happy = {text.split("(", 1)[0] for text, _ in BUILTIN_CASES}
    happy |= {"randomInt", "uuid"}  # tested separately below (random)
    errors = {text.split("(", 1)[0] for text, _ in BUILTIN_TYPE_ERRORS}
    no_type_error = {"get", "toArray", "jsonToString", "toJSON", "uuid", "now"}  # accept anything
    assert set(BUILTINS) <= happy
    assert set(BUILTINS) - no_type_error <= errors


def _arity_cases() -> list[tuple[str, int]]:
    cases = []
    for name, builtin in sorted(BUILTINS.items()):
        if builtin.min_args > 0:
            cases.append((name, builtin.min_args - 1))
        if builtin.max_args is not None:
            cases.append((name, builtin.max_args + 1))
    return cases


@pytest.mark.parametrize(("name", "count"), _arity_cases())
def test_builtin_arity_is_checked_at_compile_time(name: str, count: int) -> None:
    args = ", ".join(["1"] * count)
    error = compile_error(f"{name}({args})")
    assert error.message.startswith(f"function {name} takes ")
    assert f"(got {count})" in error.message
    assert error.offset == 0


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("length", "function length takes 1 argument: length(arrayOrObjectOrString)"),
        ("intAdd", "function intAdd takes 2 arguments"),
        ("arrayRange", "function arrayRange takes 2 to 3 arguments"),
        ("format", "function format takes at least 1 argument"),
        ("uuid", "function uuid takes no arguments"),
    ],
)
def test_arity_messages(name: str, message: str) -> None:
    assert BUILTINS[name].arity_message().startswith(message)


def test_random_int_uses_the_injected_rng() -> None:
    expression = compile_expression("randomInt(0, 3)")
    values = [expression.evaluate({}, now=NOW, rng=random.Random(seed)) for seed in range(300)]
    assert set(values) == {0, 1, 2}  # min inclusive, max exclusive
    again = [expression.evaluate({}, now=NOW, rng=random.Random(seed)) for seed in range(300)]
    assert values == again
    assert ev("randomInt(-5, -4)") == -5


def test_uuid_is_v4_and_replayable() -> None:
    first = ev("uuid()", seed=7)
    assert first == ev("uuid()", seed=7)
    assert first != ev("uuid()", seed=8)
    parsed = uuid.UUID(first)
    assert parsed.version == 4
    assert parsed.variant == uuid.RFC_4122
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", first
    )
    # Two calls in one expression differ.
    pair = ev("toArray(uuid(), uuid())")
    assert pair[0] != pair[1]


def test_now_formats() -> None:
    expression = compile_expression("now()")
    naive = datetime(2024, 5, 6, 7, 8, 9, 5000)
    assert expression.evaluate({}, now=naive, rng=random.Random()) == "2024-05-06T07:08:09.005Z"
    tokyo = datetime(2024, 5, 6, 9, 0, 0, tzinfo=timezone(timedelta(hours=9)))
    assert expression.evaluate({}, now=tokyo, rng=random.Random()) == "2024-05-06T00:00:00.000Z"


def test_hash_of_lone_surrogate_from_env() -> None:
    env = {"Input": {"s": "\ud800"}}
    assert "lone surrogate" in eval_error('hash($Input.s, "MD5")', env).message


# --------------------------------------------------------------------------------------------
# The Expression object and errors
# --------------------------------------------------------------------------------------------


def test_expression_is_immutable_and_picklable() -> None:
    expression = compile_expression("$Input.n + 1")
    assert expression.text == "$Input.n + 1"
    assert expression.dialect == "cloudflow"
    with pytest.raises(AttributeError):
        expression.text = "1"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del expression.roots
    clone = pickle.loads(pickle.dumps(expression))
    assert isinstance(clone, Expression)
    assert clone.evaluate(ENV, now=NOW, rng=random.Random()) == 8
    assert copy.deepcopy(expression).text == expression.text
    assert "Expression('$Input.n + 1'" in repr(expression)
    legacy = pickle.loads(pickle.dumps(compile_expression("$.a", dialect="legacy")))
    assert legacy.dialect == "legacy"


def test_errors_are_picklable() -> None:
    error = compile_error("1 +")
    clone = pickle.loads(pickle.dumps(error))
    assert (clone.message, clone.offset, clone.expression) == (error.message, 3, "1 +")
    assert str(clone) == str(error)
    runtime = eval_error('"a" > 1')
    runtime.path = "States[0].Condition"
    clone2 = pickle.loads(pickle.dumps(runtime))
    assert (clone2.message, clone2.expression, clone2.offset, clone2.path) == (
        runtime.message, runtime.expression, runtime.offset, "States[0].Condition")  # fmt: skip
    assert str(clone2) == str(runtime)


def test_compile_cache_respects_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "(((1)))"
    assert ev(text) == 1
    monkeypatch.setattr(expressions_module, "MAX_DEPTH", 2)
    compile_error(text)


# --------------------------------------------------------------------------------------------
# Static guarantees
# --------------------------------------------------------------------------------------------

ENGINE = Path(expressions_module.__file__).parent
MODULES = [ENGINE / "expressions.py", ENGINE / "builtins.py", ENGINE / "templates.py"]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_dynamic_code_execution(path: Path) -> None:
    tree = ast.parse(path.read_text())
    forbidden_calls = {
        "eval",
        "exec",
        "compile",
        "__import__",
        "getattr",
        "setattr",
        "literal_eval",
    }
    forbidden_modules = {
        "django",
        "re",
        "pickle",
        "subprocess",
        "os",
        "importlib",
        "builtins",
        "ast",
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name):
                name = func.id
            elif isinstance(func, ast.Attribute):
                name = func.attr
            else:
                name = None
            assert name not in forbidden_calls, f"{path.name}:{node.lineno} calls {name}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name.split(".")[0] not in forbidden_modules, alias.name
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            assert (node.module or "").split(".")[0] not in forbidden_modules, node.module


def test_builtins_module_documents_how_to_add_one() -> None:
    assert "Files to touch" in (builtins_module.__doc__ or "")


# --------------------------------------------------------------------------------------------
# Regex engine vs Python's re on the common subset
# --------------------------------------------------------------------------------------------

REGEX_AGREEMENT = [
    ("a", "cat"),
    ("^a", "cat"),
    ("t$", "cat"),
    ("^c.t$", "cot"),
    ("a*", ""),
    ("^a*$", "aaa"),
    ("^a+b?$", "aab"),
    ("^(ab|cd)*$", "abcdab"),
    ("^(ab|cd)*$", "abcda"),
    ("[0-9]{3}", "a12b"),
    ("[0-9]{3}", "a123b"),
    ("^[^abc]+$", "xyz"),
    ("^[^abc]+$", "xaz"),
    ("\\s", "a b"),
    ("^\\S+$", "a b"),
    ("^\\w+$", "ab_9"),
    ("^\\W$", "!"),
    ("^\\D+$", "ab"),
    ("x{0}", "y"),
    ("^(a|b)(c|d)$", "bd"),
    ("^(?:a|ab)(?:c|bcd)(?:d*)$", "abcd"),
    ("(?i)^AbC$", "aBc"),
    ("[a-]", "-"),
    ("[]a]", "]"),
    ("\\.", "a.b"),
    ("\\.", "ab"),
    ("^a{2,}$", "aaaa"),
    ("^a{2,}$", "a"),
    ("^(a{1,2}){2}$", "aaa"),
    ("\\bfoo", "a foo"),
    ("\\Bfoo", "afoo"),
]


@pytest.mark.parametrize(("pattern", "text"), REGEX_AGREEMENT)
def test_regex_agrees_with_re(pattern: str, text: str) -> None:
    env = {"Input": {"p": pattern, "t": text}}
    assert ev("regexMatchString($Input.p, $Input.t)", env) is (re.search(pattern, text) is not None)


# --------------------------------------------------------------------------------------------
# Property tests (hypothesis), skipped when hypothesis is not installed
# --------------------------------------------------------------------------------------------

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is in the test extras
    HAVE_HYPOTHESIS = False
else:
    HAVE_HYPOTHESIS = True

if not HAVE_HYPOTHESIS:  # pragma: no cover

    @pytest.mark.skip(reason="hypothesis is not installed")
    def test_property_tests_need_hypothesis() -> None:
        pass


if HAVE_HYPOTHESIS:
    _TOKENS = [
        "$Input", "$Output", "$Context", "$Global", "$Item", "$", "$.a", "$local", ".a", ".b",
        ".__class__", "[", "]", "[*]", "(", ")", ",", "0", "1", "2.5", "-1", "1e3", '"s"', "`r`",
        '""', "true", "false", "null", "==", "!=", "<", "<=", ">", ">=", "&&", "||", "!", "-", "+",
        "*", "/", "%", "in", " ", "length(", "format(", "get(", "toArray(", "jsonMerge(",
        "arrayRange(", "split(", "regexMatchString(", "mapKeys(", "stringToJson(", "hash(", "eval(",
        "__import__", "'", "{", "}",
    ]  # fmt: skip

    _json_values = st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-10, 10)
        | st.floats(-5, 5, allow_nan=False)
        | st.text(max_size=5),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.sampled_from("ab"), children, max_size=3)
        ),
        max_leaves=12,
    )

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.text(max_size=200))
    def test_property_compile_raises_only_expression_error(text: str) -> None:
        for dialect in ("cloudflow", "legacy"):
            with contextlib.suppress(ExpressionError):
                compile_expression(text, dialect=dialect)

    @settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.sampled_from(_TOKENS), max_size=25), _json_values, _json_values,
           st.sampled_from(["cloudflow", "legacy"]))  # fmt: skip
    def test_property_token_soup(
        tokens: list[str], value_a: Any, value_b: Any, dialect: str
    ) -> None:
        text = "".join(tokens)
        try:
            expression = compile_expression(text, dialect=dialect)
        except ExpressionError:
            return
        env = {"Input": {"a": value_a, "b": value_b}, "input": {"a": value_a}, "local": value_b,
               "Output": value_b, "Context": value_a}  # fmt: skip
        snapshot = copy.deepcopy(env)
        try:
            result = expression.evaluate(env, now=NOW, rng=random.Random(0))
        except EvaluationError:
            return
        finally:
            assert env == snapshot
        json.dumps(result, allow_nan=False)  # a JSON value

    _regex_atoms = st.sampled_from(
        ["a", "b", "c", ".", "[ab]", "[^a]", "\\d", "1", "(?:a|b)", "(a|bc)", "x?"]
    )

    def _regex_combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return (
            st.tuples(children, children).map("".join)
            | st.tuples(children, children).map(lambda t: f"(?:{t[0]}|{t[1]})")
            | st.tuples(children, st.sampled_from(["*", "+", "?", "{1,2}", "{2}", "{0,1}"])).map(
                lambda t: f"(?:{t[0]}){t[1]}"
            )
        )

    _regexes = st.recursive(_regex_atoms, _regex_combine, max_leaves=6)

    @settings(max_examples=400, deadline=None)
    @given(
        st.sampled_from(["", "^"]),
        _regexes,
        st.sampled_from(["", "$"]),
        st.text("abc1x", max_size=10),
    )
    def test_property_regex_agrees_with_re(start: str, body: str, end: str, text: str) -> None:
        pattern = start + body + end
        env = {"Input": {"p": pattern, "t": text}}
        expected = re.search(pattern, text) is not None
        assert ev("regexMatchString($Input.p, $Input.t)", env) is expected, pattern
