"""The overview (the last 24 hours as a chart, running now, waiting for people, latest
failures) and the audit log page (admins; filters by user, action and time)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from executions.models import Execution
from flowsite import audit
from flowsite.access import Actor
from flowsite.audit.models import AuditEntry
from tests.factories import FAIL_FLOW, PASS_FLOW, WAIT_FLOW, FlowFactory

from . import lists_support
from .lists_support import assert_no_markup_from_users, start, waiting_approval

# Fixtures shared by the list pages' tests.
clients = lists_support.clients
demo = lists_support.demo
plain_static = lists_support.plain_static

pytestmark = pytest.mark.django_db


def test_the_overview_counts_and_lists(clients, demo):
    FlowFactory(name="orders", definition=PASS_FLOW)
    FlowFactory(name="breaks", definition=FAIL_FLOW.replace("it broke", "x" * 1000))
    FlowFactory(name="waits", definition=WAIT_FLOW)
    start("orders", {"a": 1}, name="ok")
    start("breaks", name="bad")
    start("waits", name="w")
    task = waiting_approval()
    response = clients["viewer"].get("/")
    context = response.context
    assert context["running_count"] == 2
    assert {e.name for e in context["running"]} == {"w", task.execution.name}
    assert [t.pk for t in context["waiting"]] == [task.pk]
    assert [e.name for e in context["failures"]] == ["bad"]
    assert context["failures"][0].message == "x" * 300  # cut short for the page
    chart = context["chart"]
    assert chart["total"] == 4 and chart["failed_total"] == 1
    current = chart["bars"][-1]
    assert current["total"] == 4
    assert "1 succeeded" in current["summary"] and "2 running" in current["summary"]
    body = response.content.decode()
    assert '<svg class="chart"' in body and 'role="img"' in body
    assert 'class="bar--succeeded"' in body and 'class="bar--failed"' in body
    assert "The chart as a table" in body  # the text alternative
    assert '<code class="failure__code">Boom</code>' in body
    assert reverse("execution", args=["breaks", "bad"]) in body
    assert reverse("approvals") in body


def test_the_chart_has_24_hourly_buckets_and_ignores_older_executions(clients):
    FlowFactory(name="orders", definition=PASS_FLOW)
    now = timezone.now()
    for i, hours in enumerate((0, 5, 5, 23, 30)):
        execution = start("orders", {"a": i}, name=f"e{i}")
        Execution.objects.filter(pk=execution.pk).update(started_at=now - timedelta(hours=hours))
    chart = clients["viewer"].get("/").context["chart"]
    assert len(chart["bars"]) == 24
    totals = [bar["total"] for bar in chart["bars"]]
    assert sum(totals) == 4  # the one 30 hours ago is not in the last 24
    assert totals[-1] == 1 and totals[-6] == 2 and totals[0] == 1
    for bar in chart["bars"]:
        heights = sum(segment["h"] for segment in bar["segments"])
        assert heights <= 200


def test_an_empty_overview_has_hints(clients):
    body = clients["viewer"].get("/").content.decode()
    assert "Nothing is running" in body and "No failures" in body
    assert "No step waits for a person" in body


def test_markup_in_errors_and_inputs_renders_as_text_on_the_overview(clients, demo):
    FlowFactory(name="breaks", definition=FAIL_FLOW.replace("it broke", "<script>x</script>"))
    for i, payload in enumerate(lists_support.PAYLOADS):
        start("breaks", {"p": payload}, name=f"h{i}")
        waiting_approval({"request_id": payload, "approver": payload, "summary": payload})
    assert_no_markup_from_users(clients["viewer"].get("/").content.decode())


# --- the audit log -----------------------------------------------------------------------------


@pytest.fixture
def entries(clients):
    alice = clients["operator"].user
    at = [datetime(2024, 5, 1, h, tzinfo=UTC) for h in (8, 9, 10, 11)]
    rows = [
        (Actor(user=alice, via="web", ip="10.0.0.1"), "execution.start", "orders/a"),
        (Actor(user=alice, via="api", ip="10.0.0.2"), "execution.stop", "orders/a"),
        (Actor(user=clients["approver"].user, via="web"), "task.approve", "orders/b/Ask"),
        (Actor(user=None, via="system"), "flow.create", "<script>alert(1)</script>"),
    ]
    for (actor, action, name), when in zip(rows, at, strict=True):
        audit.record(actor, action, "execution", name, reason="<img src=x onerror=alert(1)>")
        # The time is set by the database and entries are append-only (the model refuses
        # updates; on PostgreSQL a trigger does too): on SQLite, set it with SQL.
        from django.db import connection

        if connection.vendor != "sqlite":
            continue
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE audit_auditentry SET at = %s WHERE id = %s",
                [when, AuditEntry.objects.order_by("-id").values_list("id", flat=True)[0]],
            )
    return alice


def actions(response) -> list[str]:
    return [e.action for e in response.context["page"].rows]


def test_the_audit_log_lists_newest_first_with_who_via_and_where(clients, entries):
    response = clients["admin"].get(reverse("audit"))
    assert actions(response) == ["flow.create", "task.approve", "execution.stop", "execution.start"]
    body = response.content.decode()
    assert "10.0.0.2" in body and ">api<" in body
    assert_no_markup_from_users(body)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"user": "__alice__"}, ["execution.stop", "execution.start"]),
        ({"action": "task.approve"}, ["task.approve"]),
        ({"from": "2024-05-01T09:30"}, ["flow.create", "task.approve"]),
        ({"to": "2024-05-01T09:30"}, ["execution.stop", "execution.start"]),
        ({"user": "nobody"}, []),
    ],
)
def test_audit_filters(clients, entries, query, expected):
    from django.db import connection

    if ("from" in query or "to" in query) and connection.vendor != "sqlite":
        pytest.skip("entries' times are set with SQL that PostgreSQL's append-only trigger refuses")
    if query.get("user") == "__alice__":
        query = {"user": entries.username}
    assert actions(clients["admin"].get(reverse("audit"), query)) == expected


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"action": "<script>"}, "action"),
        ({"action": "x" * 200}, "action"),
        ({"user": "u" * 500}, "user"),
        ({"from": "soon"}, "from"),
    ],
)
def test_bad_audit_filters_are_inline_errors(clients, entries, query, field):
    response = clients["admin"].get(reverse("audit"), query)
    assert response.status_code == 200
    assert set(response.context["errors"]) == {field}
    assert_no_markup_from_users(response.content.decode())


def test_audit_pages_keep_the_filters(clients, entries, monkeypatch):
    from executions import selectors

    monkeypatch.setitem(selectors.keyset_page.__kwdefaults__, "size", 1)
    first = clients["admin"].get(reverse("audit"), {"user": entries.username})
    assert actions(first) == ["execution.stop"]
    body = first.content.decode()
    marker = 'rel="next" href="'
    link = body[body.index(marker) + len(marker) :].split('"')[0].replace("&amp;", "&")
    assert f"user={entries.username}" in link
    assert actions(clients["admin"].get(reverse("audit") + link)) == ["execution.start"]
