"""The functions pages: the list with each function's last invocation, a function's
configuration and recent invocations, and the invoke form (a worker runs the handler; the page
shows its result, its error in an escaped <pre>, or that no worker took it)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from flowsite.access import SYSTEM
from functions import services
from functions.models import Invocation, InvocationStatus

from . import lists_support
from .lists_support import assert_no_markup_from_users

# Fixtures shared by the list pages' tests.
clients = lists_support.clients
plain_static = lists_support.plain_static

pytestmark = pytest.mark.django_db


@pytest.fixture
def functions(db):
    return {
        name: services.function_create(
            name=name, handler=f"apihandlers.{handler}", actor=SYSTEM, description=f"does {name}"
        )
        for name, handler in (("echo", "echo"), ("explode", "explode"), ("quiet", "echo"))
    }


@pytest.fixture
def worker_runs(monkeypatch):
    """The waiting page's pauses run the worker's side instead of sleeping."""

    def pause(seconds):
        for pk in Invocation.objects.filter(status=InvocationStatus.ENQUEUED).values_list(
            "pk", flat=True
        ):
            services.invocation_run(pk)

    monkeypatch.setattr(services, "_pause", pause)


@pytest.fixture
def no_worker(monkeypatch):
    """Nobody takes the invocation: the clock jumps past the pickup window at the first pause."""
    now = [0.0]
    monkeypatch.setattr(services, "_clock", lambda: now[0])

    def pause(seconds):
        now[0] += 60

    monkeypatch.setattr(services, "_pause", pause)


def invoke(client, name="echo", body='{"a": 1}', kind="json"):
    return client.post(reverse("function-invoke", args=[name]), {"body": body, "kind": kind})


def test_the_list_shows_handler_timeout_and_last_invocation(clients, functions, worker_runs):
    invoke(clients["operator"], "echo")
    response = clients["viewer"].get(reverse("functions"))
    rows = {f.name: f for f in response.context["functions"]}
    assert rows["echo"].last_status == "Succeeded" and rows["echo"].last_at is not None
    assert rows["quiet"].last_status is None
    body = response.content.decode()
    assert "apihandlers.explode" in body and "60 s" in body and "never invoked directly" in body


def test_no_functions_says_how_to_add_one(clients):
    body = clients["viewer"].get(reverse("functions")).content.decode()
    assert "No functions yet" in body and "FLOWSITE_FUNCTIONS_PATH" in body


def test_invoking_shows_the_result(clients, functions, worker_runs):
    response = invoke(clients["operator"], body='{"a": [1, 2]}')
    assert response.status_code == 200
    body = response.content.decode()
    assert '<pre class="json">{\n  &quot;a&quot;: [\n    1,\n    2\n  ]\n}</pre>' in body
    invocation = Invocation.objects.get()
    assert invocation.invoked_by == clients["operator"].user
    assert bytes(invocation.payload) == b'{"a": [1, 2]}'
    # and it is listed under recent invocations, with who invoked it
    assert clients["operator"].user.username in body


def test_a_text_event_is_sent_as_is(clients, functions, worker_runs):
    invoke(clients["operator"], body="not json {", kind="text")
    assert bytes(Invocation.objects.get().payload) == b"not json {"


def test_a_handler_error_is_shown_escaped(clients, functions, worker_runs):
    response = invoke(clients["operator"], "explode")
    assert response.status_code == 502
    body = response.content.decode()
    assert "The handler failed: <code>ValueError</code>" in body
    assert "bad input" in body and "apihandlers.py" in body
    assert "functions/services.py" not in body  # the handler's own frames only


def test_no_worker_is_a_clear_503(clients, functions, no_worker):
    response = invoke(clients["operator"])
    assert response.status_code == 503
    assert "No worker is available" in response.content.decode()
    assert Invocation.objects.get().status == InvocationStatus.EXPIRED


@pytest.mark.parametrize(
    ("body", "text"),
    [('{"a": }', "line 1, column 7"), ("[" * 5000, "not valid JSON")],
)
def test_bad_json_is_an_inline_error_and_nothing_runs(clients, functions, worker_runs, body, text):
    response = invoke(clients["operator"], body=body)
    assert response.status_code == 400
    page = response.content.decode()
    assert text in page or "nests too deeply" in page
    assert 'id="invoke-error" role="alert"' in page
    assert not Invocation.objects.exists()


def test_a_too_large_event_is_413(clients, functions, worker_runs, settings):
    settings.FLOWSITE_MAX_TASK_PAYLOAD_BYTES = 100
    response = invoke(clients["operator"], body='"' + "x" * 200 + '"')
    assert response.status_code == 413
    assert "limit" in response.content.decode()
    assert not Invocation.objects.exists()


def test_markup_in_results_errors_and_descriptions_renders_as_text(clients, functions, worker_runs):
    services.function_update(
        function=functions["echo"], description=lists_support.PAYLOADS[1], actor=SYSTEM
    )
    for payload in lists_support.PAYLOADS:
        response = invoke(clients["operator"], body=payload, kind="text")
        assert response.status_code == 200
        assert_no_markup_from_users(response.content.decode())
    assert_no_markup_from_users(clients["viewer"].get(reverse("functions")).content.decode())
    response = clients["viewer"].get(reverse("function", args=["echo"]))
    assert_no_markup_from_users(response.content.decode())


def test_the_page_lists_the_attempts_flows_made_of_it(clients, functions):
    from django.utils import timezone

    from executions.models import Execution, WorkItem, WorkKind, WorkStatus
    from tests.factories import PASS_FLOW, FlowFactory
    from tests.pages.lists_support import start

    FlowFactory(name="orders", definition=PASS_FLOW)
    start("orders", {"a": 1}, name="o-1")
    execution = Execution.objects.get(flow__name="orders")
    now = timezone.now()
    made = {}
    for attempt, (status, error) in enumerate(
        [
            (WorkStatus.DONE, "<script>alert(1)</script>"),
            (WorkStatus.LOST, "FC.WorkerLost"),
            (WorkStatus.DONE, ""),
            (WorkStatus.RUNNING, ""),
        ],
        start=1,
    ):
        made[attempt] = WorkItem.objects.create(
            execution=execution,
            kind=WorkKind.INVOKE,
            entry_id=5,
            attempt=attempt,
            state_name="CallEcho",
            function_name="echo",
            status=status,
            error=error,
            created_at=now,
            next_dispatch_at=now,
            started_at=now,
            finished_at=now if status != WorkStatus.RUNNING else None,
            worker=f"worker-{attempt}@host",
        )
    # another function's attempt is not listed
    WorkItem.objects.create(
        execution=execution, kind=WorkKind.INVOKE, entry_id=9, attempt=1, state_name="Other",
        function_name="quiet", created_at=now, next_dispatch_at=now,
    )  # fmt: skip
    response = clients["viewer"].get(reverse("function", args=["echo"]))
    rows = response.context["attempts"]
    assert [r.attempt for r in rows] == [4, 3, 2, 1]  # newest first
    assert [r.outcome for r in rows] == ["Running", "Succeeded", "Failed", "Failed"]
    assert rows[3].error == "<script>alert(1)</script>" and rows[2].error == "FC.WorkerLost"
    body = response.content.decode()
    assert "Recent calls from flows" in body and "worker-3@host" in body
    # a handler's error name is its own text: shown, never run
    assert "<script>alert(1)</script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert reverse("execution", args=["orders", "o-1"]) in body
    assert "CallEcho" in body and "Other" not in body
    empty = clients["viewer"].get(reverse("function", args=["quiet"])).content.decode()
    assert "No flow has called it yet" not in empty  # quiet has one
    assert (
        "No flow has called it yet"
        in clients["viewer"].get(reverse("function", args=["explode"])).content.decode()
    )
