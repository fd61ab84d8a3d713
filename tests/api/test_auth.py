"""Authentication on every /api/v1/ endpoint, and the OpenAPI schema that documents them."""

from __future__ import annotations

import base64
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from executions.models import Execution, Flow
from flowsite import api_urls
from flowsite.access import SYSTEM
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
    ("get", "/api/v1/audit/"),
    ("post", "/api/v1/tasks/report-succeeded/"),
    ("post", "/api/v1/tasks/report-failed/"),
    ("post", "/api/v1/tasks/heartbeat/"),
]


@pytest.fixture
def existing():
    FunctionFactory(name="fn", handler="apihandlers.echo")
    flow = FlowFactory(name="flow")
    from executions import services

    services.execution_start(flow=flow, name="e", input={"a": 1}, actor=SYSTEM)


def make_user(username: str, password: str):
    """A user with the viewer role (an API read needs a role)."""
    from django.contrib.auth.models import Group

    user = get_user_model().objects.create_user(username, password=password)
    user.groups.add(Group.objects.get(name="viewer"))
    return user


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
    assert list(Function.objects.values_list("name", "handler")) == [("fn", "apihandlers.echo")]
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
    for path in [e for e in ENDPOINTS if e[1].startswith("/api/v1/tasks/")]:
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


# --- HTTP Basic auth: verified credentials are cached (flowsite/auth.py) ----------------------


@pytest.fixture
def credential_cache():
    """This process's Basic-auth cache, empty before and after the test."""
    from flowsite import auth

    cache = auth.credential_cache()
    cache.clear()
    yield cache
    cache.clear()


@pytest.fixture
def password_checks(monkeypatch):
    """Counts password verifications (every hasher goes through ``check_password``)."""
    from django.contrib.auth import base_user

    calls = []
    real = base_user.check_password

    def counting(password, encoded, *args, **kwargs):
        calls.append(encoded)
        return real(password, encoded, *args, **kwargs)

    monkeypatch.setattr(base_user, "check_password", counting)
    return calls


@pytest.fixture
def fast_hasher(settings):
    # The cache does not depend on the hasher; MD5 keeps each full check cheap in these tests.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def basic_client(username: str, password: str) -> APIClient:
    client = APIClient()
    credentials = base64.b64encode(f"{username}:{password}".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {credentials}")
    return client


def test_basic_auth_hashes_the_password_once(existing, user, credential_cache, password_checks):
    from django.contrib.auth.hashers import get_hasher

    hasher = type(get_hasher("default"))
    client = basic_client(user.username, PASSWORD)
    with mock.patch.object(hasher, "verify", autospec=True, side_effect=hasher.verify) as verify:
        assert client.get("/api/v1/flows/").status_code == 200
        assert verify.call_count == 1  # the real hasher (PBKDF2), once
        for i in range(3):
            response = client.post("/api/v1/flows/flow/executions/", {"name": f"b{i}"}, "json")
            assert response.status_code == 201
        assert verify.call_count == 1
    assert len(password_checks) == 1
    assert Execution.objects.get(name="b2").started_by == user
    assert len(credential_cache) == 1


def test_a_password_change_applies_to_the_next_request(
    existing, fast_hasher, credential_cache, password_checks
):
    user = make_user("pat", password="old-password-1")
    old = basic_client("pat", "old-password-1")
    assert old.get("/api/v1/flows/").status_code == 200
    assert old.get("/api/v1/flows/").status_code == 200  # cached
    assert len(password_checks) == 1

    user.set_password("new-password-2")
    user.save()
    response = old.get("/api/v1/flows/")
    assert response.status_code == 401
    assert response.json()["code"] == "Unauthenticated"
    assert basic_client("pat", "new-password-2").get("/api/v1/flows/").status_code == 200


def test_deactivation_applies_to_the_next_request(
    existing, fast_hasher, credential_cache, password_checks
):
    user = make_user("dee", password="password-dee-1")
    client = basic_client("dee", "password-dee-1")
    assert client.get("/api/v1/flows/").status_code == 200
    assert client.get("/api/v1/flows/").status_code == 200
    assert len(password_checks) == 1

    get_user_model().objects.filter(pk=user.pk).update(is_active=False)
    assert client.get("/api/v1/flows/").status_code == 401
    assert len(credential_cache) == 0  # the stale entry is gone
    get_user_model().objects.filter(pk=user.pk).update(is_active=True)
    assert client.get("/api/v1/flows/").status_code == 200

    get_user_model().objects.filter(pk=user.pk).delete()
    assert client.get("/api/v1/flows/").status_code == 401


def test_a_renamed_user_no_longer_answers_to_the_old_name(existing, fast_hasher, credential_cache):
    user = make_user("ren", password="password-ren-1")
    client = basic_client("ren", "password-ren-1")
    assert client.get("/api/v1/flows/").status_code == 200
    user.username = "renamed"
    user.save()
    assert client.get("/api/v1/flows/").status_code == 401
    assert basic_client("renamed", "password-ren-1").get("/api/v1/flows/").status_code == 200


def test_wrong_passwords_are_never_cached_and_always_fully_checked(
    existing, fast_hasher, credential_cache, password_checks
):
    make_user("wro", password="password-wro-1")
    right = basic_client("wro", "password-wro-1")
    assert right.get("/api/v1/flows/").status_code == 200
    assert len(password_checks) == 1
    wrong = basic_client("wro", "password-wro-2")
    for i in range(3):
        response = wrong.get("/api/v1/flows/")
        assert response.status_code == 401
        assert response.json()["code"] == "Unauthenticated"
        # Each wrong guess costs the full check, although the right password is cached.
        assert len(password_checks) == 2 + i
    assert len(credential_cache) == 1
    assert right.get("/api/v1/flows/").status_code == 200
    assert len(password_checks) == 4


def test_the_cache_keeps_no_password(existing, fast_hasher, credential_cache):
    make_user("kee", password="password-kee-secret")
    assert basic_client("kee", "password-kee-secret").get("/api/v1/flows/").status_code == 200
    [(key, entry)] = credential_cache._entries.items()
    assert len(key) == 32 and b"password-kee-secret" not in key
    assert "password-kee-secret" not in repr(entry)


def test_the_cache_is_bounded(existing, fast_hasher, settings, password_checks):
    from flowsite import auth

    settings.FLOWSITE_BASIC_AUTH_CACHE_SIZE = 2
    for name in ("b1", "b2", "b3"):
        make_user(name, password=f"password-{name}-x")
        assert basic_client(name, f"password-{name}-x").get("/api/v1/flows/").status_code == 200
    assert len(auth.credential_cache()) == 2
    # b1, the least recently used, was dropped: it is checked in full again; b3 is not.
    basic_client("b3", "password-b3-x").get("/api/v1/flows/")
    assert len(password_checks) == 3
    basic_client("b1", "password-b1-x").get("/api/v1/flows/")
    assert len(password_checks) == 4


def test_cache_off_checks_every_request(existing, fast_hasher, settings, password_checks):
    settings.FLOWSITE_BASIC_AUTH_CACHE_SECONDS = 0
    make_user("off", password="password-off-1")
    client = basic_client("off", "password-off-1")
    for _ in range(3):
        assert client.get("/api/v1/flows/").status_code == 200
    assert len(password_checks) == 3


def test_a_nul_in_the_username_is_401_not_an_error(existing, credential_cache):
    response = basic_client("ad\x00min", "x").get("/api/v1/flows/")
    assert response.status_code == 401
    assert response.json()["code"] == "Unauthenticated"
