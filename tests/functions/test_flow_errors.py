"""A Task's failure recorded in an execution's history carries the handler's own error and
frames only (the cause comes from ``invoke()``), never flowsite's or the standard library's."""

from __future__ import annotations

import pytest

from executions import services
from executions.models import WorkItem
from executions.runtime import worker
from flowsite.access import SYSTEM
from functions import services as function_services

pytestmark = pytest.mark.django_db

FLOW = """\
Type: StateMachine
Name: errs
SpecVersion: v1
StartAt: Call
States:
  - Type: Task
    Name: Call
    Action: FC:InvokeFunction
    Parameters:
      invocationType: Sync
      resourceArn: acs:fc:r:1:functions/strict/LATEST
    End: true
"""


def test_the_history_shows_only_the_handlers_frames():
    function_services.function_create(
        name="strict", handler="apihandlers.parse_field", actor=function_services.SYSTEM
    )
    flow = services.flow_create(name="errs", definition=FLOW, actor=SYSTEM)
    execution, _ = services.execution_start(flow=flow, input={"text": "not json"}, actor=SYSTEM)
    worker.run_work_item(WorkItem.objects.get(execution=execution).pk)
    execution.refresh_from_db()
    assert execution.status == "Failed"
    failed = execution.events.get(type="TaskFailed")
    cause = failed.detail["cause"]
    assert failed.detail["error"] == "JSONDecodeError"
    assert cause.startswith("Expecting value: line 1 column 1 (char 0)\nTraceback")
    assert 'File "apihandlers.py"' in cause and "in parse_field" in cause and "in _parse" in cause
    for internal in ("executions/", "functions/", "/json/", "site-packages", "/usr/lib"):
        assert internal not in cause
    assert "apihandlers.py" in execution.error_message
    assert "executions/" not in execution.error_message
