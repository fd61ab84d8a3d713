"""Tests for constructors and legacy mappings (executions/engine/templates.py). No Django."""

from __future__ import annotations

import copy
import math
import random
from datetime import UTC, date, datetime
from typing import Any

import pytest

from executions.engine.expressions import EvaluationError
from executions.engine.templates import (
    Mappings,
    Template,
    TemplateError,
    compile_mappings,
    compile_template,
    compile_value_or_expr,
)

NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)

ENV: dict[str, Any] = {
    "Input": {"Body": {"job_id": "j-1", "size": 3}, "list": [1, 2], "name": "n"},
    "Output": {"Body": {"result": "ok"}, "StatusCode": 200},
    "Context": {"Execution": {"Name": "e-1", "Input": {"delay": 5}}, "Current": {"RetryCount": 0}},
    "Global": {"g": 1},
}


def render(value: Any, env: dict[str, Any] | None = None, *, dialect: str = "cloudflow") -> Any:
    template = compile_template(value, path="T", dialect=dialect)
    return template.render(ENV if env is None else env, now=NOW, rng=random.Random(0))


def template_errors(
    value: Any, *, path: str = "T", dialect: str = "cloudflow"
) -> list[tuple[str, str]]:
    with pytest.raises(TemplateError) as info:
        compile_template(value, path=path, dialect=dialect)
    return info.value.errors


# --------------------------------------------------------------------------------------------
# CloudFlow constructors
# --------------------------------------------------------------------------------------------


def test_dollar_suffix_keys_are_expressions_and_drop_the_suffix() -> None:
    assert render({"job_id.$": "$Input.Body.job_id", "size.$": "$Input.Body.size + 1"}) == {
        "job_id": "j-1",
        "size": 4,
    }


def test_other_keys_are_literals() -> None:
    value = {
        "literal": "$Input",
        "n": 1,
        "f": 1.5,
        "b": False,
        "z": None,
        "s": "$Input.Body.job_id",
    }
    assert render(value) == value
    assert compile_template(value, path="T").is_constant


def test_nested_objects_and_lists() -> None:
    value = {
        "outer": {
            "inner.$": "$Context.Execution.Name",
            "keep": "$literal",
            "deeper": {"x.$": "$Global.g"},
        },
        "items": [
            {"id.$": "$Input.list[0]", "tag": "a"},
            "plain",
            [{"n.$": "length($Input.list)"}],
            {"$": "$Output.Body"},
        ],
        "list.$": "$Input.list",
    }
    assert render(value) == {
        "outer": {"inner": "e-1", "keep": "$literal", "deeper": {"x": 1}},
        "items": [{"id": 1, "tag": "a"}, "plain", [{"n": 2}], {"result": "ok"}],
        "list": [1, 2],
    }


def test_dollar_key_alone_is_the_whole_value() -> None:
    assert render({"$": "$Input"}) == ENV["Input"]
    assert render({"$": "jsonMerge($Input, $Output.Body)"}) == {**ENV["Input"], "result": "ok"}
    assert render({"$": "$Input.list"}) == [1, 2]
    assert render({"$": "length($Input.list) > 1"}) is True
    assert render({"nested": {"$": "$Input.name"}}) == {"nested": "n"}


def test_roots_and_constant_flag() -> None:
    template = compile_template({"a.$": "$Input.x", "b": {"c.$": "$Global.y"}}, path="T")
    assert template.roots == frozenset({"Input", "Global"})
    assert not template.is_constant
    assert compile_template({"a": [1, {"b": 2}]}, path="T").roots == frozenset()


def test_scalars_and_top_level_values() -> None:
    assert render("$Input") == "$Input"  # a bare string is a literal in CloudFlow
    assert render(5) == 5
    assert render(None) is None
    assert render([1, "two", {"three.$": "3"}]) == [1, "two", {"three": 3}]


def test_render_returns_fresh_values() -> None:
    env = copy.deepcopy(ENV)
    snapshot = copy.deepcopy(env)
    template = compile_template(
        {"const": {"deep": [1, 2]}, "whole.$": "$Input", "list.$": "$Input.list"}, path="T"
    )
    first = template.render(env, now=NOW, rng=random.Random(0))
    first["const"]["deep"].append(3)
    first["whole"]["Body"]["job_id"] = "mutated"
    first["list"].append(99)
    second = template.render(env, now=NOW, rng=random.Random(0))
    assert second["const"] == {"deep": [1, 2]}
    assert second["whole"]["Body"]["job_id"] == "j-1"
    assert env == snapshot
    constant = compile_template({"a": [1]}, path="T")
    out = constant.render({}, now=NOW, rng=random.Random(0))
    out["a"].append(2)
    assert constant.render({}, now=NOW, rng=random.Random(0)) == {"a": [1]}


def test_dollar_beside_other_keys_is_an_error() -> None:
    errors = template_errors({"$": "$Input", "other": 1}, path="States[0].OutputConstructor")
    assert errors == [
        (
            "States[0].OutputConstructor.$",
            "'$' must be the only key of its object (its result replaces the whole object)",
        )
    ]


@pytest.mark.parametrize(
    ("value", "path", "fragment"),
    [
        ({"a.$": 5}, "T.a.$", "the value of 'a.$' must be an expression string, got number"),
        ({"a.$": None}, "T.a.$", "got null"),
        ({"a.$": {"b": 1}}, "T.a.$", "got object"),
        ({"$": ["x"]}, "T.$", "the value of '$' must be an expression string, got array"),
        ({".$": "$Input"}, "T..$", "the key name before '.$' is empty"),
        ({"a": 1, "a.$": "$Input"}, "T.a.$", "key 'a' is given twice (as 'a' and 'a.$')"),
        ({True: 1}, "T.True", "keys must be strings, got boolean"),
        ({1: "x"}, "T.1", "keys must be strings, got number"),
        ({"d": date(2024, 1, 1)}, "T.d", "only JSON values are allowed (quote dates"),
        ({"n": math.nan}, "T.n", "numbers must be finite"),
        ({"l": [1, math.inf]}, "T.l[1]", "numbers must be finite"),
        ({"s": {1, 2}}, "T.s", "unsupported value: only JSON values are allowed"),
        ({"a.$": "$Input.x +"}, "T.a.$", "unexpected end of expression at offset 10"),
        ({"a.$": "$input.x"}, "T.a.$", "did you mean $Input?"),
        ({"a.$": "eval('1')"}, "T.a.$", "unknown function 'eval'"),
        ({"a.$": "length(1, 2)"}, "T.a.$", "function length takes 1 argument"),
    ],
)
def test_compile_errors(value: Any, path: str, fragment: str) -> None:
    errors = template_errors(value)
    assert len(errors) == 1, errors
    assert errors[0][0] == path
    assert fragment in errors[0][1]


def test_all_errors_are_collected_with_paths() -> None:
    constructor = {
        "job_id.$": "$Input.Body.job_id )",
        "ok.$": "$Input.Body.job_id",
        "nested": {"bad.$": 1, "fine": "x", "list": [{"x.$": "nope("}, {"$": "$Input", "y": 2}]},
        "also.$": "__import__('os')",
    }
    with pytest.raises(TemplateError) as info:
        compile_template(constructor, path="States[2].InputConstructor")
    paths = [path for path, _ in info.value.errors]
    assert paths == [
        "States[2].InputConstructor.job_id.$",
        "States[2].InputConstructor.nested.bad.$",
        "States[2].InputConstructor.nested.list[0].x.$",
        "States[2].InputConstructor.nested.list[1].$",
        "States[2].InputConstructor.also.$",
    ]
    message = dict(info.value.errors)["States[2].InputConstructor.job_id.$"]
    assert "unexpected ')' at offset 19" in message
    # str() lists every problem, one "path: message" each.
    text = str(info.value)
    assert text.count("States[2].InputConstructor") == 5


def test_empty_path_has_no_leading_dot() -> None:
    errors = template_errors({"a.$": 1}, path="")
    assert errors[0][0] == "a.$"


def test_deeply_nested_templates_are_refused_cleanly() -> None:
    value: Any = {"leaf.$": "$Input"}
    for _ in range(2000):
        value = {"k": value}
    errors = template_errors(value)
    assert len(errors) == 1
    assert "nested too deeply" in errors[0][1]


def test_render_errors_carry_the_path() -> None:
    template = compile_template({"ok": 1, "sum.$": "$Input.name + 1"}, path="States[1].Parameters")
    with pytest.raises(EvaluationError) as info:
        template.render(ENV, now=NOW, rng=random.Random(0))
    error = info.value
    assert error.path == "States[1].Parameters.sum.$"
    assert error.expression == "$Input.name + 1"
    assert "cannot add string and number" in str(error)
    whole = compile_template({"$": "1 / 0"}, path="S.OutputConstructor")
    with pytest.raises(EvaluationError) as info:
        whole.render({}, now=NOW, rng=random.Random(0))
    assert info.value.path == "S.OutputConstructor.$"


def test_render_is_deterministic_given_rng_and_now() -> None:
    template = compile_template({"id.$": "uuid()", "at.$": "now()"}, path="T")
    a = template.render({}, now=NOW, rng=random.Random(5))
    b = template.render({}, now=NOW, rng=random.Random(5))
    assert a == b
    assert a["at"] == "2024-01-02T03:04:05.000Z"


def test_unknown_dialect() -> None:
    with pytest.raises(ValueError):
        compile_template({}, path="T", dialect="asl")


def test_template_repr() -> None:
    assert "Template(path='T'" in repr(compile_template({"a.$": "$Input"}, path="T"))


# --------------------------------------------------------------------------------------------
# compile_value_or_expr
# --------------------------------------------------------------------------------------------


def test_value_or_expr() -> None:
    literal = compile_value_or_expr({"Seconds": 10}, "Seconds", path="States[0]")
    assert isinstance(literal, Template)
    assert literal.is_constant
    assert literal.path == "States[0].Seconds"
    assert literal.render({}, now=NOW, rng=random.Random()) == 10
    expression = compile_value_or_expr(
        {"Seconds.$": "$Context.Execution.Input.delay"}, "Seconds", path="States[0]"
    )
    assert expression is not None
    assert expression.path == "States[0].Seconds.$"
    assert expression.roots == {"Context"}
    assert expression.render(ENV, now=NOW, rng=random.Random()) == 5
    assert compile_value_or_expr({}, "Seconds", path="States[0]") is None


def test_value_or_expr_errors() -> None:
    with pytest.raises(TemplateError) as info:
        compile_value_or_expr({"Seconds": 1, "Seconds.$": "$Input.s"}, "Seconds", path="S")
    assert info.value.errors == [("S.Seconds.$", "give either 'Seconds' or 'Seconds.$', not both")]
    with pytest.raises(TemplateError) as info:
        compile_value_or_expr({"Seconds.$": 5}, "Seconds", path="S")
    assert info.value.errors[0][0] == "S.Seconds.$"
    with pytest.raises(TemplateError) as info:
        compile_value_or_expr({"Seconds.$": "$Input.s >"}, "Seconds", path="S")
    assert "unexpected end of expression" in info.value.errors[0][1]


# --------------------------------------------------------------------------------------------
# Legacy dialect templates (serviceParams)
# --------------------------------------------------------------------------------------------


def test_legacy_service_params() -> None:
    env = {"input": {"a": 1, "b": "x"}, "local": {}, "context": {}}
    value = {"MessageBody": "$", "Priority": 1, "Tag": "$.b", "Plain": "text", "Keep.$": "kept"}
    assert render(value, env, dialect="legacy") == {
        "MessageBody": {"a": 1, "b": "x"},
        "Priority": 1,
        "Tag": "x",
        "Plain": "text",
        "Keep.$": "kept",  # ".$" keys are a CloudFlow notion only
    }
    errors = template_errors({"Bad": "$Input.x"}, dialect="legacy")
    assert errors[0][0] == "T.Bad"
    assert "unknown variable $Input" in errors[0][1]


# --------------------------------------------------------------------------------------------
# Legacy mappings
# --------------------------------------------------------------------------------------------

LEGACY_ENV: dict[str, Any] = {
    "input": {"x": 1, "name": "n", "nested": {"k": [1, 2]}},
    "local": [{"result": "r0"}, {"result": "r1"}],
    "context": {"task": {"token": "tok"}},
}


def apply(items: list[Any], env: dict[str, Any] | None = None) -> dict[str, Any]:
    mappings = compile_mappings(items, path="steps[0].inputMappings")
    return mappings.apply(LEGACY_ENV if env is None else env, now=NOW, rng=random.Random(0))


def test_mapping_sources() -> None:
    result = apply(
        [
            {"target": "whole", "source": "$"},
            {"target": "x", "source": "$.x"},
            {"target": "name", "source": "$input.name"},
            {"target": "k1", "source": "$.nested.k[1]"},
            {"target": "results", "source": "$local[*].result"},
            {"target": "first", "source": "$local[0].result"},
            {"target": "token", "source": "$context.task.token"},
            {"target": "const", "source": "pass1"},
            {"target": "num", "source": 5},
            {"target": "flag", "source": False},
            {"target": "nothing", "source": None},
            {"target": "obj", "source": {"a": "$.x", "b": [1]}},
            {"target": "missing", "source": "$.missing"},
        ]
    )
    assert result == {
        "whole": LEGACY_ENV["input"],
        "x": 1,
        "name": "n",
        "k1": 2,
        "results": ["r0", "r1"],
        "first": "r0",
        "token": "tok",
        "const": "pass1",
        "num": 5,
        "flag": False,
        "nothing": None,
        "obj": {"a": "$.x", "b": [1]},  # constants are taken as given, never interpreted
        "missing": None,
    }


def test_seed_callback_mapping() -> None:
    # Seed S1: a callback output {"status": "ok"} mapped by target s, source $local.status.
    mappings = compile_mappings(
        [{"target": "s", "source": "$local.status"}], path="steps[0].outputMappings"
    )
    env = {"input": {}, "local": {"status": "ok"}, "context": {}}
    assert mappings.apply(env, now=NOW, rng=random.Random()) == {"s": "ok"}


def test_mappings_object() -> None:
    mappings = compile_mappings(
        [
            {"target": "a", "source": "$.x"},
            {"target": "b", "source": "$local.y"},
            {"target": "c", "source": 1},
        ],
        path="p",
    )
    assert isinstance(mappings, Mappings)
    assert mappings.targets == ("a", "b", "c")
    assert mappings.roots == frozenset({"input", "local"})
    assert len(mappings) == 3
    assert "Mappings(path='p'" in repr(mappings)
    empty = compile_mappings(None, path="p")
    assert len(empty) == 0
    assert empty.apply(LEGACY_ENV, now=NOW, rng=random.Random()) == {}
    assert len(compile_mappings([], path="p")) == 0


def test_mapping_apply_returns_fresh_values() -> None:
    env = copy.deepcopy(LEGACY_ENV)
    snapshot = copy.deepcopy(env)
    mappings = compile_mappings(
        [{"target": "all", "source": "$"}, {"target": "obj", "source": {"k": [1]}}], path="p"
    )
    first = mappings.apply(env, now=NOW, rng=random.Random())
    first["all"]["nested"]["k"].append(3)
    first["obj"]["k"].append(2)
    assert env == snapshot
    assert mappings.apply(env, now=NOW, rng=random.Random())["obj"] == {"k": [1]}


def test_mapping_errors_are_collected() -> None:
    items = [
        {"target": "ok", "source": "$.x"},
        {"source": "$.x"},
        {"target": "", "source": 1},
        {"target": 5, "source": 1},
        {"target": "ok", "source": 2},
        {"target": "t", "source": "$.x +"},
        {"target": "u", "source": "$Input.x"},
        {"target": "v"},
        {"target": "w", "source": 1, "sources": 2},
        "not an object",
        {"target": "z", "source": {"d": date(2024, 1, 1)}},
    ]
    with pytest.raises(TemplateError) as info:
        compile_mappings(items, path="steps[3].inputMappings")
    errors = info.value.errors
    assert [path for path, _ in errors] == [
        "steps[3].inputMappings[1].target",
        "steps[3].inputMappings[2].target",
        "steps[3].inputMappings[3].target",
        "steps[3].inputMappings[4].target",
        "steps[3].inputMappings[5].source",
        "steps[3].inputMappings[6].source",
        "steps[3].inputMappings[7].source",
        "steps[3].inputMappings[8].sources",
        "steps[3].inputMappings[9]",
        "steps[3].inputMappings[10].source.d",
    ]
    messages = [message for _, message in errors]
    assert messages[0] == "is required"
    assert messages[1] == "must be a non-empty string"
    assert "duplicate target 'ok' (also in item 0)" in messages[3]
    assert "unexpected end of expression" in messages[4]
    assert "unknown variable $Input" in messages[5]
    assert messages[6] == "is required"
    assert messages[7] == "unknown key (expected target, source)"


def test_mappings_must_be_a_list() -> None:
    with pytest.raises(TemplateError) as info:
        compile_mappings({"target": "a", "source": 1}, path="p")  # type: ignore[arg-type]
    assert info.value.errors == [("p", "must be a list of {target, source} items, got object")]


def test_mapping_runtime_error_has_the_source_path() -> None:
    mappings = compile_mappings(
        [{"target": "t", "source": "$.name + 1"}], path="steps[0].outputMappings"
    )
    with pytest.raises(EvaluationError) as info:
        mappings.apply(LEGACY_ENV, now=NOW, rng=random.Random())
    assert info.value.path == "steps[0].outputMappings[0].source"
    assert info.value.expression == "$.name + 1"


def test_template_error_str_and_pickle() -> None:
    import pickle

    error = TemplateError([("a", "x"), ("b", "y")])
    assert str(error) == "a: x; b: y"
    clone = pickle.loads(pickle.dumps(error))
    assert clone.errors == [("a", "x"), ("b", "y")]
