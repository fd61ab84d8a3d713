"""The execution page and its partials, by role: graph statuses, live partial (200, then 286),
visits, history, timeline, "why is it waiting?", stop and run again, hostile data, and query
counts that do not grow with the execution."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from executions import detail, services
from executions.models import Execution, ExecutionStatus, TaskToken, Timer, WorkItem, WorkStatus
from executions.runtime.transition import token_of
from flowsite.access import SYSTEM
from flowsite.audit.models import AuditEntry
from tests.factories import FAIL_FLOW, PASS_FLOW, WAIT_FLOW

from .test_execution_readmodel import (
    HOSTILE_FLOW,
    HOSTILE_INPUT,
    HOSTILE_NAMES,
    LOOP_FLOW,
    PLAIN_STATIC,
    RETRY_CATCH_FLOW,
    TASK_FLOW,
    add_functions,
    big_execution,
    client_for,
    drive,
    load_demo,
    make_flow,
    run_pending,
    start,
)

pytestmark = pytest.mark.django_db
ROLES = ("viewer", "operator", "approver", "admin")
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def plain_static(settings):
    # The manifest storage needs collectstatic; the pages only need {% static %} to resolve.
    settings.STORAGES = PLAIN_STATIC


@pytest.fixture
def demo(db):
    load_demo()


@pytest.fixture
def functions(db):
    add_functions()


def url(execution: Execution, part: str = "") -> str:
    return f"/flows/{execution.flow.name}/executions/{execution.name}/{part}"


# --- what a page may contain ---------------------------------------------------------------


class _Elements(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag

    def handle_data(self, data):
        self.text.append(data)


HX_ALLOWED = {
    "hx-get", "hx-target", "hx-swap", "hx-trigger", "hx-include", "hx-headers", "hx-history",
    "hx-swap-oob", "hx-disable",
}  # fmt: skip
TRIGGERS = {"every 2s", "change, submit", "revealed"}


def check_html(content: bytes) -> tuple[str, list[tuple[str, dict]]]:
    """Nothing in the page came from user data: scripts only from our static files, no
    inline styles or handlers, htmx attributes only ours, links only to this site. Returns
    the page's text (entities decoded) and its elements."""
    parser = _Elements()
    parser.feed(content.decode())
    for tag, attrs in parser.elements:
        assert tag != "style"
        if tag == "script":
            assert (attrs.get("src") or "").startswith("/static/"), attrs
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            assert name != "style", tag
            if name.startswith("hx-"):
                assert name in HX_ALLOWED, (tag, name, value)
            if name == "hx-trigger":
                assert value in TRIGGERS, value
            if name in ("href", "action", "hx-get", "src"):
                assert value.startswith(("/", "#", "?")) and not value.startswith("//"), value
                assert "javascript:" not in value.lower()
    return "".join(parser.text), parser.elements


def classes_of(elements, key: str) -> str:
    for tag, attrs in elements:
        if tag == "g" and attrs.get("id") == f"gn-{key}":
            return attrs.get("class", "")
    raise AssertionError(f"no node {key}")


# --- roles ---------------------------------------------------------------------------------


def test_anonymous_goes_to_the_login_page_and_a_user_without_a_role_is_refused(db):
    make_flow("pass", PASS_FLOW)
    execution = start("pass", {"a": 1})
    from django.test import Client

    response = Client().get(url(execution))
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    for part in ("", "live/", "history/", "timeline/", "states/States-0/"):
        assert client_for().get(url(execution, part)).status_code == 403, part


@pytest.mark.parametrize("role", ROLES)
def test_page_shows_the_buttons_a_role_may_use(db, role):
    make_flow("wait", WAIT_FLOW)
    execution = start("wait", {"k": 1})
    response = client_for(role).get(url(execution))
    assert response.status_code == 200
    assert "Content-Security-Policy" in response
    text, elements = check_html(response.content)
    forms = {attrs.get("action") for tag, attrs in elements if tag == "form"}
    may_start = role in ("operator", "admin")
    assert (url(execution, "stop/") in forms) == may_start
    assert (url(execution, "run-again/") in forms) == may_start
    assert ("Run with edited input" in text) == may_start
    # waiting on a timer: on the graph (class and symbol), in the list, in the why line
    assert "is-waiting-timer" in classes_of(elements, "States-0")
    assert "Waiting in W until" in text


def test_approval_forms_only_for_approvers_and_they_come_back_here(demo):
    execution = start("demo-approval", {"request_id": "PO-9", "approver": "x", "summary": "s"})
    run_pending(execution)
    task = TaskToken.objects.get(execution=execution, is_open=True)
    approve = f"/tasks/{task.pk}/approve/"
    for role, shown in (("viewer", False), ("operator", False), ("approver", True)):
        text, elements = check_html(client_for(role).get(url(execution)).content)
        actions = {attrs.get("action") for tag, attrs in elements if tag == "form"}
        assert (approve in actions) == shown, role
        assert "Waiting for a callback on AskApprover" in text
        assert task.fingerprint in text
    approver = client_for("approver")
    nexts = [
        attrs["value"]
        for tag, attrs in check_html(approver.get(url(execution)).content)[1]
        if tag == "input" and attrs.get("name") == "next"
    ]
    assert nexts == [url(execution), url(execution)]
    # a viewer posting the form anyway: 403, nothing decided
    viewer = client_for("viewer")
    assert viewer.post(approve, {"output": "{}", "next": url(execution)}).status_code == 403
    assert TaskToken.objects.get(pk=task.pk).is_open
    response = approver.post(approve, {"output": '{"decision": "approve"}', "next": url(execution)})
    assert response.status_code == 302 and response["Location"] == url(execution)
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.SUCCEEDED


def test_the_page_never_shows_a_task_token(demo):
    execution = start("demo-approval-v2", {"request_id": "PO-3", "approver": "x", "summary": "s"})
    run_pending(execution)
    task = TaskToken.objects.get(execution=execution, is_open=True)
    secret = token_of(task)
    client = client_for("admin")
    for part in ("", "live/", "history/", "timeline/", "states/States-0/"):
        for headers in ({}, HTMX):
            body = client.get(url(execution, part), **headers).content.decode()
            assert secret not in body, part
    for event_id in range(1, execution.event_count + 1):
        body = client.get(url(execution, f"history/?event={event_id}"), **HTMX).content.decode()
        assert secret not in body


# --- stop and run again ----------------------------------------------------------------------


@pytest.mark.parametrize("role", ["viewer", "approver", ""])
def test_stop_is_refused_to_roles_that_may_not(db, role):
    make_flow("wait", WAIT_FLOW)
    execution = start("wait")
    response = client_for(*([role] if role else [])).post(url(execution, "stop/"), {"reason": "no"})
    assert response.status_code == 403
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.RUNNING
    assert not AuditEntry.objects.filter(action="execution.stop").exists()


def test_an_operator_stops_with_a_reason(db):
    make_flow("wait", WAIT_FLOW)
    execution = start("wait")
    client = client_for("operator")
    refused = client.post(url(execution, "stop/"), {"reason": "   "})
    assert refused.status_code == 400 and b"say why" in refused.content
    response = client.post(url(execution, "stop/"), {"reason": "<b>wrong input</b>"})
    assert response.status_code == 302 and response["Location"] == url(execution)
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.STOPPED
    assert execution.error_code == "Stopped" and execution.error_message == "<b>wrong input</b>"
    entry = AuditEntry.objects.get(action="execution.stop")
    assert entry.actor == client.user and entry.via == "web"
    assert entry.detail["reason"] == "<b>wrong input</b>"
    page = client.get(url(execution))
    text, elements = check_html(page.content)
    assert "<b>wrong input</b>" in text and "Stopped" in text
    assert "is-cancelled" in classes_of(elements, "States-0")
    assert url(execution, "stop/") not in {a.get("action") for t, a in elements if t == "form"}
    again = client.post(url(execution, "stop/"), {"reason": "twice"})
    assert again.status_code == 409
    assert AuditEntry.objects.filter(action="execution.stop").count() == 1


@pytest.mark.parametrize("role", ["viewer", "approver"])
def test_run_again_is_refused_to_roles_that_may_not(db, role):
    make_flow("pass", PASS_FLOW)
    execution = start("pass", {"a": 1})
    response = client_for(role).post(url(execution, "run-again/"))
    assert response.status_code == 403
    assert Execution.objects.count() == 1


def test_an_operator_runs_it_again_with_the_same_input(db):
    make_flow("pass", PASS_FLOW)
    execution = start("pass", {"a": 7})
    client = client_for("operator")
    response = client.post(url(execution, "run-again/"))
    new = Execution.objects.exclude(pk=execution.pk).get()
    assert response.status_code == 302 and response["Location"] == url(new)
    assert new.input == {"a": 7} and new.output == {"x": 7}
    entry = AuditEntry.objects.get(action="execution.run_again")
    assert entry.detail["again_from"] == execution.name and entry.detail["same_input"] is True
    assert entry.actor == client.user
    # and "with edited input" goes to the flow page's form, pre-filled from this one
    text, elements = check_html(client.get(url(execution)).content)
    links = {attrs.get("href") for tag, attrs in elements if tag == "a"}
    assert f"/flows/pass/?input_from={execution.name}#start" in links


def test_posting_needs_post_and_a_known_execution(db):
    make_flow("wait", WAIT_FLOW)
    execution = start("wait")
    client = client_for("operator")
    assert client.get(url(execution, "stop/")).status_code == 405
    missing = f"/flows/wait/executions/{execution.name}x/stop/"
    assert client.post(missing, {"reason": "x"}).status_code == 404


# --- live ------------------------------------------------------------------------------------


def test_live_partial_polls_while_running_and_says_stop_once_ended(functions):
    make_flow("task", TASK_FLOW)
    execution = start("task", {"v": "<script>alert(1)</script>"})
    client = client_for("viewer")
    running = client.get(url(execution, "live/"), {"history_live": "1", "since": "3"}, **HTMX)
    assert running.status_code == 200
    text, elements = check_html(running.content)
    data = [a for t, a in elements if t == "li" and "data-node" in a]
    assert data == [
        {"data-node": "States-0", "data-status": "running", "data-visits": "1",
         "data-label": "Running"}
    ]  # fmt: skip
    assert "Queued for a worker" in text
    oob = {a.get("id") for t, a in elements if "hx-swap-oob" in a}
    # the buttons are left alone while it runs (a reason being typed must stay)
    assert oob == {"exec-status", "exec-why", "exec-result"}
    drive(execution)
    ended = client.get(url(execution, "live/"), {"history_live": "1", "since": "3"}, **HTMX)
    assert ended.status_code == 286
    text, elements = check_html(ended.content)
    oob = {a.get("id") for t, a in elements if "hx-swap-oob" in a}
    # (and the new rows, into the top of the history: a tbody, taken from a template)
    # The last poll also redraws the timeline (it is not live while the execution runs).
    assert {
        "exec-status",
        "exec-actions",
        "exec-why",
        "exec-result",
        "history-since",
        "timeline-body",
        None,
    } == oob
    assert [a["data-status"] for t, a in elements if t == "li" and "data-node" in a] == [
        "succeeded"
    ]
    # the events after "since", newest first, for the top of the history
    new_rows = [a["id"] for t, a in elements if t == "tr" and a.get("id", "").startswith("ev-")]
    assert new_rows == [f"ev-{i}" for i in range(execution.event_count, 3, -1)]
    assert "<script>alert(1)</script>" in text  # the output, as text
    # a page of an ended execution does not poll at all
    page = client.get(url(execution)).content.decode()
    assert 'hx-trigger="every 2s"' not in page


def test_the_running_page_polls_once_for_everything(db):
    make_flow("wait", WAIT_FLOW)
    execution = start("wait")
    _, elements = check_html(client_for("viewer").get(url(execution)).content)
    pollers = [a for t, a in elements if a.get("hx-trigger") == "every 2s"]
    assert len(pollers) == 1
    assert pollers[0]["hx-get"] == url(execution, "live/")
    params = {a["name"]: a["value"] for t, a in elements if "data-live-param" in a}
    assert params == {"history_live": "1", "since": str(execution.event_count)}


# --- "why is it waiting?" ----------------------------------------------------------------------


def why_text(execution: Execution) -> str:
    response = client_for("viewer").get(url(execution, "live/"), **HTMX)
    return " ".join(check_html(response.content)[0].split())


def test_why_names_the_timer_and_when_it_fires(db):
    make_flow("wait", WAIT_FLOW)
    execution = start("wait")
    timer = Timer.objects.get(execution=execution)
    why = detail.why_waiting(execution)
    assert why.kind == "wait" and why.items[0].until == timer.due_at
    assert why.items[0].state == "W"
    assert "Waiting in W until" in why_text(execution) and "(a Wait timer)" in why_text(execution)


def test_why_names_the_callback_by_fingerprint_and_since_when(demo):
    execution = start("demo-approval", {"request_id": "PO-4", "approver": "x", "summary": "s"})
    run_pending(execution)
    task = TaskToken.objects.get(execution=execution, is_open=True)
    why = detail.why_waiting(execution)
    assert why.kind == "callback"
    assert why.items[0].detail["fingerprint"] == task.fingerprint
    assert why.items[0].since == task.created_at
    # its timeout (timeoutSeconds: 3600) goes with it
    assert [kind for kind, _ in why.items[0].detail["deadlines"]] == ["timeout"]
    text = why_text(execution)
    assert "Waiting for a callback on AskApprover since" in text
    assert f"task {task.fingerprint}" in text and "times out" in text


def test_why_names_a_queued_attempt_then_the_worker_running_it(functions):
    make_flow("task", TASK_FLOW)
    execution = start("task")
    item = WorkItem.objects.get(execution=execution)
    why = detail.why_waiting(execution)
    assert why.kind == "pending" and why.items[0].detail["function"] == "echo"
    assert "Queued for a worker: Call → function echo, attempt 1" in why_text(execution)
    now = timezone.now()
    # as a worker's claim leaves the row (worker.run_work_item would run it to the end)
    WorkItem.objects.filter(pk=item.pk).update(
        status=WorkStatus.RUNNING, worker="host-a:4242", started_at=now,
        lease_until=now + timedelta(seconds=90),
    )  # fmt: skip
    why = detail.why_waiting(execution)
    assert why.kind == "running" and why.items[0].detail["worker"] == "host-a:4242"
    assert why.items[0].until == now + timedelta(seconds=90)
    text = why_text(execution)
    assert "Running function echo for Call, attempt 1, on worker host-a:4242 since" in text
    assert "its lease ends" in text


def test_why_says_retry_nothing_and_nothing_once_ended(functions):
    make_flow("retry", RETRY_CATCH_FLOW)
    execution = start("retry")
    run_pending(execution)
    assert detail.why_waiting(execution).kind == "retry"
    assert "Flaky failed and is retried" in why_text(execution)
    Timer.objects.filter(execution=execution).delete()  # (as if between two transitions)
    assert detail.why_waiting(execution).kind == "nothing"
    assert "Nothing is outstanding right now" in why_text(execution)
    services.execution_stop(execution=execution, error="Stopped", cause="test", actor=SYSTEM)
    assert detail.why_waiting(Execution.objects.get(pk=execution.pk)).kind == "ended"
    assert "Why is it waiting" not in why_text(execution)


# --- visits -------------------------------------------------------------------------------------


def test_a_state_lists_its_visits_with_attempts_input_output_and_errors(functions):
    make_flow("retry", RETRY_CATCH_FLOW)
    execution = drive(start("retry", {"why": "<img src=x onerror=alert(1)>"}))
    client = client_for("viewer")
    response = client.get(url(execution, "states/States-0/"), **HTMX)
    assert response.status_code == 200
    text, elements = check_html(response.content)
    text = " ".join(text.split())
    assert "Flaky" in text and "Failed, caught" in text and "1 visit" in text
    rows = [a for t, a in elements if t == "tr"]
    assert len(rows) == 1 + 3  # the attempts table: a head and 3 attempts
    assert text.count("RuntimeError") >= 3
    assert "boom" in text  # a cause
    assert '"why": "<img src=x onerror=alert(1)>"' in text  # the input, as text
    assert "Error RuntimeError" in text and 'raise RuntimeError("boom")' in text
    assert '"input": {' not in text  # the input itself, not the event detail around it
    # without htmx: the whole page, with this state's visits in the panel
    page = client.get(url(execution, "states/States-0/"))
    assert page.status_code == 200 and b'class="visits" data-node="States-0"' in page.content


def test_visits_are_paged_newest_first(db, settings):
    settings.FLOWSITE_MAX_HISTORY_EVENTS = 120
    make_flow("loop", LOOP_FLOW)
    execution = drive(start("loop"))
    assert execution.status == ExecutionStatus.FAILED
    client = client_for("viewer")
    first = client.get(url(execution, "states/States-0/"), **HTMX).content.decode()
    ids = [int(i) for i in re.findall(r"entered at event #(\d+)", first)]
    assert len(ids) == detail.VISITS_PAGE and ids == sorted(ids, reverse=True)
    more = re.search(r'href="[^"]*\?before=(\d+)"', first)
    assert more is not None and int(more.group(1)) == ids[-1]
    second = client.get(url(execution, f"states/States-0/?before={ids[-1]}"), **HTMX)
    ids2 = [int(i) for i in re.findall(r"entered at event #(\d+)", second.content.decode())]
    assert ids2 and max(ids2) < min(ids)


@pytest.mark.parametrize(
    "path", ["nope", "States-9", "<script>", "States-0%20", "x" * 300, "../States-0"]
)
def test_unknown_states_are_404(db, path):
    make_flow("pass", PASS_FLOW)
    execution = start("pass", {"a": 1})
    response = client_for("viewer").get(url(execution, f"states/{path}/"), **HTMX)
    assert response.status_code == 404


# --- history ------------------------------------------------------------------------------------


def test_history_is_paged_and_filtered(db, settings):
    settings.FLOWSITE_MAX_HISTORY_EVENTS = 130
    make_flow("loop", LOOP_FLOW)
    execution = drive(start("loop"))
    total = execution.event_count
    client = client_for("viewer")

    def ids(response) -> list[int]:
        return [int(i) for i in re.findall(r'<tr id="ev-(\d+)"', response.content.decode())]

    first = client.get(url(execution, "history/"), **HTMX)
    assert ids(first) == list(range(total, total - detail.HISTORY_PAGE, -1))
    cursor = re.search(r'hx-get="[^"]*cursor=(\d+)"', first.content.decode()).group(1)
    second = client.get(url(execution, "history/"), {"cursor": cursor}, **HTMX)
    assert ids(second)[0] == total - detail.HISTORY_PAGE
    oldest = client.get(url(execution, "history/"), {"order": "oldest"}, **HTMX)
    assert ids(oldest)[:3] == [1, 2, 3]
    exited = client.get(url(execution, "history/"), {"type": "StepExited"}, **HTMX)
    assert ids(exited) and b"StepEntered</span>" not in exited.content
    failures = client.get(url(execution, "history/"), {"failures": "1"}, **HTMX)
    assert ids(failures) == [total]  # ExecutionFailed (the history limit)
    # without htmx a history link renders the whole page at that page of the history
    page = client.get(url(execution), {"cursor": cursor})
    assert ids(page)[0] == total - detail.HISTORY_PAGE


@pytest.mark.parametrize(
    "query",
    [
        {"type": "<script>alert(1)</script>"},
        {"order": "sideways"},
        {"cursor": "abc"},
        {"cursor": "9" * 40},
        {"cursor": "-5"},
        {"failures": "<b>"},
        {"event": "1e9"},
    ],
)
def test_hostile_history_parameters_are_answered_not_crashed(db, query):
    make_flow("pass", PASS_FLOW)
    execution = start("pass", {"a": 1})
    response = client_for("viewer").get(url(execution, "history/"), query, **HTMX)
    assert response.status_code in (200, 404)
    check_html(response.content)
    assert b"<script>alert(1)</script>" not in response.content


def test_a_large_detail_is_cut_and_loaded_whole_on_demand(db):
    make_flow("pass", PASS_FLOW)
    big = "<i>" + "x" * 9000
    execution = start("pass", {"a": big})
    client = client_for("viewer")
    response = client.get(url(execution, "history/"), {"order": "oldest"}, **HTMX)
    text, elements = check_html(response.content)
    loads = [a["hx-get"] for t, a in elements if t == "a" and "event=" in a.get("hx-get", "")]
    assert url(execution, "history/?event=1") in loads
    assert big not in text  # only the first part is sent with the page
    whole = client.get(url(execution, "history/"), {"event": "1"}, **HTMX)
    assert big in check_html(whole.content)[0]
    assert client.get(url(execution, "history/"), {"event": "999"}, **HTMX).status_code == 404
    plain = client.get(url(execution, "history/"), {"event": "1"})
    assert plain.status_code == 200 and big in check_html(plain.content)[0]


# --- timeline ----------------------------------------------------------------------------------


def test_timeline_has_a_bar_per_visit_with_its_attempts(functions):
    make_flow("retry", RETRY_CATCH_FLOW)
    execution = drive(start("retry"))
    response = client_for("viewer").get(url(execution, "timeline/"), **HTMX)
    text, elements = check_html(response.content)
    rows = [a for t, a in elements if t == "g" and a.get("class") == "tl-row"]
    assert len(rows) == 3
    failed = [a for t, a in elements if t == "rect" and a.get("class") == "tl-try--failed"]
    assert len(failed) == 3  # the three failed attempts of Flaky
    for _, attrs in elements:
        if attrs.get("class", "").startswith("tl-"):
            for coord in ("x", "width"):
                if coord in attrs:
                    assert re.fullmatch(r"\d+(\.\d+)?", attrs[coord]), attrs
    assert "attempt 3: RuntimeError" in text


def test_timeline_is_paged(db, settings):
    settings.FLOWSITE_MAX_HISTORY_EVENTS = 400
    make_flow("loop", LOOP_FLOW)
    execution = drive(start("loop"))
    client = client_for("viewer")
    first = client.get(url(execution, "timeline/"), **HTMX).content.decode()
    assert first.count('class="tl-row"') == detail.TIMELINE_PAGE
    after = re.search(r'hx-get="[^"]*\?after=(\d+)"', first).group(1)
    second = client.get(url(execution, "timeline/"), {"after": after}, **HTMX).content.decode()
    assert 0 < second.count('class="tl-row"') <= detail.TIMELINE_PAGE


# --- hostile data ------------------------------------------------------------------------------


def test_hostile_names_inputs_outputs_and_errors_render_as_text(functions):
    make_flow("hostile", HOSTILE_FLOW)
    execution = start("hostile", HOSTILE_INPUT, name="h1")
    assert execution.status == ExecutionStatus.FAILED
    make_flow("task", TASK_FLOW)
    echoed = drive(start("task", HOSTILE_INPUT))
    client = client_for("admin")
    for target in (execution, echoed):
        for part in ("", "live/", "history/", "timeline/", "states/States-0/"):
            for headers in ({}, HTMX):
                response = client.get(url(target, part), **headers)
                assert response.status_code in (200, 286), (part, response.status_code)
                check_html(response.content)
    text, elements = check_html(client.get(url(execution)).content)
    for name in HOSTILE_NAMES:
        assert name in text, name
    # the last state was never reached: its panel says so
    last = client.get(url(execution, "states/States-4/"), **HTMX)
    assert "Not reached" in check_html(last.content)[0]
    assert "<b>bold</b>" in text and "<img src=x onerror=alert(5)>" in text
    for value in HOSTILE_INPUT.values():  # inside JSON text: its quotes escaped
        assert json.dumps(value, ensure_ascii=False)[1:-1] in text, value
    echoed_text, _ = check_html(client.get(url(echoed)).content)
    assert '"hx": "<div hx-get=\\"/api/v1/flows/\\" hx-trigger=\\"load\\">y</div>"' in echoed_text
    # the graph's nodes for the hostile names carry only our ids and classes
    nodes = [a for t, a in elements if t == "g" and a.get("id", "").startswith("gn-")]
    assert len(nodes) == 5
    assert all(re.fullmatch(r"gn-[A-Za-z0-9_-]+", a["id"]) for a in nodes)


def test_a_rejection_with_markup_in_its_error_is_text(demo):
    execution = start("demo-approval", {"request_id": "PO-5", "approver": "x", "summary": "s"})
    run_pending(execution)
    task = TaskToken.objects.get(execution=execution, is_open=True)
    services.task_reject(
        task_id=task.pk, error="<script>x</script>", cause="<a href=javascript:1>", actor=SYSTEM
    )
    client = client_for("viewer")
    text, _ = check_html(client.get(url(execution)).content)
    assert "<script>x</script>" in text
    visits, _ = check_html(client.get(url(execution, "states/steps-0/"), **HTMX).content)
    assert "<a href=javascript:1>" in visits


# --- query counts do not grow with the execution ----------------------------------------------


def count_queries(client, path, **headers) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(path, **headers)
    assert response.status_code in (200, 286), (path, response.status_code)
    return len(ctx.captured_queries)


def test_a_25000_event_execution_costs_the_queries_of_a_10_event_one(
    db, django_assert_max_num_queries
):
    big = big_execution(db)
    small = start("loop", {"stop": True})
    assert small.event_count <= 10 and big.event_count >= 24_995
    client = client_for("viewer")
    parts = [("", {}), ("history/", HTMX), ("timeline/", HTMX), ("live/", HTMX),
             ("states/States-0/", HTMX), ("history/?type=StepEntered", HTMX)]  # fmt: skip
    for part, headers in parts:  # the drawing is made and kept once per version
        client.get(url(small, part), **headers)
    for running in (False, True):
        if running:  # the live page of a running execution reads what is outstanding too
            Execution.objects.filter(pk__in=[big.pk, small.pk]).update(status="Running")
        for part, headers in parts:
            counts = [count_queries(client, url(e, part), **headers) for e in (small, big)]
            assert counts[0] == counts[1], (part, running, counts)
            with django_assert_max_num_queries(14):
                client.get(url(big, part), **headers)


def test_failed_and_succeeded_pages_show_their_result(db):
    make_flow("fail", FAIL_FLOW)
    make_flow("pass", PASS_FLOW)
    client = client_for("viewer")
    text, _ = check_html(client.get(url(start("fail"))).content)
    assert "Boom" in text and "it broke" in text
    text, elements = check_html(client.get(url(start("pass", {"a": "<b>x</b>"}))).content)
    assert '"x": "<b>x</b>"' in text
    assert "is-succeeded" in classes_of(elements, "States-0")


def _running(db_):
    make_flow("task", TASK_FLOW)
    return start("task"), "States-0"


def _waiting_callback(db_):
    execution = start("demo-approval", {"request_id": "PO-7", "approver": "x", "summary": "s"})
    run_pending(execution)
    return execution, "steps-0"


def _waiting_timer(db_):
    make_flow("wait", WAIT_FLOW)
    return start("wait"), "States-0"


def _retrying(db_):
    make_flow("retry", RETRY_CATCH_FLOW)
    execution = start("retry")
    run_pending(execution)
    return execution, "States-0"


def _succeeded(db_):
    make_flow("pass", PASS_FLOW)
    return start("pass", {"a": 1}), "States-0"


def _failed(db_):
    make_flow("fail", FAIL_FLOW)
    return start("fail"), "States-0"


def _caught(db_):
    make_flow("retry", RETRY_CATCH_FLOW)
    return drive(start("retry")), "States-0"


def _cancelled(db_):
    make_flow("wait", WAIT_FLOW)
    execution = start("wait")
    services.execution_stop(execution=execution, error="Stopped", cause="x", actor=SYSTEM)
    return execution, "States-0"


@pytest.mark.parametrize(
    ("make", "status", "symbol"),
    [
        (_running, "running", "▶"),
        (_waiting_callback, "waiting-callback", "✉"),
        (_waiting_timer, "waiting-timer", "◷"),
        (_retrying, "retrying", "↻"),
        (_succeeded, "succeeded", "✓"),
        (_failed, "failed", "✕"),
        (_caught, "caught", "↷"),
        (_cancelled, "cancelled", "■"),
    ],
    ids=lambda v: v if isinstance(v, str) and v.isascii() else None,
)
def test_each_status_is_drawn_on_the_graph_with_a_symbol(demo, functions, make, status, symbol):
    execution, key = make(None)
    body = client_for("viewer").get(url(execution)).content.decode()
    node = re.search(rf'<g id="gn-{key}" class="([^"]*)".*?</g></g>', body, re.S)
    assert node is not None
    assert f"is-{status}" in node.group(1).split()
    icon = re.search(r'class="fg-icon">([^<]*)</text>', node.group(0))
    assert icon is not None and icon.group(1) == symbol
    # and in words, in the node's tooltip and in the list of states
    word = detail.STATUS_WORDS[status.replace("-", "_")]
    assert f"— {word}" in node.group(0)
