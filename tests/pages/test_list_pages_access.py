"""Every list page and form, for every role: what renders, what is shown or hidden, and what a
role that must not use a form gets when it posts anyway (403, nothing changed)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from executions.models import Execution, ExecutionStatus, TaskToken
from flowsite.audit.models import AuditEntry
from functions.models import Invocation

from . import lists_support
from .lists_support import ROLES, client_for, start, waiting_approval

# Fixtures shared by the list pages' tests.
clients = lists_support.clients
demo = lists_support.demo
plain_static = lists_support.plain_static

pytestmark = pytest.mark.django_db

PAGES = [
    ("overview", [], "overview"),
    ("flows", [], "flows"),
    ("flow", ["demo-polling"], "flows"),
    ("executions", [], "executions"),
    ("functions", [], "functions"),
    ("function", ["demo_render_status"], "functions"),
    ("approvals", [], "approvals"),
]


@pytest.mark.parametrize(("name", "args", "nav"), PAGES)
def test_every_page_needs_a_login(client, demo, name, args, nav):
    url = reverse(name, args=args)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


@pytest.mark.parametrize(("name", "args", "nav"), [*PAGES, ("audit", [], "audit")])
def test_a_user_without_a_role_gets_the_403_page(clients, demo, name, args, nav):
    response = clients["none"].get(reverse(name, args=args))
    assert response.status_code == 403
    body = response.content.decode()
    assert "You can't do this here" in body
    assert "this needs the viewer role" in body or "this needs the admin role" in body
    assert "Content-Security-Policy" in response


@pytest.mark.parametrize(("name", "args", "nav"), PAGES)
@pytest.mark.parametrize("role", ROLES)
def test_every_page_renders_for_every_role_and_marks_its_nav(clients, demo, name, args, nav, role):
    response = clients[role].get(reverse(name, args=args))
    assert response.status_code == 200
    assert response.context["nav"] == nav
    body = response.content.decode()
    assert f'href="{reverse(nav if nav != "overview" else "overview")}" aria-current="page"' in body
    # The page's own assets: static files only (the policy allows no inline script or style).
    assert "flowsite/pages.css" in body and "<style" not in body and " style=" not in body


def test_the_audit_log_is_for_admins_only(clients, demo):
    for role in ("viewer", "operator", "approver"):
        response = clients[role].get(reverse("audit"))
        assert response.status_code == 403, role
        assert "this needs the admin role" in response.content.decode()
    assert clients["admin"].get(reverse("audit")).status_code == 200


def test_buttons_follow_the_role(clients, demo):
    waiting_approval()
    start("demo-polling", {"asset": "a.mov", "duration": 50})

    def body(role, name, *args):
        return clients[role].get(reverse(name, args=args)).content.decode()

    start_form = 'action="/flows/demo-polling/start/"'
    invoke_form = 'action="/functions/demo_render_status/invoke/'
    for role in ROLES:
        may_operate = role in ("operator", "admin")
        may_approve = role in ("approver", "admin")
        assert (start_form in body(role, "flow", "demo-polling")) is may_operate, role
        executions = body(role, "executions")
        assert ('data-check-all="ids"' in executions) is may_operate, role
        assert ("Stop selected" in executions) is may_operate, role
        assert ('name="ids"' in executions) is may_operate, role
        assert (invoke_form in body(role, "function", "demo_render_status")) is may_operate
        approvals = body(role, "approvals")
        assert ("✓ Approve" in approvals) is may_approve, role
        assert ("Reject…" in approvals) is may_approve, role
        assert "AskApprover" in approvals


def test_posting_a_form_without_its_role_is_refused_and_changes_nothing(clients, demo):
    task = waiting_approval()
    running = start("demo-polling", {"asset": "a.mov", "duration": 50})
    executions = Execution.objects.count()
    audit = AuditEntry.objects.count()
    invocations = Invocation.objects.count()
    posts = {
        "start": (
            reverse("flow-start", args=["demo-polling"]),
            {"input": "{}"},
            ("viewer", "approver"),
        ),
        "stop": (
            reverse("executions-stop"),
            {"ids": [running.pk], "confirm": "STOP"},
            ("viewer", "approver"),
        ),
        "invoke": (
            reverse("function-invoke", args=["demo_render_status"]),
            {"body": "{}", "kind": "json"},
            ("viewer", "approver"),
        ),
        "approve": (reverse("task-approve", args=[task.pk]), {}, ("viewer", "operator")),
        "reject": (
            reverse("task-reject", args=[task.pk]),
            {"error": "No", "cause": "because"},
            ("viewer", "operator"),
        ),
    }
    for what, (url, data, roles) in posts.items():
        for role in (*roles, "none"):
            response = clients[role].post(url, data)
            assert response.status_code == 403, (what, role)
            assert "needs the" in response.content.decode(), (what, role)
            htmx = clients[role].post(url, data, headers={"HX-Request": "true"})
            assert htmx.status_code == 403, (what, role)
    assert Execution.objects.count() == executions
    assert AuditEntry.objects.count() == audit
    assert Invocation.objects.count() == invocations
    running.refresh_from_db()
    assert running.status == ExecutionStatus.RUNNING
    assert TaskToken.objects.get(pk=task.pk).is_open


def test_anonymous_posts_go_to_the_login_page(client, demo):
    task = waiting_approval()
    for url in (
        reverse("flow-start", args=["demo-polling"]),
        reverse("executions-stop"),
        reverse("task-approve", args=[task.pk]),
        reverse("task-reject", args=[task.pk]),
        reverse("function-invoke", args=["demo_render_status"]),
    ):
        response = client.post(url, {})
        assert response.status_code == 302 and response["Location"].startswith("/login/"), url
    assert TaskToken.objects.get(pk=task.pk).is_open


def test_pages_answer_get_only_and_forms_post_only(clients, demo):
    operator = clients["operator"]
    assert operator.post(reverse("executions")).status_code == 405
    assert operator.get(reverse("executions-stop")).status_code == 405
    assert operator.get(reverse("flow-start", args=["demo-polling"])).status_code == 405


def test_unknown_flows_and_functions_are_404_not_500(clients, demo):
    viewer = clients["viewer"]
    assert viewer.get(reverse("flow", args=["nope"])).status_code == 404
    assert viewer.get(reverse("function", args=["nope"])).status_code == 404
    operator = client_for("operator")
    assert operator.post(reverse("flow-start", args=["nope"]), {}).status_code == 404
