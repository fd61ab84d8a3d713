"""/api/v1/flows/{flow}/executions/: start, list, get (and wait), stop, history.

There are no Celery workers here: Pass/Choice/Succeed/Fail flows finish inline during the start
request; a flow with a long Wait stays Running.
"""

from __future__ import annotations

import time

import pytest
from django.test import override_settings

from executions.models import Execution, ExecutionStatus, HistoryEvent
from tests.factories import FAIL_FLOW, WAIT_FLOW, FlowFactory

pytestmark = pytest.mark.django_db


def url(flow: str, name: str = "", action: str = "") -> str:
    base = f"/api/v1/flows/{flow}/executions/"
    if name:
        base += f"{name}/"
    if action:
        base += f"{action}/"
    return base


@pytest.fixture
def pass_flow():
    return FlowFactory(name="pass")


@pytest.fixture
def wait_flow():
    return FlowFactory(name="wait", definition=WAIT_FLOW)


# --- start ------------------------------------------------------------------------------------


def test_start_runs_a_pass_flow_to_completion(api_client, pass_flow):
    response = api_client.post(url("pass"), {"name": "e1", "input": {"a": 7}}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["name"] == "e1"
    assert body["flow"] == "pass"
    assert body["flow_version"] == 1
    assert body["status"] == "Succeeded"
    assert body["input"] == {"a": 7}
    assert body["output"] == {"x": 7}
    assert body["error_code"] == "" and body["error_message"] == ""
    assert body["started_at"] and body["stopped_at"]
    assert set(body) == {
        "name", "flow", "flow_version", "status", "input", "output",
        "error_code", "error_message", "started_at", "stopped_at",
    }  # fmt: skip
    assert response["Location"] == "/api/v1/flows/pass/executions/e1/"
    assert api_client.get(url("pass", "e1")).json() == body


def test_start_a_failing_flow(api_client):
    FlowFactory(name="fail", definition=FAIL_FLOW)
    body = api_client.post(url("fail"), {}, format="json").json()
    assert body["status"] == "Failed"
    assert body["error_code"] == "Boom"
    assert body["error_message"] == "it broke"
    assert body["output"] is None


def test_start_without_name_or_input(api_client, pass_flow):
    response = api_client.post(url("pass"), {}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["name"] and body["input"] == {}
    # Null and empty mean "not given".
    response = api_client.post(url("pass"), {"name": None, "input": None}, format="json")
    assert response.status_code == 201
    assert response.json()["name"] != body["name"]
    response = api_client.post(url("pass"), {"name": ""}, format="json")
    assert response.status_code == 201


def test_start_same_name_while_running_returns_it_and_after_it_ended_409(api_client, wait_flow):
    first = api_client.post(url("wait"), {"name": "job", "input": {"n": 1}}, format="json")
    assert first.status_code == 201
    assert first.json()["status"] == "Running"

    again = api_client.post(url("wait"), {"name": "job", "input": {"n": 2}}, format="json")
    assert again.status_code == 200
    assert again.json() == first.json()
    assert Execution.objects.filter(name="job").count() == 1

    assert api_client.post(url("wait", "job", "stop"), {}, format="json").status_code == 200
    ended = api_client.post(url("wait"), {"name": "job"}, format="json")
    assert ended.status_code == 409
    assert ended.json()["code"] == "ExecutionAlreadyExists"


def test_start_same_name_after_success_is_409(api_client, pass_flow):
    assert api_client.post(url("pass"), {"name": "once"}, format="json").status_code == 201
    response = api_client.post(url("pass"), {"name": "once"}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "ExecutionAlreadyExists"


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({"input": [1, 2]}, "input"),
        ({"input": "text"}, "input"),
        ({"input": 5}, "input"),
        ({"name": 12}, "name"),
        ({"name": ["a"]}, "name"),
        ({"name": "n" * 129}, "name"),
    ],
)
def test_start_wrong_types_are_400(api_client, pass_flow, payload, path):
    response = api_client.post(url("pass"), payload, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "InvalidArgument"
    assert [e["path"] for e in body["errors"]] == [path]
    assert not Execution.objects.exists()


def test_start_bad_name_and_bad_body(api_client, pass_flow):
    response = api_client.post(url("pass"), {"name": "has space"}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "InvalidArgument"
    response = api_client.post(url("pass"), [], format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "InvalidArgument"
    response = api_client.post(url("pass"), '{"input": {', content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "MalformedJSON"


@override_settings(FLOWSITE_MAX_PAYLOAD_BYTES=64)
def test_start_oversized_input_is_413(api_client, pass_flow):
    response = api_client.post(url("pass"), {"input": {"a": "x" * 100}}, format="json")
    assert response.status_code == 413
    assert response.json()["code"] == "EntityTooLarge"
    assert not Execution.objects.exists()


def test_start_unknown_flow_is_404(api_client):
    response = api_client.post(url("nope"), {}, format="json")
    assert response.status_code == 404
    assert response.json()["code"] == "FlowNotFound"


def test_a_new_version_is_used_by_new_executions_only(api_client, wait_flow):
    api_client.post(url("wait"), {"name": "old"}, format="json")
    api_client.patch("/api/v1/flows/wait/", {"definition": WAIT_FLOW + "# v2\n"}, format="json")
    new = api_client.post(url("wait"), {"name": "new"}, format="json").json()
    assert new["flow_version"] == 2
    assert api_client.get(url("wait", "old")).json()["flow_version"] == 1


# --- list ---------------------------------------------------------------------------------------


def test_list_follows_next_until_null(api_client, pass_flow):
    names = [f"e{i}" for i in range(5)]
    for name in names:
        assert api_client.post(url("pass"), {"name": name}, format="json").status_code == 201
    seen = []
    page = api_client.get(url("pass"), {"limit": 2}).json()
    pages = 1
    while True:
        assert set(page) == {"results", "next"}
        assert len(page["results"]) <= 2
        seen += [e["name"] for e in page["results"]]
        if not page["next"]:
            break
        page = api_client.get(page["next"]).json()
        pages += 1
    assert seen == list(reversed(names))  # newest first
    assert pages == 3
    row = api_client.get(url("pass")).json()["results"][0]
    assert row["status"] == "Succeeded" and "input" not in row and "output" not in row


def test_list_filters(api_client, pass_flow, wait_flow):
    FlowFactory(name="fail", definition=FAIL_FLOW)
    for name in ("alpha-1", "alpha-2", "Alpha-3", "beta"):
        api_client.post(url("pass"), {"name": name}, format="json")
    api_client.post(url("fail"), {"name": "alpha-x"}, format="json")
    api_client.post(url("wait"), {"name": "alpha-w"}, format="json")

    def names(flow, **params):
        response = api_client.get(url(flow), params)
        assert response.status_code == 200, response.json()
        return [e["name"] for e in response.json()["results"]]

    assert names("pass") == ["beta", "Alpha-3", "alpha-2", "alpha-1"]
    assert names("pass", name_prefix="alpha") == ["alpha-2", "alpha-1"]  # case-sensitive
    assert names("pass", status="Succeeded", name_prefix="b") == ["beta"]
    assert names("pass", status="Failed") == []
    assert names("fail", status="Failed") == ["alpha-x"]
    assert names("wait", status="Running") == ["alpha-w"]


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"status": "Done"}, "status"),
        ({"status": "running"}, "status"),
        ({"name_prefix": "x" * 129}, "name_prefix"),
        ({"cursor": "garbage"}, "cursor"),
    ],
)
def test_list_bad_query_is_400(api_client, pass_flow, params, path):
    response = api_client.get(url("pass"), params)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "InvalidArgument"
    assert body["errors"][0]["path"] == path


def test_list_unknown_flow_is_404(api_client):
    response = api_client.get(url("nope"))
    assert response.status_code == 404
    assert response.json()["code"] == "FlowNotFound"


# --- get / wait ---------------------------------------------------------------------------------


def test_get_unknown_execution_is_404(api_client, pass_flow):
    response = api_client.get(url("pass", "nope"))
    assert response.status_code == 404
    assert response.json()["code"] == "ExecutionNotFound"
    response = api_client.get(url("nope", "nope"))
    assert response.status_code == 404
    assert response.json()["code"] == "FlowNotFound"


def test_wait_seconds_returns_at_once_for_an_ended_execution(api_client, pass_flow):
    api_client.post(url("pass"), {"name": "done"}, format="json")
    started = time.monotonic()
    response = api_client.get(url("pass", "done"), {"wait_seconds": 60})
    assert time.monotonic() - started < 1
    assert response.json()["status"] == "Succeeded"


def test_wait_seconds_holds_a_running_execution_until_the_deadline(api_client, wait_flow):
    api_client.post(url("wait"), {"name": "w"}, format="json")
    started = time.monotonic()
    response = api_client.get(url("wait", "w"), {"wait_seconds": 1})
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 3
    assert response.status_code == 200
    assert response.json()["status"] == "Running"


def test_wait_seconds_sees_the_end(api_client, wait_flow, monkeypatch):
    """The view re-reads the row while it waits: the latest state is answered."""
    api_client.post(url("wait"), {"name": "w"}, format="json")
    from executions import api as executions_api

    real_sleep = time.sleep
    calls = []

    def sleep_then_stop(seconds):
        calls.append(seconds)
        if len(calls) == 2:  # the execution ends while the request waits
            Execution.objects.filter(name="w").update(status=ExecutionStatus.STOPPED)
        real_sleep(min(seconds, 0.01))

    monkeypatch.setattr(executions_api.time, "sleep", sleep_then_stop)
    response = api_client.get(url("wait", "w"), {"wait_seconds": 30})
    assert response.json()["status"] == "Stopped"
    assert len(calls) == 2
    assert all(0 < s <= 0.2 for s in calls)


@pytest.mark.parametrize("value", ["abc", "-1", "61", "1.5", "1e3"])
def test_bad_wait_seconds_is_400(api_client, pass_flow, value):
    api_client.post(url("pass"), {"name": "e"}, format="json")
    response = api_client.get(url("pass", "e"), {"wait_seconds": value})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "InvalidArgument"
    assert body["errors"][0]["path"] == "wait_seconds"


# --- stop ---------------------------------------------------------------------------------------


def test_stop_a_running_execution(api_client, wait_flow):
    api_client.post(url("wait"), {"name": "w"}, format="json")
    response = api_client.post(
        url("wait", "w", "stop"), {"error": "Cancelled", "cause": "by the test"}, format="json"
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "Stopped"
    assert body["stopped_at"]
    assert body["error_code"] == "Cancelled"
    assert body["error_message"] == "by the test"

    again = api_client.post(url("wait", "w", "stop"), {}, format="json")
    assert again.status_code == 409
    assert again.json()["code"] == "ExecutionNotRunning"


def test_stop_with_an_empty_body(api_client, wait_flow):
    api_client.post(url("wait"), {"name": "w"}, format="json")
    response = api_client.post(url("wait", "w", "stop"))
    assert response.status_code == 200
    assert response.json()["status"] == "Stopped"


def test_stop_an_ended_execution_is_409(api_client, pass_flow):
    api_client.post(url("pass"), {"name": "e"}, format="json")
    response = api_client.post(url("pass", "e", "stop"), {}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "ExecutionNotRunning"


@pytest.mark.parametrize(
    ("payload", "path"),
    [({"error": 1}, "error"), ({"cause": {"a": 1}}, "cause"), ({"error": "e" * 129}, "error")],
)
def test_stop_wrong_types_are_400(api_client, wait_flow, payload, path):
    api_client.post(url("wait"), {"name": "w"}, format="json")
    response = api_client.post(url("wait", "w", "stop"), payload, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == path
    assert Execution.objects.get(name="w").status == ExecutionStatus.RUNNING


def test_stop_unknown_execution_is_404(api_client, wait_flow):
    response = api_client.post(url("wait", "nope", "stop"), {}, format="json")
    assert response.status_code == 404
    assert response.json()["code"] == "ExecutionNotFound"


# --- history ------------------------------------------------------------------------------------


def test_history_of_a_finished_execution(api_client, pass_flow):
    api_client.post(url("pass"), {"name": "e", "input": {"a": 1}}, format="json")
    response = api_client.get(url("pass", "e", "history"))
    assert response.status_code == 200
    body = response.json()
    assert body["next"] is None
    events = body["events"]
    assert [e["event_id"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "ExecutionStarted"
    assert events[-1]["type"] == "ExecutionSucceeded"
    assert set(events[0]) == {
        "event_id",
        "schedule_event_id",
        "type",
        "step_name",
        "time",
        "detail",
    }
    assert any(e["step_name"] == "P" for e in events)


def test_history_pages_follow_next(api_client, pass_flow):
    api_client.post(url("pass"), {"name": "e"}, format="json")
    total = HistoryEvent.objects.filter(execution__name="e").count()
    assert total >= 3
    ids, token, pages = [], None, 0
    while True:
        params = {"limit": 2} | ({"next": token} if token else {})
        body = api_client.get(url("pass", "e", "history"), params).json()
        pages += 1
        assert len(body["events"]) <= 2
        ids += [e["event_id"] for e in body["events"]]
        token = body["next"]
        if token is None:
            break
        assert token == str(ids[-1])
    assert ids == list(range(1, total + 1))
    assert pages == (total + 1) // 2
    # A token past the end: an empty page.
    body = api_client.get(url("pass", "e", "history"), {"next": str(total)}).json()
    assert body == {"events": [], "next": None}


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"next": "abc"}, "next"),
        ({"next": "-1"}, "next"),
    ],
)
def test_history_bad_query_is_400(api_client, pass_flow, params, path):
    api_client.post(url("pass"), {"name": "e"}, format="json")
    response = api_client.get(url("pass", "e", "history"), params)
    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == path


def test_history_unknown_execution_is_404(api_client, pass_flow):
    response = api_client.get(url("pass", "nope", "history"))
    assert response.status_code == 404
    assert response.json()["code"] == "ExecutionNotFound"


@pytest.mark.django_db
def test_database_outage_is_503_with_a_code(monkeypatch):
    from django.db import OperationalError
    from rest_framework.test import APIClient

    from executions import services
    from tests.factories import FlowFactory, UserFactory

    flow = FlowFactory(name="db_down")
    client = APIClient()
    client.force_authenticate(UserFactory(roles=["operator"]))

    def down(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(services, "execution_start", down)
    response = client.post(f"/api/v1/flows/{flow.name}/executions/", {}, format="json")
    assert response.status_code == 503
    assert response.json()["code"] == "ServiceUnavailable"
    assert response["Retry-After"] == "5"
