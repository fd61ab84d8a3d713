"""/api/v1/functions/: registry CRUD (staff only), and invocation through a worker.

Handlers registered here live in tests/functions/handlers/apihandlers.py (a functions folder for
the whole test run). The invocation tests run with this process marked as a web process, as
gunicorn's is: the view records the call and waits, and the ``worker`` fixture plays the Celery
worker from the wait loop's pause, lifting the mark only for that call. A view that ran the
handler itself would fail with HandlerInWebProcess.
"""

from __future__ import annotations

import json
import re
import time
from contextlib import contextmanager

import pytest
from django.test import override_settings

from functions import process, services, tasks
from functions.models import Function, Invocation, InvocationStatus
from tests.factories import FunctionFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/functions/"
HANDLER = "apihandlers"


# --- CRUD ---------------------------------------------------------------------------------------


def test_create_get_list(staff_client, api_client):
    response = staff_client.post(
        URL,
        {"name": "hello", "handler": f"{HANDLER}.echo", "description": "says hi"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["name"] == "hello"
    assert body["handler"] == f"{HANDLER}.echo"
    assert body["description"] == "says hi"
    assert body["timeout_seconds"] == 60
    assert body["created_at"] and body["updated_at"]
    assert response["Location"] == "/api/v1/functions/hello/"

    # Reading is open to any logged-in user.
    assert api_client.get(f"{URL}hello/").json() == body
    listing = api_client.get(URL).json()
    assert listing["next"] is None
    assert [f["name"] for f in listing["results"]] == ["hello"]


def test_list_is_paginated(api_client):
    for i in range(3):
        FunctionFactory(name=f"f{i}")
    page = api_client.get(URL, {"limit": 2}).json()
    names = [f["name"] for f in page["results"]]
    assert len(names) == 2 and page["next"]
    page = api_client.get(page["next"]).json()
    names += [f["name"] for f in page["results"]]
    assert page["next"] is None
    assert names == ["f2", "f1", "f0"]


def test_duplicate_name_is_409(staff_client):
    FunctionFactory(name="dup")
    payload = {"name": "dup", "handler": f"{HANDLER}.echo"}
    response = staff_client.post(URL, payload, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "FunctionAlreadyExists"


def test_changing_functions_needs_the_admin_role(role_client, staff_client):
    api_client = role_client("operator", "approver", "viewer")
    FunctionFactory(name="fn", handler=f"{HANDLER}.echo")
    attempts = [
        api_client.post(URL, {"name": "new", "handler": f"{HANDLER}.echo"}, format="json"),
        api_client.put(f"{URL}fn/", {"handler": f"{HANDLER}.describe"}, format="json"),
        api_client.patch(f"{URL}fn/", {"timeout_seconds": 5}, format="json"),
        api_client.delete(f"{URL}fn/"),
    ]
    for response in attempts:
        assert response.status_code == 403
        assert response.json()["code"] == "Forbidden"
    assert list(Function.objects.values_list("name", "handler", "timeout_seconds")) == [
        ("fn", f"{HANDLER}.echo", 60)
    ]
    # Someone without the role learns nothing about the functions folders from a refusal.
    probe = api_client.post(URL, {"name": "p", "handler": "os.system"}, format="json")
    assert probe.json() == {
        "code": "Forbidden",
        "message": "this needs the admin role",
        "required_role": "admin",
    }
    assert staff_client.delete(f"{URL}fn/").status_code == 204


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({"name": "ok", "handler": f"{HANDLER}.echo", "timeout_seconds": 0}, "timeout_seconds"),
        ({"name": "ok", "handler": f"{HANDLER}.echo", "timeout_seconds": 86401}, "timeout_seconds"),
        ({"name": "1bad", "handler": f"{HANDLER}.echo"}, "name"),
        ({"name": "bad name", "handler": f"{HANDLER}.echo"}, "name"),
    ],
)
def test_model_validation_is_400_with_errors(staff_client, payload, path):
    response = staff_client.post(URL, payload, format="json")
    assert response.status_code == 400, response.json()
    body = response.json()
    assert body["code"] == "InvalidArgument"
    assert body["errors"] and body["errors"][0]["path"] == path
    assert body["errors"][0]["line"] is None
    assert body["message"].startswith(f"{path}: ")
    assert not Function.objects.exists()


@pytest.mark.parametrize(
    "handler", ["no_dot", "m.f", "os.system", f"{HANDLER}._private", "../apihandlers.echo"]
)
def test_a_handler_outside_the_functions_folders_is_400_invalid_handler(staff_client, handler):
    response = staff_client.post(URL, {"name": "ok", "handler": handler}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "InvalidHandler"
    assert body["message"].startswith("handler: ")
    assert [e["path"] for e in body["errors"]] == ["handler"]
    assert not Function.objects.exists()


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({"name": 5, "handler": "m.f"}, "name"),
        ({"name": "ok", "handler": ["m.f"]}, "handler"),
        ({"name": "ok", "handler": "m.f", "timeout_seconds": "x"}, "timeout_seconds"),
        ({"name": "ok", "handler": "m.f", "timeout_seconds": "5"}, "timeout_seconds"),
        ({"name": "ok", "handler": "m.f", "timeout_seconds": True}, "timeout_seconds"),
        ({"name": "ok", "handler": "m.f", "timeout_seconds": 1.5}, "timeout_seconds"),
        ({"name": "ok", "handler": "m.f", "description": None}, "description"),
        ({"handler": "m.f"}, "name"),
    ],
)
def test_wrong_json_types_are_400_naming_the_field(staff_client, payload, path):
    response = staff_client.post(URL, payload, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "InvalidArgument"
    assert [e["path"] for e in body["errors"]] == [path]


def test_body_must_be_an_object_and_valid_json(staff_client):
    response = staff_client.post(URL, [1, 2], format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "InvalidArgument"
    response = staff_client.post(URL, '{"name": ', content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "MalformedJSON"


def test_put_replaces_and_patch_changes(staff_client):
    echo, describe = f"{HANDLER}.echo", f"{HANDLER}.describe"
    FunctionFactory(name="fn", handler=echo, description="old", timeout_seconds=30)
    response = staff_client.patch(f"{URL}fn/", {"timeout_seconds": 10}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert (body["handler"], body["description"], body["timeout_seconds"]) == (echo, "old", 10)

    response = staff_client.put(f"{URL}fn/", {"name": "fn", "handler": describe}, format="json")
    assert response.status_code == 200
    body = response.json()
    # PUT is a replacement: omitted fields go back to their defaults.
    assert (body["handler"], body["description"], body["timeout_seconds"]) == (describe, "", 60)

    response = staff_client.put(f"{URL}fn/", {"description": "x"}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == "handler"


def test_update_errors(staff_client):
    FunctionFactory(name="fn", handler=f"{HANDLER}.echo")
    response = staff_client.patch(f"{URL}fn/", {"handler": "nodot"}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "InvalidHandler"
    assert response.json()["errors"][0]["path"] == "handler"
    assert Function.objects.get(name="fn").handler == f"{HANDLER}.echo"

    response = staff_client.patch(f"{URL}fn/", {"name": "other"}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == "name"

    response = staff_client.patch(f"{URL}fn/", {"timeout_seconds": "9"}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == "timeout_seconds"


def test_delete(staff_client):
    FunctionFactory(name="gone")
    assert staff_client.delete(f"{URL}gone/").status_code == 204
    assert not Function.objects.filter(name="gone").exists()
    response = staff_client.delete(f"{URL}gone/")
    assert response.status_code == 404
    assert response.json()["code"] == "FunctionNotFound"


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_unknown_function_is_404(staff_client, method):
    response = getattr(staff_client, method)(f"{URL}nope/", {"handler": "m.f"}, format="json")
    assert response.status_code == 404
    assert response.json() == {"code": "FunctionNotFound", "message": "no function named 'nope'"}


# --- invocation (through a worker) ------------------------------------------------------------


class FakeClock:
    """The wait loop's clock: moves only when the loop pauses (no real sleeping)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(services, "_clock", fake)
    return fake


@contextmanager
def in_a_worker():
    """Code run here stands for another process: a Celery worker, which has no web mark."""
    marked = process._web_process
    process._web_process = False
    try:
        yield
    finally:
        process._web_process = marked


def run_as_worker(pk: int) -> str:
    """What a Celery worker does with the published id."""
    with in_a_worker():
        return tasks.run_invocation(pk)


@pytest.fixture
def web_process(monkeypatch):
    monkeypatch.setattr(process, "_web_process", True)


@pytest.fixture
def worker(web_process, clock, monkeypatch):
    """A worker that takes every recorded invocation while the request waits."""
    ran: list[str] = []

    def pause(seconds: float) -> None:
        clock.now += seconds
        pending = Invocation.objects.filter(status=InvocationStatus.ENQUEUED)
        for pk in pending.values_list("pk", flat=True):
            ran.append(run_as_worker(pk))

    monkeypatch.setattr(services, "_pause", pause)
    return ran


@pytest.fixture
def no_worker(web_process, clock, monkeypatch):
    """No worker at all: time passes, nothing takes the invocation."""

    def pause(seconds: float) -> None:
        clock.now += max(seconds, 0.001)

    monkeypatch.setattr(services, "_pause", pause)


def invoke(client, name, data, content_type="application/json"):
    return client.post(f"{URL}{name}/invocations/", data, content_type=content_type)


def test_invoke_returns_the_handlers_result(api_client, worker):
    FunctionFactory(name="echo", handler=f"{HANDLER}.echo")
    response = invoke(api_client, "echo", json.dumps({"a": [1, 2]}))
    assert response.status_code == 200
    body = response.json()
    assert body["result"] == {"a": [1, 2]}
    assert body["request_id"]
    assert body["duration_ms"] >= 0
    assert worker == ["Succeeded"]
    row = Invocation.objects.get(request_id=body["request_id"])
    assert (row.status, row.function_name, bytes(row.payload)) == (
        "Succeeded",
        "echo",
        b'{"a": [1, 2]}',
    )
    assert row.started_at and row.finished_at and row.worker

    # Any JSON value, not only objects.
    assert invoke(api_client, "echo", "[1, 2]").json()["result"] == [1, 2]
    assert invoke(api_client, "echo", '"text"').json()["result"] == "text"
    # Text that is not JSON stays a string.
    assert invoke(api_client, "echo", "hello", "text/plain").json()["result"] == "hello"


def test_invoke_passes_the_raw_body_bytes(api_client, worker):
    FunctionFactory(name="describe", handler=f"{HANDLER}.describe")
    raw = '{ "spaced" :  1 }'
    body = invoke(api_client, "describe", raw).json()
    assert body["result"]["type"] == "bytes"
    assert body["result"]["text"] == raw
    assert body["result"]["request_id"] == body["request_id"]
    assert body["result"]["function"] == "describe"

    body = invoke(api_client, "describe", b"\x00\x01binary", "application/octet-stream").json()
    assert body["result"]["text"] == "\x00\x01binary"
    # An empty body is an empty event.
    assert invoke(api_client, "describe", b"").json()["result"]["text"] == ""
    # Even a form body reaches the handler untouched.
    form = invoke(api_client, "describe", "a=1&b=2", "application/x-www-form-urlencoded")
    assert form.json()["result"]["text"] == "a=1&b=2"


def test_invoke_with_a_session_and_a_multipart_body(client, user, worker):
    # SessionAuthentication's CSRF check reads request.POST; the raw body must survive it.
    FunctionFactory(name="describe", handler=f"{HANDLER}.describe")
    client.force_login(user)
    response = client.post(f"{URL}describe/invocations/", {"field": "value"})
    assert response.status_code == 200
    assert 'name="field"' in response.json()["result"]["text"]


def test_invoke_handler_error_is_502_with_the_handlers_own_frames_only(api_client, worker):
    FunctionFactory(name="boom", handler=f"{HANDLER}.explode")
    response = invoke(api_client, "boom", "{}")
    assert response.status_code == 502
    body = response.json()
    assert body["code"] == "FunctionError"
    assert body["error"] == "ValueError"
    assert body["message"] == "ValueError: bad input"
    assert body["cause"].startswith("bad input\nsecond line\nTraceback (most recent call last):")
    assert 'File "apihandlers.py", line ' in body["cause"]
    assert body["cause"].endswith(
        '\n    raise ValueError("bad input\\nsecond line")\nValueError: bad input\nsecond line'
    )
    for internal in ("functions/", "services.py", "site-packages", "/usr/lib", "tests/"):
        assert internal not in body["cause"]
    assert body["request_id"]


def test_a_standard_library_error_shows_no_standard_library_frames(api_client, worker):
    FunctionFactory(name="strict", handler=f"{HANDLER}.parse_strictly")
    body = invoke(api_client, "strict", "not json").json()
    assert body["error"] == "JSONDecodeError"
    lines = body["cause"].splitlines()
    frames = [(n, line) for n, line in enumerate(lines) if line.lstrip().startswith("File ")]
    assert [re.sub(r"line \d+", "line N", line) for _, line in frames] == [
        '  File "apihandlers.py", line N, in parse_strictly',
        '  File "apihandlers.py", line N, in _parse',
    ]
    # Each frame with its source line, as Python prints them.
    assert [lines[n + 1].strip() for n, _ in frames] == [
        "return _parse(event)",
        "return json.loads(event)",
    ]
    assert "json/decoder.py" not in body["cause"] and "/usr/" not in body["cause"]


def test_invoke_bad_handler_or_result_is_502(api_client, worker):
    # A row saved before the rules (the service would refuse it): it never runs.
    Function.objects.create(name="missing", handler="no_such_module_xyz.handler")
    body = invoke(api_client, "missing", "{}").json()
    assert (body["code"], body["error"]) == ("FunctionError", "FC.InvalidHandler")
    assert body["cause"].startswith("cannot load no_such_module_xyz.handler: no module")

    FunctionFactory(name="weird", handler=f"{HANDLER}.not_json")
    response = invoke(api_client, "weird", "{}")
    assert response.status_code == 502
    assert response.json()["error"] == "FC.InvalidResponse"

    FunctionFactory(name="quits", handler=f"{HANDLER}.exits")
    response = invoke(api_client, "quits", "{}")
    assert (response.status_code, response.json()["error"]) == (502, "SystemExit")


def test_invoke_timeout_is_504(api_client, worker):
    # The worker's SIGALRM ends the handler after its timeout (the worker runs it in this
    # process's main thread, as a prefork child does).
    FunctionFactory(name="slow", handler=f"{HANDLER}.sleepy", timeout_seconds=1)
    started = time.monotonic()
    response = invoke(api_client, "slow", "{}")
    assert time.monotonic() - started < 4
    assert response.status_code == 504
    body = response.json()
    assert body["code"] == "FunctionTimeout"
    assert body["error"] == "FC.FunctionTimeout"


def test_invoke_unknown_function_is_404(api_client, worker):
    response = invoke(api_client, "nope", "{}")
    assert response.status_code == 404
    assert response.json()["code"] == "FunctionNotFound"
    assert not Invocation.objects.exists()


@override_settings(FLOWSITE_MAX_TASK_PAYLOAD_BYTES=10)
def test_invoke_oversized_event_is_413(api_client, worker):
    FunctionFactory(name="echo", handler=f"{HANDLER}.echo")
    response = invoke(api_client, "echo", json.dumps({"a": "x" * 20}))
    assert response.status_code == 413
    assert response.json()["code"] == "EntityTooLarge"
    assert not Invocation.objects.exists()
    assert invoke(api_client, "echo", "[1]").status_code == 200


@override_settings(FLOWSITE_MAX_TASK_PAYLOAD_BYTES=10)
def test_invoke_oversized_result_is_a_function_error(api_client, worker):
    FunctionFactory(name="describe", handler=f"{HANDLER}.describe")
    response = invoke(api_client, "describe", "[1]")
    assert response.status_code == 502
    assert response.json()["error"] == "FC.PayloadTooLarge"


def test_no_worker_in_time_is_503_and_the_invocation_never_runs(api_client, no_worker, clock):
    from functions import loader

    FunctionFactory(name="count", handler=f"{HANDLER}.count")
    started = clock.now
    response = invoke(api_client, "count", "{}")
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "NoWorkerAvailable"
    assert clock.now - started == pytest.approx(services.DEFAULT_PICKUP_SECONDS)
    row = Invocation.objects.get(request_id=body["request_id"])
    assert row.status == InvocationStatus.EXPIRED and row.finished_at
    # The message arrives late: the worker finds the row expired and runs nothing.
    with in_a_worker():
        module = loader.load_module(HANDLER)
    calls_before = module.count_calls()
    assert run_as_worker(row.pk) == "duplicate"
    assert module.count_calls() == calls_before
    row.refresh_from_db()
    assert row.status == InvocationStatus.EXPIRED and row.started_at is None


def test_a_worker_that_claims_as_the_request_gives_up_wins(api_client, web_process, monkeypatch):
    """The race: the request read "Enqueued" and its pickup deadline has passed, but a worker
    claims the row before the request's compare-and-set. The worker's run stands and the
    request answers with its result."""
    FunctionFactory(name="echo", handler=f"{HANDLER}.echo")
    times = iter([0.0, 0.0, 100.0, 100.0, 100.0])
    claimed: list[str] = []

    def clock() -> float:
        now = next(times)
        if now == 100.0 and not claimed:
            # Between the request's read and its compare-and-set.
            claimed.append(run_as_worker(Invocation.objects.get().pk))
        return now

    monkeypatch.setattr(services, "_clock", clock)
    monkeypatch.setattr(services, "_pause", lambda seconds: None)
    response = invoke(api_client, "echo", '{"won": true}')
    assert claimed == ["Succeeded"]
    assert response.status_code == 200
    assert response.json()["result"] == {"won": True}


def test_a_result_that_never_comes_is_504_after_the_timeout(
    api_client, web_process, clock, monkeypatch
):
    FunctionFactory(name="echo", handler=f"{HANDLER}.echo", timeout_seconds=7)

    def pause(seconds: float) -> None:
        # A worker claimed it, then died: the row stays Running.
        Invocation.objects.filter(status=InvocationStatus.ENQUEUED).update(
            status=InvocationStatus.RUNNING
        )
        clock.now += max(seconds, 0.001)

    monkeypatch.setattr(services, "_pause", pause)
    started = clock.now
    response = invoke(api_client, "echo", "{}")
    assert response.status_code == 504
    body = response.json()
    assert (body["code"], body["error"]) == ("FunctionTimeout", "FC.FunctionTimeout")
    assert "may still be running" in body["cause"]
    waited = clock.now - started
    assert 7 + services.RESULT_GRACE_SECONDS <= waited < 7 + services.RESULT_GRACE_SECONDS + 0.2


def test_an_error_response_never_carries_a_server_traceback(api_client, worker, monkeypatch):
    FunctionFactory(name="echo", handler=f"{HANDLER}.echo")

    def broken(**kwargs):
        raise RuntimeError("a bug deep inside flowsite")

    monkeypatch.setattr(services, "invocation_call", broken)
    api_client.raise_request_exception = False
    with override_settings(DEBUG=True):
        response = invoke(api_client, "echo", "{}")
    assert response.status_code == 500
    assert response.json() == {
        "code": "InternalError",
        "message": "The server failed to process the request.",
    }
