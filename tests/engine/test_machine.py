"""The interpreter on plain objects: every state type, data shaping, Retry/Catch, Parallel,
Map, callbacks, timeouts, stop, limits and stale events. No database."""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executions.engine import events as ev
from executions.engine.compiler import compile_definition
from executions.engine.graph import RetryRule
from executions.engine.machine import MAX_DUE, Limits, new_state, retry_delay

from .sim import T0, HandlerError, Sim

HEAD = "Type: StateMachine\nName: f\nSpecVersion: v1\n"


def cf(body: str) -> str:
    return HEAD + body


def echo(event):
    return event


# ------------------------------------------------------------------ Pass / Succeed / Fail


def test_pass_constructors_and_dollar_key():
    sim = Sim(
        cf("""
StartAt: A
States:
  - Type: Pass
    Name: A
    InputConstructor:
      x.$: $Input.a
      lit: "$Input"
    OutputConstructor:
      $: $Input
    Next: B
  - Type: Succeed
    Name: B
""")
    )
    sim.run({"a": 1})
    assert sim.status == "Succeeded"
    assert sim.output == {"x": 1, "lit": "$Input"}
    assert sim.types() == [
        "ExecutionStarted",
        "StepEntered",
        "StepExited",
        "StepEntered",
        "StepExited",
        "ExecutionSucceeded",
    ]
    sim.check_invariants()


def test_fail_state_fails_execution_with_code_and_detail():
    sim = Sim(
        cf("""
StartAt: F
States:
  - Type: Fail
    Name: F
    Code: 超时
    Detail: too slow
    End: true
""")
    )
    sim.run()
    assert sim.status == "Failed"
    assert sim.error == ("超时", "too slow")
    assert sim.types()[-2:] == ["StepFailed", "ExecutionFailed"]
    sim.check_invariants()


def test_global_constructor_and_context():
    sim = Sim(
        cf("""
StartAt: A
States:
  - Type: Pass
    Name: A
    GlobalConstructor:
      seen.$: $Context.Current.Name
    Next: B
  - Type: Pass
    Name: B
    OutputConstructor:
      g.$: $Global.seen
      name.$: $Context.Execution.Name
      first.$: $Context.Execution.Input.k
    End: true
""")
    )
    sim.run({"k": "v"})
    assert sim.output == {"g": "A", "name": "run1", "first": "v"}


# ------------------------------------------------------------------ Choice / loops / Wait


POLL = cf("""
StartAt: Submit
States:
  - Type: Task
    Name: Submit
    Action: FC:InvokeFunction
    TaskMode: RequestComplete
    Parameters:
      invocationType: Sync
      resourceArn: acs:fc:cn-hangzhou:123:functions/submit/LATEST
    Next: Shape
  - Type: Pass
    Name: Shape
    InputConstructor:
      polls: 0
      job.$: $Input.Body.job
    OutputConstructor:
      $: $Input
    Next: Pause
  - Type: Wait
    Name: Pause
    Seconds: 10
    Next: Poll
  - Type: Task
    Name: Poll
    Action: FC:InvokeFunction
    Parameters:
      invocationType: Sync
      resourceArn: acs:fc:cn-hangzhou:123:functions/poll/LATEST
      body:
        job.$: $Input.job
        polls.$: $Input.polls
        need.$: $Context.Execution.Input.need
    OutputConstructor:
      $: jsonMerge($Input, $Output.Body)
    Next: Check
  - Type: Choice
    Name: Check
    Branches:
      - Condition: $Input.status== "done"
        Next: Done
      - Condition: $Input.polls > 3
        Next: GiveUp
      - Condition: $Input.status == "running"
        Next: Pause
    Default: GiveUp
  - Type: Fail
    Name: GiveUp
    Code: 超时
    End: true
  - Type: Succeed
    Name: Done
    End: true
""")


def poll_functions():
    def poll(event):
        polls = event["polls"] + 1
        return {"status": "done" if polls >= event["need"] else "running", "polls": polls}

    return {"submit": lambda e: {"job": "j1"}, "poll": poll}


def test_polling_loop_succeeds_when_job_finishes():
    sim = Sim(POLL, poll_functions()).run({"need": 2})
    assert sim.status == "Succeeded"
    assert sim.output == {"job": "j1", "polls": 2, "status": "done"}
    steps = [e["step_name"] for e in sim.history if e["type"] == "StepEntered"]
    assert steps == ["Submit", "Shape", "Pause", "Poll", "Check", "Pause", "Poll", "Check", "Done"]
    assert sim.now == T0 + timedelta(seconds=20)  # two 10 s waits, nothing else took time
    sim.check_invariants()


def test_polling_loop_fails_with_non_ascii_code_when_job_never_finishes():
    sim = Sim(POLL, poll_functions()).run({"need": 100})
    assert sim.status == "Failed"
    assert sim.error[0] == "超时"
    assert [e["step_name"] for e in sim.history if e["type"] == "StepEntered"].count("Poll") == 4
    sim.check_invariants()


def test_wait_is_a_timer_and_dynamic_seconds():
    sim = Sim(
        cf("""
StartAt: W
States:
  - Type: Wait
    Name: W
    Seconds.$: $Input.s
    End: true
""")
    ).start({"s": 3600})
    sim.settle(timers=False)
    assert sim.status == "Running"
    assert list(sim.timers.values()) == [T0 + timedelta(seconds=3600)]
    sim.fire_next_timer()
    assert sim.status == "Succeeded"
    assert sim.output == {"s": 3600}


def test_wait_timestamp_in_the_past_does_not_wait():
    sim = Sim(
        cf("""
StartAt: W
States:
  - Type: Wait
    Name: W
    Timestamp: "2020-01-01T00:00:00Z"
    End: true
""")
    ).start({})
    assert sim.status == "Succeeded" and not sim.timers


def test_choice_type_error_fails_with_runtime_error():
    sim = Sim(
        cf("""
StartAt: C
States:
  - Type: Choice
    Name: C
    Branches:
      - Condition: $Input.a > 1
        Next: S
    Default: S
  - Type: Succeed
    Name: S
""")
    ).run({"a": "x"})
    assert sim.status == "Failed"
    assert sim.error[0] == "FnF.RuntimeError"
    assert "$Input.a > 1" in sim.error[1]


def test_choice_null_comparison_is_false_and_default_taken():
    sim = Sim(
        cf("""
StartAt: C
States:
  - Type: Choice
    Name: C
    Branches:
      - Condition: $Input.missing > 1
        Next: F
    Default: S
  - Type: Fail
    Name: F
  - Type: Succeed
    Name: S
""")
    ).run({})
    assert sim.status == "Succeeded"


# ------------------------------------------------------------------ Retry / Catch


def flaky(failures: int, error: str = "Boom"):
    count = {"n": 0}

    def fn(event):
        count["n"] += 1
        if count["n"] <= failures:
            raise HandlerError(error, f"failure {count['n']}")
        return {"ok": count["n"]}

    return fn


TASK_RETRY = cf("""
StartAt: T
States:
  - Type: Task
    Name: T
    Action: FC:InvokeFunction
    Parameters:
      invocationType: Sync
      resourceArn: acs:fc:::services/s.LATEST/functions/flaky
    Retry:
      - Errors: [Other]
        MaxAttempts: 9
        IntervalSeconds: 1
      - Errors: [Boom]
        MaxAttempts: 3
        IntervalSeconds: 2
        BackoffRate: 3
        MaxBackoffSeconds: 10
      - Errors: [FnF.ALL]
        MaxAttempts: 5
        IntervalSeconds: 1
    Catch:
      - Errors: [Boom]
        Next: Caught
        OutputConstructor:
          code.$: $Context.Current.Error.Code
          input.$: $Input.k
      - Errors: [FnF.ALL]
        Next: Never
    End: true
  - Type: Pass
    Name: Caught
    End: true
  - Type: Fail
    Name: Never
""")


def retry_times(sim):
    return [e["time"] for e in sim.history if e["type"] == "TaskScheduled"]


def test_retry_backoff_is_interval_times_rate_capped_then_succeeds():
    sim = Sim(TASK_RETRY, {"flaky": flaky(3)}).run({"k": 1})
    assert sim.status == "Succeeded"
    times = retry_times(sim)
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    assert gaps == [2, 6, 10]  # 2, 2*3, min(2*9, 10)
    attempts = [e["detail"]["attempt"] for e in sim.history if e["type"] == "TaskScheduled"]
    assert attempts == [1, 2, 3, 4]
    sim.check_invariants()


def test_first_matching_retry_rule_only_then_catch():
    sim = Sim(TASK_RETRY, {"flaky": flaky(99)}).run({"k": 7})
    # Boom matches the second rule (3 retries); the FnF.ALL rule below it is never used.
    assert len(retry_times(sim)) == 4
    assert sim.status == "Succeeded"
    assert sim.output == {"code": "Boom", "input": 7}
    types = sim.types()
    assert types.index("StepFailed") > types.index("TaskFailed")
    sim.check_invariants()


def test_catch_all_after_specific_and_default_catch_output():
    sim = Sim(
        cf("""
StartAt: T
States:
  - Type: Task
    Name: T
    Action: FC:InvokeFunction
    Parameters:
      invocationType: Sync
      resourceArn: acs:fc:r:1:functions/bad
    Catch:
      - Errors: [FnF.ALL]
        Next: P
    End: true
  - Type: Pass
    Name: P
    End: true
"""),
        {"bad": flaky(99, "ValueError")},
    ).run()
    assert sim.status == "Succeeded"
    assert sim.output == {"Error": "ValueError", "Cause": "failure 1"}


def test_uncaught_error_fails_execution():
    sim = Sim(
        cf("""
StartAt: T
States:
  - Type: Task
    Name: T
    Action: FC:InvokeFunction
    Parameters:
      invocationType: Sync
      resourceArn: acs:fc:r:1:functions/bad
    End: true
"""),
        {"bad": flaky(99, "JobFailed")},
    ).run()
    assert sim.status == "Failed" and sim.error == ("JobFailed", "failure 1")


def test_task_timeout_fails_with_fnf_timeout_matched_by_task_timeout_alias():
    sim = Sim(
        cf("""
StartAt: T
States:
  - Type: Task
    Name: T
    Action: FC:InvokeFunction
    Timeout: "30"
    Parameters:
      invocationType: Sync
      resourceArn: acs:fc:r:1:functions/slow
    Catch:
      - Errors: [FnF.TaskTimeout]
        Next: P
    End: true
  - Type: Pass
    Name: P
    End: true
"""),
        {"slow": echo},
    ).start({})
    assert sim.pending  # the task is out, never answered
    sim.pending.clear()
    sim.fire_next_timer()
    assert "TaskTimedOut" in sim.types()
    assert sim.status == "Succeeded"
    assert sim.output["Error"] == "FnF.Timeout"
    assert sim.cancelled  # the late attempt is cancelled


def test_late_result_after_timeout_is_ignored():
    sim = Sim(
        cf("""
StartAt: T
States:
  - Type: Task
    Name: T
    Action: FC:InvokeFunction
    Timeout: "5"
    Parameters:
      invocationType: Sync
      resourceArn: acs:fc:r:1:functions/slow
    End: true
"""),
        {"slow": echo},
    ).start({})
    cmd = sim.pending.popleft()
    sim.feed(ev.TaskStarted(cmd.entry, cmd.attempt))
    sim.fire_next_timer()
    n = len(sim.history)
    d = sim.feed(ev.TaskSucceeded(cmd.entry, cmd.attempt, {"Body": 1}))
    assert d.ignored and len(sim.history) == n
    assert sim.status == "Failed" and sim.error[0] == "FnF.Timeout"


# ------------------------------------------------------------------ duplicates and lost workers


def test_duplicate_and_stale_task_events_do_not_advance_twice():
    sim = Sim(
        cf("""
StartAt: T
States:
  - Type: Task
    Name: T
    Action: FC:InvokeFunction
    Parameters:
      invocationType: Sync
      resourceArn: acs:fc:r:1:functions/echo
    Next: U
  - Type: Wait
    Name: U
    Seconds: 5
    End: true
"""),
        {"echo": echo},
    ).start({"a": 1})
    cmd = sim.pending.popleft()
    assert not sim.feed(ev.TaskStarted(cmd.entry, cmd.attempt)).ignored
    assert sim.feed(ev.TaskStarted(cmd.entry, cmd.attempt)).ignored
    env = {"Body": {"a": 1}, "StatusCode": 200, "Headers": {}}
    assert not sim.feed(ev.TaskSucceeded(cmd.entry, cmd.attempt, env)).ignored
    n = len(sim.history)
    assert sim.feed(ev.TaskSucceeded(cmd.entry, cmd.attempt, env)).ignored
    assert sim.feed(ev.TaskFailed(cmd.entry, cmd.attempt, "X")).ignored
    assert sim.feed(ev.TaskSucceeded(cmd.entry, cmd.attempt + 1, env)).ignored
    assert sim.feed(ev.TimerFired("wait:999")).ignored
    assert len(sim.history) == n
    (key,) = sim.timers
    sim.feed(ev.TimerFired(key))
    assert sim.feed(ev.TimerFired(key)).ignored
    assert sim.status == "Succeeded"
    sim.check_invariants()


def test_lost_attempt_is_rerun_then_fails_as_worker_lost_when_bound_reached():
    definition = cf("""
StartAt: T
States:
  - Type: Task
    Name: T
    Action: FC:InvokeFunction
    Parameters:
      invocationType: Sync
      resourceArn: acs:fc:r:1:functions/echo
    End: true
""")
    sim = Sim(definition, {"echo": echo}, limits=Limits(max_lost_attempts=2)).start({})
    for _ in range(3):
        cmd = sim.pending.popleft()
        sim.feed(ev.TaskStarted(cmd.entry, cmd.attempt))
        sim.feed(ev.TaskLost(cmd.entry, cmd.attempt))
    assert sim.status == "Failed" and sim.error[0] == "FnF.WorkerLost"
    assert [e["detail"]["attempt"] for e in sim.history if e["type"] == "TaskScheduled"] == [
        1,
        2,
        3,
    ]

    sim = Sim(definition, {"echo": echo}, limits=Limits(max_lost_attempts=2)).start({"x": 1})
    cmd = sim.pending.popleft()
    sim.feed(ev.TaskStarted(cmd.entry, cmd.attempt))
    sim.feed(ev.TaskLost(cmd.entry, cmd.attempt))
    sim.settle()
    assert sim.status == "Succeeded" and sim.output["Body"] == {"x": 1}
    sim.check_invariants()


# ------------------------------------------------------------------ Parallel and Map


PARALLEL = cf("""
StartAt: P
States:
  - Type: Parallel
    Name: P
    Branches:
      - StartAt: A
        States:
          - Type: Pass
            Name: A
            OutputConstructor:
              a.$: $Input.v
            End: true
      - StartAt: B
        States:
          - Type: Task
            Name: B
            Action: FC:InvokeFunction
            Parameters:
              invocationType: Sync
              resourceArn: acs:fc:r:1:functions/fn
            OutputConstructor:
              $: $Output.Body
            End: true
    End: true
""")


def test_parallel_output_by_branch_index():
    sim = Sim(PARALLEL, {"fn": lambda e: {"b": e["v"] * 2}}).run({"v": 4})
    assert sim.status == "Succeeded"
    assert sim.output == {"Branch0": {"a": 4}, "Branch1": {"b": 8}}
    assert sim.types().count("BranchEntered") == 2 and sim.types().count("BranchExited") == 2
    sim.check_invariants()


def test_parallel_branch_failure_fails_state_and_cancels_siblings():
    sim = Sim(
        cf("""
StartAt: P
States:
  - Type: Parallel
    Name: P
    Branches:
      - StartAt: Slow
        States:
          - Type: Wait
            Name: Slow
            Seconds: 100
            End: true
      - StartAt: Bad
        States:
          - Type: Fail
            Name: Bad
            Code: Broken
    Catch:
      - Errors: [Broken]
        Next: After
    End: true
  - Type: Pass
    Name: After
    End: true
""")
    ).run({})
    assert sim.status == "Succeeded"
    assert sim.output == {"Error": "Broken", "Cause": ""}
    assert not sim.timers  # the sibling's Wait timer was cancelled
    cancelled = [e for e in sim.history if e["detail"].get("cancelled")]
    assert {e["type"] for e in cancelled} == {"StepExited", "BranchExited"}
    sim.check_invariants()


MAP = cf("""
StartAt: M
States:
  - Type: Map
    Name: M
    ItemsPath: $Input.items
    MaxConcurrency: 2
    Processor:
      StartAt: Work
      States:
        - Type: Task
          Name: Work
          Action: FC:InvokeFunction
          Parameters:
            invocationType: Sync
            resourceArn: acs:fc:r:1:functions/sq
            body:
              n.$: $Input
              i.$: $Context.Current.Index
          OutputConstructor:
            $: $Output.Body
          End: true
    End: true
""")


def test_map_output_in_order_and_concurrency_bounded():
    sim = Sim(MAP, {"sq": lambda e: {"sq": e["n"] ** 2, "i": e["i"]}}).start(
        {"items": [1, 2, 3, 4, 5]}
    )
    max_in_flight = 0
    while not sim.finished:
        max_in_flight = max(max_in_flight, len(sim.pending))
        assert sim.run_one_task()
    assert max_in_flight == 2
    assert sim.output == {"Items": [{"sq": n * n, "i": n - 1} for n in range(1, 6)]}
    sim.check_invariants()


def test_map_iteration_failure_fails_map_and_cancels_in_flight():
    def sq(e):
        if e["n"] == 2:
            raise HandlerError("NotSquare", "two")
        return {"sq": 0}

    sim = Sim(MAP, {"sq": sq}).start({"items": [1, 2, 3, 4]})
    sim.settle()
    assert sim.status == "Failed" and sim.error[0] == "NotSquare"
    sim.check_invariants()


def test_map_empty_and_non_array_items():
    assert Sim(MAP, {}).run({"items": []}).output == {"Items": []}
    sim = Sim(MAP, {}).run({"items": {"a": 1}})
    assert sim.status == "Failed" and sim.error[0] == "FnF.RuntimeError"


def test_map_aggregate_over_payload_limit_is_a_catchable_data_limit_error():
    sim = Sim(MAP, {"sq": lambda e: {"pad": "x" * 300}}, limits=Limits(max_payload_bytes=1000))
    sim.run({"items": list(range(5))})
    assert sim.status == "Failed" and sim.error[0] == "FnF.DataLimitExceeded"


# ------------------------------------------------------------------ callbacks


CALLBACK = cf("""
StartAt: Ask
States:
  - Type: Task
    Name: Ask
    Action: FC:InvokeFunction
    TaskMode: WaitForCustomCallback
    HeartbeatSeconds: 60
    Parameters:
      invocationType: Async
      resourceArn: acs:fc:r:1:functions/notify
      body:
        token.$: $Context.Current.TaskToken
    OutputConstructor:
      decision.$: $Output.decision
    End: true
""")


def test_callback_waits_for_report_with_token_in_event_and_history():
    sim = Sim(CALLBACK, {"notify": lambda e: {"sent": e["token"]}}).start({})
    sim.settle(timers=False)
    assert sim.status == "Running"
    token = sim.calls[0][1]["token"]
    submitted = [e for e in sim.history if e["type"] == "TaskSubmitted"]
    assert submitted[0]["detail"]["taskToken"] == token
    sim.advance(30)
    sim.feed(ev.CallbackHeartbeat(token))
    sim.advance(50)  # 80 s after submit, 50 s after the heartbeat
    sim.feed(ev.CallbackSucceeded(token, {"decision": "approve"}))
    assert sim.status == "Succeeded" and sim.output == {"decision": "approve"}
    assert sim.feed(ev.CallbackSucceeded(token, {})).ignored
    sim.check_invariants()


def test_callback_heartbeat_miss_and_failure_report():
    sim = Sim(CALLBACK, {"notify": lambda e: {}}).start({})
    sim.settle(timers=False)
    sim.fire_next_timer()
    assert sim.status == "Failed" and sim.error[0] == "FnF.HeartbeatTimeout"

    sim = Sim(CALLBACK, {"notify": lambda e: {}}).start({})
    sim.settle(timers=False)
    token = next(iter(sim.tokens))
    sim.feed(ev.CallbackFailed(token, "Rejected", "no budget"))
    assert sim.status == "Failed" and sim.error == ("Rejected", "no budget")


# ------------------------------------------------------------------ stop, limits, budget


def test_stop_closes_timers_and_tokens():
    sim = Sim(CALLBACK, {"notify": lambda e: {}}).start({})
    sim.settle(timers=False)
    sim.feed(ev.Stop("Manual", "operator"))
    assert sim.status == "Stopped" and not sim.tokens and not sim.timers
    assert sim.feed(ev.Stop()).ignored
    sim.check_invariants()


def test_inline_loop_yields_to_resume_and_history_limit_ends_it():
    loop = cf("""
StartAt: A
States:
  - Type: Pass
    Name: A
    Next: B
  - Type: Choice
    Name: B
    Branches:
      - Condition: $Input.go == true
        Next: A
    Default: C
  - Type: Succeed
    Name: C
""")
    sim = Sim(loop, limits=Limits(inline_budget=10, max_history_events=100)).start({"go": True})
    assert sim.resume and sim.status == "Running"
    sim.settle()
    assert sim.status == "Failed" and sim.error[0] == "FnF.HistoryLimitExceeded"
    assert len(sim.history) <= 105


def test_input_over_limit_fails_cleanly():
    sim = Sim(
        cf("""
StartAt: A
States:
  - Type: Pass
    Name: A
    End: true
"""),
        limits=Limits(max_payload_bytes=50),
    ).run({"x": "y" * 100})
    assert sim.status == "Failed" and sim.error[0] == "FnF.DataLimitExceeded"


def test_expression_error_in_constructor_is_runtime_error():
    sim = Sim(
        cf("""
StartAt: A
States:
  - Type: Pass
    Name: A
    InputConstructor:
      x.$: length($Input.n)
    End: true
""")
    ).run({"n": 5})
    assert sim.status == "Failed" and sim.error[0] == "FnF.RuntimeError"


# ------------------------------------------------------------------ legacy dialect


LEGACY_CALLBACK = """
version: v1
type: flow
steps:
  - type: task
    name: ask
    resourceArn: acs:fc:::services/demo/functions/notify
    pattern: waitForCallback
    inputMappings:
      - target: taskToken
        source: $context.task.token
    outputMappings:
      - target: s
        source: $local.status
"""


def test_legacy_callback_maps_token_in_and_local_out():
    sim = Sim(LEGACY_CALLBACK, {"notify": echo}).start({"a": 1})
    sim.settle(timers=False)
    token = sim.calls[0][1]["taskToken"]
    sim.feed(ev.CallbackSucceeded(token, {"status": "ok"}))
    assert sim.status == "Succeeded"
    assert sim.output == {"s": "ok"}


def test_legacy_sequence_locals_merge_and_default_mappings():
    sim = Sim(
        """
version: v1
type: flow
steps:
  - type: task
    name: one
    resourceArn: acs:fc:r:1:services/s/functions/add
  - type: task
    name: two
    resourceArn: acs:fc:r:1:services/s/functions/add
    outputMappings:
      - target: total
        source: $local.n
      - target: tag
        source: const
""",
        {"add": lambda e: {"n": e.get("n", 0) + 1}},
    ).run({"n": 10})
    assert sim.status == "Succeeded"
    # step one: input {n:10} -> local {n:11}; step two: input = input ∪ local = {n:11} -> 12
    assert sim.output == {"n": 11, "total": 12, "tag": "const"}


def test_legacy_foreach_to_queue_waits_for_every_callback():
    sim = Sim("""
version: v1
type: flow
steps:
  - type: foreach
    name: each
    iterationMapping:
      collection: $.payload.workers
      item: worker
    steps:
      - type: task
        name: job
        resourceArn: acs:mns:::/queues/jobs/messages
        pattern: waitForCallback
        inputMappings:
          - target: token
            source: $context.task.token
          - target: who
            source: $input.worker
        serviceParams:
          MessageBody: $
    outputMappings:
      - target: results
        source: $local
""").start({"payload": {"workers": ["w1", "w2", "w3"]}})
    assert [m.body["who"] for m in sim.queue] == ["w1", "w2", "w3"]
    for m in sim.queue:
        sim.feed(ev.CallbackSucceeded(m.body["token"], {m.body["who"]: "success"}))
    assert sim.status == "Succeeded"
    assert sim.output == {"results": [{"w1": "success"}, {"w2": "success"}, {"w3": "success"}]}
    sim.check_invariants()


LEGACY_ROUTE = """
version: v1
type: flow
steps:
  - type: choice
    name: route
    choices:
      - condition: $.kind == "a"
        steps:
          - type: pass
            name: inner
            outputMappings:
              - target: via
                source: inline
      - condition: $.kind == "b"
        goto: risky
  - type: pass
    name: skipped
    outputMappings:
      - target: skipped
        source: true
  - type: task
    name: risky
    resourceArn: acs:fc:r:1:services/s/functions/bad
    retry:
      - errors: [Boom]
        intervalSeconds: 1
        maxAttempts: 2
    catch:
      - errors: [FnF.ALL]
        goto: recover
    errorMappings:
      - target: err
        source: $local.error
  - type: fail
    name: unreachable_fail
    error: X
  - type: pass
    name: recover
"""


def test_legacy_choice_inline_steps_goto_and_retry_catch():
    sim = Sim(LEGACY_ROUTE, {"bad": flaky(99, "Boom")})
    sim.run({"kind": "b"})
    assert sim.status == "Succeeded"
    assert sim.output == {"err": "Boom"}
    assert len([e for e in sim.history if e["type"] == "TaskScheduled"]) == 3
    sim.check_invariants()


def test_legacy_choice_inline_steps_then_continue():
    sim = Sim(LEGACY_ROUTE, {"bad": flaky(99, "Boom")}).run({"kind": "a"})
    assert sim.status == "Succeeded"
    assert sim.output == {"via": "inline", "skipped": True, "err": "Boom"}
    sim.check_invariants()


# ------------------------------------------------------------------ values beside the state


MAP10 = cf("""
StartAt: M
States:
  - Type: Map
    Name: M
    ItemsPath: $Input.items
    MaxConcurrency: 10
    Processor:
      StartAt: Work
      States:
        - Type: Task
          Name: Work
          Action: FC:InvokeFunction
          Parameters:
            invocationType: Sync
            resourceArn: acs:fc:r:1:functions/echo
          OutputConstructor:
            $: $Output.Body
          End: true
    Next: Done
  - Type: Pass
    Name: Done
    OutputConstructor:
      count.$: length($Input.Items)
      last.$: $Input.Items[length($Input.Items) - 1].i
    End: true
""")


def run_map10(n: int) -> Sim:
    items = [{"i": i, "pad": "x" * 200} for i in range(n)]
    sim = Sim(MAP10, {"echo": echo}).run({"items": items})
    assert sim.status == "Succeeded" and sim.output == {"count": n, "last": n - 1}
    sim.check_invariants()
    return sim


def test_map_writes_grow_linearly_with_its_items():
    runs = {n: run_map10(n) for n in (100, 200, 400)}
    state = {n: sim.state_bytes for n, sim in runs.items()}
    values = {n: sim.value_bytes for n, sim in runs.items()}
    # Doubling the items doubles what is written (results kept in the state made it ~4x).
    for small, big in ((100, 200), (200, 400)):
        assert 1.8 < state[big] / state[small] < 2.2, state
        assert 1.8 < values[big] / values[small] < 2.2, values
    # The state written by one transition does not grow with the items or the results
    # collected: it holds the ten iterations in flight, not the rest.
    assert runs[400].max_state_bytes <= runs[100].max_state_bytes * 1.05
    assert runs[400].max_state_bytes < 12_000
    # Reads too: one item per iteration started once a slot frees, and every result once
    # when the Map completes (but the last, which arrives in that very step).
    sim = runs[400]
    sizes = sorted(len(keys) for keys in sim.lookups)
    assert sizes[-1] == 399 and sizes[-2] == 1
    assert sum(sizes) == 399 + 390
    assert not sim.values  # the ended execution's values are gone


def test_container_values_are_dropped_when_the_container_is_done():
    definition = MAP10.replace(
        """  - Type: Pass
    Name: Done
""",
        """  - Type: Wait
    Name: Done
    Seconds: 5
""",
    ).replace("    OutputConstructor:\n      count.$", "    InputConstructor:\n      count.$")
    items = [{"i": i, "pad": "x" * 200} for i in range(30)]
    sim = Sim(definition, {"echo": echo}).start({"items": items})
    for _ in range(5):
        sim.run_one_task()
    map_entry = next(e["event_id"] for e in sim.history if e["step_name"] == "M")
    kept = set(sim.values)
    assert {f"e{map_entry}:res:{i}" for i in range(5)} <= kept
    assert {f"e{map_entry}:item:{i}" for i in range(15, 30)} <= kept  # not started yet
    assert "x:input" in kept and f"e{map_entry}:in" in kept  # both larger than 1 KiB
    stored = json.dumps(sim.state)
    # The ten iterations in flight hold their item ($Context.Current.Item) and their first
    # state's input, nothing else: no result, no item waiting.
    assert stored.count('"pad"') == 20
    sim.settle(timers=False)
    assert sim.status == "Running" and sim.output is None  # in the Wait after the Map
    assert set(sim.values) == {"x:input"}  # the execution's own input stays until it ends
    sim.fire_next_timer()
    assert sim.status == "Succeeded" and sim.output == {"count": 30, "last": 29}


@pytest.mark.parametrize("inline", [0, 1024, 10**9])
def test_containers_give_the_same_results_wherever_values_are_kept(inline):
    """``inline_value_bytes`` only moves values between the state and the side table."""
    sq = {"sq": lambda e: {"sq": e["n"] ** 2, "i": e["i"]}}
    sim = Sim(MAP, sq, limits=Limits(inline_value_bytes=inline)).run({"items": [3, 1, 2]})
    assert sim.output == {"Items": [{"sq": 9, "i": 0}, {"sq": 1, "i": 1}, {"sq": 4, "i": 2}]}
    sim = Sim(
        PARALLEL, {"fn": lambda e: {"b": e["v"] * 2}}, limits=Limits(inline_value_bytes=inline)
    )
    assert sim.run({"v": 4}).output == {"Branch0": {"a": 4}, "Branch1": {"b": 8}}
    sim = Sim(
        cf("""
StartAt: M
States:
  - Type: Map
    Name: M
    ItemsPath: $Context.Execution.Input.xs
    MaxConcurrency: 1
    ItemConstructor:
      x.$: $Item
      tag.$: $Input.tag
      first.$: $Context.Execution.Input.xs[0]
    Processor:
      StartAt: P
      States:
        - Type: Pass
          Name: P
          End: true
    OutputConstructor:
      all.$: $Output.Items
      tag.$: $Input.tag
    End: true
"""),
        limits=Limits(inline_value_bytes=inline),
    ).run({"xs": [5, 6, 7], "tag": "t"})
    assert sim.output == {
        "all": [{"x": x, "tag": "t", "first": 5} for x in (5, 6, 7)],
        "tag": "t",
    }


def test_legacy_foreach_and_flow_input_beside_the_state():
    flow = """
version: v1
type: flow
steps:
  - type: foreach
    name: each
    iterationMapping:
      collection: $.xs
      item: x
      index: i
    steps:
      - type: task
        name: t
        resourceArn: acs:fc:r:1:services/s/functions/add
    outputMappings:
      - target: all
        source: $local
  - type: pass
    name: after
    outputMappings:
      - target: seen
        source: $input.xs
"""
    outputs = []
    for inline in (0, 10**9):
        sim = Sim(
            flow,
            {"add": lambda e: {"y": e["x"] + e["i"]}},
            limits=Limits(inline_value_bytes=inline),
        ).run({"xs": [10, 20, 30]})
        assert sim.status == "Succeeded", sim.error
        outputs.append(sim.output)
        sim.check_invariants()
    assert outputs[0] == outputs[1]
    assert outputs[0]["all"] == [{"y": 10}, {"y": 21}, {"y": 32}]
    assert outputs[0]["seen"] == [10, 20, 30]


MAP_CAUGHT = cf("""
StartAt: M
States:
  - Type: Map
    Name: M
    ItemsPath: $Input.items
    MaxConcurrency: 2
    Processor:
      StartAt: Work
      States:
        - Type: Task
          Name: Work
          Action: FC:InvokeFunction
          Parameters:
            invocationType: Sync
            resourceArn: acs:fc:r:1:functions/big
          OutputConstructor:
            $: $Output.Body
          End: true
    Catch:
      - Errors: [FnF.DataLimitExceeded]
        Next: TooBig
    End: true
  - Type: Pass
    Name: TooBig
    End: true
""")


def test_map_size_limit_fires_as_results_arrive():
    sim = Sim(
        MAP_CAUGHT, {"big": lambda e: {"pad": "x" * 290}}, limits=Limits(max_payload_bytes=3000)
    ).run({"items": list(range(20))})
    assert sim.status == "Succeeded"
    assert sim.output["Error"] == "FnF.DataLimitExceeded"
    # 300 bytes a result (and a separator): the tenth passes 3,000, long before the twentieth.
    assert "reached 3010 bytes with 10 of 20 iteration outputs in" in sim.output["Cause"]
    assert len(sim.calls) == 10
    exits = [e for e in sim.history if e["type"] == "IterationExited"]
    assert [bool(e["detail"].get("cancelled")) for e in exits] == [False] * 10 + [True]
    assert not sim.pending or all((c.entry, c.attempt) in sim.cancelled for c in sim.pending)
    sim.check_invariants()


def test_parallel_size_limit_fires_before_the_slow_branch_ends():
    sim = Sim(
        cf("""
StartAt: P
States:
  - Type: Parallel
    Name: P
    Branches:
      - StartAt: Slow
        States:
          - Type: Task
            Name: Slow
            Action: FC:InvokeFunction
            Parameters:
              invocationType: Sync
              resourceArn: acs:fc:r:1:functions/echo
            End: true
      - StartAt: A
        States:
          - Type: Pass
            Name: A
            InputConstructor:
              a.$: $Input.pad
              b.$: $Input.pad
            End: true
      - StartAt: B
        States:
          - Type: Pass
            Name: B
            InputConstructor:
              a.$: $Input.pad
              b.$: $Input.pad
            End: true
    End: true
"""),
        {"echo": echo},
        limits=Limits(max_payload_bytes=1000),
    ).start({"pad": "x" * 450})
    assert sim.status == "Failed" and sim.error[0] == "FnF.DataLimitExceeded"
    assert "with 2 of 3 branch outputs in" in sim.error[1]
    # The slow branch's attempt was sent out, then cancelled before it ran.
    assert [c.state_name for c in sim.pending] == ["Slow"] and not sim.calls
    assert {(c.entry, c.attempt) for c in sim.pending} == sim.cancelled
    sim.check_invariants()


def test_retried_container_starts_over_with_fresh_results():
    fails = {"n": 0}

    def work(event):
        if event["n"] == 2 and fails["n"] == 0:
            fails["n"] += 1
            raise HandlerError("Flaky", "once")
        return {"n": event["n"]}

    definition = cf("""
StartAt: M
States:
  - Type: Map
    Name: M
    ItemsPath: $Input.items
    MaxConcurrency: 1
    Processor:
      StartAt: Work
      States:
        - Type: Task
          Name: Work
          Action: FC:InvokeFunction
          Parameters:
            invocationType: Sync
            resourceArn: acs:fc:r:1:functions/work
            body:
              n.$: $Input
          OutputConstructor:
            $: $Output.Body
          End: true
    Retry:
      - Errors: [Flaky]
        MaxAttempts: 1
        IntervalSeconds: 3
    End: true
""")
    sim = Sim(definition, {"work": work}, limits=Limits(inline_value_bytes=0)).start(
        {"items": [1, 2, 3]}
    )
    sim.settle(timers=False)
    map_entry = next(e["event_id"] for e in sim.history if e["step_name"] == "M")
    # Waiting to retry: the first run's result and waiting item are gone, its input stays.
    assert set(sim.values) == {"x:input", f"e{map_entry}:in"}
    sim.settle()
    assert sim.status == "Succeeded"
    assert sim.output == {"Items": [{"n": 1}, {"n": 2}, {"n": 3}]}
    assert [c[1]["n"] for c in sim.calls] == [1, 2, 1, 2, 3]
    sim.check_invariants()


def test_a_state_stored_before_values_moved_out_is_upgraded():
    sim = Sim(MAP, {"sq": lambda e: {"sq": e["n"] ** 2, "i": e["i"]}}).start(
        {"items": [1, 2, 3, 4, 5]}
    )
    sim.run_one_task()
    # Rewrite the stored state as the previous version kept it: results and items inside.
    state = sim.state
    (entry,) = [e for e in state["entries"].values() if e["state"] == "M"]
    prefix = f"e{entry['id']}:"
    entry["results"] = {
        key.rsplit(":", 1)[1]: json.loads(text)
        for key, text in sim.values.items()
        if key.startswith(prefix + "res:")
    }
    entry["items"] = [1, 2, 3, 4, 5]
    for key in ("done", "bytes", "vals"):
        entry.pop(key)
    state["v"] = 1
    sim.values.clear()
    sim.settle()
    assert sim.status == "Succeeded"
    assert sim.output == {"Items": [{"sq": n * n, "i": n - 1} for n in range(1, 6)]}
    assert sim.state["v"] == 2


# ------------------------------------------------------------------ async submit, idempotency


ASYNC = cf("""
StartAt: Fire
States:
  - Type: Task
    Name: Fire
    Action: FC:InvokeFunction
    TaskMode: RequestComplete
    Timeout: "30"
    Parameters:
      invocationType: Async
      resourceArn: acs:fc:r:1:functions/record/LATEST
      body:
        n.$: $Input.n
    OutputConstructor:
      task_id.$: $Output.Headers["x-fc-async-task-id"]
      status.$: $Output.StatusCode
      body.$: $Output.Body
    End: true
""")


def test_async_submit_is_a_command_and_the_task_completes_at_once():
    sim = Sim(ASYNC, {}).start({"n": 7})
    assert sim.status == "Succeeded"
    (submit,) = sim.submitted
    assert submit.function == "record" and submit.event == {"n": 7}
    assert submit.state_name == "Fire" and submit.attempt == 1
    assert re.fullmatch(r"t[0-9a-f]{32}", submit.task_id)
    assert sim.output == {"task_id": submit.task_id, "status": 202, "body": ""}
    assert not sim.pending and not sim.timers  # nothing to run or time out in the flow
    assert sim.types() == [
        "ExecutionStarted",
        "StepEntered",
        "TaskScheduled",
        "TaskSubmitted",
        "TaskSucceeded",
        "StepExited",
        "ExecutionSucceeded",
    ]
    submitted = sim.history[3]
    assert submitted["detail"] == {"taskId": submit.task_id}
    assert submitted["schedule_event_id"] == sim.history[2]["event_id"]
    sim.check_invariants()


def test_async_submits_get_distinct_task_ids():
    branch = """
      - StartAt: Fire{i}
        States:
          - Type: Task
            Name: Fire{i}
            Action: FC:InvokeFunction
            Parameters:
              invocationType: Async
              resourceArn: acs:fc:r:1:functions/record
            End: true"""
    branches = "".join(branch.format(i=i) for i in range(3))
    parallel = f"StartAt: P\nStates:\n  - Type: Parallel\n    Name: P\n    Branches:{branches}"
    sim = Sim(cf(parallel + "\n    End: true\n")).run({})
    assert sim.status == "Succeeded"
    ids = [s.task_id for s in sim.submitted]
    assert len(set(ids)) == 3
    assert [sim.output[f"Branch{i}"]["Headers"]["x-fc-async-task-id"] for i in range(3)] == ids


def test_async_under_system_callback_still_waits_for_the_function():
    sim = Sim(
        ASYNC.replace("TaskMode: RequestComplete", "TaskMode: WaitForSystemCallback"),
        {"record": lambda e: {"got": e["n"]}},
    ).start({"n": 3})
    assert sim.status == "Running" and not sim.submitted
    (cmd,) = sim.pending
    assert cmd.invocation == "async" and cmd.mode == "WaitForSystemCallback"
    sim.settle(timers=False)
    assert sim.output["body"] == {"got": 3} and sim.output["status"] == 200


def test_idempotency_key_survives_lost_workers_and_changes_with_retries():
    sim = Sim(
        cf("""
StartAt: T
States:
  - Type: Task
    Name: T
    Action: FC:InvokeFunction
    Parameters:
      invocationType: Sync
      resourceArn: acs:fc:r:1:functions/f
    Retry:
      - Errors: [Boom]
        MaxAttempts: 2
        IntervalSeconds: 1
    End: true
"""),
        limits=Limits(max_lost_attempts=5),
    ).start({})
    keys = []

    def next_attempt():
        cmd = sim.pending.popleft()
        keys.append((cmd.attempt, cmd.idempotency_key))
        sim.feed(ev.TaskStarted(cmd.entry, cmd.attempt))
        return cmd

    cmd = next_attempt()
    sim.feed(ev.TaskLost(cmd.entry, cmd.attempt))  # the worker died: same logical attempt
    cmd = next_attempt()
    sim.feed(ev.TaskFailed(cmd.entry, cmd.attempt, "Boom"))  # a real failure: Retry
    sim.fire_next_timer()
    cmd = next_attempt()
    sim.feed(ev.TaskLost(cmd.entry, cmd.attempt))
    cmd = next_attempt()
    sim.feed(ev.TaskLost(cmd.entry, cmd.attempt))
    cmd = next_attempt()
    sim.feed(ev.TaskFailed(cmd.entry, cmd.attempt, "Boom"))
    sim.fire_next_timer()
    cmd = next_attempt()
    sim.feed(ev.TaskSucceeded(cmd.entry, cmd.attempt, {"Body": {}}))
    assert sim.status == "Succeeded"
    entry = cmd.entry
    assert keys == [
        (1, f"{entry}.1"),
        (2, f"{entry}.1"),
        (3, f"{entry}.2"),
        (4, f"{entry}.2"),
        (5, f"{entry}.2"),
        (6, f"{entry}.3"),
    ]


# ------------------------------------------------------------------ FDL fixes at run time


def test_each_retry_rule_has_its_own_counter_and_back_off():
    errors = iter(["A", "B", "A", "B"])

    def fn(event):
        error = next(errors, None)
        if error:
            raise HandlerError(error, "")
        return {}

    sim = Sim(
        cf("""
StartAt: T
States:
  - Type: Task
    Name: T
    Action: FC:InvokeFunction
    Parameters:
      invocationType: Sync
      resourceArn: acs:fc:r:1:functions/fn
    Retry:
      - Errors: [A]
        MaxAttempts: 2
        IntervalSeconds: 10
      - Errors: [B]
        MaxAttempts: 2
        IntervalSeconds: 1
        BackoffRate: 3
    OutputConstructor:
      retries.$: $Context.Current.RetryCount
    End: true
"""),
        {"fn": fn},
    ).run({})
    # A shared counter made the second A the rule's third try (refused) and B's delay 3 s.
    assert sim.status == "Succeeded"
    times = retry_times(sim)
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    assert gaps == [10, 1, 10, 3]
    scheduled = [e["detail"]["retry_count"] for e in sim.history if e["type"] == "TaskScheduled"]
    assert scheduled == [0, 1, 2, 3, 4]
    assert sim.output == {"retries": 4}


def test_a_rule_out_of_retries_does_not_fall_through_to_the_next():
    sim = Sim(TASK_RETRY, {"flaky": flaky(99, "Other")}).run({"k": 1})
    # Other matches only the first rule (9 retries) and then FnF.ALL's Catch.
    assert len(retry_times(sim)) == 10
    assert sim.status == "Failed" and sim.error[0] == "FnF.Fail"  # the Fail state "Never"


def test_fail_without_code_has_a_default_error_name():
    sim = Sim(
        cf("""
StartAt: P
States:
  - Type: Parallel
    Name: P
    Branches:
      - StartAt: F
        States:
          - Type: Fail
            Name: F
            Detail: no code here
    Catch:
      - Errors: [FnF.Fail]
        Next: C
    End: true
  - Type: Pass
    Name: C
    End: true
""")
    ).run({})
    assert sim.status == "Succeeded"
    assert sim.output == {"Error": "FnF.Fail", "Cause": "no code here"}
    failed = [e for e in sim.history if e["type"] == "StepFailed"]
    assert failed[0]["detail"]["error"] == "FnF.Fail"

    sim = Sim("version: v1\ntype: flow\nsteps:\n  - type: fail\n    name: f\n").run({})
    assert sim.status == "Failed" and sim.error == ("FnF.Fail", "")


NOT_AN_OBJECT = [
    # (states, input, function body, what the message names)
    (
        """
  - Type: Pass
    Name: S
    OutputConstructor:
      $: $Input.list
    End: true""",
        {"list": [1]},
        "the output of state 'S' must be a JSON object, got array",
    ),
    (
        """
  - Type: Pass
    Name: S
    InputConstructor:
      $: $Input.n
    End: true""",
        {"n": 1},
        "the InputConstructor of state 'S' must build a JSON object, got number",
    ),
    (
        """
  - Type: Task
    Name: S
    Action: FC:InvokeFunction
    Parameters:
      invocationType: Sync
      resourceArn: acs:fc:r:1:functions/fn
    OutputConstructor:
      $: $Output.Body
    End: true""",
        {"s": "text"},
        "the output of state 'S' must be a JSON object, got string",
    ),
    (
        """
  - Type: Choice
    Name: S
    Branches:
      - Condition: $Input == null
        Next: E
    Default: E
  - Type: Succeed
    Name: E""",
        None,
        "the output of state 'S' must be a JSON object, got null",
    ),
]


@pytest.mark.parametrize(("states", "input", "message"), NOT_AN_OBJECT)
def test_a_state_input_or_output_that_is_not_an_object_is_a_catchable_runtime_error(
    states, input, message
):
    sim = start_with(Sim(cf(f"StartAt: S\nStates:{states}\n"), {"fn": lambda e: e["s"]}), input)
    sim.settle()
    assert sim.status == "Failed"
    assert sim.error == ("FnF.RuntimeError", message)
    sim.check_invariants()
    # Catchable: wrapped in a Parallel whose Catch takes FnF.RuntimeError.
    indented = states.replace("\n", "\n        ")
    wrapped = cf(f"""StartAt: P
States:
  - Type: Parallel
    Name: P
    Branches:
      - StartAt: S
        States:{indented}
    Catch:
      - Errors: [FnF.RuntimeError]
        Next: C
    End: true
  - Type: Pass
    Name: C
    End: true
""")
    sim = start_with(Sim(wrapped, {"fn": lambda e: e["s"]}), input).settle()
    assert sim.status == "Succeeded"
    assert sim.output == {"Error": "FnF.RuntimeError", "Cause": message}


def start_with(sim: Sim, input) -> Sim:
    """``Sim.start`` with any input, ``null`` included (``start`` turns None into {})."""
    sim.state = new_state(execution_name="run1", flow_name="f", input=input, now=sim.now)
    sim.feed(ev.Start(input))
    return sim


def test_scalar_map_items_may_feed_states_that_build_objects():
    # An item need not be an object: only what a state builds and returns must be.
    assert Sim(MAP, {"sq": lambda e: {"sq": e["n"]}}).run({"items": [1, "a", None]}).output == {
        "Items": [{"sq": 1}, {"sq": "a"}, {"sq": None}]
    }


def test_callback_output_and_catch_output_must_be_objects():
    plain = CALLBACK.replace("    OutputConstructor:\n      decision.$: $Output.decision\n", "")
    sim = Sim(plain, {"notify": lambda e: {}}).start({})
    sim.settle(timers=False)
    sim.feed(ev.CallbackSucceeded(next(iter(sim.tokens)), ["approve"]))
    assert sim.error == (
        "FnF.RuntimeError",
        "the output of state 'Ask' must be a JSON object, got array",
    )

    sim = Sim(
        cf("""
StartAt: F
States:
  - Type: Task
    Name: F
    Action: FC:InvokeFunction
    Parameters:
      invocationType: Sync
      resourceArn: acs:fc:r:1:functions/bad
    Catch:
      - Errors: [FnF.ALL]
        Next: C
        OutputConstructor:
          $: $Context.Current.Error.Code
    End: true
  - Type: Pass
    Name: C
    End: true
"""),
        {"bad": flaky(9, "Boom")},
    ).run({})
    assert sim.error == (
        "FnF.RuntimeError",
        "the Catch OutputConstructor of state 'F' must build a JSON object, got string",
    )


WAIT_SECONDS = cf("""
StartAt: W
States:
  - Type: Wait
    Name: W
    Seconds.$: $Input.s
    End: true
""")

WAIT_STAMP = WAIT_SECONDS.replace("Seconds.$: $Input.s", "Timestamp.$: $Input.s")


@pytest.mark.parametrize(
    ("definition", "value", "cause"),
    [
        (WAIT_SECONDS, 1e15, "a Wait of 1000000000000000.0 seconds would end after 9998-12-31"),
        (WAIT_SECONDS, 10**400, "seconds would end after 9998-12-31T23:59:59.000Z"),
        (WAIT_SECONDS, -1, "Wait seconds must be a number ≥ 0, got number -1"),
        (WAIT_SECONDS, "10", 'Wait seconds must be a number ≥ 0, got string "10"'),
        (WAIT_SECONDS, True, "Wait seconds must be a number ≥ 0, got boolean true"),
        (WAIT_SECONDS, None, "Wait seconds must be a number ≥ 0, got null null"),
        (WAIT_STAMP, "9999-12-31T23:00:00-14:00", "is after 9998-12-31T23:59:59.000Z"),
        (WAIT_STAMP, "9999-12-31T23:59:59Z", "is after 9998-12-31T23:59:59.000Z"),
        (WAIT_STAMP, "tomorrow", 'Wait timestamp "tomorrow" is not RFC 3339'),
        (WAIT_STAMP, "2026-01-01T00:00:00", "has no time zone"),
        (WAIT_STAMP, 5, "Wait timestamp must be an RFC 3339 string, got number 5"),
    ],
)
def test_waits_that_cannot_be_kept_fail_as_runtime_errors(definition, value, cause):
    sim = Sim(definition).run({"s": value})
    assert sim.status == "Failed" and sim.error[0] == "FnF.RuntimeError"
    assert cause in sim.error[1]
    assert not sim.timers


def test_waits_far_off_or_in_the_distant_past_are_kept():
    sim = Sim(WAIT_STAMP).start({"s": "0001-01-01T00:00:00+14:00"})
    assert sim.status == "Succeeded" and not sim.timers  # in the past: no wait
    sim = Sim(WAIT_STAMP).start({"s": "2027-06-01T12:00:00+02:00"})
    assert list(sim.timers.values()) == [datetime(2027, 6, 1, 10, tzinfo=UTC)]
    until = [e["detail"]["until"] for e in sim.history if e["type"] == "StepStarted"]
    assert until == ["2027-06-01T10:00:00.000Z"]
    sim = Sim(WAIT_SECONDS).start({"s": 10 * 365 * 86400})
    assert sim.status == "Running" and len(sim.timers) == 1


def test_retry_delays_and_deadlines_never_overflow():
    rule = RetryRule(errors=("X",), max_attempts=10**6, interval_seconds=1, backoff_rate=1e300)
    assert retry_delay(rule, 1) == 1
    assert retry_delay(rule, 3) == math.inf
    capped = RetryRule(("X",), 5, 10**400, backoff_rate=2, max_backoff_seconds=60)
    assert retry_delay(capped, 4) == 60
    huge_cap = RetryRule(("X",), 5, 1, backoff_rate=10, max_backoff_seconds=10**400)
    assert retry_delay(huge_cap, 500) == math.inf
    assert retry_delay(RetryRule(("X",), 5, 0, backoff_rate=1e300), 5) == 0

    # A graph that skipped save-time checks (absurd back-off, timeout, heartbeat) still runs.
    graph = compile_definition(TASK_RETRY)
    task = graph.root.states["T"]
    absurd = replace(
        task,
        retry=tuple(replace(r, backoff_rate=1e300) for r in task.retry),
        task=replace(task.task, timeout_seconds=10**400),
    )
    states = dict(graph.root.states, T=absurd)
    root = replace(graph.root, states=states)
    sim = Sim(TASK_RETRY, {"flaky": flaky(2, "Other")})
    sim.graph = replace(graph, root=root, scopes={**graph.scopes, root.path: root})
    sim.run({"k": 1})
    assert sim.status == "Succeeded"
    # The second back-off (1 s × 1e300) was cut to the latest deadline.
    assert retry_times(sim) == [T0, T0 + timedelta(seconds=1), MAX_DUE]


def test_machine_messages_name_json_types():
    sim = Sim(MAP, {}).run({"items": {"a": 1}})
    assert sim.error == (
        "FnF.RuntimeError",
        "the items expression '$Input.items' gave object, not an array",
    )
    sim = Sim(
        "version: v1\ntype: flow\nsteps:\n  - type: task\n    name: t\n"
        "    resourceArn: acs:fc:r:1:services/s/functions/f\n",
        {"f": lambda e: [1, 2]},
    ).run({})
    assert sim.error == (
        "FC.InvalidResponse",
        "a legacy task step needs a JSON object as its result, got array",
    )
    sim = Sim(
        cf("""
StartAt: C
States:
  - Type: Choice
    Name: C
    Branches:
      - Condition: $Input.v
        Next: S
    Default: S
  - Type: Succeed
    Name: S
""")
    ).run({"v": "yes"})
    assert sim.error == (
        "FnF.RuntimeError",
        "condition '$Input.v' gave string \"yes\", not a boolean",
    )


# ------------------------------------------------------------------ any JSON, never a crash


def json_values(max_leaves: int = 12):
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(10**400), max_value=10**400)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=20)
        | st.sampled_from(
            ["\ud800", "a\udfffb", "2026-01-01T00:00:00Z", "9999-12-31T23:00:00-14:00"]
        )
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
        ),
        max_leaves=max_leaves,
    )


FUZZ_CLOUDFLOW = cf("""
StartAt: Shape
States:
  - Type: Pass
    Name: Shape
    InputConstructor:
      v.$: $Input.v
      xs.$: $Input.xs
      s.$: $Input.s
      t.$: $Context.Execution.Input.t
    Next: Pick
  - Type: Choice
    Name: Pick
    Branches:
      - Condition: $Input.v == "map"
        Next: Fan
      - Condition: $Input.v == "wait"
        Next: Pause
      - Condition: $Input.v == "stamp"
        Next: Until
      - Condition: $Input.v == "both"
        Next: Both
    Default: Call
  - Type: Wait
    Name: Pause
    Seconds.$: $Input.s
    Next: Call
  - Type: Wait
    Name: Until
    Timestamp.$: $Input.s
    Next: Call
  - Type: Map
    Name: Fan
    ItemsPath: $Input.xs
    MaxConcurrency: 2
    ItemConstructor:
      item.$: $Item
    Processor:
      StartAt: Each
      States:
        - Type: Task
          Name: Each
          Action: FC:InvokeFunction
          Parameters:
            invocationType: Sync
            resourceArn: acs:fc:r:1:functions/back
            body.$: $Input.item
          OutputConstructor:
            $: $Output.Body
          End: true
    Next: Call
  - Type: Parallel
    Name: Both
    Branches:
      - StartAt: B0
        States:
          - Type: Task
            Name: B0
            Action: FC:InvokeFunction
            Parameters:
              invocationType: Async
              resourceArn: acs:fc:r:1:functions/back
            End: true
      - StartAt: B1
        States:
          - Type: Pass
            Name: B1
            OutputConstructor:
              $: $Input.xs
            End: true
    Next: Call
  - Type: Task
    Name: Call
    Action: FC:InvokeFunction
    Parameters:
      invocationType: Sync
      resourceArn: acs:fc:r:1:functions/back
      body:
        t.$: $Input.t
    OutputConstructor:
      $: $Output.Body.t
    End: true
""")

FUZZ_LEGACY = """
version: v1
type: flow
steps:
  - type: foreach
    name: each
    iterationMapping:
      collection: $.xs
      item: x
    steps:
      - type: task
        name: t
        resourceArn: acs:fc:r:1:services/s/functions/back
        inputMappings:
          - target: body
            source: $input.x
  - type: wait
    name: w
    duration: $.s
  - type: task
    name: last
    resourceArn: acs:fc:r:1:services/s/functions/back
    inputMappings:
      - target: body
        source: $input.t
"""

NAMED_ERRORS = {"FnF.RuntimeError", "FnF.DataLimitExceeded", "FC.InvalidResponse"}


def back(event):
    """Hands back the part of the event a flow chose (any JSON value)."""
    return event.get("body", event) if isinstance(event, dict) else event


@pytest.mark.parametrize("definition", [FUZZ_CLOUDFLOW, FUZZ_LEGACY], ids=["cloudflow", "legacy"])
def test_any_json_ends_the_execution_with_a_named_error_or_a_result(definition):
    graph = Sim(definition).graph
    limits = Limits(max_payload_bytes=2000, inline_value_bytes=64)
    choices = st.sampled_from(["map", "wait", "stamp", "both", "other"])

    @settings(
        max_examples=int(os.environ.get("FLOWSITE_FUZZ_EXAMPLES", "120")),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        st.one_of(
            json_values(),
            st.fixed_dictionaries(
                {"v": choices, "xs": json_values(), "s": json_values(4), "t": json_values()}
            ),
        )
    )
    def run(input):
        sim = Sim(definition, {"back": back}, limits=limits)
        sim.graph = graph
        start_with(sim, input).settle()
        assert sim.status in ("Succeeded", "Failed")
        if sim.status == "Failed":
            assert sim.error[0] in NAMED_ERRORS, sim.error
        sim.check_invariants()

    run()


def _seed_flows() -> list:
    from .test_compiler import SEEDS, extract_flows

    if not SEEDS.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason="no ../shared/seeds"))]
    flows = []
    for path in sorted(SEEDS.glob("*.txt")):
        for n, text in enumerate(extract_flows(path.read_text())):
            flows.append(pytest.param(text, id=f"{path.name[:3]}-{n}", marks=pytest.mark.seeds))
    return flows


class _AnyFunction(dict):
    """Every function a seed names: a job that is done, an echo of the event otherwise."""

    def __missing__(self, name):
        def handler(event):
            body = dict(event) if isinstance(event, dict) else {}
            return {**body, "job_id": "j1", "job_status": "success", "try_count": 1}

        return handler


@pytest.mark.parametrize("text", _seed_flows())
def test_seed_flows_run_to_success(text):
    sim = Sim(text)
    sim.functions = _AnyFunction()
    sim.start({"delay": 0, "payload": {"workers": ["w1", "w2"]}})
    for _ in range(10):
        sim.settle()
        if sim.finished:
            break
        # Callbacks: whoever got a token (a function or a queue message) reports success.
        for token in list(sim.tokens):
            sim.feed(ev.CallbackSucceeded(token, {"status": "ok"}))
    assert sim.status == "Succeeded", sim.error
    sim.check_invariants()


DYNAMIC_TARGET = cf("""
StartAt: T
States:
  - Type: Task
    Name: T
    Action: FC:InvokeFunction
    Parameters:
      resourceArn.$: $Input.arn
      invocationType.$: $Input.how
      body:
        n.$: $Input.n
    OutputConstructor:
      $: $Output
    End: true
""")


def test_function_and_invocation_type_can_come_from_expressions():
    arn = "acs:fc:r:1:functions/double/LATEST"
    sim = Sim(DYNAMIC_TARGET, {"double": lambda e: {"n": e["n"] * 2}})
    sim.run({"arn": arn, "how": "Sync", "n": 2})
    assert sim.status == "Succeeded" and sim.output["Body"] == {"n": 4}
    (scheduled,) = [e for e in sim.history if e["type"] == "TaskScheduled"]
    assert scheduled["detail"]["resource"] == arn and scheduled["detail"]["target"] == "double"

    sim = Sim(DYNAMIC_TARGET).run({"arn": arn, "how": "Async", "n": 2})
    assert sim.status == "Succeeded" and sim.output["StatusCode"] == 202
    assert [(s.function, s.event) for s in sim.submitted] == [("double", {"n": 2})]


@pytest.mark.parametrize(
    ("input", "cause"),
    [
        ({"arn": 5, "how": "Sync"}, "resourceArn.$ gave number 5, not a Function Compute"),
        ({"arn": "acs:oss:::b", "how": "Sync"}, 'gave string "acs:oss:::b", not a Function'),
        (
            {"arn": "acs:fc:r:1:functions/f", "how": "sync"},
            'invocationType.$ gave string "sync", not "Sync" or "Async"',
        ),
    ],
)
def test_a_computed_target_that_is_not_one_is_a_runtime_error(input, cause):
    sim = Sim(DYNAMIC_TARGET).run(input)
    assert sim.status == "Failed" and sim.error[0] == "FnF.RuntimeError"
    assert cause in sim.error[1]
    assert not sim.pending and not sim.submitted


def test_a_fail_state_global_constructor_is_kept_for_the_catch():
    sim = Sim(
        cf("""
StartAt: P
States:
  - Type: Parallel
    Name: P
    Branches:
      - StartAt: F
        States:
          - Type: Fail
            Name: F
            Code: Nope
            GlobalConstructor:
              why.$: $Input.reason
    Catch:
      - Errors: [Nope]
        Next: C
    End: true
  - Type: Pass
    Name: C
    OutputConstructor:
      why.$: $Global.why
    End: true
""")
    ).run({"reason": "no stock"})
    assert sim.status == "Succeeded" and sim.output == {"why": "no stock"}


def test_a_container_that_runs_inline_writes_no_values():
    sim = Sim(
        cf("""
StartAt: M
States:
  - Type: Map
    Name: M
    ItemsPath: $Input.xs
    MaxConcurrency: 1
    Processor:
      StartAt: P
      States:
        - Type: Pass
          Name: P
          OutputConstructor:
            v.$: $Input
          End: true
    End: true
"""),
        limits=Limits(inline_value_bytes=0),
    ).run({"xs": list(range(50))})
    assert sim.output == {"Items": [{"v": i} for i in range(50)]}
    # 49 items waited and 50 results came in, all within the one step that also dropped them:
    # nothing was written beside the state but the execution's input, nothing read back.
    assert sim.steps == 1 and not sim.lookups
    assert sim.value_bytes == len(json.dumps({"xs": list(range(50))}))
