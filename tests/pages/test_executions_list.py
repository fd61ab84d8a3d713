"""The executions list: each filter (status, flow, name prefix, time, a condition on an input
field), hostile filters answered inline, keyset pages that keep the filters, the htmx
partial, and the bulk stop with its typed confirmation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import pytest
from django.urls import reverse

from executions.models import Execution, ExecutionStatus
from flowsite.audit.models import AuditEntry
from tests.factories import FAIL_FLOW, PASS_FLOW, WAIT_FLOW, FlowFactory

from . import lists_support
from .lists_support import assert_no_markup_from_users, start

# Fixtures shared by the list pages' tests.
clients = lists_support.clients
plain_static = lists_support.plain_static

pytestmark = pytest.mark.django_db

URL = "/executions/"


@pytest.fixture
def data(db):
    FlowFactory(name="orders", definition=PASS_FLOW)
    FlowFactory(name="breaks", definition=FAIL_FLOW)
    FlowFactory(name="waits", definition=WAIT_FLOW)
    inputs = {
        "o-1": {"a": 1, "order": {"customer_id": 42, "items": [{"sku": "A-1"}], "tags": ["vip"]}},
        "o-2": {"a": 2, "order": {"customer_id": "42", "note": "call first"}},
        "o-3": {"a": 3, "order": {"customer_id": 7, "extra": True}},
        "other-4": {"a": 4, "order": {"customer_id": 42.0, "items": [{"sku": "B-2"}]}},
    }
    for name, value in inputs.items():
        start("orders", value, name=name)
    start("breaks", {"a": 5}, name="b-1")
    start("waits", {"a": 6, "order": {"customer_id": 100}}, name="w-1")
    start("waits", {"a": 7}, name="w-2")


def names(response) -> list[str]:
    return [e.name for e in response.context["page"].rows]


def test_the_list_shows_every_flow_newest_first(clients, data):
    response = clients["viewer"].get(URL)
    assert response.status_code == 200
    assert names(response) == ["w-2", "w-1", "b-1", "other-4", "o-3", "o-2", "o-1"]
    body = response.content.decode()
    assert reverse("execution", args=["breaks", "b-1"]) in body
    assert "<code>Boom</code>" in body  # the error code column


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status": "Failed"}, ["b-1"]),
        ({"status": ["Running", "Failed"]}, ["w-2", "w-1", "b-1"]),
        ({"flow": "waits"}, ["w-2", "w-1"]),
        ({"flow": "waits", "status": "Succeeded"}, []),
        ({"name": "o-"}, ["o-3", "o-2", "o-1"]),
        ({"name": "O-"}, []),
        ({"name": "o-", "flow": "orders", "status": "Succeeded"}, ["o-3", "o-2", "o-1"]),
    ],
)
def test_filters_by_status_flow_and_name_prefix(clients, data, query, expected):
    assert names(clients["viewer"].get(URL, query)) == expected


def test_the_time_filter_is_utc(clients, data):
    Execution.objects.filter(name="o-1").update(started_at=datetime(2024, 5, 1, 10, 0, tzinfo=UTC))
    Execution.objects.filter(name="o-2").update(started_at=datetime(2024, 5, 1, 12, 0, tzinfo=UTC))
    response = clients["viewer"].get(
        URL, {"started_from": "2024-05-01T09:30", "started_to": "2024-05-01T11:00"}
    )
    assert names(response) == ["o-1"]
    response = clients["viewer"].get(URL, {"started_to": "2024-05-01T12:00"})
    assert names(response) == ["o-1"]
    assert "(UTC)" in response.content.decode()


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("order.customer_id = 42", ["other-4", "o-1"]),  # 42.0 is the number 42
        ('order.customer_id = "42"', ["o-2"]),
        ("order.customer_id != 42", ["w-1", "o-3", "o-2"]),
        ("order.customer_id > 41", ["w-1", "other-4", "o-1"]),
        ("order.customer_id <= 7", ["o-3"]),
        ('order.customer_id >= "4"', ["o-2"]),
        ("order.items[0].sku = A-1", ["o-1"]),
        ('order.items[0].sku = "B-2"', ["other-4"]),
        ("order.items[1].sku = A-1", []),
        ("order.tags contains vip", ["o-1"]),
        ("order.note contains first", ["o-2"]),
        ("order.note contains First", []),
        ("order.extra = true", ["o-3"]),
        ('order = {"customer_id": 7, "extra": true}', ["o-3"]),
        ('order = {"customer_id": 7}', []),  # equality, not containment
        ("a = 5", ["b-1"]),
        ("a >= 6", ["w-2", "w-1"]),
        ("missing = 1", []),
        ("__class__ = 1", []),
        ("a = <script>alert(1)</script>", []),
    ],
)
def test_a_condition_on_an_input_field(clients, data, condition, expected):
    response = clients["viewer"].get(URL, {"q": condition})
    assert response.context["errors"] == {}
    assert names(response) == expected


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("a = ", "write a value after '='"),
        ("a =", "write a value after '='"),
        ("a", "write a condition as"),
        ("= 1", "write a condition as"),
        ("a[99999999999] = 1", "a list index is at most 100000"),
        ("a[99999999999999999999999] = 1", "a path is keys"),
        ("[0] = 1", "starts with a key"),
        ("a.b.c.d.e.f.g.h.i = 1", "at most 8 parts"),
        ("a..b = 1", "a path is keys"),
        ("a;drop table x = 1", "write a condition as"),
        ("a' OR 1=1 -- = 1", "write a condition as"),
        ("a;b = 1", "a path is keys"),
        ("a = 1e999", "numbers must be finite"),
        ("a = 123456789012345678901234567890", "at most 9007199254740992"),
        ("a > true", "compares with a number or a string"),
        ("a > {}", "compares with a number or a string"),
        ("a contains null", "contains takes a string"),
        ("x" * 10_000 + " = 1", "at most 500 characters"),
        ("a = " + "x" * 10_000, "at most 500 characters"),
        ("a = " + "[" * 400 + "]" * 96, "a condition as"),  # nothing to parse as JSON: text
    ],
)
def test_hostile_conditions_are_inline_errors_never_500(clients, data, condition, message):
    response = clients["viewer"].get(URL, {"q": condition})
    assert response.status_code == 200
    errors = response.context["errors"]
    if message == "a condition as":  # not JSON: a string value; fine, and nothing matches
        assert names(response) == [] and (errors == {} or "q" in errors)
        return
    assert message in errors["q"], errors
    body = response.content.decode()
    assert 'id="f-q-error" role="alert"' in body
    assert "Fix the filter above" in body
    assert response.context["page"].rows == []


def test_deeply_nested_values_are_refused_or_text(clients, data):
    response = clients["viewer"].get(URL, {"q": "a = " + "[" * 240 + "]" * 240})
    assert response.status_code == 200
    assert "q" in response.context["errors"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": "Exploded"}, "status"),
        ({"status": "<script>"}, "status"),
        ({"flow": "<script>alert(1)</script>"}, "flow"),
        ({"name": "a b"}, "name"),
        ({"name": "x" * 300}, "name"),
        ({"started_from": "yesterday"}, "started_from"),
        ({"started_to": "99999-01-01T00:00"}, "started_to"),
        ({"started_from": "x" * 10_000}, "started_from"),
    ],
)
def test_bad_filters_are_inline_errors(clients, data, query, field):
    response = clients["viewer"].get(URL, query)
    assert response.status_code == 200
    assert set(response.context["errors"]) == {field}
    assert_no_markup_from_users(response.content.decode())


def test_garbage_cursors_are_ignored(clients, data):
    for value in ("abc", "-1", "0", "99999999999999999999999", "9223372036854775808", "1e5"):
        response = clients["viewer"].get(URL, {"before": value, "after": value})
        assert response.status_code == 200
        assert len(names(response)) == 7


def _link(body: str, rel: str) -> str:
    marker = f'rel="{rel}" href="'
    start_at = body.index(marker) + len(marker)
    return body[start_at : body.index('"', start_at)].replace("&amp;", "&")


def test_pages_keep_the_filters(clients, data, monkeypatch):
    from executions import selectors

    monkeypatch.setitem(selectors.keyset_page.__kwdefaults__, "size", 2)
    query = {"flow": "orders", "q": "a >= 1", "status": "Succeeded"}
    first = clients["viewer"].get(URL, query)
    assert names(first) == ["other-4", "o-3"]
    older = _link(first.content.decode(), "next")
    params = parse_qs(urlparse(older).query)
    assert params["flow"] == ["orders"] and params["q"] == ["a >= 1"]
    assert params["status"] == ["Succeeded"] and "before" in params
    second = clients["viewer"].get(URL + older)
    assert names(second) == ["o-2", "o-1"]
    body = second.content.decode()
    assert 'rel="next"' not in body  # the last page
    newer = _link(body, "prev")
    assert parse_qs(urlparse(newer).query)["q"] == ["a >= 1"]
    back = clients["viewer"].get(URL + newer)
    assert names(back) == ["other-4", "o-3"]


def test_htmx_gets_the_results_partial(clients, data):
    response = clients["viewer"].get(
        URL,
        {"status": "Running"},
        headers={"HX-Request": "true", "HX-Target": "executions-results"},
    )
    body = response.content.decode()
    assert body.lstrip().startswith('<div id="executions-results"')
    assert "<html" not in body
    assert names(response) == ["w-2", "w-1"]
    full = clients["viewer"].get(URL, {"status": "Running"})
    assert "<html" in full.content.decode()
    # the form works without JavaScript: a plain GET form to the same URL
    assert 'method="get" action="/executions/"' in full.content.decode()
    assert 'hx-push-url="true"' in full.content.decode()


def test_markup_in_inputs_errors_and_names_renders_as_text(clients):
    FlowFactory(name="breaks", definition=FAIL_FLOW.replace("it broke", "<script>x</script>"))
    for i, payload in enumerate(lists_support.PAYLOADS):
        start("breaks", {"p": payload}, name=f"h-{i}")
    for query in ({}, {"q": "p = <script>alert(1)</script>"}, {"q": lists_support.PAYLOADS[1]}):
        response = clients["operator"].get(URL, query)
        assert response.status_code == 200
        assert_no_markup_from_users(response.content.decode())


# --- bulk stop ---------------------------------------------------------------------------------


def test_operators_stop_several_with_a_typed_confirmation(clients, data):
    ids = list(
        Execution.objects.filter(name__in=["w-1", "w-2", "o-1"]).values_list("pk", flat=True)
    )
    response = clients["operator"].post(
        reverse("executions-stop"),
        {"ids": ids, "confirm": "3", "reason": "maintenance", "next": "/executions/?flow=waits"},
    )
    assert response.status_code == 302 and response["Location"] == "/executions/?flow=waits"
    assert set(
        Execution.objects.filter(status=ExecutionStatus.STOPPED).values_list("name", flat=True)
    ) == {"w-1", "w-2"}
    page = clients["operator"].get(response["Location"]).content.decode()
    assert "Stopped 2:" in page and "Not running, left as they were (1): o-1" in page
    entries = AuditEntry.objects.filter(action="execution.stop")
    assert entries.count() == 2
    assert {e.detail["reason"] for e in entries} == {"maintenance"}
    assert {e.via for e in entries} == {"web"}


def test_the_word_stop_confirms_too(clients, data):
    w1 = Execution.objects.get(name="w-1")
    clients["operator"].post(reverse("executions-stop"), {"ids": [w1.pk], "confirm": "stop"})
    w1.refresh_from_db()
    assert w1.status == ExecutionStatus.STOPPED


@pytest.mark.parametrize(
    ("data_", "text"),
    [
        ({"confirm": "1"}, "type 2"),
        ({"confirm": ""}, "type 2"),
        ({"confirm": "yes"}, "type 2"),
        ({"ids": [], "confirm": "STOP"}, "Select the executions"),
        ({"ids": ["x", "-1", "99999999999999999999999"], "confirm": "STOP"}, "Select the"),
    ],
)
def test_a_bulk_stop_without_confirmation_stops_nothing(clients, data, data_, text):
    ids = list(Execution.objects.filter(name__in=["w-1", "w-2"]).values_list("pk", flat=True))
    response = clients["operator"].post(
        reverse("executions-stop"), {"ids": ids, **data_}, follow=True
    )
    assert text in response.content.decode()
    assert Execution.objects.filter(status=ExecutionStatus.RUNNING).count() == 2


def test_a_bulk_stop_is_bounded(clients, data):
    response = clients["operator"].post(
        reverse("executions-stop"), {"ids": list(range(1, 300)), "confirm": "STOP"}, follow=True
    )
    assert "at most 200" in response.content.decode()
    assert Execution.objects.filter(status=ExecutionStatus.RUNNING).count() == 2


def test_next_must_be_a_local_path(clients, data):
    w1 = Execution.objects.get(name="w-1")
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:x"):
        response = clients["operator"].post(
            reverse("executions-stop"), {"ids": [w1.pk], "confirm": "1", "next": target}
        )
        assert response["Location"] == "/executions/", target


def test_the_running_count_link_on_the_overview_lists_open_executions(clients, data):
    response = clients["viewer"].get(URL + "?status=Running&status=Starting")
    assert names(response) == ["w-2", "w-1"]


def test_durations(clients, data):
    Execution.objects.filter(name="o-1").update(
        started_at=datetime(2024, 5, 1, 10, 0, tzinfo=UTC),
        stopped_at=datetime(2024, 5, 1, 10, 2, 5, tzinfo=UTC),
    )
    response = clients["viewer"].get(URL, {"name": "o-1"})
    assert response.context["page"].rows[0].duration_seconds == 125
    assert "2 min 5 s" in response.content.decode()
    assert timedelta(seconds=125)
