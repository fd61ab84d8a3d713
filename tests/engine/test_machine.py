"""The interpreter on plain objects: every state type, data shaping, Retry/Catch, Parallel,
Map, callbacks, timeouts, stop, limits and stale events. No database."""

from __future__ import annotations

from datetime import timedelta

from executions.engine import events as ev
from executions.engine.machine import Limits

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
