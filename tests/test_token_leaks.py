"""The suite-wide check that no response carries a live task token (``tests/conftest.py``)
really looks at every response: a response that does carry one is caught."""

from __future__ import annotations

import pytest

from executions.runtime import transition
from tests import conftest
from tests.factories import PASS_FLOW, FlowFactory

pytestmark = pytest.mark.django_db


def test_the_leak_detector_sees_a_token_in_a_response(api_client):
    token = transition.task_token(1, "salt", 2, 3)  # recorded as a live token
    FlowFactory(name="echo", definition=PASS_FLOW)
    # Someone puts a token into an execution's input: the API shows inputs, so it leaks.
    api_client.post(
        "/api/v1/flows/echo/executions/", {"name": "e", "input": {"a": token}}, format="json"
    )
    api_client.get("/api/v1/flows/echo/executions/e/")
    assert any(found == token for _, found in conftest.LEAKS)
    conftest.LEAKS.clear()  # this test's leak was deliberate
