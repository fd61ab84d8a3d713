"""Flow definitions (CloudFlow FDL YAML) and function registrations the tests use."""

from __future__ import annotations

HANDLERS = "ithandlers"  # tests/integration/functions/ithandlers.py


def task(name: str, function: str, next_: str | None, *, sleep: float = 0, extra: str = "") -> str:
    flow_end = f"Next: {next_}" if next_ else "End: true"
    return f"""
  - Type: Task
    Name: {name}
    Action: FC:InvokeFunction
    TaskMode: RequestComplete
    Parameters:
      invocationType: Sync
      resourceArn: acs:fc:::functions/{function}/LATEST
      body:
        execution.$: $Context.Execution.Name
        step: {name}
        sleep: {sleep}
{extra}    {flow_end}"""


def flow(name: str, start_at: str, states: str) -> str:
    return f"""Type: StateMachine
Name: {name}
SpecVersion: v1
StartAt: {start_at}
States:{states}
"""


def polling(name: str) -> str:
    """Submit a job, then Wait 1 s -> poll its status in a Choice loop; give up after 4 polls."""
    return flow(
        name,
        "Submit",
        """
  - Type: Task
    Name: Submit
    Action: FC:InvokeFunction
    TaskMode: RequestComplete
    Parameters:
      invocationType: Sync
      resourceArn: acs:fc:::functions/it_submit_job/LATEST
      body:
        execution.$: $Context.Execution.Name
        step: Submit
        duration.$: $Input.duration
    Next: Prepare
  - Type: Pass
    Name: Prepare
    InputConstructor:
      job.$: $Input.Body.job
      ready_at.$: $Input.Body.ready_at
      polls.$: $Input.Body.polls
    Next: Pause
  - Type: Wait
    Name: Pause
    Seconds: 1
    Next: Poll
  - Type: Task
    Name: Poll
    Action: FC:InvokeFunction
    Parameters:
      invocationType: Sync
      resourceArn: acs:fc:::functions/it_job_status/LATEST
      body:
        execution.$: $Context.Execution.Name
        step: Poll
        ready_at.$: $Input.ready_at
        polls.$: $Input.polls
    OutputConstructor:
      $: jsonMerge($Input, $Output.Body)
    Next: Done?
  - Type: Choice
    Name: Done?
    Branches:
      - Condition: $Input.state == "done"
        Next: Finished
      - Condition: $Input.polls >= 4
        Next: GaveUp
    Default: Pause
  - Type: Fail
    Name: GaveUp
    Code: 超时
    Detail: the job did not finish in time
    End: true
  - Type: Succeed
    Name: Finished
    End: true""",
    )


def task_then_pass(name: str, function: str, sleep: float) -> str:
    return flow(
        name,
        "Work",
        task("Work", function, "After", sleep=sleep)
        + """
  - Type: Pass
    Name: After
    End: true""",
    )


def task_wait_task(name: str, function: str, wait_seconds: float, sleep: float = 0) -> str:
    return flow(
        name,
        "First",
        task("First", function, "Pause", sleep=sleep)
        + f"""
  - Type: Wait
    Name: Pause
    Seconds: {wait_seconds}
    Next: Second"""
        + task("Second", function, None, sleep=sleep),
    )


def three_tasks(name: str, function: str, sleep: float = 0) -> str:
    return flow(
        name,
        "One",
        task("One", function, "Two", sleep=sleep)
        + task("Two", function, "Three", sleep=sleep)
        + task("Three", function, None, sleep=sleep),
    )


def pass_wait_pass(name: str, wait_seconds: float) -> str:
    return flow(
        name,
        "Before",
        f"""
  - Type: Pass
    Name: Before
    Next: Park
  - Type: Wait
    Name: Park
    Seconds: {wait_seconds}
    Next: After
  - Type: Pass
    Name: After
    End: true""",
    )
