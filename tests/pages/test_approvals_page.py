"""The approvals inbox: every step waiting for a callback with its flow, execution, input and
age; approve and reject for approvers (plain forms and htmx), a clear answer when someone
already decided, and nothing for anyone else."""

from __future__ import annotations

import pytest
from django.urls import reverse

from executions.models import Execution, ExecutionStatus, HistoryEvent, TaskToken
from flowsite.audit.models import AuditEntry

from . import lists_support
from .lists_support import assert_no_markup_from_users, run_pending, waiting_approval

# Fixtures shared by the list pages' tests.
clients = lists_support.clients
demo = lists_support.demo
plain_static = lists_support.plain_static

pytestmark = pytest.mark.django_db


def finish(task: TaskToken) -> Execution:
    execution = run_pending(Execution.objects.get(pk=task.execution_id))
    return execution


def test_the_inbox_lists_waiting_steps_newest_first_with_their_input(clients, demo):
    first = waiting_approval({"request_id": "PO-1", "approver": "a@example.com", "summary": "s"})
    second = waiting_approval({"request_id": "PO-2", "approver": "b@example.com", "summary": "t"})
    response = clients["viewer"].get(reverse("approvals"))
    rows = response.context["page"].rows
    assert [t.pk for t in rows] == [second.pk, first.pk]
    assert rows[0].step_input == {"request_id": "PO-2", "approver": "b@example.com", "summary": "t"}
    body = response.content.decode()
    assert "AskApprover" in body and "demo-approval-v2" in body
    assert "&quot;request_id&quot;: &quot;PO-2&quot;" in body  # pretty JSON, escaped
    assert reverse("execution", args=["demo-approval-v2", rows[0].execution.name]) in body
    assert "tt:" not in body or "task_token" not in body  # never a token (conftest checks too)


def test_an_empty_inbox_says_what_would_be_there(clients):
    body = clients["approver"].get(reverse("approvals")).content.decode()
    assert "Nothing waits for a decision" in body


def test_an_approver_approves_with_an_output(clients, demo):
    task = waiting_approval()
    response = clients["approver"].post(
        reverse("task-approve", args=[task.pk]),
        {"output": '{"decision": "approve", "comment": "fine"}', "next": "/approvals/"},
    )
    assert response.status_code == 302 and response["Location"] == "/approvals/"
    execution = finish(task)
    assert execution.status == ExecutionStatus.SUCCEEDED
    assert execution.output["decision"] == "approve" and execution.output["comment"] == "fine"
    entry = AuditEntry.objects.get(action="task.approve")
    assert entry.via == "web" and entry.actor_name == clients["approver"].user.username
    page = clients["approver"].get("/approvals/").content.decode()
    assert "Approved step AskApprover of demo-approval-v2/" in page
    assert "Nothing waits for a decision" in page


def test_an_approver_rejects_with_a_code_and_a_cause(clients, demo):
    task = waiting_approval()
    response = clients["approver"].post(
        reverse("task-reject", args=[task.pk]), {"error": "TooExpensive", "cause": "over budget"}
    )
    assert response.status_code == 302
    execution = Execution.objects.get(pk=task.execution_id)
    failed = HistoryEvent.objects.filter(execution=execution, type="TaskFailed").last()
    assert failed.detail["error"] == "TooExpensive"
    entry = AuditEntry.objects.get(action="task.reject")
    assert entry.detail["reason"] == "over budget"


def test_a_rejection_needs_an_error_code(clients, demo):
    task = waiting_approval()
    response = clients["approver"].post(
        reverse("task-reject", args=[task.pk]), {"error": "", "cause": "no"}, follow=True
    )
    assert "write an error code" in response.content.decode()
    assert TaskToken.objects.get(pk=task.pk).is_open


def test_bad_output_json_names_the_line_and_changes_nothing(clients, demo):
    task = waiting_approval()
    response = clients["approver"].post(
        reverse("task-approve", args=[task.pk]), {"output": '{\n "a": ]'}, follow=True
    )
    assert "line 2, column 7" in response.content.decode()
    assert TaskToken.objects.get(pk=task.pk).is_open
    assert not AuditEntry.objects.filter(action="task.approve").exists()


def test_a_second_decision_is_told_it_was_already_decided(clients, demo):
    task = waiting_approval()
    url = reverse("task-approve", args=[task.pk])
    clients["approver"].post(url, {})
    # The approval ended the execution, which clears its tasks: the row is gone.
    response = clients["admin"].post(url, {}, follow=True)
    assert "it was already decided and its execution has ended" in response.content.decode()
    # A step decided while its execution still runs: the row stays, closed (409).
    other = waiting_approval()
    TaskToken.objects.filter(pk=other.pk).update(is_open=False)
    response = clients["admin"].post(reverse("task-approve", args=[other.pk]), {}, follow=True)
    assert "Already decided: step AskApprover of demo-approval-v2/" in response.content.decode()
    htmx = clients["admin"].post(
        reverse("task-reject", args=[other.pk]), {"error": "X"}, headers={"HX-Request": "true"}
    )
    assert htmx.status_code == 409
    assert htmx["X-Flowsite-Partial"] == "1"
    assert "Already decided" in htmx.content.decode()
    assert AuditEntry.objects.filter(action__in=["task.approve", "task.reject"]).count() == 1


def test_htmx_gets_the_row_back(clients, demo):
    task = waiting_approval()
    response = clients["approver"].post(
        reverse("task-approve", args=[task.pk]), {"output": "{"}, headers={"HX-Request": "true"}
    )
    # still waiting: the row again, with its forms and the error
    assert response.status_code == 400 and response["X-Flowsite-Partial"] == "1"
    body = response.content.decode()
    assert body.lstrip().startswith(f'<tr id="task-{task.pk}"')
    assert "not valid JSON" in body and "✓ Approve" in body
    response = clients["approver"].post(
        reverse("task-approve", args=[task.pk]), {}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert f'<tr id="task-{task.pk}" class="is-decided">' in body
    assert "Approved step AskApprover" in body


def test_unknown_and_absurd_task_ids_are_404_not_500(clients, demo):
    for task_id in (999999, 99999999999999999999):
        response = clients["approver"].post(f"/tasks/{task_id}/approve/", {}, follow=True)
        assert response.status_code == 200
        assert "No step is waiting with this id" in response.content.decode()
        htmx = clients["approver"].post(
            f"/tasks/{task_id}/reject/", {"error": "X"}, headers={"HX-Request": "true"}
        )
        assert htmx.status_code == 404


def test_next_only_goes_to_local_paths(clients, demo):
    for target in ("https://evil.example/", "//evil.example", "/\\evil.example", "http:/x"):
        task = waiting_approval()
        response = clients["approver"].post(
            reverse("task-approve", args=[task.pk]), {"next": target}
        )
        assert response["Location"] == "/approvals/", target
    task = waiting_approval()
    execution_page = reverse("execution", args=["demo-approval-v2", task.execution.name])
    response = clients["approver"].post(
        reverse("task-approve", args=[task.pk]), {"next": execution_page}
    )
    assert response["Location"] == execution_page


def test_markup_in_a_waiting_steps_input_renders_as_text(clients, demo):
    for payload in lists_support.PAYLOADS:
        waiting_approval({"request_id": payload, "approver": payload, "summary": payload})
    for role in ("viewer", "approver"):
        body = clients[role].get(reverse("approvals")).content.decode()
        tree = assert_no_markup_from_users(body)
        assert any("<script>alert(1)</script>" in text for text in tree.text)
