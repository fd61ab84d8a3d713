"""/api/v1/tasks/: callback reports (succeeded, failed, heartbeat) for WaitForCustomCallback
tasks. No worker runs the submitting function here; the report alone completes the task."""

from __future__ import annotations

import pytest
from django.test import override_settings

from executions.models import Execution, HistoryEvent, TaskToken
from executions.runtime import transition as runtime
from tests.factories import FlowFactory, FunctionFactory

pytestmark = pytest.mark.django_db

CALLBACK_FLOW = """\
Type: StateMachine
Name: callback
SpecVersion: v1
StartAt: T
States:
  - Type: Task
    Name: T
    Action: FC:InvokeFunction
    TaskMode: WaitForCustomCallback
    HeartbeatSeconds: 600
    Parameters:
      resourceArn: acs:fc:::functions/submit
    End: true
"""

SUCCEEDED = "/api/v1/tasks/report-succeeded/"
FAILED = "/api/v1/tasks/report-failed/"
HEARTBEAT = "/api/v1/tasks/heartbeat/"


# A token of the right shape that no task has (the field-validation cases never get to it).
NO_TASK = "1.1.1." + "0" * 40


@pytest.fixture
def waiting(api_client):
    """An execution waiting on a callback task (its token: the ``token1`` fixture)."""
    FunctionFactory(name="submit")
    FlowFactory(name="cb", definition=CALLBACK_FLOW)
    response = api_client.post("/api/v1/flows/cb/executions/", {"name": "e"}, format="json")
    assert response.json()["status"] == "Running"
    return Execution.objects.get(name="e")


@pytest.fixture
def token1(waiting) -> str:
    """The waiting task's secret token, as the external party that reports on it holds it."""
    row = TaskToken.objects.get(execution=waiting, is_open=True)
    token = runtime.token_of(row)
    assert row.token_hash == runtime.token_hash(token)
    assert row.fingerprint == runtime.fingerprint(token) != token
    return token


def execution(api_client) -> dict:
    return api_client.get("/api/v1/flows/cb/executions/e/").json()


def test_report_succeeded_completes_the_task(api_client, waiting, token1):
    response = api_client.post(
        SUCCEEDED, {"task_token": token1, "output": {"ok": True}}, format="json"
    )
    assert response.status_code == 200, response.json()
    event_id = response.json()["event_id"]
    event = HistoryEvent.objects.get(execution=waiting, event_id=event_id)
    assert event.type == "TaskSucceeded"
    body = execution(api_client)
    assert body["status"] == "Succeeded"
    assert body["output"] == {"ok": True}

    again = api_client.post(SUCCEEDED, {"task_token": token1, "output": {}}, format="json")
    assert again.status_code == 409
    assert again.json()["code"] == "TaskAlreadyCompleted"
    failed = api_client.post(FAILED, {"task_token": token1, "error": "E"}, format="json")
    assert failed.status_code == 409
    assert failed.json()["code"] == "TaskAlreadyCompleted"


def test_report_succeeded_accepts_json_text_and_any_value(api_client, waiting, token1):
    response = api_client.post(
        SUCCEEDED, {"task_token": token1, "output": '{"n": 2}'}, format="json"
    )
    assert response.status_code == 200
    assert execution(api_client)["output"] == {"n": 2}


def test_report_failed_fails_the_task(api_client, waiting, token1):
    response = api_client.post(
        FAILED, {"task_token": token1, "error": "Rejected", "cause": "no"}, format="json"
    )
    assert response.status_code == 200, response.json()
    event = HistoryEvent.objects.get(execution=waiting, event_id=response.json()["event_id"])
    assert event.type == "TaskFailed"
    body = execution(api_client)
    assert (body["status"], body["error_code"], body["error_message"]) == (
        "Failed",
        "Rejected",
        "no",
    )


def test_heartbeat(api_client, waiting, token1):
    response = api_client.post(HEARTBEAT, {"task_token": token1}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json() == {}
    assert execution(api_client)["status"] == "Running"


@pytest.mark.parametrize("endpoint", [SUCCEEDED, FAILED, HEARTBEAT])
def test_unknown_token_is_404(api_client, waiting, token1, endpoint):
    forged = token1[:-1] + ("0" if token1[-1] != "0" else "1")  # a MAC that does not match
    other_attempt = token1.replace(".1.", ".2.", 1)  # no such attempt (and no such MAC)
    for token in ("no-such-token", forged, other_attempt, NO_TASK, "x." + "0" * 32):
        payload = {"task_token": token, "output": {}, "error": "E"}
        response = api_client.post(endpoint, payload, format="json")
        assert response.status_code == 404, token
        assert response.json()["code"] == "TaskNotExist"


def test_a_spent_token_whose_execution_ended_is_still_409(api_client, waiting, token1):
    """The tokens of an ended execution are cleared with its bookkeeping; a late report is still
    recognised (by the token's MAC) as a task of ours that completed."""
    done = api_client.post(SUCCEEDED, {"task_token": token1, "output": {}}, format="json")
    assert done.status_code == 200
    assert not TaskToken.objects.filter(execution=waiting).exists()
    late = api_client.post(FAILED, {"task_token": token1, "error": "E"}, format="json")
    assert late.status_code == 409
    assert late.json()["code"] == "TaskAlreadyCompleted"


@pytest.mark.parametrize(
    ("endpoint", "payload", "path"),
    [
        (SUCCEEDED, {"output": {}}, "task_token"),
        (SUCCEEDED, {"task_token": NO_TASK}, "output"),
        (SUCCEEDED, {"task_token": 1, "output": {}}, "task_token"),
        (FAILED, {"task_token": NO_TASK}, "error"),
        (FAILED, {"task_token": NO_TASK, "error": 5}, "error"),
        (FAILED, {"task_token": NO_TASK, "error": "E", "cause": []}, "cause"),
        (FAILED, {"task_token": NO_TASK, "error": "E" * 129}, "error"),
        (HEARTBEAT, {"task_token": None}, "task_token"),
    ],
)
def test_wrong_types_are_400(api_client, waiting, endpoint, payload, path):
    response = api_client.post(endpoint, payload, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "InvalidArgument"
    assert [e["path"] for e in body["errors"]] == [path]
    assert execution(api_client)["status"] == "Running"


def test_output_that_is_not_json_text_is_400(api_client, waiting, token1):
    response = api_client.post(
        SUCCEEDED, {"task_token": token1, "output": "not json"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "InvalidArgument"


@override_settings(FLOWSITE_MAX_PAYLOAD_BYTES=64)
def test_oversized_output_is_413(api_client, waiting, token1):
    response = api_client.post(
        SUCCEEDED, {"task_token": token1, "output": {"a": "x" * 100}}, format="json"
    )
    assert response.status_code == 413
    assert response.json()["code"] == "EntityTooLarge"
    assert execution(api_client)["status"] == "Running"


def test_malformed_json_is_400(api_client):
    response = api_client.post(SUCCEEDED, '{"task_token":', content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "MalformedJSON"
