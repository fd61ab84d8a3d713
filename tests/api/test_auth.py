"""Authentication on every /api/v1/ endpoint, and the OpenAPI schema that documents them."""

from __future__ import annotations

import base64

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from executions.models import Execution, Flow
from flowsite import api_urls
from functions.models import Function
from tests.factories import PASS_FLOW, PASSWORD, FlowFactory, FunctionFactory

pytestmark = pytest.mark.django_db

# Every route and method of flowsite/api_urls.py.
ENDPOINTS = [
    ("get", "/api/v1/functions/"),
    ("post", "/api/v1/functions/"),
    ("get", "/api/v1/functions/fn/"),
    ("put", "/api/v1/functions/fn/"),
    ("patch", "/api/v1/functions/fn/"),
    ("delete", "/api/v1/functions/fn/"),
    ("post", "/api/v1/functions/fn/invocations/"),
    ("get", "/api/v1/flows/"),
    ("post", "/api/v1/flows/"),
    ("get", "/api/v1/flows/flow/"),
    ("put", "/api/v1/flows/flow/"),
    ("patch", "/api/v1/flows/flow/"),
    ("delete", "/api/v1/flows/flow/"),
    ("get", "/api/v1/flows/flow/executions/"),
    ("post", "/api/v1/flows/flow/executions/"),
    ("get", "/api/v1/flows/flow/executions/e/"),
    ("post", "/api/v1/flows/flow/executions/e/stop/"),
    ("get", "/api/v1/flows/flow/executions/e/history/"),
    ("post", "/api/v1/tasks/report-succeeded/"),
    ("post", "/api/v1/tasks/report-failed/"),
    ("post", "/api/v1/tasks/heartbeat/"),
]


@pytest.fixture
def existing():
    FunctionFactory(name="fn", handler="tests.api.test_functions.echo")
    flow = FlowFactory(name="flow")
    from executions import services

    services.execution_start(flow=flow, name="e", input={"a": 1})


def test_every_route_is_covered():
    methods = {"get", "post", "put", "patch", "delete"}
    routes = {}
    for pattern in api_urls.urlpatterns:
        view = pattern.callback.view_class
        routes[str(pattern.pattern)] = {m for m in methods if hasattr(view, m)}
    covered = sum(len(m) for m in routes.values())
    assert covered == len(ENDPOINTS), routes


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_anonymous_is_401(anon_client, existing, method, path):
    response = getattr(anon_client, method)(
        path, {"name": "x", "definition": PASS_FLOW, "handler": "m.f"}, format="json"
    )
    assert response.status_code == 401
    assert response.json()["code"] == "Unauthenticated"
    assert response.json()["message"]
    assert "WWW-Authenticate" in response
    # Nothing was written.
    assert list(Flow.objects.values_list("name", flat=True)) == ["flow"]
    assert list(Function.objects.values_list("name", "handler")) == [
        ("fn", "tests.api.test_functions.echo")
    ]
    assert list(Execution.objects.values_list("name", "status")) == [("e", "Succeeded")]


def test_bad_token_and_bad_password_are_401(existing, user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = client.get("/api/v1/flows/")
    assert response.status_code == 401
    assert response.json()["code"] == "Unauthenticated"

    bad = base64.b64encode(f"{user.username}:wrong".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {bad}")
    assert client.get("/api/v1/flows/").status_code == 401


def test_token_auth(existing, user):
    token = Token.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.get("/api/v1/flows/flow/").status_code == 200
    response = client.post("/api/v1/flows/flow/executions/", {"name": "t"}, format="json")
    assert response.status_code == 201
    assert Execution.objects.get(name="t").started_by == user


def test_basic_auth(existing, user):
    client = APIClient()
    credentials = base64.b64encode(f"{user.username}:{PASSWORD}".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {credentials}")
    assert client.get("/api/v1/functions/fn/").status_code == 200
    response = client.post("/api/v1/flows/", {"name": "b", "definition": PASS_FLOW}, format="json")
    assert response.status_code == 201


def test_session_auth_works_but_not_for_task_callbacks(existing, user):
    client = APIClient(enforce_csrf_checks=True)
    client.login(username=user.username, password=PASSWORD)
    assert client.get("/api/v1/flows/").status_code == 200
    # A session-authenticated write needs the CSRF token.
    response = client.post("/api/v1/flows/flow/executions/", {"name": "s"}, format="json")
    assert response.status_code == 403
    # Task callbacks never accept a session cookie, CSRF token or not.
    for path in ENDPOINTS[-3:]:
        response = client.post(path[1], {"task_token": "t", "output": {}}, format="json")
        assert response.status_code == 401, path
        assert response.json()["code"] == "Unauthenticated"


def test_schema_documents_every_endpoint(api_client):
    response = api_client.get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 200
    schema = response.json()
    paths = schema["paths"]
    for method, path in ENDPOINTS:
        template = (
            path.replace("/functions/fn/", "/functions/{name}/")
            .replace("/flows/flow/executions/e/", "/flows/{flow}/executions/{name}/")
            .replace("/flows/flow/executions/", "/flows/{flow}/executions/")
            .replace("/flows/flow/", "/flows/{name}/")
        )
        assert template in paths, template
        operation = paths[template][method]
        assert "401" in operation["responses"], (method, template)
        if method in ("post", "put", "patch") and "tasks" not in path and "stop" not in path:
            assert "requestBody" in operation, (method, template)

    start = paths["/api/v1/flows/{flow}/executions/"]["post"]
    assert {"200", "201", "400", "404", "409", "413"} <= set(start["responses"])
    create = paths["/api/v1/flows/"]["post"]
    assert {"201", "400", "409", "413"} <= set(create["responses"])
    error = schema["components"]["schemas"]["Error"]
    assert {"code", "message", "errors"} <= set(error["properties"])
    listing = paths["/api/v1/flows/{flow}/executions/"]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {
        "status",
        "name_prefix",
        "cursor",
        "limit",
    }
