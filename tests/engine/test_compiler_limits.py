"""The compiler's bounds and the FDL points settled in issue 5: size limits checked first, a
bounded number of diagnostics and hints, numbers range-checked before any conversion, Wait
moments within 1970..9998, GlobalConstructor on every state, ``.$`` keys in Task Parameters,
literal arguments checked at save time, and the smallest 64-bit integer."""

from __future__ import annotations

import json
import random
import textwrap
import time
from datetime import UTC, datetime

import pytest

from executions.engine.compiler import compile_data, compile_definition, fc_function_name
from executions.engine.compiler.common import (
    MAX_DIAGNOSTICS,
    MAX_EXPRESSION_TEXT,
    MAX_HINTS,
    MAX_WAIT_SECONDS,
)
from executions.engine.graph import DefinitionError, FlowGraph

NOW = datetime(2030, 1, 1, tzinfo=UTC)
ARN = "acs:fc:cn-hangzhou:123:functions/work/LATEST"


def cloudflow(*states: dict) -> dict:
    return {"Type": "StateMachine", "Name": "t", "SpecVersion": "v1", "StartAt": "A",
            "States": list(states)}  # fmt: skip


def task(**fields) -> dict:
    state = {"Name": "A", "Type": "Task", "Action": "FC:InvokeFunction", "End": True,
             "Parameters": {"resourceArn": ARN}}  # fmt: skip
    state.update(fields)
    return state


def errors(data: dict | str) -> list:
    with pytest.raises(DefinitionError) as info:
        if isinstance(data, str):
            compile_definition(textwrap.dedent(data))
        else:
            compile_data(data)
    return info.value.errors


def messages(data: dict | str) -> dict[str, str]:
    return {e.path: e.message for e in errors(data)}


def cpu(fn, *args):
    """(result or exception, CPU seconds) of ``fn(*args)``."""
    started = time.thread_time()
    try:
        result = fn(*args)
    except Exception as exc:  # noqa: BLE001 - the caller inspects it
        result = exc
    return result, time.thread_time() - started


# --- sizes first, and bounded reporting ---------------------------------------------------------


def test_too_many_states_is_refused_before_anything_else():
    states = [{"Name": f"S{i}", "Type": "Pass", "Next": f"missing{i}"} for i in range(10_000)]
    result, seconds = cpu(compile_data, cloudflow(*states))
    assert isinstance(result, DefinitionError)
    assert [e.message for e in result.errors] == [
        "the definition has 10000 states; at most 1000 are allowed"
    ]
    assert seconds < 1.0


def test_states_of_nested_scopes_count_too():
    inner = [{"Name": f"I{i}", "Type": "Pass", "End": True} for i in range(600)]
    data = cloudflow(
        {"Name": "A", "Type": "Parallel", "End": True,
         "Branches": [{"StartAt": "I0", "States": inner}, {"StartAt": "I0", "States": inner}]},
    )  # fmt: skip
    assert [e.message for e in errors(data)] == [
        "the definition has 1201 states; at most 1000 are allowed"
    ]
    legacy = {"version": "v1", "type": "flow", "steps": [
        {"name": "c", "type": "choice", "choices": [{"condition": "$.a", "steps": [
            {"name": f"s{i}", "type": "pass"} for i in range(400)]}],
         "default": {"steps": [{"name": f"d{i}", "type": "pass"} for i in range(400)]}},
        {"name": "f", "type": "foreach", "iterationMapping": {"collection": "$.x"},
         "steps": [{"name": f"e{i}", "type": "pass"} for i in range(300)]},
    ]}  # fmt: skip
    assert [e.message for e in errors(legacy)] == [
        "the definition has 1102 steps; at most 1000 are allowed"
    ]


def test_many_broken_references_are_refused_quickly_and_listed_up_to_a_limit():
    # 1,000 states whose Next names nothing: was 2.5 s (a difflib search per broken edge)
    states = [{"Name": f"S{i}", "Type": "Pass", "Next": f"S{i}x"} for i in range(1000)]
    result, seconds = cpu(compile_data, cloudflow(*states))
    assert seconds < 1.0
    listed = result.errors
    assert len(listed) == MAX_DIAGNOSTICS + 1
    assert listed[-1].path == "" and listed[-1].message.startswith("and ")
    assert listed[-1].message.endswith(" more problems not listed")
    hinted = [e for e in listed if "did you mean" in e.message]
    assert 0 < len(hinted) <= MAX_HINTS
    assert listed[0].message == "there is no state 'S0x' in this scope; did you mean 'S0'?"


def test_many_bad_constructor_keys_are_refused_quickly():
    constructor = {f"k{i}.$": "$Input." for i in range(5000)}  # was 7.6 s
    data = cloudflow({"Name": "A", "Type": "Pass", "End": True, "InputConstructor": constructor})
    text = json.dumps(data)
    result, seconds = cpu(compile_definition, text)
    assert isinstance(result, DefinitionError)
    assert seconds < 1.0
    assert result.errors[0].path == "States[0].InputConstructor.k0.$"
    assert result.errors[0].line == 1
    assert len(result.errors) == MAX_DIAGNOSTICS + 1


def test_expression_text_is_bounded_per_definition():
    expression = "$Input.a + length($Input.b) * 3 == 4 && format(`{}`, $Input.c) != `q`"
    constructor = {}
    for i in range(MAX_EXPRESSION_TEXT // len(expression) + 10):
        constructor[f"k{i}.$"] = f"{expression} || {i} > 0"
    data = cloudflow({"Name": "A", "Type": "Pass", "End": True, "InputConstructor": constructor})
    result, seconds = cpu(compile_data, data)
    assert isinstance(result, DefinitionError)
    assert seconds < 1.0
    assert "too much expression text in all (the limit is 65536 characters)" in (
        result.errors[0].message
    )
    # below the limit, the same expressions are fine
    few = dict(list(constructor.items())[:100])
    compile_data(cloudflow({"Name": "A", "Type": "Pass", "End": True, "InputConstructor": few}))


# --- numbers --------------------------------------------------------------------------------


BIG = 10**400


@pytest.mark.parametrize(
    ("fields", "path", "message"),
    [
        ({"Timeout": BIG}, "Timeout", "Timeout must be between 0 and 604800 seconds, got a "
         "401-digit number"),
        ({"Timeout": "1e400"}, "Timeout", "Timeout must be a number of seconds, got '1e400'"),
        ({"Timeout": float("nan")}, "Timeout", "Timeout must be a finite number, got nan"),
        ({"Timeout": -1}, "Timeout", "Timeout must be between 0 and 604800 seconds, got -1"),
        ({"Retry": [{"Errors": ["FnF.ALL"], "MaxAttempts": BIG, "IntervalSeconds": 1}]},
         "Retry[0].MaxAttempts", "MaxAttempts must be at most 100, got a 401-digit number"),
        ({"Retry": [{"Errors": ["FnF.ALL"], "MaxAttempts": 1, "IntervalSeconds": BIG}]},
         "Retry[0].IntervalSeconds", "IntervalSeconds must be at most 86400, got a 401-digit "
         "number"),
        ({"Retry": [{"Errors": ["FnF.ALL"], "MaxAttempts": 1, "IntervalSeconds": 1,
                     "BackoffRate": 1e300}]},
         "Retry[0].BackoffRate", "BackoffRate must be at most 100, got 1e+300"),
        ({"Retry": [{"Errors": ["FnF.ALL"], "MaxAttempts": 1, "IntervalSeconds": 1,
                     "BackoffRate": BIG}]},
         "Retry[0].BackoffRate", "BackoffRate must be at most 100, got a 401-digit number"),
        ({"Retry": [{"Errors": ["FnF.ALL"], "MaxAttempts": 1, "IntervalSeconds": 1,
                     "BackoffRate": float("inf")}]},
         "Retry[0].BackoffRate", "BackoffRate must be a finite number, got inf"),
        ({"Retry": [{"Errors": ["FnF.ALL"], "MaxAttempts": -1, "IntervalSeconds": 1}]},
         "Retry[0].MaxAttempts", "MaxAttempts must be at least 0, got -1"),
        ({"Retry": [{"Errors": ["FnF.ALL"], "MaxAttempts": 1, "IntervalSeconds": 1,
                     "MaxBackoffSeconds": -BIG}]},
         "Retry[0].MaxBackoffSeconds", "MaxBackoffSeconds must be at least 0, got a "
         "401-digit number"),
        ({"HeartbeatSeconds": BIG, "TaskMode": "WaitForCustomCallback"}, "HeartbeatSeconds",
         "HeartbeatSeconds must be at most 604800, got a 401-digit number"),
    ],
)  # fmt: skip
def test_task_numbers_are_range_checked(fields, path, message):
    got = messages(cloudflow(task(**fields)))
    assert got == {f"States[0].{path}": message}


@pytest.mark.parametrize(
    ("state", "path", "message"),
    [
        ({"Type": "Wait", "Seconds": BIG}, "Seconds",
         f"Seconds must be at most {MAX_WAIT_SECONDS}, got a 401-digit number"),
        ({"Type": "Wait", "Seconds": 1e15}, "Seconds",
         f"Seconds must be at most {MAX_WAIT_SECONDS}, got 1e+15"),
        ({"Type": "Wait", "Seconds": -5}, "Seconds", "Seconds must be at least 0, got -5"),
        ({"Type": "Wait", "Seconds": float("-inf")}, "Seconds",
         "Seconds must be a finite number, got -inf"),
        ({"Type": "Map", "ItemsPath": "$Input.x", "MaxConcurrency": BIG,
          "Processor": {"StartAt": "P", "States": [{"Name": "P", "Type": "Pass", "End": True}]}},
         "MaxConcurrency", "MaxConcurrency must be at most 10000, got a 401-digit number"),
        ({"Type": "Map", "ItemsPath": "$Input.x", "MaxConcuccency": -1,
          "Processor": {"StartAt": "P", "States": [{"Name": "P", "Type": "Pass", "End": True}]}},
         "MaxConcuccency", "MaxConcuccency must be at least 0, got -1"),
    ],
)  # fmt: skip
def test_wait_and_map_numbers_are_range_checked(state, path, message):
    got = messages(cloudflow({"Name": "A", "End": True, **state}))
    assert got == {f"States[0].{path}": message}


def test_legacy_numbers_are_range_checked():
    steps = [
        {"name": "w", "type": "wait", "duration": BIG},
        {"name": "t", "type": "task", "resourceArn": "acs:fc:::services/s/functions/f",
         "timeoutSeconds": BIG,
         "retry": [{"errors": ["FnF.ALL"], "multiplier": 1e300, "maxAttempts": BIG}]},
        {"name": "f", "type": "foreach", "iterationMapping": {"collection": "$.x"},
         "maxConcurrency": BIG, "steps": [{"name": "p", "type": "pass"}]},
    ]  # fmt: skip
    got = messages({"version": "v1", "type": "flow", "steps": steps})
    assert got == {
        "steps[0].duration": f"duration must be at most {MAX_WAIT_SECONDS}, got a 401-digit number",
        "steps[1].timeoutSeconds": "timeoutSeconds must be at most 31536000, got a 401-digit "
        "number",
        "steps[1].retry[0].multiplier": "multiplier must be at most 100, got 1e+300",
        "steps[1].retry[0].maxAttempts": "maxAttempts must be at most 100, got a 401-digit number",
        "steps[2].maxConcurrency": "maxConcurrency must be at most 10000, got a 401-digit number",
    }


def test_integers_too_large_for_json_are_refused_by_the_loader():
    text = "Type: StateMachine\nStartAt: A\nStates:\n- Name: A\n  Type: Pass\n  End: true\n"
    for digits in (401, 5000):  # 5,000 digits: int() itself would raise ValueError
        (error,) = errors(text + "  InputConstructor: {x: " + "9" * digits + "}\n")
        assert error.line == 7
        assert (
            error.message == f"the number 99999999999999999999… ({digits} characters) is too large"
        )


def test_the_smallest_64_bit_integer_can_be_written():
    graph = compile_definition(
        textwrap.dedent("""\
        Type: StateMachine
        StartAt: A
        States:
        - Name: A
          Type: Pass
          End: true
          InputConstructor:
            literal: -9223372036854775808
            computed.$: "-9223372036854775808"
            sum.$: -9223372036854775808 + 1
        """)
    )
    constructor = graph.state("States", "A").input_constructor
    assert constructor.render({}, now=NOW, rng=random.Random(0)) == {
        "literal": -(2**63),
        "computed": -(2**63),
        "sum": -(2**63) + 1,
    }
    got = messages(cloudflow({"Name": "A", "Type": "Pass", "End": True,
                              "InputConstructor": {"x.$": "9223372036854775808"}}))  # fmt: skip
    assert got == {
        "States[0].InputConstructor.x.$": "integer literal out of range (must fit in 64 bits) "
        "at offset 0 in expression '9223372036854775808'"
    }


# --- Wait timestamps -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stamp",
    ["9999-12-31T23:59:59-14:00", "9998-12-31T23:00:00-14:00", "0001-01-01T00:00:00+14:00",
     "1969-12-31T23:59:59Z"],
)  # fmt: skip
def test_wait_timestamps_outside_1970_to_9998_are_refused(stamp):
    got = messages(cloudflow({"Name": "A", "Type": "Wait", "Timestamp": stamp, "End": True}))
    assert got == {
        "States[0].Timestamp": "Timestamp must be between 1970-01-01T00:00:00Z and "
        f"9998-12-31T23:59:59Z, got {stamp!r}"
    }
    steps = [{"name": "w", "type": "wait", "timestamp": stamp}]
    assert list(messages({"version": "v1", "type": "flow", "steps": steps})) == [
        "steps[0].timestamp"
    ]


@pytest.mark.parametrize("stamp", ["1970-01-01T00:00:00Z", "9998-12-31T23:59:59+00:00",
                                   "9998-12-31T09:59:59-14:00"])  # fmt: skip
def test_wait_timestamps_at_the_edges_are_fine(stamp):
    graph = compile_data(cloudflow({"Name": "A", "Type": "Wait", "Timestamp": stamp, "End": True}))
    assert graph.state("States", "A").wait.timestamp == stamp


# --- GlobalConstructor is a common field -------------------------------------------------------


@pytest.mark.parametrize(
    "state",
    [
        {"Type": "Wait", "Seconds": 1, "Next": "B"},
        {"Type": "Choice", "Branches": [{"Condition": "true", "Next": "B"}], "Default": "B"},
        {"Type": "Succeed"},
        {"Type": "Fail", "Code": "E", "Detail": "d"},
        {"Type": "Pass", "Next": "B"},
    ],
)
def test_global_constructor_is_accepted_on_every_state(state):
    first = {"Name": "A", **state, "GlobalConstructor": {"seen.$": "$Input.x"}}
    ends = state["Type"] in ("Succeed", "Fail")
    data = cloudflow(first) if ends else cloudflow(first, {"Name": "B", "Type": "Succeed"})
    graph: FlowGraph = compile_data(data)
    constructor = graph.state("States", "A").global_constructor
    assert constructor.render({"Input": {"x": 5}}, now=NOW, rng=random.Random(0)) == {"seen": 5}


# --- expressions in Task Parameters ----------------------------------------------------------


def test_resource_arn_and_invocation_type_may_be_expressions():
    graph = compile_data(
        cloudflow(task(Parameters={
            "resourceArn.$": "format(`acs:fc:::functions/{}`, $Input.fn)",
            "invocationType.$": "$Input.how",
            "body.$": "$Input.payload",
        }))
    )  # fmt: skip
    spec = graph.state("States", "A").task
    assert (spec.resource, spec.function) == ("", None)
    assert graph.functions == frozenset()
    env = {"Input": {"fn": "resize", "how": "Async", "payload": {"a": 1}}}
    arn = spec.resource_expr.evaluate(env, now=NOW, rng=random.Random(0))
    assert arn == "acs:fc:::functions/resize"
    assert fc_function_name(arn) == "resize"
    assert spec.invocation_expr.evaluate(env, now=NOW, rng=random.Random(0)) == "Async"
    # Without them the graph is as before.
    plain = compile_data(cloudflow(task())).state("States", "A").task
    assert (plain.function, plain.resource_expr, plain.invocation_expr) == ("work", None, None)


def test_parameter_expressions_are_validated():
    got = messages(
        cloudflow(task(Parameters={
            "resourceArn": ARN,
            "resourceArn.$": "$Input.fn",
            "invocationType.$": "$Input.",
            "body": {}, "body.$": "$Input",
            "other.$": "$Input.x",
        }))
    )  # fmt: skip
    assert (
        got["States[0].Parameters.resourceArn.$"]
        == "use either resourceArn or resourceArn.$, not both"
    )
    assert got["States[0].Parameters.body.$"] == "use either body or body.$, not both"
    assert got["States[0].Parameters.invocationType.$"].startswith("expected a key name after '.'")
    assert got["States[0].Parameters.other.$"].startswith("unknown field 'other.$'")
    missing = messages(cloudflow(task(Parameters={"body": {}})))
    assert missing == {"States[0].Parameters.resourceArn": "resourceArn is required"}


@pytest.mark.parametrize(
    ("arn", "name"),
    [
        ("acs:fc:cn-hangzhou:123:functions/resize/LATEST", "resize"),
        ("acs:fc:::services/media.LATEST/functions/resize", "resize"),
        ("acs:fc:::functions", None),
        ("resize", None),
        ("acs:fc:::functions/" + "a" * 100_000 + " ", None),
    ],
)
def test_fc_function_name(arn, name):
    assert fc_function_name(arn) == name


# --- literal arguments ----------------------------------------------------------------------


def test_format_with_the_wrong_number_of_values_is_a_save_time_error():
    constructor = {"m.$": 'format("{}/{}", $Input.n)'}
    got = messages(
        cloudflow({"Name": "A", "Type": "Pass", "End": True, "OutputConstructor": constructor})
    )
    assert got == {
        "States[0].OutputConstructor.m.$": "format(): the template has 2 '{}' placeholder(s) but "
        "1 value(s) were given at offset 0 in expression 'format(\"{}/{}\", $Input.n)'"
    }


def test_a_regex_literal_that_would_expand_without_bound_is_a_save_time_error():
    result, seconds = cpu(
        compile_data,
        cloudflow({"Name": "A", "Type": "Choice", "Default": "B",
                   "Branches": [{"Condition": 'regexMatchString("(((){1000}){1000}){1000}", "a")',
                                 "Next": "B"}]},
                  {"Name": "B", "Type": "Succeed"}),
    )  # fmt: skip
    assert seconds < 1.0
    (error,) = result.errors
    assert error.path == "States[0].Branches[0].Condition"
    assert "too large once repetitions are expanded" in error.message
