"""Hostile inputs and expressions at run time, through ``POST /api/v1/flows/{flow}/executions/``
(Pass and Choice states run inline during the start request) and the callback API: each ends as
a coded 4xx or an execution failing with ``FnF.RuntimeError``, in under 1 s of CPU."""

from __future__ import annotations

import json

import pytest

from executions.models import Execution, TaskToken
from executions.runtime import transition as runtime
from tests.factories import FunctionFactory
from tests.hostile.support import cloudflow, failed_with, pass_state, refused

pytestmark = pytest.mark.django_db


def flow(hostile, *states: dict, name: str = "hostile", start: str = "A") -> str:
    response = hostile.create_flow(cloudflow(*states, start=start), name)
    assert response.status_code == 201, response.json()
    return name


def constructor_flow(hostile, constructor: dict) -> str:
    return flow(hostile, pass_state(InputConstructor=constructor))


# --- expressions that would run for minutes -----------------------------------------------------


def test_a_computed_regex_with_empty_groups(hostile):
    # regexMatchString("(((){1000}){1000}){1000}", "a") ran for minutes
    name = constructor_flow(hostile, {"m.$": "regexMatchString($Input.p, `a`)"})
    body = failed_with(hostile.start(name, {"p": "(((){1000}){1000}){1000}"}))
    assert "too large once repetitions are expanded" in body["error_message"]
    assert "States[0].InputConstructor" in body["error_message"]


def test_twenty_regexes_in_one_constructor(hostile):
    # was 11 s: each expression had a budget of its own
    constructor = {f"m{i}.$": "regexMatchString(`(a|aa)*c`, $Input.s)" for i in range(20)}
    name = constructor_flow(hostile, constructor)
    body = failed_with(hostile.start(name, {"s": "a" * 30_000}))
    assert "evaluation budget exceeded" in body["error_message"]


def test_5000_constructor_keys_each_doing_work(hostile):
    constructor = {f"k{i}.$": "$Input.items" for i in range(5000)}
    name = constructor_flow(hostile, constructor)
    body = failed_with(hostile.start(name, {"items": list(range(2000))}))
    assert "evaluation budget exceeded" in body["error_message"]


def test_a_loop_of_heavy_expressions_does_not_hold_the_request(hostile):
    # Each entry stays within its own budget; the loop as a whole would not (500 entries inline
    # took 12 s). The start request stops after about one budget's worth and hands the rest of
    # the inline work to a worker.
    heavy = {"m.$": "regexMatchString(`(a|aa)*c`, $Input.s)", "s.$": "$Input.s"}
    name = flow(
        hostile,
        {"Name": "A", "Type": "Pass", "InputConstructor": heavy, "Next": "B"},
        {"Name": "B", "Type": "Choice", "Default": "A",
         "Branches": [{"Condition": "$Input.s == `stop`", "Next": "C"}]},
        {"Name": "C", "Type": "Succeed"},
    )  # fmt: skip
    response = hostile.start(name, {"s": "a" * 6000})
    assert response.json()["status"] == "Running"
    execution = Execution.objects.get(name="e1")
    assert execution.work.filter(kind="resume").exists()


def test_a_huge_integer_plus_a_half(hostile):
    # `$Input.big + 0.5` raised OverflowError (FnF.InternalError) with an integer beyond float
    # range; such an integer is no longer accepted as input at all.
    name = constructor_flow(hostile, {"x.$": "$Input.big + 0.5"})
    body = refused(hostile.start(name, b'{"big": 1' + b"0" * 400 + b"}"), code="InvalidArgument")
    assert "number out of range" in body["message"] and "input.big" in body["message"]
    assert failed_with(hostile.start(name, {"big": "x"}, name="e2"))["error_message"].endswith(
        "cannot add string and number ('+' takes two numbers, two strings or two arrays; use "
        "format() to build text) at offset 11 in expression '$Input.big + 0.5'"
    )


def test_a_huge_integer_in_arithmetic(hostile):
    name = constructor_flow(hostile, {"x.$": "$Input.big * 10.0", "y.$": "mathAdd($Input.big, 1)"})
    body = failed_with(hostile.start(name, {"big": 10**308}))
    assert "numeric overflow" in body["error_message"]


def test_string_to_json_respects_the_array_limit(hostile):
    name = constructor_flow(hostile, {"n.$": "length(stringToJson($Input.s))"})
    text = "[" + ",".join(["0"] * 120_000) + "]"  # 240 KB: within the payload limit
    body = failed_with(hostile.start(name, {"s": text}))
    assert "array too long (120000 members; the limit is 100000)" in body["error_message"]


def test_string_to_json_of_a_lone_surrogate(hostile):
    name = constructor_flow(hostile, {"v.$": "stringToJson($Input.s)"})
    body = failed_with(hostile.start(name, {"s": '"\\ud800"'}))
    assert "not valid Unicode" in body["error_message"]


@pytest.mark.parametrize(
    ("wait", "input"),
    [
        ({"Timestamp.$": "$Input.t"}, {"t": "9999-12-31T23:59:59-14:00"}),
        ({"Seconds.$": "$Input.s"}, {"s": 1e15}),
        ({"Seconds.$": "$Input.s"}, {"s": 10**300}),
    ],
)
def test_waits_past_the_latest_moment(hostile, wait, input):
    # a Timestamp of year 9999 at UTC-14 was a 500 at start
    name = flow(hostile, {"Name": "A", "Type": "Wait", "End": True, **wait})
    failed_with(hostile.start(name, input))


# --- inputs that are not JSON flowsite can keep ------------------------------------------------


def test_a_lone_surrogate_in_the_input(hostile):
    # was a 500 at start
    name = constructor_flow(hostile, {"x.$": "$Input"})
    body = refused(hostile.start(name, b'{"a": ["ok", "\\ud800"]}'), code="InvalidArgument")
    assert "not valid Unicode" in body["message"]
    assert "input.a[1]" in body["message"]
    assert not Execution.objects.exists()


@pytest.mark.parametrize(
    ("input", "fragment"),
    [
        (b'{"big": ' + b"9" * 400 + b"}", "input.big"),
        (b'{"k": -' + b"9" * 320 + b"}", "input.k"),
        (b'{"deep": ' + b"[" * 150 + b"]" * 150 + b"}", "nested too deeply"),
        (b'{"\\udc00": 1}', 'input["\\udc00"]'),
    ],
)
def test_inputs_flowsite_cannot_keep(hostile, input, fragment):
    name = constructor_flow(hostile, {"x.$": "$Input"})
    body = refused(hostile.start(name, input), code="InvalidArgument")
    assert fragment in body["message"]


def test_an_input_of_more_values_than_the_payload_limit_allows(hostile):
    name = constructor_flow(hostile, {"x.$": "$Input"})
    body = refused(
        hostile.start(name, b'{"a": [' + b",".join([b"0"] * 200_000) + b"]}"),
        code="EntityTooLarge",
        status=413,
    )
    assert "limit" in body["message"]


def test_nan_in_the_input(hostile):
    name = constructor_flow(hostile, {"x.$": "$Input"})
    refused(hostile.start(name, b'{"a": NaN}'), code="MalformedJSON")


# --- callback outputs ------------------------------------------------------------------------


@pytest.fixture
def waiting(hostile) -> str:
    """A Task waiting for a callback; returns its token."""
    FunctionFactory(name="submit")
    task = {"Name": "A", "Type": "Task", "Action": "FC:InvokeFunction", "End": True,
            "TaskMode": "WaitForCustomCallback",
            "Parameters": {"resourceArn": "acs:fc:::functions/submit"}}  # fmt: skip
    name = flow(hostile, task, name="callback")
    assert hostile.start(name, {}).json()["status"] == "Running"
    return runtime.token_of(TaskToken.objects.get(is_open=True))


@pytest.mark.parametrize(
    "output",
    [
        '{"result": "\\ud800"}',  # the report's output as JSON text
        '"{\\"result\\": \\"\\\\ud800\\"}"',  # ... as a string holding JSON text
        '{"n": ' + "9" * 400 + "}",
    ],
)
def test_callback_outputs_flowsite_cannot_keep(hostile, waiting, output):
    body = b'{"task_token": "' + waiting.encode() + b'", "output": ' + output.encode() + b"}"
    response = hostile.post("/api/v1/tasks/report-succeeded/", body)
    refused(response, code="InvalidArgument")
    assert "output" in response.json()["message"]
    # the task still waits, and a good report completes it
    good = hostile.post(
        "/api/v1/tasks/report-succeeded/", {"task_token": waiting, "output": {"ok": True}}
    )
    assert good.status_code == 200, good.json()
    assert json.loads(json.dumps(Execution.objects.get().output)) == {"ok": True}
