"""Bounded evaluation: one ``EvalBudget`` shared by many expressions, templates and mappings;
regexes whose size counts empty and nested groups; parsed JSON held to the same limits as built
values; arithmetic past float range as a coded error; and ``check_json_value``."""

from __future__ import annotations

import random
import re
import time
from datetime import UTC, datetime

import pytest

from executions.engine import expressions as expressions_module
from executions.engine.builtins import (
    MAX_JSON_INTEGER,
    EvalBudget,
    JsonValueError,
    check_json_value,
)
from executions.engine.expressions import (
    MAX_EVAL_STEPS,
    MAX_EVAL_WORK,
    EvaluationError,
    compile_expression,
    new_budget,
)
from executions.engine.templates import compile_mappings, compile_template

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def ev(text: str, env: dict | None = None, **kwargs):
    return compile_expression(text).evaluate(env or {}, now=NOW, rng=random.Random(0), **kwargs)


def failure(text: str, env: dict | None = None, **kwargs) -> EvaluationError:
    with pytest.raises(EvaluationError) as info:
        ev(text, env, **kwargs)
    return info.value


def cpu(fn):
    started = time.thread_time()
    try:
        result = fn()
    except Exception as exc:  # noqa: BLE001 - the caller inspects it
        result = exc
    return result, time.thread_time() - started


# --- one budget, shared ---------------------------------------------------------------------


def test_new_budget_has_the_module_limits():
    budget = new_budget()
    assert (budget.max_steps, budget.max_work) == (MAX_EVAL_STEPS, MAX_EVAL_WORK)
    assert (budget.steps, budget.work) == (0, 0)


def test_a_budget_is_charged_across_evaluations():
    budget = EvalBudget(max_work=1_000)
    env = {"Input": {"list": list(range(400))}}
    ev("$Input.list", env, budget=budget)
    ev("$Input.list", env, budget=budget)
    assert budget.work == 2 * (400 + 4)  # a member each, and 4 for the array itself
    error = failure("$Input.list", env, budget=budget)
    assert "evaluation budget exceeded (more than 1000 units of work)" in error.message
    steps = EvalBudget(max_steps=100)
    for _ in range(33):
        ev("1 + 1", budget=steps)  # 3 steps: the chain and its two operands
    assert steps.steps == 99
    error = failure("1 + 1", budget=steps)
    assert "evaluation budget exceeded (more than 100 evaluation steps)" in error.message


def test_each_evaluation_without_a_budget_gets_a_fresh_one():
    env = {"Input": {"list": list(range(60_000))}}
    for _ in range(30):  # 30 × 60,000 units: far past one budget, fine one at a time
        assert len(ev("$Input.list", env)) == 60_000


def test_a_template_shares_one_budget_among_its_expressions(monkeypatch):
    monkeypatch.setattr(expressions_module, "MAX_EVAL_WORK", 10_000)
    env = {"Input": {"list": list(range(3000))}}
    three = compile_template({"a.$": "$Input.list", "b.$": "$Input.list"}, path="C")
    assert len(three.render(env, now=NOW, rng=random.Random(0))["b"]) == 3000
    four = compile_template({f"k{i}.$": "$Input.list" for i in range(4)}, path="C")
    with pytest.raises(EvaluationError, match="budget exceeded") as info:
        four.render(env, now=NOW, rng=random.Random(0))
    assert info.value.path == "C.k3.$"  # the first three fit: 3 × 3,004 units
    budget = new_budget()
    three.render(env, now=NOW, rng=random.Random(0), budget=budget)
    assert budget.work > 6000


def test_mappings_share_one_budget_among_their_sources(monkeypatch):
    monkeypatch.setattr(expressions_module, "MAX_EVAL_WORK", 10_000)
    items = [{"target": f"t{i}", "source": "$input.list"} for i in range(4)]
    mappings = compile_mappings(items, path="inputMappings")
    env = {"input": {"list": list(range(3000))}}
    with pytest.raises(EvaluationError, match="budget exceeded"):
        mappings.apply(env, now=NOW, rng=random.Random(0))
    assert len(mappings.apply(env, now=NOW, rng=random.Random(0), budget=EvalBudget())) == 4


def test_large_literals_are_charged_too():
    literal = compile_template({"big": list(range(5000))}, path="C")
    budget = EvalBudget(max_work=20_000)
    for _ in range(3):
        literal.render({}, now=NOW, rng=random.Random(0), budget=budget)
    with pytest.raises(EvaluationError, match="budget exceeded"):
        literal.render({}, now=NOW, rng=random.Random(0), budget=budget)


def test_copies_charge_for_the_text_they_carry():
    # Many references to one large string: cheap to build, 64 MB once serialised.
    env = {"Input": {"s": "x" * 1_000_000}}
    refs = ", ".join(["$Input.s"] * 64)
    error = failure(f"toArray({refs})", env)
    assert "budget exceeded" in error.message


def test_twenty_regexes_share_the_budget_of_one_entry():
    # Each would be fine alone; together they stay within one budget (was 11 s).
    env = {"Input": {"s": "a" * 20_000}}
    constructor = {f"m{i}.$": "regexMatchString(`(a|aa)*c`, $Input.s)" for i in range(20)}
    template = compile_template(constructor, path="States[0].InputConstructor")
    result, seconds = cpu(lambda: template.render(env, now=NOW, rng=random.Random(0)))
    assert isinstance(result, EvaluationError)
    assert "budget exceeded" in result.message
    assert seconds < 1.0


# --- regex size and cost --------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    [
        "(((){1000}){1000}){1000}",
        "((){1000}){1000}",
        "((?:){1000}){1000}",
        "(((a?){0}){1000}){1000}",
    ],
)
def test_empty_and_nested_groups_count_in_the_regex_size(pattern):
    env = {"Input": {"p": pattern}}
    result, seconds = cpu(lambda: ev("regexMatchString($Input.p, `a`)", env))
    assert isinstance(result, EvaluationError), result
    assert "too large once repetitions are expanded" in result.message
    assert seconds < 0.5


def test_small_empty_groups_still_work():
    assert ev("regexMatchString(format(`^(){3}a(()|b)*$`), `abb`)") is True
    assert ev("regexMatchString(format(`^(()*)*$`), ``)") is True


def test_compiling_is_charged_even_when_cached():
    env = {"Input": {"p": "(a|b|c|d){100}"}}
    first, second = EvalBudget(), EvalBudget()
    ev("regexMatchString($Input.p, `x`)", env, budget=first)
    ev("regexMatchString($Input.p, `x`)", env, budget=second)  # cached now
    assert first.work == second.work > 800


def test_distinct_patterns_cannot_be_compiled_without_bound():
    # Ninety different patterns of ~7,500 instructions each (15,000 units to compile), in one
    # expression: compiling stops once the budget is spent.
    patterns = {f"p{i}": f"(a|b|c|d|e|f|g|h){{{300 + i}}}" for i in range(90)}
    text = " || ".join(f"regexMatchString($Input.p{i},`z`)" for i in range(90))
    result, seconds = cpu(lambda: ev(text, {"Input": patterns}))
    assert isinstance(result, EvaluationError)
    assert "budget exceeded" in result.message
    assert seconds < 1.0


# --- parsed JSON, numbers -------------------------------------------------------------------


def test_string_to_json_respects_the_array_limit():
    env = {"Input": {"s": "[" + ",".join(["0"] * 100_001) + "]"}}
    error = failure("length(stringToJson($Input.s))", env)
    assert "array too long (100001 members; the limit is 100000)" in error.message
    assert ev("length(stringToJson($Input.s))", {"Input": {"s": "[1,2,3]"}}) == 3


def test_string_to_json_respects_depth_unicode_and_budget():
    deep = "[" * 250 + "]" * 250
    assert "nested too deeply" in failure("stringToJson($Input.s)", {"Input": {"s": deep}}).message
    error = failure('stringToJson(`{"a": ["\\ud800"]}`)')
    assert "not valid Unicode" in error.message
    assert "(at $.a[0])" in error.message
    many = "[" + ",".join(["[0,0,0,0,0,0,0,0,0]"] * 99_000) + "]"
    assert "budget exceeded" in failure("stringToJson($Input.s)", {"Input": {"s": many}}).message


@pytest.mark.parametrize(
    "text",
    ["$Input.big + 0.5", "0.5 + $Input.big", "mathAdd($Input.big, 0.5)", "$Input.big * 1.5",
     "$Input.big / 3", "$Input.big % 0.5", "$Input.big - 0.5", "intAdd($Input.big, 1)",
     "-$Input.big", "$Input.big + 1"],
)  # fmt: skip
def test_arithmetic_with_integers_past_float_range_is_a_coded_error(text):
    error = failure(text, {"Input": {"big": 10**400}})
    assert "overflow" in error.message


def test_comparisons_with_huge_integers_are_exact():
    env = {"Input": {"big": 10**400}}
    assert ev("$Input.big > 1.5", env) is True
    assert ev("$Input.big == 1e300", env) is False


def test_smallest_64_bit_integer_literal():
    assert ev("-9223372036854775808") == -(2**63)
    assert type(ev("-9223372036854775808")) is int
    assert ev("-9223372036854775808 + 9223372036854775807") == -1
    assert ev("$Input.x == -9223372036854775808", {"Input": {"x": -(2**63)}}) is True
    assert "integer overflow" in failure("-9223372036854775808 - 1").message
    for bad in ("9223372036854775808", "--9223372036854775808", "-9223372036854775809"):
        with pytest.raises(expressions_module.ExpressionError, match="out of range"):
            compile_expression(bad)


def test_messages_name_json_types():
    env = {"Input": {"o": {}, "n": None, "s": "x", "a": []}}
    for text in ("$Input.o + 1", "$Input.n - 1", "$Input.s * 2", "!$Input.a", "length(1)"):
        message = failure(text, env).message
        assert not re.search(r"\b(dict|NoneType|str|list|int|float|bool)\b", message), message


# --- check_json_value -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind", "where"),
    [
        ({"a": [1, {"b c": "\ud800"}]}, "text", 'input.a[1]["b c"]'),
        ({"\udfff": 1}, "text", 'input["\\udfff"]'),  # shown escaped: it cannot be sent
        ({"a": 10**400}, "number", "input.a"),
        ({"a": -(10**400)}, "number", "input.a"),
        ({"a": float("nan")}, "number", "input.a"),
        ([float("inf")], "number", "input[0]"),
        ({"a": {"b": {"c": {"d": 1}}}}, "depth", "input.a.b.c"),
        ({"a": (1, 2)}, "type", "input.a"),
        ({"a": object()}, "type", "input.a"),
    ],
)
def test_check_json_value_refuses_what_cannot_be_stored(value, kind, where):
    with pytest.raises(JsonValueError) as info:
        check_json_value(value, max_depth=3)
    assert info.value.kind == kind
    assert info.value.where("input") == where


def test_check_json_value_counts_and_bounds_values():
    value = {"a": [1, 2, {"b": None}], "c": "é", "d": MAX_JSON_INTEGER, "e": 1.5, "f": True}
    assert check_json_value(value) == 10
    with pytest.raises(JsonValueError) as info:
        check_json_value(list(range(1000)), max_nodes=100)
    assert info.value.kind == "nodes"
    with pytest.raises(JsonValueError, match="too long"):
        check_json_value({"s": "x" * 11}, max_string=10)
    with pytest.raises(JsonValueError, match="too long"):
        check_json_value([[1, 2, 3]], max_array=2)


def test_check_json_value_is_quick_on_large_values():
    value = {"items": [{"id": i, "name": f"item {i}", "tags": ["a", "b"]} for i in range(30_000)]}
    result, seconds = cpu(lambda: check_json_value(value))
    assert result == 1 + 1 + 30_000 * 6
    assert seconds < 1.0
