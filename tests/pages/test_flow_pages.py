"""The flows list and a flow's page: current version, last execution and counts, the
highlighted definition, versions, and the start form with its errors shown inline."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from executions import services
from executions.models import Execution, ExecutionStatus
from flowsite.access import SYSTEM
from flowsite.audit.models import AuditEntry
from tests.factories import FAIL_FLOW, PASS_FLOW, WAIT_FLOW, FlowFactory

from . import lists_support
from .lists_support import assert_no_markup_from_users, client_for, start

# Fixtures shared by the list pages' tests.
clients = lists_support.clients
plain_static = lists_support.plain_static

pytestmark = pytest.mark.django_db


def test_the_flows_list_shows_version_last_execution_and_counts(clients):
    flow = FlowFactory(name="orders", definition=PASS_FLOW, description="Take orders")
    services.flow_update(flow=flow, definition=PASS_FLOW.replace("x.$", "y.$"), actor=SYSTEM)
    for i in range(3):
        start("orders", {"a": i}, name=f"ok-{i}")
    FlowFactory(name="breaks", definition=FAIL_FLOW)
    start("breaks", name="bad-1")
    FlowFactory(name="idle", definition=WAIT_FLOW)
    response = clients["viewer"].get(reverse("flows"))
    assert response.status_code == 200
    flows = {f.name: f for f in response.context["flows"]}
    assert [f.name for f in response.context["flows"]] == ["breaks", "idle", "orders"]
    assert flows["orders"].version == 2
    assert flows["orders"].last.name == "ok-2"
    assert flows["orders"].counts == [("Succeeded", 3)]
    assert flows["breaks"].counts == [("Failed", 1)]
    assert flows["idle"].last is None and flows["idle"].counts == []
    body = response.content.decode()
    assert ">v2<" in body and "never run" in body and "Take orders" in body
    assert reverse("execution", args=["orders", "ok-2"]) in body


def test_the_flows_list_counts_the_last_24_hours_and_links_to_the_same_executions(clients):
    from datetime import timedelta

    from django.utils import timezone

    FlowFactory(name="orders", definition=PASS_FLOW)
    for i in range(3):
        start("orders", {"a": i}, name=f"ok-{i}")
    old = Execution.objects.get(name="ok-0")
    Execution.objects.filter(pk=old.pk).update(started_at=timezone.now() - timedelta(hours=25))
    response = clients["viewer"].get(reverse("flows"))
    flows = {f.name: f for f in response.context["flows"]}
    assert flows["orders"].counts == [("Succeeded", 2)]  # the one of yesterday is not counted
    assert flows["orders"].last.name == "ok-2"
    since = response.context["since"]
    link = f"?flow=orders&amp;status=Succeeded&amp;started_from={since}"
    assert link in response.content.decode()
    # The list that link opens holds exactly the executions counted.
    listed = clients["viewer"].get(reverse("executions") + link.replace("&amp;", "&"))
    assert sorted(e.name for e in listed.context["page"].rows) == ["ok-1", "ok-2"]


def test_the_flows_list_pages_by_name(clients, monkeypatch):
    from executions import selectors

    real = selectors.flows_page
    monkeypatch.setattr(
        selectors, "flows_page", lambda after=None, since=None: real(after=after, size=2)
    )
    for name in ("a1", "a2", "a3"):
        FlowFactory(name=name)
    first = clients["viewer"].get(reverse("flows"))
    assert [f.name for f in first.context["flows"]] == ["a1", "a2"]
    assert 'href="?after=a2"' in first.content.decode()
    second = clients["viewer"].get(reverse("flows") + "?after=a2")
    assert [f.name for f in second.context["flows"]] == ["a3"]
    # a hand-made cursor that is no name is ignored
    odd = clients["viewer"].get(reverse("flows") + "?after=%3Cscript%3E")
    assert odd.status_code == 200 and [f.name for f in odd.context["flows"]] == ["a1", "a2"]


def test_no_flows_shows_how_to_make_one(clients):
    body = clients["viewer"].get(reverse("flows")).content.decode()
    assert "No flows yet" in body and "POST /api/v1/flows/" in body and "flowsite_demo" in body


def test_the_flow_page_highlights_the_definition_and_lists_versions(clients):
    flow = FlowFactory(name="orders", definition=PASS_FLOW, description="Take orders")
    services.flow_update(
        flow=flow,
        definition=PASS_FLOW.replace("Name: P", "Name: Q").replace("At: P", "At: Q"),
        actor=client_for("admin").user,
    )
    response = clients["viewer"].get(reverse("flow", args=["orders"]))
    body = response.content.decode()
    assert response.status_code == 200
    assert '<div class="highlight"><pre>' in body  # Pygments, with classes only
    assert '<span class="nt">StartAt</span>' in body and "Q" in body
    assert " style=" not in body
    versions = response.context["versions"]
    assert [v.version for v in versions] == [2, 1]
    assert versions[0].created_by is not None
    assert "?version=1" in body
    old = clients["viewer"].get(reverse("flow", args=["orders"]) + "?version=1")
    assert old.context["version"].version == 1
    assert "current is v2" in old.content.decode()
    missing = clients["viewer"].get(reverse("flow", args=["orders"]) + "?version=99")
    assert missing.context["version"].version == 2
    assert "has no version 99" in missing.content.decode()
    junk = clients["viewer"].get(reverse("flow", args=["orders"]) + "?version=99999999999999999")
    assert junk.status_code == 200 and junk.context["version"].version == 2


def test_a_json_definition_is_highlighted_as_json(clients):
    definition = json.dumps(
        {
            "Type": "StateMachine",
            "Name": "j",
            "SpecVersion": "v1",
            "StartAt": "P",
            "States": [{"Type": "Pass", "Name": "P", "End": True}],
        }
    )
    FlowFactory(name="jsonflow", definition=definition)
    body = clients["viewer"].get(reverse("flow", args=["jsonflow"])).content.decode()
    assert '<span class="nt">"StartAt"</span>' in body


def test_the_diagram_is_embedded_when_the_execution_page_module_provides_it(clients, monkeypatch):
    from django.utils.safestring import mark_safe

    from executions import views

    real = views.flow_diagram
    FlowFactory(name="orders")
    monkeypatch.setattr(views, "flow_diagram", lambda version: mark_safe('<svg id="g"></svg>'))
    body = clients["viewer"].get(reverse("flow", args=["orders"])).content.decode()
    assert '<div class="diagram graph-wrap"><svg id="g"></svg></div>' in body
    assert "flowsite/execution.css" in body  # the graph's own styles

    def broken(version):
        raise RuntimeError("no graphviz")

    import executions

    monkeypatch.setattr(views, "flow_diagram", real)
    fake = type("M", (), {"flow_svg": staticmethod(broken)})
    monkeypatch.setattr(executions, "graph_svg", fake, raising=False)
    monkeypatch.setitem(__import__("sys").modules, "executions.graph_svg", fake)
    response = clients["viewer"].get(reverse("flow", args=["orders"]))
    assert response.status_code == 200 and 'class="diagram"' not in response.content.decode()


# --- the start form ----------------------------------------------------------------------------


def start_url(flow="orders"):
    return reverse("flow-start", args=[flow])


def test_starting_redirects_to_the_new_execution(clients):
    FlowFactory(name="orders", definition=PASS_FLOW)
    response = clients["operator"].post(start_url(), {"name": "first", "input": '{"a": 7}'})
    assert response.status_code == 302
    assert response["Location"] == reverse("execution", args=["orders", "first"])
    execution = Execution.objects.get(name="first")
    assert execution.input == {"a": 7} and execution.status == ExecutionStatus.SUCCEEDED
    assert execution.started_by == clients["operator"].user
    entry = AuditEntry.objects.get(action="execution.start")
    assert entry.via == "web" and entry.actor_name == clients["operator"].user.username
    # no name: one is made up; an empty input is {}
    response = clients["operator"].post(start_url(), {"name": "", "input": ""})
    assert response.status_code == 302
    assert Execution.objects.filter(flow__name="orders", input={}).count() == 1


def test_starting_a_running_name_goes_to_the_running_one(clients):
    FlowFactory(name="orders", definition=WAIT_FLOW)
    clients["operator"].post(start_url(), {"name": "w", "input": "{}"})
    response = clients["operator"].post(start_url(), {"name": "w", "input": "{}"}, follow=False)
    assert response.status_code == 302
    assert Execution.objects.filter(name="w").count() == 1


@pytest.mark.parametrize(
    ("data", "field", "text", "status"),
    [
        ({"input": '{"a": 1,\n "b": }'}, "input", "line 2, column 7", 400),
        ({"input": "[1, 2]"}, "input", "must be a JSON object", 400),
        ({"input": '"text"'}, "input", "must be a JSON object", 400),
        ({"input": "[" * 5000 + "]" * 5000}, "input", "", 400),
        ({"name": "<script>alert(1)</script>", "input": "{}"}, "name", "letters, digits", 400),
        ({"name": "a" * 200, "input": "{}"}, "name", "letters, digits", 400),
        ({"name": "taken", "input": "{}"}, "name", "already ran", 409),
        ({"input": json.dumps({"big": "x" * 300_000})}, "input", "limit", 413),
        ({"input": json.dumps({"n": 1e308 * 10}).replace("Infinity", "1e999")}, "input", "", 400),
    ],
)
def test_start_errors_are_shown_inline_and_nothing_starts(clients, data, field, text, status):
    FlowFactory(name="orders", definition=PASS_FLOW)
    start("orders", {"a": 1}, name="taken")
    before = Execution.objects.count()
    response = clients["operator"].post(start_url(), data)
    assert response.status_code == status
    errors = response.context["form"]["errors"]
    assert set(errors) == {field}, errors
    assert text in errors[field]
    body = response.content.decode()
    assert f'id="start-{field}-error" role="alert"' in body
    assert 'aria-invalid="true"' in body
    assert Execution.objects.count() == before
    assert_no_markup_from_users(body)


def test_input_from_prefills_the_start_form(clients):
    FlowFactory(name="orders", definition=PASS_FLOW)
    start("orders", {"a": 5, "note": "</textarea><script>alert(1)</script>"}, name="src")
    response = clients["operator"].get(reverse("flow", args=["orders"]) + "?input_from=src")
    assert json.loads(response.context["form"]["input"]) == {
        "a": 5,
        "note": "</textarea><script>alert(1)</script>",
    }
    body = response.content.decode()
    assert "Input copied from execution src" in body
    assert "&lt;/textarea&gt;&lt;script&gt;" in body
    assert_no_markup_from_users(body)
    for source in ("nope", "<b>x</b>", "a" * 500):
        response = clients["operator"].get(reverse("flow", args=["orders"]), {"input_from": source})
        assert response.status_code == 200
        assert response.context["form"]["input"] == "{}"
        assert "no execution of this flow by that name" in response.content.decode()
    # another flow's execution of that name is not this flow's
    FlowFactory(name="other", definition=PASS_FLOW)
    response = clients["operator"].get(reverse("flow", args=["other"]) + "?input_from=src")
    assert response.context["form"]["input"] == "{}"


def test_markup_in_a_flow_description_and_definition_renders_as_text(clients):
    definition = (
        FAIL_FLOW.replace("it broke", "<script>alert(1)</script>")
        + "# <img src=x onerror=alert(1)>\n"
    )
    FlowFactory(name="hostile", definition=definition, description='"><img src=x onerror=alert(1)>')
    start("hostile", {"x": "<script>alert(1)</script>"}, name="h1")
    for url in (reverse("flows"), reverse("flow", args=["hostile"])):
        body = clients["viewer"].get(url).content.decode()
        assert_no_markup_from_users(body)
        assert "&lt;img src=x onerror=alert(1)&gt;" in body
