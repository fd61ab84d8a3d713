"""/api/v1/functions/: registry CRUD and synchronous invocation.

The handlers below are real handlers: functions registered in these tests point at them
(``tests.api.test_functions.<name>``).
"""

from __future__ import annotations

import json
import time

import pytest
from django.test import override_settings

from functions.models import Function
from tests.factories import FunctionFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/functions/"
HANDLER = "tests.api.test_functions"


# --- handlers ---------------------------------------------------------------------------------


def echo(event, context):
    return event


def describe(event, context):
    return {
        "type": type(event).__name__,
        "text": event.decode("utf-8", errors="replace"),
        "request_id": context.request_id,
        "function": context.function.name,
    }


def explode(event, context):
    raise ValueError("bad input\nsecond line")


def sleepy(event, context):
    time.sleep(5)
    return "too late"


def not_json(event, context):
    return object()


# --- CRUD ---------------------------------------------------------------------------------------


def test_create_get_list(api_client):
    response = api_client.post(
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


def test_duplicate_name_is_409(api_client):
    FunctionFactory(name="dup")
    response = api_client.post(URL, {"name": "dup", "handler": "m.f"}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "FunctionAlreadyExists"


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({"name": "ok", "handler": "no_dot"}, "handler"),
        ({"name": "ok", "handler": "m.f", "timeout_seconds": 0}, "timeout_seconds"),
        ({"name": "ok", "handler": "m.f", "timeout_seconds": 86401}, "timeout_seconds"),
        ({"name": "1bad", "handler": "m.f"}, "name"),
        ({"name": "bad name", "handler": "m.f"}, "name"),
    ],
)
def test_model_validation_is_400_with_errors(api_client, payload, path):
    response = api_client.post(URL, payload, format="json")
    assert response.status_code == 400, response.json()
    body = response.json()
    assert body["code"] == "InvalidArgument"
    assert body["errors"] and body["errors"][0]["path"] == path
    assert body["errors"][0]["line"] is None
    assert body["message"].startswith(f"{path}: ")
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
def test_wrong_json_types_are_400_naming_the_field(api_client, payload, path):
    response = api_client.post(URL, payload, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "InvalidArgument"
    assert [e["path"] for e in body["errors"]] == [path]


def test_body_must_be_an_object_and_valid_json(api_client):
    response = api_client.post(URL, [1, 2], format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "InvalidArgument"
    response = api_client.post(URL, '{"name": ', content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "MalformedJSON"


def test_put_replaces_and_patch_changes(api_client):
    FunctionFactory(name="fn", handler="m.f", description="old", timeout_seconds=30)
    response = api_client.patch(f"{URL}fn/", {"timeout_seconds": 10}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert (body["handler"], body["description"], body["timeout_seconds"]) == ("m.f", "old", 10)

    response = api_client.put(f"{URL}fn/", {"name": "fn", "handler": "m.g"}, format="json")
    assert response.status_code == 200
    body = response.json()
    # PUT is a replacement: omitted fields go back to their defaults.
    assert (body["handler"], body["description"], body["timeout_seconds"]) == ("m.g", "", 60)

    response = api_client.put(f"{URL}fn/", {"description": "x"}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == "handler"


def test_update_errors(api_client):
    FunctionFactory(name="fn", handler="m.f")
    response = api_client.patch(f"{URL}fn/", {"handler": "nodot"}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == "handler"
    assert Function.objects.get(name="fn").handler == "m.f"

    response = api_client.patch(f"{URL}fn/", {"name": "other"}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == "name"

    response = api_client.patch(f"{URL}fn/", {"timeout_seconds": "9"}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == "timeout_seconds"


def test_delete(api_client):
    FunctionFactory(name="gone")
    assert api_client.delete(f"{URL}gone/").status_code == 204
    assert not Function.objects.filter(name="gone").exists()
    response = api_client.delete(f"{URL}gone/")
    assert response.status_code == 404
    assert response.json()["code"] == "FunctionNotFound"


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_unknown_function_is_404(api_client, method):
    response = getattr(api_client, method)(f"{URL}nope/", {"handler": "m.f"}, format="json")
    assert response.status_code == 404
    assert response.json() == {"code": "FunctionNotFound", "message": "no function named 'nope'"}


# --- invocation ---------------------------------------------------------------------------------


def invoke(client, name, data, content_type="application/json"):
    return client.post(f"{URL}{name}/invocations/", data, content_type=content_type)


def test_invoke_returns_the_handlers_result(api_client):
    FunctionFactory(name="echo", handler=f"{HANDLER}.echo")
    response = invoke(api_client, "echo", json.dumps({"a": [1, 2]}))
    assert response.status_code == 200
    body = response.json()
    assert body["result"] == {"a": [1, 2]}
    assert body["request_id"]
    assert body["duration_ms"] >= 0

    # Any JSON value, not only objects.
    assert invoke(api_client, "echo", "[1, 2]").json()["result"] == [1, 2]
    assert invoke(api_client, "echo", '"text"').json()["result"] == "text"
    # Text that is not JSON stays a string.
    assert invoke(api_client, "echo", "hello", "text/plain").json()["result"] == "hello"


def test_invoke_passes_the_raw_body_bytes(api_client):
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


def test_invoke_with_a_session_and_a_multipart_body(client, user):
    # SessionAuthentication's CSRF check reads request.POST; the raw body must survive it.
    FunctionFactory(name="describe", handler=f"{HANDLER}.describe")
    client.force_login(user)
    response = client.post(f"{URL}describe/invocations/", {"field": "value"})
    assert response.status_code == 200
    assert 'name="field"' in response.json()["result"]["text"]


def test_invoke_handler_error_is_502(api_client):
    FunctionFactory(name="boom", handler=f"{HANDLER}.explode")
    response = invoke(api_client, "boom", "{}")
    assert response.status_code == 502
    body = response.json()
    assert body["code"] == "FunctionError"
    assert body["error"] == "ValueError"
    assert body["message"] == "ValueError: bad input"
    assert body["cause"].startswith("bad input\nsecond line")
    assert "Traceback" in body["cause"]
    assert body["request_id"]


def test_invoke_bad_handler_or_result_is_502(api_client):
    FunctionFactory(name="missing", handler="no_such_module_xyz.handler")
    body = invoke(api_client, "missing", "{}").json()
    assert (body["code"], body["error"]) == ("FunctionError", "FC.InvalidHandler")

    FunctionFactory(name="weird", handler=f"{HANDLER}.not_json")
    response = invoke(api_client, "weird", "{}")
    assert response.status_code == 502
    assert response.json()["error"] == "FC.InvalidResponse"


def test_invoke_timeout_is_504(api_client):
    FunctionFactory(name="slow", handler=f"{HANDLER}.sleepy", timeout_seconds=1)
    started = time.monotonic()
    response = invoke(api_client, "slow", "{}")
    assert time.monotonic() - started < 4
    assert response.status_code == 504
    body = response.json()
    assert body["code"] == "FunctionTimeout"
    assert body["error"] == "FC.FunctionTimeout"


def test_invoke_unknown_function_is_404(api_client):
    response = invoke(api_client, "nope", "{}")
    assert response.status_code == 404
    assert response.json()["code"] == "FunctionNotFound"


@override_settings(FLOWSITE_MAX_TASK_PAYLOAD_BYTES=10)
def test_invoke_oversized_event_is_413(api_client):
    FunctionFactory(name="echo", handler=f"{HANDLER}.echo")
    response = invoke(api_client, "echo", json.dumps({"a": "x" * 20}))
    assert response.status_code == 413
    assert response.json()["code"] == "EntityTooLarge"
    assert invoke(api_client, "echo", "[1]").status_code == 200


@override_settings(FLOWSITE_MAX_TASK_PAYLOAD_BYTES=10)
def test_invoke_oversized_result_is_a_function_error(api_client):
    FunctionFactory(name="describe", handler=f"{HANDLER}.describe")
    response = invoke(api_client, "describe", "[1]")
    assert response.status_code == 502
    assert response.json()["error"] == "FC.PayloadTooLarge"
