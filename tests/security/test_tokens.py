"""Task tokens are secret. An execution waiting on a callback is walked through every page and
API read that shows it (the execution page with its "why is it waiting?" line, the live
partial, history pages and each event, the state's visits, the timeline, the approvals inbox,
the overview, the lists; the API's execution, list and every history page): its token appears
nowhere, and its fingerprint (``tt:`` and 12 hex digits) stands where the token would.

``tests/conftest.py`` already fails any test whose responses carry a live token; these tests
also say so themselves, and look for the token's secret part (its MAC) alone too.

A handler is given the real token (it must pass it on to whoever reports). One that hands it
back, in its result or in its error, must not publish it either.
"""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from executions import graph_svg
from executions.models import Execution
from executions.runtime.transition import fingerprint, token_of
from tests import conftest

from . import support

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}

LEGACY_CALLBACK_FLOW = """\
version: v1
type: flow
steps:
  - type: task
    name: AskLegacy
    resourceArn: acs:fc:::services/sec/functions/{function}
    pattern: waitForCallback
    inputMappings:
      - target: task_token
        source: $context.task.token
      - target: note
        source: $input.note
"""


def reads(execution: Execution) -> list[tuple[str, str, dict, str]]:
    """(label, URL, headers, client kind) of every read that shows this execution."""
    page = reverse("execution", args=[execution.flow.name, execution.name])
    api = f"/api/v1/flows/{execution.flow.name}/executions/{execution.name}/"
    urls = [
        ("page", page, {}, "page"),
        ("live", page + "live/", HTMX, "page"),
        ("history", page + "history/", {}, "page"),
        ("history partial", page + "history/?order=oldest", HTMX, "page"),
        ("timeline", page + "timeline/", HTMX, "page"),
        ("approvals", reverse("approvals"), {}, "page"),
        ("overview", reverse("overview"), {}, "page"),
        ("executions", reverse("executions"), {}, "page"),
        ("flow", reverse("flow", args=[execution.flow.name]), {}, "page"),
        ("api execution", api, {}, "api"),
        ("api executions", f"/api/v1/flows/{execution.flow.name}/executions/", {}, "api"),
        ("api history", api + "history/?limit=1000", {}, "api"),
        ("api audit", "/api/v1/audit/", {}, "api"),
        ("audit", reverse("audit"), {}, "page"),
    ]
    for event_id in range(1, execution.event_count + 1):
        urls.append((f"event {event_id}", page + f"history/?event={event_id}", HTMX, "page"))
    for node in graph_svg.layout_for(execution.flow_version).nodes:
        urls.append((f"visits {node.key}", page + f"states/{node.key}/", HTMX, "page"))
        urls.append((f"visits page {node.key}", page + f"states/{node.key}/", {}, "page"))
    return urls


def walk(execution: Execution, secret: str) -> dict[str, str]:
    """Every read of the execution, as an admin: label -> body. None may hold the token or
    its MAC (the part after the ids, which alone would let anyone rebuild it)."""
    admin = support.user_with("admin")
    clients = support.Clients()
    page, api = clients.page(admin), clients.api(admin)
    mac = secret.rsplit(".", 1)[1]
    bodies: dict[str, str] = {}
    for label, url, headers, kind in reads(execution):
        response = (page if kind == "page" else api).get(url, **headers)
        assert response.status_code in (200, 286), (label, response.status_code)
        body = response.content.decode()
        assert secret not in body, f"the live token is in {label}"
        assert mac not in body, f"the token's MAC is in {label}"
        bodies[label] = body
    return bodies


def test_a_waiting_callback_shows_its_fingerprint_never_its_token():
    support.make_function("sec_ok", "sechandlers.ok")
    flow = support.callback_flow("sec_callback", "sec_ok")
    task = support.waiting_task(flow, {"note": "approve me"}, name="waits")
    secret = token_of(task)
    mark = task.fingerprint
    assert mark == fingerprint(secret) and mark.startswith("tt:") and len(mark) == 15
    bodies = walk(task.execution, secret)
    # where the token would be: the why line, the step's input (its Parameters put the token
    # in the function's body), the TaskSubmitted event, the API's history
    shown = ["page", "live", "history", "history partial", "visits page States-0", "api history"]
    missing = [label for label in shown if mark not in bodies[label]]
    assert not missing, f"no fingerprint in {missing}"
    assert any(mark in body for label, body in bodies.items() if label.startswith("event "))
    history = json.loads(bodies["api history"])["events"]
    submitted = [e for e in history if e["type"] == "TaskSubmitted"]
    assert submitted and submitted[0]["detail"]["taskToken"] == mark
    # the approvals inbox names the step by its row id, never by a token
    assert f"/tasks/{task.pk}/approve/" in bodies["approvals"]


HANDBACKS = [
    ("cloudflow", "sechandlers.echo"),  # the function returns its event, token included
    ("cloudflow", "sechandlers.raise_event"),  # the function fails, its event in the message
    ("legacy", "sechandlers.echo"),
    ("legacy", "sechandlers.raise_event"),
]


@pytest.mark.parametrize(("dialect", "handler"), HANDBACKS)
def test_a_handler_that_hands_its_token_back_does_not_publish_it(dialect, handler):
    function = support.make_function("sec_handback", handler)
    if dialect == "cloudflow":
        flow = support.callback_flow("sec_handback_flow", function.name)
    else:
        definition = LEGACY_CALLBACK_FLOW.replace("{function}", function.name)
        flow = support.make_flow("sec_handback_flow", definition)
    seen = set(conftest.TOKENS_SEEN.values())  # every token flowsite derives is recorded there
    execution = support.run_pending(support.start(flow, {"note": "n"}, name="handback"))
    issued = set(conftest.TOKENS_SEEN.values()) - seen
    assert len(issued) == 1
    secret = issued.pop()
    bodies = walk(execution, secret)
    # the handler's answer is still shown, with the fingerprint where it had the token
    assert fingerprint(secret) in bodies["api history"]
