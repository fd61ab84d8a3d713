"""The definition compiler: both dialects into ``graph.FlowGraph``, and every kind of error."""

from __future__ import annotations

import json
import random
import re
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from executions.engine.compiler import compile_data, compile_definition
from executions.engine.graph import DefinitionError, FlowGraph, StateKind, TaskMode
from executions.engine.yamlsafe import load_document

DEFS = Path(__file__).parent / "defs"
REPO = Path(__file__).resolve().parents[2]
SEEDS = REPO.parent / "shared" / "seeds"


def compile_text(text: str, **kwargs) -> FlowGraph:
    return compile_definition(textwrap.dedent(text), **kwargs)


def errors_of(text: str, **kwargs) -> list:
    with pytest.raises(DefinitionError) as info:
        compile_text(text, **kwargs)
    errors = info.value.errors
    assert errors, "a DefinitionError must carry at least one diagnostic"
    return errors


def the_error(text: str, **kwargs):
    errors = errors_of(text, **kwargs)
    assert len(errors) == 1, [e.as_dict() for e in errors]
    return errors[0]


def find(errors, path: str):
    found = [e for e in errors if e.path == path]
    assert found, f"no diagnostic at {path}: {[e.as_dict() for e in errors]}"
    return found[0]


def cloudflow(states: str, start: str = "A", extra: str = "") -> str:
    """A CloudFlow document around an indented ``States`` body (states start on line 6)."""
    body = textwrap.indent(textwrap.dedent(states).strip("\n"), "  ")
    return (
        f"Type: StateMachine\nName: t\nSpecVersion: v1\nStartAt: {start}\n{extra}States:\n{body}\n"
    )


def legacy(steps: str, extra: str = "") -> str:
    """A legacy document around an indented ``steps`` body (steps start on line 4)."""
    body = textwrap.indent(textwrap.dedent(steps).strip("\n"), "  ")
    return f"version: v1\ntype: flow\n{extra}steps:\n{body}\n"


FN = "acs:fc:cn-hangzhou:123:functions/{}/LATEST"
NOW = datetime(2030, 1, 1, tzinfo=UTC)
RNG = random.Random(0)


# --- the example flows --------------------------------------------------------------------------


def test_polling_flow():
    g = compile_definition((DEFS / "polling.yaml").read_text(), known_functions={"submit_job"})
    assert g.dialect == "cloudflow"
    assert g.name == "PollJob"
    assert g.description == "start a long job and poll until it is done"
    assert g.root.path == "States"
    assert g.root.start_at == "Submit"
    assert set(g.scopes) == {"States"}
    assert g.scopes["States"] is g.root
    assert list(g.root.states) == [
        "Submit",
        "Prepare",
        "Pause",
        "Poll",
        "Done?",
        "GaveUp",
        "Finished",
    ]
    assert g.functions == {"submit_job", "poll_job"}
    assert g.queues == frozenset()

    submit = g.state("States", "Submit")
    assert submit.kind is StateKind.TASK
    assert submit.path == "States[0]"
    assert submit.line == 8
    assert submit.next == "Prepare"
    assert submit.task.target == "function"
    assert submit.task.function == "submit_job"
    assert submit.task.resource == "acs:fc:{region}:{accountID}:functions/submit_job/LATEST"
    assert submit.task.mode is TaskMode.REQUEST
    assert submit.task.invocation == "sync"
    assert submit.task.body is None
    assert submit.task.timeout_seconds is None

    prepare = g.state("States", "Prepare")
    assert prepare.kind is StateKind.PASS
    assert prepare.input_constructor is not None
    assert prepare.output_constructor is not None
    assert prepare.global_constructor is None

    pause = g.state("States", "Pause")
    assert pause.wait.seconds == 5.0
    assert pause.wait.seconds_expr is None
    assert pause.next == "Poll"

    poll = g.state("States", "Poll")
    assert poll.task.function == "poll_job"
    assert poll.task.body is not None
    assert poll.output_constructor is not None

    choice = g.state("States", "Done?")
    assert choice.kind is StateKind.CHOICE
    assert choice.next is None
    assert [b.target.next for b in choice.choices] == ["Finished", "GaveUp", "Pause"]
    assert [b.path for b in choice.choices] == [f"States[4].Branches[{i}]" for i in range(3)]
    assert all(b.condition is not None for b in choice.choices)
    assert choice.default.next == "GaveUp"

    gave_up = g.state("States", "GaveUp")
    assert gave_up.kind is StateKind.FAIL
    assert gave_up.fail.code == "放弃"
    assert gave_up.fail.detail is None
    assert gave_up.next is None
    assert g.state("States", "Finished").kind is StateKind.SUCCEED

    assert [(w.path, w.message, w.line, w.severity) for w in g.warnings] == [
        (
            "States[3].Parameters.resourceArn",
            "function 'poll_job' does not exist yet",
            33,
            "warning",
        ),
        ("States[5]", "Fail state 'GaveUp' has no Detail", 52, "warning"),
    ]


def test_legacy_callback_flow():
    g = compile_definition((DEFS / "legacy_callback.yaml").read_text())
    assert g.dialect == "legacy"
    assert g.name == "approval"
    assert g.root.path == "steps"
    assert g.root.start_at == "askForApproval"
    step = g.state("steps", "askForApproval")
    assert step.kind is StateKind.TASK
    assert step.path == "steps[0]"
    assert step.line == 6
    assert step.next is None
    assert step.task.target == "function"
    assert step.task.function == "notify"
    assert step.task.mode is TaskMode.CUSTOM_CALLBACK
    assert step.task.timeout_seconds == 3600.0
    assert step.input_mappings is not None
    assert step.output_mappings is not None
    assert step.error_mappings is None
    assert g.functions == {"notify"}
    assert g.warnings == ()


def test_legacy_foreach_queue_flow():
    g = compile_definition((DEFS / "legacy_foreach_queue.yaml").read_text())
    assert set(g.scopes) == {"steps", "steps[0].steps"}
    fan_out = g.state("steps", "fanOut")
    assert fan_out.kind is StateKind.MAP
    assert fan_out.map.items is not None
    assert fan_out.map.item_key == "worker"
    assert fan_out.map.index_key == "position"
    assert fan_out.map.max_concurrency == 0
    assert fan_out.map.processor is g.scopes["steps[0].steps"]
    dispatch = g.state("steps[0].steps", "dispatch")
    assert dispatch.path == "steps[0].steps[0]"
    assert dispatch.task.target == "queue"
    assert dispatch.task.queue == "jobs"
    assert dispatch.task.function is None
    assert dispatch.task.mode is TaskMode.CUSTOM_CALLBACK
    rendered = dispatch.task.service_params.render(
        {"input": {"worker": "w1", "token": "t"}, "local": {}, "context": {}}, now=NOW, rng=RNG
    )
    assert rendered == {"MessageBody": {"worker": "w1", "token": "t"}, "Priority": 1}
    assert dispatch.input_mappings is not None
    assert g.queues == {"jobs"}
    assert g.functions == frozenset()


# --- the seed documents (read at run time, never copied) -----------------------------------


_YAMLISH = re.compile(r"^(- )?[A-Za-z][\w.$]*:(\s.*)?$")
_LIST_KEYS = {
    "steps": "steps",
    "branches": "branches",
    "choices": "choices",
    "retry": "rules",
    "catch": "rules",
    "inputMappings": "mappings",
    "outputMappings": "mappings",
    "errorMappings": "mappings",
}
_MAP_KEYS = {"iterationMapping": "iteration", "serviceParams": "params", "default": "choice"}
_ITEM_KINDS = {
    "type": ("steps", "step"),
    "target": ("mappings", "mapping"),
    "steps": ("branches", "branch"),
    "condition": ("choices", "choice"),
    "errors": ("rules", "rule"),
}
_ACCEPTS = {  # which keys each kind of legacy mapping has
    context: set(keys.split())
    for context, keys in {
        "flow": "version type name steps inputMappings outputMappings",
        "step": "type name resourceArn pattern timeoutSeconds end goto inputMappings "
        "outputMappings errorMappings retry catch serviceParams duration timestamp choices "
        "default branches iterationMapping steps error cause maxConcurrency",
        "mapping": "target source",
        "iteration": "collection item index",
        "branch": "steps",
        "choice": "condition steps goto",
        "rule": "errors goto intervalSeconds maxIntervalSeconds maxAttempts multiplier",
    }.items()
}


def _reindent_legacy(lines: list[str]) -> str:
    """Some seed pages lost the indentation of their legacy YAML; put it back, knowing which
    legacy keys open lists and mappings."""
    out = []
    stack: list[tuple[str, int]] = [("flow", 0)]  # (context, indent of its keys)
    for line in lines:
        is_item = line.startswith("- ")
        body = line[2:] if is_item else line
        key, _, rest = body.partition(":")
        if is_item:
            list_kind, item_kind = _ITEM_KINDS[key]
            while stack[-1][0] != "list:" + list_kind:
                stack.pop()
                assert stack, f"cannot place {line!r}"
            indent = stack[-1][1]
            out.append(" " * indent + "- " + body)
            stack.append((item_kind, indent + 2))
            indent += 2
        else:
            while not (
                key in _ACCEPTS.get(stack[-1][0], ())
                or (stack[-1][0] == "params" and key[:1].isupper())
            ):
                stack.pop()
                assert stack, f"cannot place {line!r}"
            indent = stack[-1][1]
            out.append(" " * indent + body)
        value = rest.split(" #")[0].strip()
        if not value:
            if key in _LIST_KEYS:
                stack.append(("list:" + _LIST_KEYS[key], indent + 2))
            elif key in _MAP_KEYS:
                stack.append((_MAP_KEYS[key], indent + 2))
    return "\n".join(out) + "\n"


def extract_flows(text: str) -> list[str]:
    """The flow definitions in a seed page: indented CloudFlow blocks, and legacy blocks that
    may have lost their indentation."""
    lines = text.splitlines()
    flows = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped == "Type: StateMachine":
            indent = len(line) - len(line.lstrip())
            block = [line]
            for following in lines[i + 1 :]:
                if following.strip() and len(following) - len(following.lstrip()) < indent:
                    break
                block.append(following)
            flows.append(textwrap.dedent("\n".join(block)))
        elif stripped == "version: v1":
            indent = len(line) - len(line.lstrip())
            block = []
            for following in lines[i:]:
                if not following.strip():
                    continue
                if len(following) - len(following.lstrip()) < indent:
                    break
                if not _YAMLISH.match(following.strip()):
                    break
                block.append(following)
            dedented = textwrap.dedent("\n".join(block)).splitlines()
            if any(line != line.lstrip() for line in dedented):
                flows.append("\n".join(dedented) + "\n")  # indentation survived
            else:
                flows.append(_reindent_legacy(dedented))
    return flows


def _seed_files() -> list:
    if not SEEDS.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason="no ../shared/seeds"))]
    files = sorted(p for p in SEEDS.glob("*.txt") if extract_flows(p.read_text()))
    return [pytest.param(p, id=p.name[:3], marks=[pytest.mark.seeds]) for p in files]


@pytest.mark.parametrize("seed", _seed_files())
def test_seed_flows_compile(seed):
    flows = extract_flows(seed.read_text())
    assert flows
    for text in flows:
        graph = compile_definition(text)
        assert graph.root.states


def test_seed_extraction_of_a_flattened_legacy_block():
    page = (
        "intro\nversion: v1\ntype: flow\nsteps:\n- type: foreach\nname: each\n"
        "iterationMapping:\ncollection: $.xs\nitem: x\nsteps:\n- type: task\nname: t\n"
        "resourceArn: acs:mns:::/queues/q/messages # the queue\ninputMappings:\n"
        "- target: a\nsource: $input.x\n- target: b\nsource: $context.task.token\n"
        "serviceParams: # params\nMessageBody: $\nPriority: 1\n- type: pass\nname: p\n"
        "这是说明文字\n"
    )
    (flow,) = extract_flows(page)
    data, _ = load_document(flow)
    each = data["steps"][0]
    assert each["iterationMapping"] == {"collection": "$.xs", "item": "x"}
    assert each["steps"][0]["serviceParams"] == {"MessageBody": "$", "Priority": 1}
    assert len(each["steps"][0]["inputMappings"]) == 2
    # flattened text is ambiguous: a following "- type:" joins the innermost steps list
    assert each["steps"][1] == {"type": "pass", "name": "p"}


# --- CloudFlow: every state type and field -----------------------------------------------------


def test_cloudflow_task_fields():
    g = compile_text(
        cloudflow(f"""
        - Name: A
          Type: Task
          Description: call back later
          Action: FC:InvokeFunction
          TaskMode: WaitForCustomCallback
          Timeout: "30"
          HeartbeatSeconds: 10
          Parameters:
            resourceArn: acs:fc:::services/svc.v2/functions/approve
            invocationType: Async
            body.$: $Input.request
          InputConstructor:
            request.$: $Input
          OutputConstructor:
            answer.$: $Output.Body
          GlobalConstructor:
            seen: true
          Retry:
            - Errors: [FC.ResourceThrottled, MyError]
              Description: throttled
              MaxAttempts: 5
              IntervalSeconds: 1.5
              BackoffRate: 2
              MaxBackoffSeconds: 60
            - Errors: [FnF.ALL]
              MaxAttempts: 0
              IntervalSeconds: 0
          Catch:
            - Errors: [FnF.ALL]
              Description: recover
              Next: B
              OutputConstructor:
                error.$: $Context.Current.Error.Code
          Next: C
        - Name: B
          Type: Pass
          End: true
        - Name: C
          Type: Task
          Action: FC:InvokeFunction
          TaskMode: WaitForSystemCallback
          Timeout: 0
          Parameters:
            resourceArn: {FN.format("crunch")}
            body:
              literal: text
              nested:
                value.$: $Input.x
          End: true
    """)
    )
    a = g.state("States", "A")
    task = a.task
    assert task.target == "function"
    assert task.function == "approve"
    assert task.resource == "acs:fc:::services/svc.v2/functions/approve"
    assert task.mode is TaskMode.CUSTOM_CALLBACK
    assert task.invocation == "async"
    assert task.timeout_seconds == 30.0
    assert task.heartbeat_seconds == 10.0
    env = {"Input": {"request": {"id": 7}}, "Context": {}, "Global": {}}
    assert task.body.render(env, now=NOW, rng=RNG) == {"id": 7}
    assert a.input_constructor is not None
    assert a.output_constructor is not None
    assert a.global_constructor is not None
    assert a.next == "C"
    r0, r1 = a.retry
    assert r0.errors == ("FC.ResourceThrottled", "MyError")
    assert (r0.max_attempts, r0.interval_seconds, r0.backoff_rate, r0.max_backoff_seconds) == (
        5,
        1.5,
        2.0,
        60.0,
    )
    assert r0.path == "States[0].Retry[0]"
    assert (r1.errors, r1.max_attempts, r1.interval_seconds, r1.backoff_rate) == (
        ("FnF.ALL",),
        0,
        0.0,
        1.0,
    )
    assert r1.max_backoff_seconds is None
    (catch,) = a.catch
    assert catch.errors == ("FnF.ALL",)
    assert catch.next == "B"
    assert catch.output_constructor is not None
    assert catch.path == "States[0].Catch[0]"
    c = g.state("States", "C")
    assert c.task.mode is TaskMode.SYSTEM_CALLBACK
    assert c.task.invocation == "sync"
    assert c.task.timeout_seconds is None
    assert c.task.heartbeat_seconds is None
    assert c.task.body is not None
    assert c.next is None
    assert g.functions == {"approve", "crunch"}


@pytest.mark.parametrize(
    ("arn", "function"),
    [
        ("acs:fc:cn-hangzhou:123456:functions/my_fn", "my_fn"),
        ("acs:fc:cn-hangzhou:123456:functions/my-fn/LATEST", "my-fn"),
        ("acs:fc:{region}:{accountID}:functions/StartJob/LATEST", "StartJob"),
        ("acs:fc:::functions/f/prod", "f"),
        ("acs:fc:::services/svc/functions/g", "g"),
        ("acs:fc:::services/svc.LATEST/functions/g", "g"),
        ("acs:fc:cn-beijing:1:services/svc/functions/h", "h"),
    ],
)
def test_function_arn_forms(arn, function):
    g = compile_text(
        cloudflow(f"""
        - Name: A
          Type: Task
          Action: FC:InvokeFunction
          Parameters: {{resourceArn: "{arn}"}}
          End: true
    """)
    )
    assert g.state("States", "A").task.function == function
    assert g.functions == {function}


def test_task_defaults():
    g = compile_text(
        cloudflow(f"""
        - Name: A
          Type: Task
          Action: FC:InvokeFunction
          Parameters:
            resourceArn: {FN.format("f")}
          End: true
    """)
    )
    task = g.state("States", "A").task
    assert task.mode is TaskMode.REQUEST
    assert task.invocation == "sync"
    assert task.body is None
    assert g.state("States", "A").retry == ()


def test_cloudflow_wait_forms():
    g = compile_text(
        cloudflow("""
        - Name: A
          Type: Wait
          Seconds: 86400000
          Next: B
        - Name: B
          Type: Wait
          Seconds.$: $Input.delay
          Next: C
        - Name: C
          Type: Wait
          Timestamp: "2030-01-02T03:04:05Z"
          Next: D
        - Name: D
          Type: Wait
          Timestamp.$: $Input.when
          InputConstructor: {when.$: $Input.at}
          OutputConstructor: {done: true}
          Next: E
        - Name: E
          Type: Wait
          Timestamp: "2030-01-02T03:04:05.123+08:00"
          End: true
    """)
    )
    a, b, c, d = (g.state("States", n).wait for n in "ABCD")
    assert (a.seconds, a.seconds_expr, a.timestamp, a.timestamp_expr) == (
        86400000.0,
        None,
        None,
        None,
    )
    assert b.seconds is None and b.seconds_expr is not None
    assert c.timestamp == "2030-01-02T03:04:05Z"
    assert d.timestamp_expr is not None and d.timestamp is None


def test_cloudflow_parallel_and_map():
    g = compile_text(
        cloudflow(f"""
        - Name: A
          Type: Parallel
          Branches:
            - StartAt: P1
              States:
                - Name: P1
                  Type: Pass
                  End: true
            - StartAt: P2
              States:
                - Name: P2
                  Type: Task
                  Action: FC:InvokeFunction
                  Parameters: {{resourceArn: "{FN.format("inner")}"}}
                  Next: P3
                - Name: P3
                  Type: Succeed
          OutputConstructor:
            first.$: $Output.Branch0
          Next: B
        - Name: B
          Type: Map
          ItemsPath: $Input.items
          MaxConcuccency: 3
          ItemConstructor:
            value.$: $Item
          Processor:
            StartAt: M1
            States:
              - Name: M1
                Type: Pass
                End: true
          Next: C
        - Name: C
          Type: Map
          ItemsPath: $Context.Current.Input.rows
          MaxConcurrency: 7
          ProcessorConfig:
            ExecutionMode: Inline
          ItemProcessor:
            StartAt: M2
            States:
              - Name: M2
                Type: Fail
                Code: Bad
                Detail: bad item
          End: true
    """)
    )
    assert set(g.scopes) == {
        "States",
        "States[0].Branches[0]",
        "States[0].Branches[1]",
        "States[1].Processor",
        "States[2].Processor",
    }
    a = g.state("States", "A")
    assert a.kind is StateKind.PARALLEL
    assert [s.path for s in a.branches] == ["States[0].Branches[0]", "States[0].Branches[1]"]
    assert a.branches[1] is g.scopes["States[0].Branches[1]"]
    assert a.branches[1].start_at == "P2"
    p2 = g.state("States[0].Branches[1]", "P2")
    assert p2.path == "States[0].Branches[1].States[0]"
    assert p2.next == "P3"
    assert g.functions == {"inner"}
    b = g.state("States", "B")
    assert b.map.max_concurrency == 3
    assert b.map.items is not None
    assert b.map.item_constructor is not None
    assert b.map.processor.path == "States[1].Processor"
    assert b.map.processor.states["M1"].path == "States[1].Processor.States[0]"
    c = g.state("States", "C")
    assert c.map.max_concurrency == 7
    assert c.map.item_constructor is None
    assert c.map.processor.path == "States[2].Processor"
    m2 = g.state("States[2].Processor", "M2")
    assert (m2.fail.code, m2.fail.detail) == ("Bad", "bad item")
    assert g.warnings == ()


def test_succeed_and_fail_accept_end_and_constructors():
    g = compile_text(
        cloudflow("""
        - Name: A
          Type: Choice
          Description: pick
          InputConstructor: {x.$: $Input.x}
          Branches:
            - Condition: $Input.x > 1
              Description: big
              Next: B
          Default: C
        - Name: B
          Type: Succeed
          Description: yay
          OutputConstructor: {ok: true}
        - Name: C
          Type: Fail
          End: true
          Code: E
          Detail: nope
          InputConstructor: {y: 1}
    """)
    )
    assert g.state("States", "A").input_constructor is not None
    assert g.state("States", "B").output_constructor is not None
    assert g.state("States", "C").input_constructor is not None


def test_specversion_missing_is_a_warning_and_name_is_optional():
    g = compile_text("""
        Type: StateMachine
        StartAt: A
        States:
          - {Name: A, Type: Pass, End: true}
    """)
    assert g.name is None
    assert [w.message for w in g.warnings] == ["SpecVersion is missing; assuming v1"]


def test_json_definition():
    doc = {
        "Type": "StateMachine",
        "SpecVersion": "v1",
        "StartAt": "A",
        "States": [{"Name": "A", "Type": "Pass", "Next": "B"}, {"Name": "B", "Type": "Succeed"}],
    }
    g = compile_definition(json.dumps(doc, indent=2))
    assert g.state("States", "A").next == "B"
    assert g.state("States", "A").line == 6
    g = compile_definition(json.dumps(doc).encode())
    assert list(g.root.states) == ["A", "B"]


def test_compile_data_without_lines():
    g = compile_data({"version": "v1", "type": "flow", "steps": [{"type": "pass", "name": "p"}]})
    assert g.state("steps", "p").line is None
    with pytest.raises(DefinitionError) as info:
        compile_data({"version": "v1", "type": "flow", "steps": [{"type": "pas", "name": "p"}]})
    assert info.value.errors[0].line is None
    assert info.value.errors[0].path == "steps[0].type"


def test_a_loop_with_a_way_out_is_fine():
    g = compile_text(
        cloudflow("""
        - {Name: A, Type: Wait, Seconds: 1, Next: B}
        - Name: B
          Type: Choice
          Branches:
            - {Condition: $Input.done, Next: C}
          Default: A
        - {Name: C, Type: Succeed}
    """)
    )
    assert g.warnings == ()


def test_a_loop_with_no_way_out_is_a_warning():
    g = compile_text(
        cloudflow("""
        - Name: A
          Type: Choice
          Branches:
            - {Condition: $Input.done, Next: C}
          Default: B
        - {Name: B, Type: Wait, Seconds: 1, Next: D}
        - {Name: D, Type: Pass, Next: B}
        - {Name: C, Type: Succeed}
    """)
    )
    assert sorted((w.path, w.message) for w in g.warnings) == [
        ("States[1]", "state 'B' can never reach the end of its scope (it loops with no way out)"),
        ("States[2]", "state 'D' can never reach the end of its scope (it loops with no way out)"),
    ]


# --- CloudFlow errors ------------------------------------------------------------------------


def test_unknown_field_with_hint():
    e = the_error(
        cloudflow("""
        - Name: A
          Type: Pass
          Nxt: B
          End: true
    """)
    )
    assert (e.path, e.line, e.message) == (
        "States[0].Nxt",
        8,
        "unknown field 'Nxt'; did you mean 'Next'?",
    )


def test_unknown_field_without_hint():
    e = the_error(cloudflow("- {Name: A, Type: Pass, End: true, Zebra: 1}"))
    assert e.message == "unknown field 'Zebra'"


def test_field_of_another_state_type():
    e = the_error(cloudflow("- {Name: A, Type: Pass, End: true, Seconds: 3}"))
    assert e.message == "Seconds is not allowed on a Pass state (only on Wait)"


def test_unknown_state_type_with_hint():
    e = the_error(
        cloudflow("""
        - Name: A
          Type: Tsk
          End: true
    """)
    )
    assert (e.path, e.line, e.message) == (
        "States[0].Type",
        7,
        "unknown state type 'Tsk'; did you mean 'Task'?",
    )


def test_catch_on_pass_is_an_error():
    e = the_error(
        cloudflow("""
        - Name: A
          Type: Pass
          Catch:
            - {Errors: [FnF.ALL], Next: B}
          Next: B
        - {Name: B, Type: Succeed}
    """)
    )
    assert e.path == "States[0].Catch"
    assert e.line == 8
    assert e.message == (
        "Catch is not allowed on a Pass state; only Task, Parallel and Map states have Retry "
        "and Catch"
    )


def test_non_fc_action_is_an_error():
    e = the_error(
        cloudflow("""
        - Name: A
          Type: Task
          Action: HTTP:Request
          Parameters: {resourceArn: "acs:fc:::functions/f"}
          End: true
    """)
    )
    assert (e.path, e.line) == ("States[0].Action", 8)
    assert (
        e.message == "Action 'HTTP:Request' is not supported; flowsite supports FC:InvokeFunction"
    )


def test_distributed_map_is_an_error():
    errors = errors_of(
        cloudflow("""
        - Name: A
          Type: Map
          ItemsPath: $Input.items
          ProcessorConfig:
            ExecutionMode: Express
          ItemReader: {SourceType: OSS_OBJECTS}
          ResultWriter: {}
          Processor:
            StartAt: B
            States:
              - {Name: B, Type: Pass, End: true}
          End: true
    """)
    )
    assert [(e.path, e.line, e.message) for e in errors] == [
        (
            "States[0].ProcessorConfig.ExecutionMode",
            10,
            "distributed Map is not supported yet (ExecutionMode 'Express')",
        ),
        ("States[0].ItemReader", 11, "ItemReader is not supported yet (distributed Map)"),
        ("States[0].ResultWriter", 12, "ResultWriter is not supported yet (distributed Map)"),
    ]


def test_unknown_function_is_only_a_warning():
    g = compile_text(
        cloudflow(f"""
            - Name: A
              Type: Task
              Action: FC:InvokeFunction
              Parameters:
                resourceArn: {FN.format("ghost")}
              Next: B
            - Name: B
              Type: Task
              Action: FC:InvokeFunction
              Parameters:
                resourceArn: {FN.format("real")}
              End: true
        """),
        known_functions={"real"},
    )
    (w,) = g.warnings
    assert (w.path, w.line, w.message, w.severity) == (
        "States[0].Parameters.resourceArn",
        10,
        "function 'ghost' does not exist yet",
        "warning",
    )
    assert g.functions == {"ghost", "real"}
    # without known_functions nothing is checked
    assert (
        compile_text(
            cloudflow(f"""
        - Name: A
          Type: Task
          Action: FC:InvokeFunction
          Parameters: {{resourceArn: "{FN.format("ghost")}"}}
          End: true
    """)
        ).warnings
        == ()
    )


def test_next_to_a_missing_state_with_hint():
    errors = errors_of(
        cloudflow("""
        - {Name: A, Type: Pass, Next: Finish}
        - {Name: Finished, Type: Succeed}
    """)
    )
    e = find(errors, "States[0].Next")
    assert e.line == 6
    assert e.message == "there is no state 'Finish' in this scope; did you mean 'Finished'?"
    # Finished is then unreachable too
    assert find(errors, "States[1]").message == "state 'Finished' is unreachable from 'A'"


def test_next_to_another_scopes_state():
    errors = errors_of(
        cloudflow("""
        - Name: A
          Type: Parallel
          Branches:
            - StartAt: Inner
              States:
                - Name: Inner
                  Type: Pass
                  Next: After
          Next: After
        - Name: After
          Type: Succeed
    """)
    )
    e = find(errors, "States[0].Branches[0].States[0].Next")
    assert e.line == 13
    assert e.message == (
        "'After' is a state of another scope (States); only states of the same list can be "
        "named here"
    )


def test_reference_from_outer_scope_into_a_branch():
    errors = errors_of(
        cloudflow("""
        - Name: A
          Type: Parallel
          Branches:
            - StartAt: Inner
              States:
                - {Name: Inner, Type: Pass, End: true}
          Catch:
            - {Errors: [FnF.ALL], Next: Inner}
          End: true
    """)
    )
    e = find(errors, "States[0].Catch[0].Next")
    assert "another scope (States[0].Branches[0])" in e.message
    assert e.line == 13


def test_unreachable_state():
    errors = errors_of(
        cloudflow("""
        - {Name: A, Type: Pass, End: true}
        - {Name: Orphan, Type: Pass, Next: A}
    """)
    )
    assert [(e.path, e.line, e.message) for e in errors] == [
        ("States[1]", 7, "state 'Orphan' is unreachable from 'A'"),
    ]


def test_scope_that_can_never_end():
    errors = errors_of(
        cloudflow("""
        - {Name: A, Type: Pass, Next: B}
        - {Name: B, Type: Wait, Seconds: 1, Next: A}
    """)
    )
    assert [(e.path, e.line, e.message) for e in errors] == [
        (
            "States",
            5,
            "this scope can never end: no path from 'A' reaches Succeed, Fail or End: true",
        ),
    ]


def test_nested_scope_that_can_never_end():
    errors = errors_of(
        cloudflow("""
        - Name: A
          Type: Map
          ItemsPath: $Input.xs
          Processor:
            StartAt: L
            States:
              - {Name: L, Type: Pass, Next: L}
          End: true
    """)
    )
    assert [(e.path, e.line) for e in errors] == [("States[0].Processor.States", 11)]


def test_start_at_problems():
    errors = errors_of(
        "Type: StateMachine\nSpecVersion: v1\nStates:\n  - {Name: A, Type: Succeed}\n"
    )
    assert [(e.path, e.message, e.line) for e in errors] == [("StartAt", "StartAt is required", 1)]
    e = the_error(cloudflow("- {Name: A, Type: Succeed}", start="Aa"))
    assert (e.path, e.line, e.message) == (
        "StartAt",
        4,
        "StartAt names no state of this scope: 'Aa'; did you mean 'A'?",
    )


def test_duplicate_state_names():
    e = the_error(
        cloudflow("""
        - {Name: A, Type: Pass, Next: B}
        - {Name: B, Type: Succeed}
        - {Name: A, Type: Succeed}
    """)
    )
    assert (e.path, e.line, e.message) == (
        "States[2].Name",
        8,
        "duplicate state name 'A' (first at States[0])",
    )


def test_next_and_end():
    errors = errors_of(
        cloudflow("""
        - {Name: A, Type: Pass, Next: B, End: true}
        - {Name: B, Type: Pass}
        - {Name: C, Type: Choice, Next: A, Branches: [{Condition: $Input.x, Next: A}], Default: A}
        - {Name: D, Type: Succeed, Next: A}
    """)
    )
    assert find(errors, "States[0].End").message == "a state cannot have both Next and End: true"
    assert (
        find(errors, "States[1].Next").message == "Next is required (or End: true to end the scope)"
    )
    assert find(errors, "States[2].Next").message == (
        "a Choice state has no Next; its Branches and Default say where to go"
    )
    assert (
        find(errors, "States[3].Next").message == "a Succeed state ends its scope and has no Next"
    )


def test_field_types_are_checked():
    errors = errors_of(
        cloudflow(f"""
        - Name: A
          Type: Task
          Action: FC:InvokeFunction
          Parameters:
            resourceArn: {FN.format("f")}
          Retry:
            - Errors: FnF.ALL
              MaxAttempts: "3"
              IntervalSeconds: -1
              BackoffRate: 0.5
              MaxBackoffSeconds: 100000
            - Errors: []
              MaxAttempts: 101
              IntervalSeconds: 1
          End: "yes"
    """)
    )
    got = {e.path: e.message for e in errors}
    assert got == {
        "States[0].Retry[0].Errors": "Errors must be an array, got string",
        "States[0].Retry[0].MaxAttempts": "MaxAttempts must be an integer, got string",
        "States[0].Retry[0].IntervalSeconds": "IntervalSeconds must be at least 0, got -1",
        "States[0].Retry[0].BackoffRate": "BackoffRate must be at least 1, got 0.5",
        "States[0].Retry[0].MaxBackoffSeconds": (
            "MaxBackoffSeconds must be at most 86400, got 100000"
        ),
        "States[0].Retry[1].Errors": "Errors must not be empty",
        "States[0].Retry[1].MaxAttempts": "MaxAttempts must be at most 100, got 101",
        "States[0].End": "End must be a boolean, got string",
    }
    assert find(errors, "States[0].Retry[0].MaxAttempts").line == 13


def test_retry_required_fields_and_unreachable_rule():
    errors = errors_of(
        cloudflow(f"""
        - Name: A
          Type: Task
          Action: FC:InvokeFunction
          Parameters: {{resourceArn: "{FN.format("f")}"}}
          Retry:
            - {{Errors: [FnF.ALL], MaxAttempts: 1, IntervalSeconds: 1}}
            - {{Errors: [X]}}
          End: true
    """)
    )
    assert {e.path: e.message for e in errors} == {
        "States[0].Retry[1].MaxAttempts": "MaxAttempts is required",
        "States[0].Retry[1].IntervalSeconds": "IntervalSeconds is required",
    }


def test_unreachable_retry_rule_is_a_warning():
    g = compile_text(
        cloudflow(f"""
        - Name: A
          Type: Task
          Action: FC:InvokeFunction
          Parameters: {{resourceArn: "{FN.format("f")}"}}
          Retry:
            - {{Errors: [FnF.ALL], MaxAttempts: 1, IntervalSeconds: 1}}
            - {{Errors: [X], MaxAttempts: 1, IntervalSeconds: 1}}
          End: true
    """)
    )
    (w,) = g.warnings
    assert w.path == "States[0].Retry[1]"
    assert "never used" in w.message


def test_catch_rule_errors():
    errors = errors_of(
        cloudflow(f"""
        - Name: A
          Type: Task
          Action: FC:InvokeFunction
          Parameters: {{resourceArn: "{FN.format("f")}"}}
          Catch:
            - Errors: [FnF.ALL]
              Goto: B
          End: true
        - {{Name: B, Type: Succeed}}
    """)
    )
    assert {(e.path, e.message) for e in errors} == {
        ("States[0].Catch[0].Goto", "unknown field 'Goto'"),
        ("States[0].Catch[0].Next", "Next is required"),
        ("States[1]", "state 'B' is unreachable from 'A'"),
    }


@pytest.mark.parametrize(
    ("timeout", "message"),
    [
        ('"abc"', "Timeout must be a number of seconds, got 'abc'"),
        ("604801", "Timeout must be between 0 and 604800 seconds, got 604801"),
        ('"-1"', "Timeout must be between 0 and 604800 seconds, got -1"),
        ("true", "Timeout must be a number of seconds, got boolean"),
        ("[1]", "Timeout must be a number of seconds, got array"),
    ],
)
def test_timeout_errors(timeout, message):
    e = the_error(
        cloudflow(f"""
        - Name: A
          Type: Task
          Action: FC:InvokeFunction
          Timeout: {timeout}
          Parameters: {{resourceArn: "{FN.format("f")}"}}
          End: true
    """)
    )
    assert (e.path, e.line, e.message) == ("States[0].Timeout", 9, message)


@pytest.mark.parametrize(
    ("timeout", "seconds"), [('"0"', None), ("0", None), ('"12.5"', 12.5), ("604800", 604800.0)]
)
def test_timeout_values(timeout, seconds):
    g = compile_text(
        cloudflow(f"""
        - Name: A
          Type: Task
          Action: FC:InvokeFunction
          Timeout: {timeout}
          Parameters: {{resourceArn: "{FN.format("f")}"}}
          End: true
    """)
    )
    assert g.state("States", "A").task.timeout_seconds == seconds


def test_task_parameter_errors():
    errors = errors_of(
        cloudflow(
            f"""
        - Name: A
          Type: Task
          Action: FC:InvokeFunction
          TaskMode: WaitForCallback
          HeartbeatSeconds: 5
          Parameters:
            resourceArn: acs:oss:::bucket/key
            invocationType: sync
            payload: {{}}
          End: true
        - Name: B
          Type: Task
          Action: FC:InvokeFunction
          Parameters:
            resourceArn: {FN.format("f")}
            body: {{a: 1}}
            body.$: $Input
          End: true
        - Name: C
          Type: Task
          Action: FC:InvokeFunction
          End: true
    """,
            start="A",
        )
    )
    got = {e.path: e.message for e in errors}
    assert got["States[0].TaskMode"].startswith(
        "TaskMode must be one of RequestComplete, WaitForSystemCallback, WaitForCustomCallback, "
        "got 'WaitForCallback'; did you mean"
    )
    assert (
        got["States[0].HeartbeatSeconds"]
        == "HeartbeatSeconds needs TaskMode: WaitForCustomCallback"
    )
    assert got["States[0].Parameters.resourceArn"].startswith(
        "resourceArn 'acs:oss:::bucket/key' is not a Function Compute function ARN"
    )
    assert (
        got["States[0].Parameters.invocationType"]
        == "invocationType must be Sync or Async, got 'sync'"
    )
    assert got["States[0].Parameters.payload"] == "unknown field 'payload'"
    assert got["States[1].Parameters.body.$"] == "use either body or body.$, not both"
    assert got["States[2].Parameters"] == "Parameters is required"
    assert find(errors, "States[0].Parameters.resourceArn").line == 12


def test_wait_errors():
    errors = errors_of(
        cloudflow("""
        - {Name: A, Type: Wait, Next: B}
        - {Name: B, Type: Wait, Seconds: 1, Seconds.$: $Input.s, Next: C}
        - {Name: C, Type: Wait, Seconds: $Input.s, Next: D}
        - {Name: D, Type: Wait, Seconds: -3, Next: E}
        - {Name: E, Type: Wait, Timestamp: "tomorrow", Next: F}
        - {Name: F, Type: Wait, Timestamp: "2030-01-01T00:00:00", Next: G}
        - {Name: G, Type: Wait, Timestamp: $Input.t, Next: H}
        - {Name: H, Type: Wait, Seconds: 1, Timestamp: "2030-01-01T00:00:00Z", End: true}
    """)
    )
    got = {e.path: e.message for e in errors}
    one_of = "a Wait state needs exactly one of Seconds, Seconds.$, Timestamp and Timestamp.$"
    assert got == {
        "States[0]": f"{one_of}, got 0",
        "States[1].Seconds.$": f"{one_of}, got 2",
        "States[2].Seconds": "Seconds must be a number; write Seconds.$ for an expression",
        "States[3].Seconds": "Seconds must be at least 0, got -3",
        "States[4].Timestamp": (
            "Timestamp must be an RFC 3339 date-time such as 2024-05-01T12:00:00Z, got 'tomorrow'"
        ),
        "States[5].Timestamp": (
            "Timestamp must include a time zone (Z or +hh:mm), got '2030-01-01T00:00:00'"
        ),
        "States[6].Timestamp": (
            "Timestamp must be an RFC 3339 date-time; write Timestamp.$ for an expression"
        ),
        "States[7].Timestamp": f"{one_of}, got 2",
    }
    assert find(errors, "States[3].Seconds").line == 9


def test_choice_errors():
    errors = errors_of(
        cloudflow("""
        - Name: A
          Type: Choice
          Branches:
            - Condition: 42
              Next: B
            - Next: B
            - Condition: $Input.x
          Default: B
        - Name: B
          Type: Choice
          Branches: []
        - {Name: C, Type: Choice, Branches: [{Condition: $Input.ok, Next: A}]}
    """)
    )
    got = {e.path: e.message for e in errors}
    assert (
        got["States[0].Branches[0].Condition"]
        == "Condition must be an expression string, got number"
    )
    assert got["States[0].Branches[1].Condition"] == "Condition is required"
    assert got["States[0].Branches[2].Next"] == "Next is required"
    assert got["States[1].Branches"] == "Branches must not be empty"
    assert got["States[1].Default"] == "Default is required"
    assert got["States[2].Default"] == "Default is required"
    assert find(errors, "States[0].Branches[0].Condition").line == 9


def test_parallel_and_map_errors():
    branches = ", ".join(
        f"{{StartAt: S{i}, States: [{{Name: S{i}, Type: Succeed}}]}}" for i in range(51)
    )
    errors = errors_of(
        cloudflow(f"""
        - Name: A
          Type: Parallel
          Branches: [{branches}]
          Next: B
        - Name: B
          Type: Map
          MaxConcurrency: 2
          MaxConcuccency: 2
          Processor:
            States: []
          Next: C
        - Name: C
          Type: Map
          ItemsPath: $Input.xs
          MaxConcurrency: -1
          Processor: {{StartAt: X, States: [{{Name: X, Type: Succeed}}]}}
          ItemProcessor: {{StartAt: X, States: [{{Name: X, Type: Succeed}}]}}
          End: true
    """)
    )
    got = {e.path: e.message for e in errors}
    assert got == {
        "States[0].Branches": "a Parallel state has at most 50 branches, got 51",
        "States[1].MaxConcuccency": "use either MaxConcurrency or MaxConcuccency, not both",
        "States[1].ItemsPath": "ItemsPath is required",
        "States[1].Processor.StartAt": "StartAt is required",
        "States[1].Processor.States": "States must not be empty",
        "States[2].MaxConcurrency": "MaxConcurrency must be at least 0, got -1",
        "States[2].ItemProcessor": "use either Processor or ItemProcessor, not both",
    }


def test_errors_in_constructors_and_expressions_have_paths_and_lines():
    errors = errors_of(
        cloudflow("""
        - Name: A
          Type: Pass
          InputConstructor:
            good.$: $Input.x
            bad.$: nosuchfunction($Input.x)
          OutputConstructor:
            $: $Input
            other: 1
          Next: B
        - Name: B
          Type: Choice
          Branches:
            - Condition: jsonMerge($Input)
              Next: C
          Default: C
        - Name: C
          Type: Map
          ItemsPath: "uuid("
          Processor:
            StartAt: D
            States:
              - {Name: D, Type: Succeed}
          End: true
    """)
    )
    assert [e.path for e in errors] == [
        "States[0].InputConstructor.bad.$",
        "States[0].OutputConstructor.$",
        "States[1].Branches[0].Condition",
        "States[2].ItemsPath",
    ]
    unknown, dollar, arity, syntax = errors
    assert unknown.line == 10
    assert unknown.message.startswith("unknown function 'nosuchfunction'")
    assert (dollar.line, dollar.message) == (
        12,
        "'$' must be the only key of its object (its result replaces the whole object)",
    )
    assert arity.line == 18
    assert arity.message.startswith("function jsonMerge takes 2 arguments")
    assert syntax.line == 23
    assert "in expression 'uuid('" in syntax.message


def test_body_expression_errors_point_at_body_dollar():
    e = the_error(
        cloudflow(f"""
        - Name: A
          Type: Task
          Action: FC:InvokeFunction
          Parameters:
            resourceArn: {FN.format("f")}
            body.$: $Inptu.x
          End: true
    """)
    )
    assert (e.path, e.line) == ("States[0].Parameters.body.$", 11)
    assert e.message.startswith("unknown variable $Inptu")


def test_all_errors_are_reported_in_document_order():
    errors = errors_of(
        cloudflow("""
        - {Name: A, Type: Pass, Nxt: B}
        - {Name: B, Type: Wiat, End: true}
        - {Name: C, Type: Fail, Code: 1}
    """)
    )
    assert len(errors) >= 4
    lines = [e.line for e in errors]
    assert lines == sorted(lines)


def test_definition_error_message():
    with pytest.raises(DefinitionError) as info:
        compile_text(cloudflow("- {Name: A, Type: Pass, Nxt: B}"))
    assert str(info.value).startswith(
        "States[0].Nxt: unknown field 'Nxt'; did you mean 'Next'? (line 6)"
    )


def test_top_level_errors():
    errors = errors_of("""
        Type: StateMachine
        SpecVersion: v2
        StartAt: A
        Stats: []
        States:
          - {Name: A, Type: Succeed}
    """)
    assert {(e.path, e.message) for e in errors} == {
        ("SpecVersion", "SpecVersion must be 'v1', got 'v2'"),
        ("Stats", "unknown field 'Stats'; did you mean 'States'?"),
    }


def test_state_must_be_a_mapping_and_named():
    errors = errors_of(
        cloudflow("""
        - just a string
        - {Type: Pass, End: true}
        - {Name: A, End: true}
        - {Name: "", Type: Succeed}
    """)
    )
    assert {(e.path, e.message) for e in errors} >= {
        ("States[0]", "a state must be an object, got string"),
        ("States[1].Name", "Name is required"),
        ("States[2].Type", "Type is required"),
        ("States[3].Name", "Name must not be empty"),
    }


def test_max_states():
    states = "\n".join(f"- {{Name: S{i}, Type: Pass, Next: S{i + 1}}}" for i in range(5))
    text = cloudflow(states + "\n- {Name: S5, Type: Succeed}", start="S0")
    assert len(compile_definition(text, max_states=6).root.states) == 6
    e = the_error(text, max_states=5)
    assert (e.path, e.message) == ("", "the definition has 6 states; at most 5 are allowed")


def test_max_bytes_is_passed_on():
    e = the_error(cloudflow("- {Name: A, Type: Succeed}"), max_bytes=20)
    assert e.path == ""
    assert "at most 20 are allowed" in e.message


# --- dialect sniffing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path", "message"),
    [
        ("- a\n- b\n", "", "the definition must be an object at the top level, got array"),
        ("just text\n", "", "the definition must be an object at the top level, got string"),
        ("Type: Flow\nStartAt: A\n", "Type", "Type must be 'StateMachine', got 'Flow'"),
        (
            "version: v2\ntype: flow\nsteps: []\n",
            "version",
            "a legacy flow needs 'version: v1', got 'v2'",
        ),
        ("version: v1\nsteps: []\n", "type", "a legacy flow needs 'type: flow', got nothing"),
        (
            "StartAt: A\n",
            "",
            "not a flow definition: expected 'Type: StateMachine' (CloudFlow FDL) "
            "or 'version: v1' with 'type: flow' (legacy FnF FDL)",
        ),
    ],
)
def test_dialect_sniffing_errors(text, path, message):
    e = the_error(text)
    assert (e.path, e.message) == (path, message)


def test_yaml_errors_become_definition_errors():
    e = the_error("Type: StateMachine\nStates: []\nStates: []\n")
    assert (e.path, e.line, e.message) == (
        "",
        3,
        "duplicate key 'States' (line 3, first at line 2)",
    )
    e = the_error("a: &x 1\n")
    assert e.message == "YAML anchors and aliases are not allowed"
    e = the_error("")
    assert e.message == "the definition is empty"


# --- legacy: every step type and field ---------------------------------------------------------


def test_legacy_all_step_types():
    g = compile_text(
        legacy(
            """
        - type: task
          name: call
          description: invoke a function
          resourceArn: acs:fc:::services/svc/functions/worker
          pattern: sync
          timeoutSeconds: 60
          inputMappings:
            - {target: a, source: $input.a}
          outputMappings:
            - {target: b, source: $local.b}
          errorMappings:
            - {target: why, source: $local.cause}
          retry:
            - errors: [FC.ResourceThrottled]
              intervalSeconds: 10
              maxIntervalSeconds: 100
              maxAttempts: 5
              multiplier: 3
            - errors: [FnF.ALL]
          catch:
            - errors: [FnF.ALL]
              goto: failed
        - type: pass
          name: shape
          outputMappings:
            - {target: k, source: constant}
        - type: wait
          name: nap
          duration: 3
        - type: wait
          name: napLonger
          duration: $.delay
        - type: wait
          name: until
          timestamp: "2030-01-01T00:00:00+08:00"
        - type: wait
          name: untilLater
          timestamp: $.when
        - type: choice
          name: route
          choices:
            - condition: $.kind == "a"
              steps:
                - type: pass
                  name: inline
            - condition: $.kind == "b"
              goto: fanOut
          default:
            goto: done
        - type: parallel
          name: fanOut
          branches:
            - steps:
                - {type: pass, name: left}
            - steps:
                - {type: pass, name: right}
                - {type: succeed, name: rightDone}
        - type: foreach
          name: each
          maxConcurrency: 4
          iterationMapping:
            collection: $.items
            item: it
          steps:
            - {type: pass, name: body}
        - type: succeed
          name: done
        - type: fail
          name: failed
          error: Broken
          cause: it broke
    """,
            extra="name: everything\ninputMappings:\n  - {target: x, source: $input.x}\n"
            "outputMappings:\n  - {target: y, source: $local.y}\n",
        )
    )
    assert g.dialect == "legacy"
    assert g.name == "everything"
    assert g.input_mappings is not None and g.output_mappings is not None
    assert set(g.scopes) == {
        "steps",
        "steps[6].choices[0]",
        "steps[7].branches[0]",
        "steps[7].branches[1]",
        "steps[8].steps",
    }
    call = g.state("steps", "call")
    assert call.path == "steps[0]"
    assert call.next == "shape"
    assert call.task.function == "worker"
    assert call.task.mode is TaskMode.SYSTEM_CALLBACK
    assert call.task.invocation == "async"
    assert call.task.timeout_seconds == 60.0
    assert call.input_mappings and call.output_mappings and call.error_mappings
    r0, r1 = call.retry
    assert (
        r0.errors,
        r0.interval_seconds,
        r0.max_backoff_seconds,
        r0.max_attempts,
        r0.backoff_rate,
    ) == (
        ("FC.ResourceThrottled",),
        10.0,
        100.0,
        5,
        3.0,
    )
    assert (r1.interval_seconds, r1.max_backoff_seconds, r1.max_attempts, r1.backoff_rate) == (
        1.0,
        86400.0,
        3,
        2.0,
    )
    assert r1.path == "steps[0].retry[1]"
    (catch,) = call.catch
    assert (catch.errors, catch.next, catch.path) == (("FnF.ALL",), "failed", "steps[0].catch[0]")
    assert g.state("steps", "shape").kind is StateKind.PASS
    assert g.state("steps", "nap").wait.seconds == 3.0
    assert g.state("steps", "napLonger").wait.seconds_expr is not None
    assert g.state("steps", "until").wait.timestamp == "2030-01-01T00:00:00+08:00"
    assert g.state("steps", "untilLater").wait.timestamp_expr is not None
    route = g.state("steps", "route")
    assert route.kind is StateKind.CHOICE
    assert route.next == "fanOut"
    first, second = route.choices
    assert first.target.scope is g.scopes["steps[6].choices[0]"]
    assert first.target.next is None
    assert first.target.scope.states["inline"].path == "steps[6].choices[0].steps[0]"
    assert second.target == second.target.__class__(next="fanOut")
    assert route.default.next == "done"
    assert [b.path for b in route.choices] == ["steps[6].choices[0]", "steps[6].choices[1]"]
    fan = g.state("steps", "fanOut")
    assert [s.path for s in fan.branches] == ["steps[7].branches[0]", "steps[7].branches[1]"]
    assert fan.branches[1].states["right"].next == "rightDone"
    each = g.state("steps", "each")
    assert each.kind is StateKind.MAP
    assert (each.map.item_key, each.map.index_key, each.map.max_concurrency) == ("it", None, 4)
    assert each.map.processor.path == "steps[8].steps"
    assert each.next == "done"
    assert g.state("steps", "done").next is None
    failed = g.state("steps", "failed")
    assert (failed.fail.code, failed.fail.detail, failed.next) == ("Broken", "it broke", None)
    assert g.warnings == ()


def test_legacy_task_patterns_and_arns():
    g = compile_text(
        legacy("""
        - {type: task, name: a, resourceArn: "acs:fc:cn-hangzhou:1:services/s/functions/f1"}
        - type: task
          name: b
          resourceArn: "acs:fc:::services/s/functions/f2"
          pattern: requestResponse
        - {type: task, name: c, resourceArn: "acs:fc:::functions/f3", pattern: waitForCallback}
        - {type: task, name: d, resourceArn: "acs:mns:cn-hangzhou:1:/queues/q1/messages"}
    """)
    )
    a, b, c, d = (g.state("steps", n).task for n in "abcd")
    assert (a.function, a.mode, a.invocation) == ("f1", TaskMode.REQUEST, "sync")
    assert (b.function, b.mode) == ("f2", TaskMode.REQUEST)
    assert (c.function, c.mode, c.invocation) == ("f3", TaskMode.CUSTOM_CALLBACK, "sync")
    assert (d.target, d.queue, d.mode) == ("queue", "q1", TaskMode.REQUEST)
    assert g.functions == {"f1", "f2", "f3"} and g.queues == {"q1"}


def test_legacy_unreachable_after_end():
    errors = errors_of(
        legacy("""
        - type: pass
          name: first
          end: true
        - type: pass
          name: second
    """)
    )
    assert [(e.path, e.line, e.message) for e in errors] == [
        ("steps[1]", 7, "step 'second' is unreachable from 'first'"),
    ]


def test_legacy_choice_fall_through_and_goto_jump():
    g = compile_text(
        legacy("""
        - type: choice
          name: check
          choices:
            - condition: $.ok
              goto: good
        - type: fail
          name: bad
        - type: pass
          name: good
    """)
    )
    check = g.state("steps", "check")
    assert check.next == "bad"
    assert check.default is None
    assert g.state("steps", "bad").next is None


def test_legacy_end_on_last_step_is_a_warning():
    g = compile_text(
        legacy("""
        - type: pass
          name: only
          end: true
    """)
    )
    (w,) = g.warnings
    assert (w.path, w.line, w.message) == (
        "steps[0].end",
        6,
        "end: true on the last step is redundant",
    )


def test_legacy_errors():
    errors = errors_of(
        legacy("""
        - type: tsk
          name: a
        - type: task
          name: b
          resourceArn: acs:fnf:::flow/other
          pattern: callback
          inputMapping: []
        - type: pass
          name: b
        - type: pass
          name: c
          retry: []
        - type: choice
          name: d
          choices:
            - condition: $.x
              goto: elsewhere
              steps:
                - {type: pass, name: e}
            - condition: $.y
          default: {}
        - type: wait
          name: f
          duration: 1
          timestamp: "2030-01-01T00:00:00Z"
        - type: foreach
          name: g
          iterationMapping: {item: x}
          steps: []
    """)
    )
    got = {e.path: e.message for e in errors}
    assert got["steps[0].type"] == "unknown step type 'tsk'; did you mean 'task'?"
    assert got["steps[1].resourceArn"].startswith(
        "resourceArn 'acs:fnf:::flow/other' is not supported"
    )
    assert got["steps[1].pattern"] == (
        "pattern must be one of requestResponse, sync, waitForCallback, got 'callback'; "
        "did you mean 'waitForCallback'?"
    )
    assert (
        got["steps[1].inputMapping"]
        == "unknown field 'inputMapping'; did you mean 'inputMappings'?"
    )
    assert got["steps[2].name"] == "duplicate step name 'b' (first at steps[1])"
    assert got["steps[3].retry"] == (
        "retry is not allowed on a pass step (only on task steps, parallel steps, foreach steps)"
    )
    assert got["steps[4].choices[0].goto"] == "a choice has either steps or goto, not both"
    assert got["steps[4].choices[1]"] == "a choice needs steps or goto"
    assert got["steps[4].default"] == "default needs steps or goto"
    assert got["steps[5].timestamp"] == "a wait step needs exactly one of duration and timestamp"
    assert got["steps[6].iterationMapping.collection"] == "collection is required"
    assert got["steps[6].steps"] == "steps must not be empty"
    assert find(errors, "steps[1].pattern").line == 9


def test_legacy_goto_must_name_a_sibling():
    errors = errors_of(
        legacy("""
        - type: parallel
          name: p
          branches:
            - steps:
                - type: task
                  name: t
                  resourceArn: acs:fc:::services/s/functions/f
                  catch:
                    - errors: [FnF.ALL]
                      goto: after
        - type: pass
          name: after
        - type: choice
          name: c
          choices:
            - condition: $.x
              goto: aftr
    """)
    )
    e = find(errors, "steps[0].branches[0].steps[0].catch[0].goto")
    assert e.line == 13
    assert e.message == (
        "'after' is a step of another scope (steps); only steps of the same list can be named here"
    )
    e = find(errors, "steps[2].choices[0].goto")
    assert e.message == "there is no step 'aftr' in this scope; did you mean 'after'?"


def test_legacy_scope_that_can_never_end():
    errors = errors_of(
        legacy("""
        - type: pass
          name: a
        - type: choice
          name: b
          choices:
            - condition: $.x
              goto: a
          default:
            goto: a
    """)
    )
    assert [(e.path, e.message) for e in errors] == [
        ("steps", "this scope can never end: no path from 'a' reaches end or the last step"),
    ]


def test_legacy_wait_duration_errors():
    errors = errors_of(
        legacy("""
        - {type: wait, name: a, duration: "ten"}
        - {type: wait, name: b, duration: -1}
        - {type: wait, name: c, timestamp: "soon"}
        - {type: wait, name: d}
    """)
    )
    assert {e.path: e.message for e in errors} == {
        "steps[0].duration": "duration must be a number of seconds or a $ expression, got 'ten'",
        "steps[1].duration": "duration must be at least 0, got -1",
        "steps[2].timestamp": (
            "timestamp must be an RFC 3339 date-time such as 2024-05-01T12:00:00Z, got 'soon'"
        ),
        "steps[3]": "a wait step needs exactly one of duration and timestamp",
    }


def test_legacy_retry_errors():
    errors = errors_of(
        legacy("""
        - type: task
          name: t
          resourceArn: acs:fc:::services/s/functions/f
          errorMappings:
            - {target: e, source: $local.error}
          retry:
            - {errors: [FnF.ALL], maxAttempts: 1000, multiplier: 0, intervalSeconds: "1"}
            - {maxAttempts: 1}
          catch:
            - {errors: [FnF.ALL]}
    """)
    )
    assert {e.path: e.message for e in errors} == {
        "steps[0].retry[0].maxAttempts": "maxAttempts must be at most 100, got 1000",
        "steps[0].retry[0].multiplier": "multiplier must be at least 1, got 0",
        "steps[0].retry[0].intervalSeconds": "intervalSeconds must be a number, got string",
        "steps[0].retry[1].errors": "errors is required",
        "steps[0].catch[0].goto": "goto is required",
    }


def test_legacy_error_mappings_without_catch_is_a_warning():
    g = compile_text(
        legacy("""
        - type: task
          name: t
          resourceArn: acs:fc:::services/s/functions/f
          errorMappings:
            - {target: e, source: $local.error}
    """)
    )
    (w,) = g.warnings
    assert (w.path, w.message) == (
        "steps[0].errorMappings",
        "errorMappings has no effect without catch",
    )


def test_legacy_unknown_function_warning():
    g = compile_text(
        legacy("- {type: task, name: t, resourceArn: 'acs:fc:::services/s/functions/f'}"),
        known_functions=set(),
    )
    assert [w.message for w in g.warnings] == ["function 'f' does not exist yet"]


def test_legacy_expression_and_mapping_errors_have_paths():
    errors = errors_of(
        legacy("""
        - type: choice
          name: c
          choices:
            - condition: nosuchfunction($.x)
              goto: d
        - type: pass
          name: d
          inputMappings:
            - {target: a}
    """)
    )
    assert find(errors, "steps[0].choices[0].condition").line == 7
    mapping = [e for e in errors if e.path.startswith("steps[1].inputMappings")]
    assert mapping and mapping[0].line == 12


def test_legacy_choice_inline_default_scope():
    g = compile_text(
        legacy("""
        - type: choice
          name: c
          choices:
            - condition: $.x > 1
              goto: last
          default:
            steps:
              - {type: pass, name: inDefault}
        - type: pass
          name: last
    """)
    )
    c = g.state("steps", "c")
    assert c.default.scope is g.scopes["steps[0].default"]
    assert c.default.next is None
    assert c.default.scope.states["inDefault"].path == "steps[0].default.steps[0]"
    assert c.next == "last"


def test_asl_style_states_mapping_is_explained():
    e = the_error("""
        Type: StateMachine
        SpecVersion: v1
        StartAt: A
        States:
          A: {Type: Succeed}
    """)
    assert (e.path, e.line) == ("States", 5)
    assert "not a mapping from names to states" in e.message


def test_nameless_states_do_not_cascade():
    errors = errors_of(
        cloudflow("""
        - {Name: A, Type: Pass, Next: B}
        - {Type: Succeed}
    """)
    )
    assert {(e.path, e.message) for e in errors} == {
        ("States[1].Name", "Name is required"),
        ("States[0].Next", "there is no state 'B' in this scope"),
    }
