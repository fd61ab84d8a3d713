"""Hypothesis fuzz of definitions (structured mutations of the demo and test flows, and random
YAML text) and of expressions (token soups and well-formed syntax trees, evaluated against
random data): every outcome is a compiled graph or value, or a ``DefinitionError``,
``ExpressionError`` or ``EvaluationError``, within 1 s of CPU, and never any other exception.

``FLOWSITE_FUZZ_EXAMPLES`` raises the number of examples of each test (default 100).
"""

from __future__ import annotations

import copy
import json
import os
import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from executions.engine import events as ev
from executions.engine import machine
from executions.engine.builtins import BUILTINS, MAX_INT, MIN_INT
from executions.engine.compiler import compile_data, compile_definition
from executions.engine.expressions import EvaluationError, ExpressionError, compile_expression
from executions.engine.graph import DefinitionError, FlowGraph
from executions.engine.yamlsafe import load_document
from tests.hostile.support import CPU_LIMIT

EXAMPLES = int(os.environ.get("FLOWSITE_FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # nothing written into the checkout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
NOW = datetime(2030, 1, 1, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]
SEED_FILES = sorted([*(REPO / "demo" / "flows").glob("*.yaml"),
                     *(REPO / "tests" / "engine" / "defs").glob("*.yaml")])  # fmt: skip
SEEDS = [load_document(path.read_text())[0] for path in SEED_FILES]


class Timed:
    """``with Timed(): ...`` fails when the block used more than CPU_LIMIT seconds of CPU."""

    def __enter__(self) -> Timed:
        self.started = time.thread_time()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        used = time.thread_time() - self.started
        assert used < CPU_LIMIT, f"used {used:.2f} s of CPU"


def compiles_or_refuses(action) -> FlowGraph | DefinitionError:
    with Timed():
        try:
            return action()
        except DefinitionError as exc:
            assert exc.errors
            return exc


# --- definitions -------------------------------------------------------------------------------

FIELDS = sorted(
    {"Type", "Name", "SpecVersion", "StartAt", "States", "Next", "End", "Description",
     "InputConstructor", "OutputConstructor", "GlobalConstructor", "ItemConstructor", "Retry",
     "Catch", "Errors", "MaxAttempts", "IntervalSeconds", "BackoffRate", "MaxBackoffSeconds",
     "Action", "TaskMode", "Parameters", "resourceArn", "resourceArn.$", "invocationType",
     "invocationType.$", "body", "body.$", "Timeout", "HeartbeatSeconds", "Seconds", "Seconds.$",
     "Timestamp", "Timestamp.$", "Branches", "Condition", "Default", "ItemsPath", "Processor",
     "ItemProcessor", "MaxConcurrency", "MaxConcuccency", "Code", "Detail", "$", "x.$",
     "version", "type", "name", "steps", "end", "goto", "choices", "condition", "default",
     "branches", "iterationMapping", "collection", "item", "index", "inputMappings",
     "outputMappings", "errorMappings", "target", "source", "retry", "catch", "errors",
     "intervalSeconds", "maxAttempts", "multiplier", "maxIntervalSeconds", "pattern",
     "timeoutSeconds", "duration", "timestamp", "serviceParams", "maxConcurrency", "nxet"}
)  # fmt: skip
WORDS = ["Pass", "Task", "Wait", "Choice", "Parallel", "Map", "Succeed", "Fail", "pass", "task",
         "foreach", "choice", "StateMachine", "flow", "v1", "FnF.ALL", "FC:InvokeFunction",
         "WaitForCustomCallback", "acs:fc:::functions/f", "acs:mns:::/queues/q/messages",
         "$Input", "$Input.a", "$.a", "$local[*].x", "2030-01-01T00:00:00Z",
         "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "A", "B", "S0", "",
         'regexMatchString("(((){1000}){1000}){1000}", "a")', 'format("{} {}", 1)',
         "(" * 80 + "1" + ")" * 80, "-9223372036854775808"]  # fmt: skip
NUMBERS = [0, 1, -1, 0.5, 2**63, -(2**63), 10**300, 10**400, -(10**400), 1e15, 1e300,
           float("nan"), float("inf"), float("-inf"), 86_401, 604_801]  # fmt: skip

scalars = (
    st.none()
    | st.booleans()
    | st.sampled_from(NUMBERS)
    | st.integers()
    | st.floats()
    | st.sampled_from(WORDS)
    | st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=10,
)


def _paths(value: Any, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += _paths(item, (*path, i))
    return out


def _at(doc: Any, path: tuple) -> Any:
    for key in path:
        doc = doc[key]
    return doc


@st.composite
def mutated_definitions(draw) -> Any:
    doc = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(_paths(doc)))
        if not path:
            if draw(st.booleans()):
                doc = draw(values)
            continue
        parent, key = _at(doc, path[:-1]), path[-1]
        operation = draw(st.sampled_from(
            ["replace", "delete", "rename", "duplicate", "add", "many"]
        ))  # fmt: skip
        if operation == "replace":
            parent[key] = draw(values)
        elif operation == "delete":
            del parent[key]
        elif operation == "rename" and isinstance(parent, dict):
            parent[draw(st.sampled_from(FIELDS))] = parent.pop(key)
        elif operation == "duplicate" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
        elif operation == "add" and isinstance(parent[key], dict):
            parent[key][draw(st.sampled_from(FIELDS))] = draw(values)
        elif operation == "many" and isinstance(parent, list):
            # hundreds of copies: sizes and counts near and past the limits
            parent.extend(copy.deepcopy(parent[key]) for _ in range(draw(st.integers(1, 1200))))
    return doc


@FUZZ
@given(mutated_definitions(), st.dictionaries(st.sampled_from(["a", "x", "items", "s"]), values))
def test_mutated_definitions(doc, draw_input):
    outcome = compiles_or_refuses(lambda: compile_data(doc))
    # The same document as text goes through the YAML loader too.
    text = json.dumps(doc, allow_nan=True, default=str)
    if len(text) <= 1_048_576:
        compiles_or_refuses(lambda: compile_definition(text))
    event("compiled" if isinstance(outcome, FlowGraph) else "refused")
    if isinstance(outcome, FlowGraph):
        assert outcome.root.start_at in outcome.root.states
        starts_cleanly(outcome, draw_input)


def starts_cleanly(graph: FlowGraph, input: Any) -> None:
    """Starting runs the first inline states (constructors, Choice conditions, Map items…):
    whatever they evaluate ends as a coded failure at worst, never the engine's own."""
    state = machine.new_state(execution_name="e", flow_name="f", input=input, now=NOW)
    with Timed():
        decision = machine.step(graph, state, ev.Start(input), now=NOW, rng=random.Random(0))
    failures = [e for e in decision.events if e["type"] == "ExecutionFailed"]
    for failure in failures:
        assert failure["detail"]["error"] != machine.ERR_INTERNAL, failure


YAML_PIECES = ["Type: StateMachine\n", "version: v1\n", "type: flow\n", "StartAt: A\n",
               "States:\n", "steps:\n", "- Name: A\n", "  Type: Pass\n", "  End: true\n",
               "- name: a\n", "  type: pass\n", "  Next: B\n", "  InputConstructor:\n",
               "    x.$: $Input.a\n", "    $: length(\n", "&a [1]\n", "*a\n", "!!python/name:os\n",
               "{", "}", "[", "]", ": ", "- ", "'", '"', "\\ud800", "\t", "\n", "#", "~",
               "9" * 5000, ".nan", "0x" + "f" * 400, "---\n", "%YAML 1.2\n"]  # fmt: skip


@FUZZ
@given(st.lists(st.sampled_from(YAML_PIECES), max_size=30).map("".join) | st.text(max_size=200))
def test_random_definition_text(text):
    compiles_or_refuses(lambda: compile_definition(text))


# --- expressions -------------------------------------------------------------------------------

TOKENS = ["$Input", "$Output", "$Context", "$Global", "$Item", "$", "$.", "$input", "$local",
          "$context", ".a", ".Body", ".__class__", "[0]", "[-1]", "[*]", "[", "]", "(", ")", ",",
          "+", "-", "*", "/", "%", "==", "!=", "<", "<=", ">", ">=", "&&", "||", "!", "in",
          "true", "false", "null", "0", "1", "-1", "1.5", "1e308", "1e309", str(MAX_INT),
          str(MAX_INT + 1), "-9223372036854775808", '"a"', '"{}"', '"\\u00e9"', '"\\ud800"',
          "`(a|aa)*c`", "`(((){1000}){1000}){1000}`", "'a'", "=", "&", "@", "{", "}",
          *BUILTINS]  # fmt: skip

token_soups = st.lists(st.sampled_from(TOKENS), min_size=1, max_size=25).map(" ".join)

big = st.sampled_from([list(range(20_000)), "a" * 50_000, {f"k{i}": i for i in range(5_000)},
                       10**300, -(2**63), "[" + ",".join(["0"] * 50_000) + "]"])  # fmt: skip
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(MIN_INT, MAX_INT) | st.floats(allow_nan=False,
    allow_infinity=False) | st.text(max_size=10) | st.sampled_from(["{}", "(a|aa)*c", "MD5"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["a", "b", "Body", "x"]) | st.text(max_size=4), children, max_size=4),
    max_leaves=12,
) | big  # fmt: skip
envs = st.fixed_dictionaries(
    {},
    optional=dict.fromkeys(
        ("Input", "Output", "Context", "Global", "Item", "input", "local", "context"), json_values
    ),
)


def evaluates_or_fails(text: str, dialect: str, env: dict) -> None:
    with Timed():
        try:
            expression = compile_expression(text, dialect=dialect)
        except ExpressionError as exc:
            assert exc.message
            return
        try:
            expression.evaluate(env, now=NOW, rng=random.Random(0))
        except EvaluationError as exc:
            assert exc.message


@FUZZ
@given(token_soups, st.sampled_from(["cloudflow", "legacy"]), envs)
def test_expression_token_soups(text, dialect, env):
    evaluates_or_fails(text, dialect, env)


leaves = (
    st.sampled_from(["$Input", "$Input.a", "$Input.b[0]", "$Global.x", "$Item", "$Context",
                     "$Input.s", "$Input[`a`]"])
    | st.integers(MIN_INT, MAX_INT).map(str)
    | st.floats(allow_nan=False, allow_infinity=False).map(repr)
    | st.text(max_size=6).map(json.dumps)
    | st.sampled_from(["true", "false", "null", '"{}-{}"', "`(a+)+$`", '"SHA-256"'])
)  # fmt: skip


def _calls(children) -> st.SearchStrategy[str]:
    def call(name: str) -> st.SearchStrategy[str]:
        builtin = BUILTINS[name]
        most = builtin.max_args if builtin.max_args is not None else builtin.min_args + 3
        return st.lists(children, min_size=builtin.min_args, max_size=most).map(
            lambda args: f"{name}({', '.join(args)})"
        )

    return st.sampled_from(sorted(BUILTINS)).flatmap(call)


def _trees(children) -> st.SearchStrategy[str]:
    binary = st.tuples(
        children,
        st.sampled_from(["+", "-", "*", "/", "%", "==", "!=", "<", ">=", "&&", "||", "in"]),
        children,
    ).map(lambda t: f"({t[0]} {t[1]} {t[2]})")
    unary = st.tuples(st.sampled_from(["!", "-"]), children).map("".join)
    return binary | unary | _calls(children)


syntax_trees = st.recursive(leaves, _trees, max_leaves=12)


@FUZZ
@given(syntax_trees, envs)
def test_expression_syntax_trees(text, env):
    evaluates_or_fails(text, "cloudflow", env)
