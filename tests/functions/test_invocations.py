"""The Invocation row's lifecycle, one side at a time: the web process records and publishes,
a worker claims, runs and records; expiry is a compare-and-set by either side."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from flowsite.access import SYSTEM
from functions import loader, services, tasks
from functions.models import Function, Invocation, InvocationStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def counter():
    function = services.function_create(name="count", handler="apihandlers.count", actor=SYSTEM)
    module = loader.load_module("apihandlers")
    return function, module


@pytest.fixture
def sent(monkeypatch):
    messages: list[tuple[str, list]] = []

    def send_task(name, args=None, **kwargs):
        messages.append((name, args))

    monkeypatch.setattr(services.current_app, "send_task", send_task)
    return messages


def test_submit_records_the_call_and_publishes_its_id_after_commit(
    counter, sent, user, django_capture_on_commit_callbacks
):
    function, _ = counter
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        invocation = services.invocation_submit(function=function, payload=b'{"a":1}', actor=user)
    assert sent == []  # nothing before the commit
    for callback in callbacks:
        callback()
    assert sent == [("functions.run_invocation", [invocation.pk])]
    invocation.refresh_from_db()
    assert invocation.status == InvocationStatus.ENQUEUED
    assert (bytes(invocation.payload), invocation.invoked_by, invocation.function_name) == (
        b'{"a":1}',
        user,
        "count",
    )
    assert len(invocation.request_id) == 32
    # The pickup deadline is set by the database's clock.
    window = (invocation.expires_at - invocation.created_at).total_seconds()
    assert window == pytest.approx(services.DEFAULT_PICKUP_SECONDS, abs=1)


def test_a_broker_that_refuses_the_message_expires_the_call_at_once(
    counter, monkeypatch, django_capture_on_commit_callbacks
):
    function, _ = counter

    def down(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(services.current_app, "send_task", down)
    with django_capture_on_commit_callbacks(execute=True):
        invocation = services.invocation_submit(function=function, payload=b"{}", actor=SYSTEM)
    invocation.refresh_from_db()
    assert invocation.status == InvocationStatus.EXPIRED
    assert invocation.cause == "the task queue could not be reached"


def test_the_worker_runs_it_once(counter):
    function, module = counter
    invocation = services.invocation_submit(function=function, payload=b"{}", actor=SYSTEM)
    before = module.count_calls()
    assert tasks.run_invocation(invocation.pk) == InvocationStatus.SUCCEEDED
    assert tasks.run_invocation(invocation.pk) == "duplicate"  # a second delivery
    assert module.count_calls() == before + 1
    invocation.refresh_from_db()
    assert invocation.status == InvocationStatus.SUCCEEDED
    assert invocation.result == {"calls": before + 1}
    assert invocation.started_at <= invocation.finished_at
    assert invocation.duration_ms >= 0 and invocation.worker == services.worker_id()
    assert (invocation.error, invocation.cause) == ("", "")


def test_a_late_message_finds_the_call_expired_and_runs_nothing(counter):
    function, module = counter
    invocation = services.invocation_submit(function=function, payload=b"{}", actor=SYSTEM)
    Invocation.objects.filter(pk=invocation.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    before = module.count_calls()
    assert tasks.run_invocation(invocation.pk) == "expired"
    assert module.count_calls() == before
    invocation.refresh_from_db()
    assert invocation.status == InvocationStatus.EXPIRED
    assert invocation.started_at is None and invocation.finished_at is not None


def test_expiry_is_judged_by_the_database_clock(counter, monkeypatch):
    # An app clock an hour behind does not make an expired call look claimable: the claim
    # compares with the database's own now.
    function, module = counter
    invocation = services.invocation_submit(function=function, payload=b"{}", actor=SYSTEM)
    Invocation.objects.filter(pk=invocation.pk).update(
        expires_at=timezone.now() - timedelta(seconds=2)
    )
    monkeypatch.setattr(timezone, "now", lambda: invocation.created_at - timedelta(hours=1))
    assert tasks.run_invocation(invocation.pk) == "expired"


def test_a_function_deleted_after_the_call_was_recorded(counter):
    function, _ = counter
    invocation = services.invocation_submit(function=function, payload=b"{}", actor=SYSTEM)
    services.function_delete(function=function, actor=SYSTEM)
    assert tasks.run_invocation(invocation.pk) == InvocationStatus.FAILED
    invocation.refresh_from_db()
    assert invocation.function is None and invocation.function_name == "count"
    assert invocation.error == "FC.FunctionNotFound"


def test_the_worker_enforces_the_payload_limit(counter, settings):
    function, module = counter
    invocation = services.invocation_submit(function=function, payload=b"[1,2,3,4,5]", actor=SYSTEM)
    settings.FLOWSITE_MAX_TASK_PAYLOAD_BYTES = 4  # lowered after it was recorded
    before = module.count_calls()
    assert tasks.run_invocation(invocation.pk) == InvocationStatus.FAILED
    invocation.refresh_from_db()
    assert invocation.error == "FC.PayloadTooLarge"
    assert module.count_calls() == before


def test_a_handler_error_is_recorded_with_its_own_frames(counter):
    function = services.function_create(name="boom", handler="apihandlers.explode", actor=SYSTEM)
    invocation = services.invocation_submit(function=function, payload=b"{}", actor=SYSTEM)
    assert tasks.run_invocation(invocation.pk) == InvocationStatus.FAILED
    invocation.refresh_from_db()
    assert invocation.error == "ValueError"
    assert 'File "apihandlers.py"' in invocation.cause
    assert "functions/services.py" not in invocation.cause


def test_results_and_errors_any_database_can_store():
    # PostgreSQL refuses NUL in text and jsonb, and no database takes a lone surrogate: both
    # may come from a handler, and must not leave the row stuck in Running.
    ok = services.function_create(name="nul", handler="apihandlers.nul_result", actor=SYSTEM)
    bad = services.function_create(name="nul_err", handler="apihandlers.nul_error", actor=SYSTEM)
    first = services.invocation_submit(function=ok, payload=b"{}", actor=SYSTEM)
    second = services.invocation_submit(function=bad, payload=b"{}", actor=SYSTEM)
    assert tasks.run_invocation(first.pk) == InvocationStatus.SUCCEEDED
    assert tasks.run_invocation(second.pk) == InvocationStatus.FAILED
    first.refresh_from_db()
    second.refresh_from_db()
    assert "\x00" not in first.result_json and first.result == {"text": "a\x00b"}
    assert second.cause.startswith("bad\\x00byte \\ud800 here\n")
    second.cause.encode("utf-8")  # valid UTF-8 text


def test_the_handler_context_carries_what_the_runtime_passes():
    function = Function.objects.create(name="c", handler="apihandlers.context_view")
    result = services.invoke(
        function,
        {"x": 1},
        request_id="exec-3-2",
        extra_context={"attempt": 2, "idempotency_key": "exec-3-2-k"},
    )
    assert result.output["Body"] == {
        "request_id": "exec-3-2",
        "attempt": 2,
        "idempotency_key": "exec-3-2-k",
        "function": "c",
        "remaining_ms_positive": True,
    }
    assert result.output["Headers"] == {"x-fc-request-id": "exec-3-2"}
