"""Whatever a client sends, the API answers with a 2xx or a 4xx carrying a stable code: never a
500. Hypothesis generates JSON bodies of every shape and definition texts mixing YAML syntax,
FDL keys and garbage."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.django_db

FUZZ = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)

FDL_WORDS = [
    "Type: StateMachine",
    "SpecVersion: v1",
    "StartAt: A",
    "States:",
    "  - Type: Pass",
    "    Name: A",
    "    End: true",
    "    Next: B",
    "  - Type: Choice",
    "    Branches:",
    "      - Condition: $Input.a > 1",
    "    Default: A",
    "version: v1",
    "type: flow",
    "steps:",
    "  - type: task",
    "    name: t",
    "    resourceArn: acs:fc:::services/s/functions/f",
    "&a [1]",
    "*a",
    "!!python/object/apply:os.system ['id']",
    "{",
    "]",
    "- -",
    ": :",
    "\t",
    "    InputConstructor:",
    "      x.$: length(",
    "      $: $Input",
    "    Seconds.$: $Input.s",
    "  - Type: Map",
    "    ItemsPath: $Input.items",
    "    Processor:",
    "{{7*7}}",
]
definitions = st.lists(st.sampled_from(FDL_WORDS), max_size=14).map("\n".join) | st.text(
    max_size=200
)


def assert_clean(response):
    assert response.status_code < 500, response.content[:500]
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body.get("code"), str) and body["code"], body
        assert isinstance(body.get("message"), str), body


@FUZZ
@given(body=json_values)
def test_any_json_body_on_every_write_endpoint(api_client, body):
    from executions.models import Flow
    from tests.factories import FlowFactory

    flow = Flow.objects.filter(name="fz").first() or FlowFactory(name="fz")
    for path in (
        "/api/v1/flows/",
        "/api/v1/functions/",
        f"/api/v1/flows/{flow.name}/executions/",
        "/api/v1/tasks/report-succeeded/",
        "/api/v1/tasks/report-failed/",
        "/api/v1/tasks/heartbeat/",
    ):
        response = api_client.post(path, json.dumps(body), content_type="application/json")
        assert_clean(response)
    assert_clean(
        api_client.patch(
            f"/api/v1/flows/{flow.name}/", json.dumps(body), content_type="application/json"
        )
    )


@FUZZ
@given(text=definitions)
def test_any_definition_text(api_client, text):
    response = api_client.post(
        "/api/v1/flows/", {"name": "fuzzed", "definition": text}, format="json"
    )
    assert_clean(response)
    if response.status_code == 201:
        api_client.delete("/api/v1/flows/fuzzed/")


@FUZZ
@given(raw=st.binary(max_size=64))
def test_malformed_bodies(api_client, raw):
    response = api_client.generic("POST", "/api/v1/flows/", raw, content_type="application/json")
    assert_clean(response)
