"""Hostile values in every input of the dashboard, as a logged-in admin would send them: query
parameters of every page and partial (huge, negative and non-ASCII numbers, markup, NUL, very
long text, lists where one value is expected), and form bodies (deep JSON, numbers JSON has no
room for, NaN, lone surrogates, huge texts). Each answer is a page or a coded refusal, never a
500, and a refused form changes nothing."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from django.urls import reverse

from executions.models import Execution, TaskToken
from flowsite.audit.models import AuditEntry

from . import support
from .support import Page
from .test_authz_matrix import API_ROUTES, METHODS, NO, TABLE, read_targets, site_routes

pytestmark = pytest.mark.django_db

# The query parameters the pages read (a filter, a cursor, a choice), all at once.
PARAMS = (
    "before", "after", "cursor", "since", "event", "version", "order", "type", "failures",
    "q", "status", "flow", "name", "started_from", "started_to", "user", "action", "from",
    "to", "input_from", "history_live", "next",
)  # fmt: skip
VALUES = (
    "9" * 40, "-1", "1e309", "²", "1\x00", "<script>alert(1)</script>", "a" * 5000,
    "order.customer_id = 1e999 and", "2026-13-45T99:99",)  # fmt: skip


# Routes that answer htmx with a partial of their own.
PARTIALS = {"executions", "execution-live", "execution-history", "execution-timeline",
            "execution-state"}  # fmt: skip


def test_every_page_takes_any_query_string():
    world = support.make_world()
    admin = support.page_client(support.user_with("admin"))
    routes, _ = site_routes()
    problems = []
    asked = 0
    for route in sorted(routes):
        if route in API_ROUTES or TABLE[route][METHODS.index("GET")] == NO:
            continue
        if route in ("api-docs", "healthz", "login"):
            continue
        url = reverse(route, kwargs=read_targets(route, world)[0][1])
        for value in VALUES:
            query = urlencode([(p, value) for p in PARAMS] + [("status", "Running")])
            for headers in ({}, {"HTTP_HX_REQUEST": "true"}) if route in PARTIALS else ({},):
                response = admin.get(f"{url}?{query}", **headers)
                asked += 1
                if response.status_code >= 500:
                    problems.append(f"{url} {value[:20]!r}: {response.status_code}")
                elif response.get("Content-Type", "").startswith("text/html"):
                    html = response.content.decode()
                    found = support.markup_problems(Page(html)) + support.hostile_source_problems(
                        html
                    )
                    problems += [f"{url} {value[:20]!r}: {p}" for p in found]
    assert not problems, problems
    assert asked > 150


DEEP = "[" * 100_000 + "]" * 100_000
ODD_JSON = (
    DEEP,
    '{"a": ' * 5000 + "1" + "}" * 5000,
    '{"a": NaN}',
    '{"a": Infinity}',
    '{"a": 1e400}',
    '{"a": ' + "9" * 5000 + "}",
    '{"a": "\\ud800"}',
    '{"a": "\\u0000"}',
    '{"a": 1}' + " " * 10 + "x",
    "{" * 3,
)


def test_forms_refuse_odd_json_with_a_message_and_change_nothing(worker_runs):
    """The start form and the approval refuse what the services cannot store (400/413, the
    reason beside the field); the invoke form sends its text to the handler as it is, so it
    takes what Python's json reads (NaN, Infinity) and refuses the rest, never with a 500."""
    world = support.make_world()
    admin = support.page_client(support.user_with("admin"))
    task = world.fresh_task()
    before = (
        Execution.objects.count(),
        AuditEntry.objects.exclude(action="function.invoke").count(),
    )
    start = reverse("flow-start", args=[world.flow.name])
    approve = reverse("task-approve", args=[task.pk])
    invoke = reverse("function-invoke", args=[world.function.name])
    problems = []
    for text in ODD_JSON:
        for url, data, headers, ok in (
            (start, {"input": text}, {}, (400, 413)),
            (approve, {"output": text}, {"HTTP_HX_REQUEST": "true"}, (400, 413)),
            (invoke, {"body": text, "kind": "json"}, {}, (200, 400, 413)),
        ):
            response = admin.post(url, data, **headers)
            if response.status_code not in ok:
                problems.append(f"{url} {text[:30]!r}: {response.status_code}")
            elif response.status_code != 200:
                assert b'role="alert"' in response.content or b"error" in response.content
    assert not problems, problems
    after = (
        Execution.objects.count(),
        AuditEntry.objects.exclude(action="function.invoke").count(),
    )
    assert after == before
    assert TaskToken.objects.get(pk=task.pk).is_open


def test_the_api_refuses_odd_json_with_a_code():
    world = support.make_world()
    api = support.api_client(support.user_with("admin"))
    before = Execution.objects.count()
    for text in ODD_JSON:
        body = '{"name": "odd", "input": ' + text + "}"
        response = api.post(
            f"/api/v1/flows/{world.flow.name}/executions/", body, content_type="application/json"
        )
        assert response.status_code in (400, 413), (text[:30], response.status_code)
        assert response.json()["code"] in ("MalformedJSON", "InvalidArgument", "EntityTooLarge")
    assert Execution.objects.count() == before
