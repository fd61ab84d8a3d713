"""/api/v1/flows/: create, read, list, replace, change, delete; definition errors."""

from __future__ import annotations

import pytest
from django.test import override_settings

from executions.models import Flow, FlowVersion
from tests.factories import FAIL_FLOW, PASS_FLOW, WAIT_FLOW, FlowFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/flows/"

# StartAt names no state (line 4); the state has both End and Next.
BROKEN_FLOW = """\
Type: StateMachine
Name: broken
SpecVersion: v1
StartAt: Nowhere
States:
  - Type: Pass
    Name: P
    End: true
    Next: Missing
"""


def test_create_and_get(api_client):
    definition = PASS_FLOW.replace("Name: pass", "Name: orders")
    response = api_client.post(
        URL, {"name": "orders", "definition": definition, "description": "d"}, format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["name"] == "orders"
    assert body["definition"] == definition
    assert body["description"] == "d"
    assert body["version"] == 1
    assert body["dialect"] == "cloudflow"
    assert body["warnings"] == []
    assert body["created_at"] and body["updated_at"]
    assert response["Location"] == "/api/v1/flows/orders/"
    assert FlowVersion.objects.filter(flow__name="orders", version=1).exists()

    got = api_client.get(f"{URL}orders/")
    assert got.status_code == 200
    assert got.json() == body


def test_create_reports_warnings(api_client):
    definition = FAIL_FLOW.replace("    Detail: it broke\n", "")
    response = api_client.post(URL, {"name": "f", "definition": definition}, format="json")
    assert response.status_code == 201
    warnings = response.json()["warnings"]
    assert warnings == [
        {
            "path": "Name",
            "line": None,
            "message": "the definition's Name 'fail' differs from the flow's name 'f'; "
            "the flow's name is used",
        },
        {"path": "States[0]", "line": 6, "message": "Fail state 'F' has no Detail"},
    ]


def test_list_is_paginated(api_client):
    for i in range(3):
        FlowFactory(name=f"flow{i}")
    page = api_client.get(URL, {"limit": 2}).json()
    assert len(page["results"]) == 2 and page["next"]
    rest = api_client.get(page["next"]).json()
    assert rest["next"] is None
    names = [f["name"] for f in page["results"] + rest["results"]]
    assert names == ["flow2", "flow1", "flow0"]
    assert all(f["warnings"] == [] for f in page["results"])


def test_invalid_definition_lists_every_error_with_path_and_line(api_client):
    response = api_client.post(URL, {"name": "bad", "definition": BROKEN_FLOW}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "InvalidDefinition"
    assert body["message"]
    assert len(body["errors"]) >= 2
    for error in body["errors"]:
        assert set(error) == {"path", "line", "message"}
    by_path = {e["path"]: e for e in body["errors"]}
    assert by_path["StartAt"]["line"] == 4
    assert all(
        isinstance(e["line"], int) and e["path"].startswith(("StartAt", "States[0]"))
        for e in body["errors"]
    )
    assert not Flow.objects.filter(name="bad").exists()


def test_yaml_syntax_error_is_invalid_definition(api_client):
    response = api_client.post(URL, {"name": "bad", "definition": "a: [1, 2"}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "InvalidDefinition"
    assert body["errors"][0]["path"] == ""


def test_duplicate_name_is_409(api_client):
    FlowFactory(name="dup")
    response = api_client.post(URL, {"name": "dup", "definition": PASS_FLOW}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "FlowAlreadyExists"


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({"name": 1, "definition": PASS_FLOW}, "name"),
        ({"name": "x", "definition": {"Type": "StateMachine"}}, "definition"),
        ({"name": "x"}, "definition"),
        ({"definition": PASS_FLOW}, "name"),
        ({"name": "x", "definition": PASS_FLOW, "description": 3}, "description"),
        ({"name": "x", "definition": PASS_FLOW, "description": "d" * 4097}, "description"),
    ],
)
def test_wrong_types_are_400_naming_the_field(api_client, payload, path):
    response = api_client.post(URL, payload, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "InvalidArgument"
    assert [e["path"] for e in body["errors"]] == [path]


def test_bad_name_is_400(api_client):
    response = api_client.post(URL, {"name": "9lives", "definition": PASS_FLOW}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "InvalidArgument"


def test_malformed_json_is_400(api_client):
    response = api_client.post(URL, "{'name': 'x'}", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "MalformedJSON"


@override_settings(FLOWSITE_MAX_DEFINITION_BYTES=100)
def test_definition_too_large_is_413(api_client):
    response = api_client.post(URL, {"name": "big", "definition": PASS_FLOW}, format="json")
    assert response.status_code == 413
    assert response.json()["code"] == "EntityTooLarge"


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000)
def test_request_body_too_large_is_413(api_client):
    payload = {"name": "big", "definition": PASS_FLOW + "#" * 2000}
    response = api_client.post(URL, payload, format="json")
    assert response.status_code == 413
    assert response.json()["code"] == "EntityTooLarge"


def test_patch_definition_makes_a_new_version(api_client):
    FlowFactory(name="f", description="keep")
    definition = WAIT_FLOW.replace("Name: wait", "Name: f")
    response = api_client.patch(f"{URL}f/", {"definition": definition}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["version"], body["definition"], body["description"]) == (2, definition, "keep")
    assert body["warnings"] == []
    assert list(
        FlowVersion.objects.filter(flow__name="f")
        .order_by("version")
        .values_list("version", flat=True)
    ) == [1, 2]

    # Only the description: no new version.
    response = api_client.patch(f"{URL}f/", {"description": "new"}, format="json")
    assert (response.json()["version"], response.json()["description"]) == (2, "new")


def test_put_requires_the_definition_and_replaces(api_client):
    FlowFactory(name="f", description="old")
    response = api_client.put(f"{URL}f/", {"description": "x"}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == "definition"

    response = api_client.put(f"{URL}f/", {"name": "f", "definition": PASS_FLOW}, format="json")
    assert response.status_code == 200
    body = response.json()
    # Same definition: same version; the omitted description is cleared.
    assert (body["version"], body["description"]) == (1, "")


def test_update_errors(api_client):
    FlowFactory(name="f")
    response = api_client.patch(f"{URL}f/", {"definition": BROKEN_FLOW}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "InvalidDefinition"
    assert Flow.objects.get(name="f").version == 1

    response = api_client.patch(f"{URL}f/", {"name": "renamed"}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == "name"


def test_delete(api_client):
    FlowFactory(name="f")
    assert api_client.delete(f"{URL}f/").status_code == 204
    assert not Flow.objects.exists()


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_unknown_flow_is_404(api_client, method):
    response = getattr(api_client, method)(f"{URL}nope/", {"definition": PASS_FLOW}, format="json")
    assert response.status_code == 404
    assert response.json() == {"code": "FlowNotFound", "message": "no flow named 'nope'"}


def test_a_path_that_cannot_be_a_name_is_404(api_client):
    response = api_client.get(f"{URL}9bad/")
    assert response.status_code == 404
    assert response.json()["code"] == "NotFound"
