"""The dashboard in a real browser against a real flowsite: gunicorn, a Celery worker and beat
with the sweeper, on the embedded default (SQLite + the file broker), booted once for the
module by the integration harness. Debian's Chromium, driven by Playwright, logs in as each
role and does what people do on the pages: start, watch, approve, reject, stop, run again,
filter, stop several. Each test saves a screenshot to ``$FLOWSITE_ARTIFACTS/screenshots/``.

``FLOWSITE_UPDATE_SCREENSHOTS=1`` also writes the README's screenshots to ``docs/screenshots/``
(off by default, so a test run never changes the checkout).

Every wait is on a condition with a deadline (Playwright's ``expect`` / ``wait_for_*``, or the
harness's ``wait_until``); deadlines are generous for a loaded 2-core machine.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.integration.harness import ROOT, System, wait_until

# One system for the whole module (module-scoped). Under pytest-xdist, `--dist loadfile` (or
# loadscope) keeps the module in one worker; with plain `-n 2` (--dist load) its tests are
# shared out and each worker that gets some boots a system of its own (slower, still correct:
# no test depends on another's executions). `xdist_group` does not help here: xdist 3.8's
# loadgroup renames items through `_nodeid`, which pytest 9.2 no longer reads.
pytestmark = [pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
ROLES = ("viewer", "operator", "approver", "admin")
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# A polling flow on a loaded 2-core machine: Wait 3 s + a function call per loop.
LIVE_DEADLINE_MS = 60_000
README_SHOTS = ROOT / "docs" / "screenshots"

# Long-running input for demo-polling: the fake render never finishes while the test looks.
FOREVER = {"duration": 3600, "max_polls": 1000}


def artifacts() -> Path:
    path = Path(os.environ.get("FLOWSITE_ARTIFACTS") or ROOT / "artifacts") / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def shot(page, name: str, *, full_page: bool = True) -> Path:
    path = artifacts() / f"dashboard-{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


# --------------------------------------------------------------------------------------------
# The system, the browser, and people of each role
# --------------------------------------------------------------------------------------------

USERS_SNIPPET = """
import json
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
users = json.loads({users!r})
for name, (role, password) in users.items():
    user = get_user_model().objects.create_user(name, email=name + "@example.com",
                                                password=password)
    user.groups.add(Group.objects.get(name=role))
print("USERS OK")
"""


@pytest.fixture(scope="module")
def system(request):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (scripts/setup installs it)")
    sys_ = System(
        "browser_dashboard",
        workers=1,
        concurrency=3,
        # The demo handlers (demo_submit_render, demo_notify_approver, ...).
        extra_env={"FLOWSITE_FUNCTIONS_PATH": str(ROOT / "demo" / "functions")},
    )
    # Static files of this checkout, collected into the system's own folder before the web
    # server starts: whitenoise indexes STATIC_ROOT at start-up and the hashed names come from
    # the manifest, so the newest CSS/JS must be there first. A private folder also keeps
    # other runs' collectstatic out of the way.
    sys_.extra_env["FLOWSITE_STATIC_ROOT"] = str(sys_.data_dir / "static")
    sys_.env = sys_._base_env()
    failed_before = request.session.testsfailed
    try:
        sys_.manage("collectstatic", "--noinput", timeout=300)
        sys_.boot()
        sys_.manage("flowsite_demo", "--quiet")
        sys_.users = {role: (f"{role}-dana", f"pw-{role}-{os.getpid()}") for role in ROLES}
        spec = json.dumps({name: (role, pw) for role, (name, pw) in sys_.users.items()})
        assert "USERS OK" in sys_.python(USERS_SNIPPET.format(users=spec))
    except BaseException:
        sys_.stop(keep_data=True)
        raise
    yield sys_
    sys_.stop(keep_data=request.session.testsfailed > failed_before)


@pytest.fixture(scope="module")
def chromium(system):
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import expect, sync_playwright

    # Page loads on a loaded machine: wait longer than Playwright's 5 s by default.
    expect.set_options(timeout=20_000)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


def login_form(page, system, role: str) -> None:
    """Log in through /login/ as the user with ``role``."""
    from playwright.sync_api import expect

    name, password = system.users[role]
    page.goto(system.base_url + "/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(system.base_url + "/")


@pytest.fixture
def open_as(system, chromium):
    """``open_as("operator")``: a new page (own browser context) logged in with that role. The
    first login of each role goes through the form; later ones reuse its session cookie."""
    contexts = []
    states = _STATES.setdefault(id(system), {})

    def make(role: str, viewport: dict = DESKTOP):
        context = chromium.new_context(
            viewport=viewport, storage_state=states.get(role), base_url=system.base_url
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        # data-confirm forms ask with window.confirm(): a person clicks OK.
        page.dialogs = []

        def accept(dialog):
            page.dialogs.append(dialog.message)
            dialog.accept()

        page.on("dialog", accept)
        if role not in states:
            login_form(page, system, role)
            states[role] = context.storage_state()
        return page

    yield make
    for context in contexts:
        context.close()


_STATES: dict[int, dict] = {}


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def execution_url(flow: str, name: str) -> str:
    return f"/flows/{flow}/executions/{name}/"


def open_task(system, flow: str, name: str, timeout: float = 60) -> int:
    """Wait until the execution waits for a callback; its task row id."""

    def task():
        return system.scalar(
            "SELECT k.id FROM executions_tasktoken k JOIN executions_execution e "
            "ON e.id = k.execution_id JOIN executions_flow f ON f.id = e.flow_id "
            "WHERE f.name = %s AND e.name = %s AND k.is_open",
            (flow, name),
        )

    return wait_until(task, timeout, 0.2, f"{flow}/{name} to wait for a callback", system.describe)


def status_of(system, flow: str, name: str) -> str:
    return system.scalar(
        "SELECT e.status FROM executions_execution e JOIN executions_flow f "
        "ON f.id = e.flow_id WHERE f.name = %s AND e.name = %s",
        (flow, name),
    )


def audit_rows(system, action: str, object_name: str) -> list[tuple]:
    return system.sql(
        "SELECT actor_name, via, detail FROM audit_auditentry WHERE action = %s "
        "AND object_name LIKE %s ORDER BY id",
        (action, f"%{object_name}%"),
    )


def stop_quietly(system, flow: str, *names: str) -> None:
    """Cleanup: stop what a test left running (one polling loop each) through the API."""
    for name in names:
        system.api(
            "POST",
            f"flows/{flow}/executions/{name}/stop/",
            json={"cause": "test cleanup"},
            expect=(200, 409),
        )


def node(page, state: str):
    """The step graph's node of the top-level state named ``state`` (found through the
    list of states, which names each node's key)."""
    link = page.locator(".states-list a.state-link", has_text=re.compile(f"^{state}$"))
    return page.locator(f"#gn-{link.get_attribute('data-node')}")


def header_badge(page):
    # The execution's status beside its name (the page's one h1).
    return page.locator("#main h1 .badge")


def csrf_token(page) -> str:
    # Every page has one (the log-out form), whatever the role.
    return page.locator("input[name=csrfmiddlewaretoken]").first.get_attribute("value")


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


def test_each_role_logs_in_and_sees_its_navigation_and_buttons(system, chromium):
    """Through /login/ as each role: the navigation (Audit for admins only) and, on a flow
    page, an execution waiting for a callback and the approvals inbox, only the buttons the
    role may use."""
    from playwright.sync_api import expect

    system.start(
        "demo-approval",
        {"request_id": "PO-7", "approver": "dana@example.com", "summary": "a chair"},
        name="roles-po-7",
    )
    task_id = open_task(system, "demo-approval", "roles-po-7")
    may = {
        "viewer": set(),
        "operator": {"start", "stop"},
        "approver": {"approve"},
        "admin": {"start", "stop", "approve", "audit"},
    }
    for role in ROLES:
        context = chromium.new_context(viewport=DESKTOP, base_url=system.base_url)
        try:
            page = context.new_page()
            page.set_default_timeout(30_000)
            if role == ROLES[0]:
                # A wrong password first: refused on the form, nobody is logged in.
                page.goto("/login/")
                page.get_by_label("User name").fill(system.users[role][0])
                page.get_by_label("Password").fill("not-the-password")
                page.get_by_role("button", name="Log in").click()
                expect(page.get_by_role("alert")).to_contain_text("didn't match")
            login_form(page, system, role)
            allowed = may[role]

            nav = page.get_by_role("navigation", name="Main")
            for label in ("Overview", "Flows", "Executions", "Functions", "Approvals"):
                expect(nav.get_by_role("link", name=re.compile(f"^{label}"))).to_be_visible()
            expect(nav.get_by_role("link", name="Audit")).to_have_count(
                1 if "audit" in allowed else 0
            )
            expect(page.locator(".who__roles")).to_have_text(role)
            expect(page.locator(".who__name")).to_have_text(system.users[role][0])

            page.goto("/flows/demo-polling/")
            expect(page.get_by_role("heading", name="Definition")).to_be_visible()
            starts = 1 if "start" in allowed else 0
            expect(page.get_by_role("heading", name="Start an execution")).to_have_count(starts)
            expect(page.get_by_role("button", name="Start", exact=True)).to_have_count(starts)

            page.goto(execution_url("demo-approval", "roles-po-7"))
            expect(page.locator("#exec-why")).to_contain_text("Waiting for a callback")
            stops = 1 if "stop" in allowed else 0
            expect(page.get_by_role("button", name=re.compile(r"\bStop$"))).to_have_count(stops)
            expect(page.get_by_role("button", name=re.compile("Run again"))).to_have_count(starts)
            expect(page.get_by_role("link", name=re.compile("edited input"))).to_have_count(starts)
            decides = 1 if "approve" in allowed else 0
            expect(page.get_by_role("button", name=re.compile("Approve"))).to_have_count(decides)
            expect(page.get_by_role("button", name=re.compile("Reject"))).to_have_count(decides)
            shot(page, f"role-{role}-execution")

            page.goto("/approvals/")
            row = page.locator(f"#task-{task_id}")
            expect(row).to_contain_text("roles-po-7")
            expect(row.get_by_role("button", name=re.compile("Approve"))).to_have_count(decides)
            # The badge in the navigation counts the waiting steps on every page.
            expect(nav.get_by_role("link", name=re.compile("^Approvals"))).to_contain_text(
                re.compile(r"\d")
            )
            shot(page, f"role-{role}-approvals")

            if "audit" in allowed:
                page.goto("/audit/")
                expect(page.get_by_role("heading", name=re.compile("Audit"))).to_be_visible()
            else:
                response = page.goto("/audit/")
                assert response.status == 403
        finally:
            context.close()
    stop_quietly(system, "demo-approval", "roles-po-7")


def test_start_polling_from_its_form_and_watch_the_graph_change_live(system, open_as):
    """An operator starts demo-polling from the flow page's form; on the execution page the
    graph's nodes change state with no reload until the header says Succeeded, and the page
    stops polling once the execution ended (the live URL answered 286)."""
    from playwright.sync_api import expect

    page = open_as("operator")
    live: list[tuple[float, int]] = []
    page.on(
        "response",
        lambda r: live.append((time.monotonic(), r.status)) if "/live/" in r.url else None,
    )
    navigations: list[str] = []
    page.goto("/flows/demo-polling/")
    page.get_by_label("Name").fill("watch-a-mov")
    page.get_by_label("Input (JSON object)").fill(
        json.dumps({"asset": "a.mov", "duration": 6, "max_polls": 6})
    )
    page.get_by_role("button", name="Start", exact=True).click()
    expect(page).to_have_url(re.compile(re.escape(execution_url("demo-polling", "watch-a-mov"))))
    expect(page.get_by_role("status").filter(has_text="Started watch-a-mov")).to_be_visible()
    page.on(
        "framenavigated",
        lambda frame: navigations.append(frame.url) if frame == page.main_frame else None,
    )
    # Survives only if the document is never replaced.
    page.evaluate("window.__flowsiteMarker = 'same-document'")
    # Every class the graph's nodes are given from now on, in this document: the proof that
    # they changed live, whenever a poll lands (however briefly a status lasts).
    page.evaluate(
        """() => {
          window.__nodeClasses = [];
          new MutationObserver(function (records) {
            records.forEach(function (r) {
              window.__nodeClasses.push([r.target.id, r.target.getAttribute("class")]);
            });
          }).observe(document.getElementById("graph"),
                     {attributes: true, attributeFilter: ["class"], subtree: true});
        }"""
    )
    url = page.url

    wait_node = node(page, "WaitBeforePoll")
    check_node = node(page, "CheckRender")
    done_node = node(page, "RenderReady")
    wait_id = wait_node.get_attribute("id")
    # While it runs: the loop's timer is seen waiting (the 3 s Wait), then the end.
    page.wait_for_function(
        """id => window.__nodeClasses.some(function (c) {
             return c[0] === id && /\\bis-waiting-timer\\b/.test(c[1]);
           })""",
        arg=wait_id,
        timeout=LIVE_DEADLINE_MS,
    )
    shot(page, "live-running")
    expect(header_badge(page)).to_have_text(re.compile("Succeeded"), timeout=LIVE_DEADLINE_MS)
    seen = [c for key, c in page.evaluate("window.__nodeClasses") if key == wait_id]
    assert "is-succeeded" in seen[-1].split(), seen
    expect(wait_node).to_have_class(re.compile(r"\bis-succeeded\b"))
    expect(check_node).to_have_class(re.compile(r"\bis-succeeded\b"))
    expect(done_node).to_have_class(re.compile(r"\bis-succeeded\b"))
    # The loop ran more than once: the visit badge counts it.
    expect(check_node.locator(".fg-count")).to_have_text(re.compile(r"^×[2-9]"))
    # The history grew on the page too (new events on top) and the output appeared.
    expect(page.locator("#history-rows tr").first).to_contain_text("ExecutionSucceeded")
    expect(page.locator("#exec-result")).to_contain_text('"status": "done"')
    # The buttons follow: no Stop for an ended execution, Run again stays.
    expect(page.get_by_role("button", name=re.compile(r"\bStop$"))).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("Run again"))).to_have_count(1)
    assert page.evaluate("window.__flowsiteMarker") == "same-document"
    assert page.url == url and navigations == [], navigations
    shot(page, "live-succeeded")

    # Polling stops: the 286 is the last request to the live URL. Absence can only be seen by
    # letting time pass: 3 poll intervals (2 s each) after the 286.
    stops = [t for t, status in live if status == 286]
    assert len(stops) == 1, f"one 286 ends the polling: {live}"
    stopped_at = stops[0]
    page.wait_for_timeout(max(0.0, stopped_at + 6.5 - time.monotonic()) * 1000)
    after = [status for t, status in live if t > stopped_at]
    assert after == [], f"the page kept polling after 286: {after}"
    assert all(status == 200 for t, status in live if t < stopped_at), live
    assert status_of(system, "demo-polling", "watch-a-mov") == "Succeeded"

    # The polled function's page lists the attempts this execution made of it.
    page.goto("/functions/demo_render_status/")
    attempts = page.locator("section[aria-labelledby=attempts-heading]")
    expect(attempts.get_by_role("link", name="demo-polling/watch-a-mov").first).to_be_visible()
    expect(attempts.locator(".badge").first).to_contain_text("Succeeded")
    shot(page, "function-attempts")


def test_approve_as_approver_while_a_viewer_has_no_button_and_is_refused(system, open_as):
    """demo-approval waits at AskApprover. A viewer sees the step but no Approve button, and
    posting the approve form with a valid CSRF token answers 403 and changes nothing; an
    approver approves with an output on the execution page and the execution succeeds."""
    from playwright.sync_api import expect

    flow, name = "demo-approval", "approve-po-1042"
    system.start(
        flow,
        {"request_id": "PO-1042", "approver": "dana@example.com", "summary": "new laptop"},
        name=name,
    )
    task_id = open_task(system, flow, name)

    viewer = open_as("viewer")
    viewer.goto(execution_url(flow, name))
    expect(viewer.locator("#exec-why")).to_contain_text("Waiting for a callback on AskApprover")
    expect(viewer.get_by_role("button", name=re.compile("Approve"))).to_have_count(0)
    expect(viewer.locator(f"form[action='/tasks/{task_id}/approve/']")).to_have_count(0)
    shot(viewer, "approve-viewer-execution")
    viewer.goto("/approvals/")
    expect(viewer.locator(f"#task-{task_id}")).to_contain_text(name)
    expect(viewer.get_by_role("button", name=re.compile("Approve"))).to_have_count(0)
    refused = viewer.request.post(
        f"/tasks/{task_id}/approve/",
        form={
            "csrfmiddlewaretoken": csrf_token(viewer),
            "output": json.dumps({"decision": "approve"}),
            "next": execution_url(flow, name),
        },
        max_redirects=0,
    )
    assert refused.status == 403, refused.text()[:500]
    assert "approver" in refused.text()
    # Nothing changed: the step still waits, the execution runs, no audit row.
    assert open_task(system, flow, name, timeout=1) == task_id
    assert status_of(system, flow, name) == "Running"
    assert audit_rows(system, "task.approve", name) == []

    approver = open_as("approver")
    approver.goto(execution_url(flow, name))
    approvals = approver.locator(".approvals-card")
    expect(approvals).to_contain_text("AskApprover")
    approvals.get_by_label("Output (JSON, optional)").fill(
        json.dumps({"decision": "approve", "comment": "fine by me"})
    )
    shot(approver, "approve-approver-before")
    approvals.get_by_role("button", name=re.compile("Approve")).click()
    expect(approver).to_have_url(re.compile(re.escape(execution_url(flow, name)) + "$"))
    expect(
        approver.get_by_role("status").filter(has_text="Approved step AskApprover")
    ).to_be_visible()
    expect(header_badge(approver)).to_have_text(re.compile("Succeeded"), timeout=LIVE_DEADLINE_MS)
    expect(approver.locator("#exec-result")).to_contain_text("fine by me")
    shot(approver, "approve-approver-succeeded")
    rows = audit_rows(system, "task.approve", name)
    assert [(who, via) for who, via, _ in rows] == [(system.users["approver"][0], "web")]


def test_reject_a_waiting_step_from_the_inbox(system, open_as):
    """An approver rejects from the approvals inbox with an error and a cause; the row says so
    in place (htmx), and the execution fails with that error."""
    from playwright.sync_api import expect

    flow, name = "demo-approval", "reject-po-1043"
    system.start(
        flow,
        {"request_id": "PO-1043", "approver": "dana@example.com", "summary": "gold-plated desk"},
        name=name,
    )
    task_id = open_task(system, flow, name)
    page = open_as("approver")
    page.goto("/approvals/")
    row = page.locator(f"#task-{task_id}")
    expect(row).to_contain_text(name)
    page.evaluate("window.__flowsiteMarker = 'inbox'")
    badge = page.locator("#nav-approvals-count .count")
    waiting = int(badge.inner_text())
    assert waiting >= 1
    row.get_by_text("Reject…").click()
    row.get_by_label("Error code").fill("BudgetRefused")
    row.get_by_label("Cause").fill("over the team's budget")
    shot(page, "reject-form")
    row.get_by_role("button", name="Reject", exact=True).click()
    expect(row).to_contain_text(f"Rejected step AskApprover of {flow}/{name}")
    assert page.evaluate("window.__flowsiteMarker") == "inbox"  # swapped in place
    # The navigation's count follows the decision without a reload.
    if waiting > 1:
        expect(badge).to_have_text(str(waiting - 1))
    else:
        expect(badge).to_have_count(0)
    shot(page, "reject-done")

    row.get_by_role("link", name="Open the execution").click()
    expect(page).to_have_url(re.compile(re.escape(execution_url(flow, name)) + "$"))
    expect(header_badge(page)).to_have_text(re.compile("Failed"), timeout=LIVE_DEADLINE_MS)
    result = page.locator("#exec-result")
    expect(result.locator(".result__error")).to_have_text("BudgetRefused")
    expect(result).to_contain_text("over the team's budget")
    shot(page, "reject-execution")
    assert status_of(system, flow, name) == "Failed"
    assert [r[0] for r in audit_rows(system, "task.reject", name)] == [system.users["approver"][0]]


def test_stop_with_a_reason(system, open_as):
    """An operator stops a long polling execution with a reason (markup in it stays text);
    the page says Stopped with the reason, and so do its history and the audit log."""
    from playwright.sync_api import expect

    flow, name = "demo-polling", "stop-long-render"
    system.start(flow, {"asset": "long.mov", **FOREVER}, name=name)
    reason = "wrong asset <b>long.mov</b>"
    page = open_as("operator")
    page.goto(execution_url(flow, name))
    expect(header_badge(page)).to_have_text(re.compile("Running"))
    page.get_by_label("Why stop it").fill(reason)
    # People type slowly: the live partial updates the page meanwhile, and the reason typed
    # must still be there after it did.
    with page.expect_response(lambda r: "/live/" in r.url and r.status == 200):
        pass
    expect(page.get_by_label("Why stop it")).to_have_value(reason)
    page.get_by_role("button", name=re.compile(r"\bStop$")).click()
    expect(page.get_by_role("status").filter(has_text=f"Stopped {name}.")).to_be_visible()
    assert page.dialogs and "Stop this execution?" in page.dialogs[0]
    expect(header_badge(page)).to_have_text(re.compile("Stopped"))
    expect(page.locator("#exec-result")).to_contain_text(reason)
    expect(page.locator("#exec-result b")).to_have_count(0)
    history = page.locator("#history-rows")
    expect(history.locator("tr").first).to_contain_text("ExecutionStopped")
    expect(history.locator("tr").first).to_contain_text("wrong asset")
    expect(page.get_by_role("button", name=re.compile(r"\bStop$"))).to_have_count(0)
    shot(page, "stop-execution")
    assert status_of(system, flow, name) == "Stopped"

    admin = open_as("admin")
    admin.goto("/audit/?action=execution.stop")
    entry = admin.locator("tbody tr", has_text=name)
    expect(entry).to_have_count(1)
    expect(entry).to_contain_text(system.users["operator"][0])
    expect(entry).to_contain_text("long.mov")
    shot(admin, "stop-audit")


def test_run_again_with_edited_input(system, open_as):
    """Execution page -> "Run with edited input…" -> the flow's start form with the input
    copied -> edit -> Start: the new execution has the edited input. "Run again" alone starts
    one with the same input."""
    from playwright.sync_api import expect

    flow, name = "demo-polling", "first-cut"
    system.start(flow, {"asset": "first.mov", "duration": 0, "max_polls": 3}, name=name)
    page = open_as("operator")
    page.goto(execution_url(flow, name))
    page.get_by_role("link", name=re.compile("Run with edited input")).click()
    expect(page).to_have_url(re.compile(rf"/flows/{flow}/\?input_from={name}#start$"))
    expect(page.locator(".note")).to_contain_text(f"Input copied from execution {name}")
    field = page.get_by_label("Input (JSON object)")
    copied = json.loads(field.input_value())
    assert copied == {"asset": "first.mov", "duration": 0, "max_polls": 3}
    field.fill(json.dumps({**copied, "asset": "second.mov"}, indent=2))
    page.get_by_label("Name").fill("second-cut")
    shot(page, "run-again-form")
    page.get_by_role("button", name="Start", exact=True).click()
    expect(page).to_have_url(re.compile(re.escape(execution_url(flow, "second-cut")) + "$"))
    expect(page.locator("h1 .exec-name")).to_have_text("second-cut")
    expect(page.locator("section[aria-labelledby=input-title] pre")).to_contain_text(
        '"asset": "second.mov"'
    )
    shot(page, "run-again-new")
    stored = system.describe_execution(flow, "second-cut")
    assert stored["input"]["asset"] == "second.mov"

    # Run again (same input): a new execution with a made-up name.
    page.goto(execution_url(flow, name))
    page.get_by_role("button", name=re.compile("Run again")).click()
    expect(page.get_by_role("status").filter(has_text=f"with the input of {name}")).to_be_visible()
    new_name = urlsplit(page.url).path.rstrip("/").rsplit("/", 1)[-1]
    assert new_name not in (name, "second-cut")
    assert system.describe_execution(flow, new_name)["input"]["asset"] == "first.mov"


def test_filter_executions_by_status_and_input_field(system, open_as):
    """/executions/ filtered by status and by a condition on an input field shows only the
    matching executions; the filters live in the URL, so a reload keeps them."""
    from playwright.sync_api import expect

    flow = "demo-polling"
    system.start(flow, {"asset": "b.mov", **FOREVER}, name="filter-b-running")
    system.start(flow, {"asset": "b.mov", "duration": 0, "max_polls": 3}, name="filter-b-done")
    system.start(flow, {"asset": "c.mov", **FOREVER}, name="filter-c-running")
    try:
        assert system.wait_done(flow, "filter-b-done")["status"] == "Succeeded"
        page = open_as("viewer")
        page.goto("/executions/?name=filter-")
        names = page.locator("#executions-results table tbody td.truncate a")
        expect(names).to_have_count(3)

        page.locator("input[name=status][value=Running]").check()
        page.get_by_label("Input field").fill('asset = "b.mov"')
        page.get_by_role("button", name="Filter").click()
        expect(names).to_have_text(["filter-b-running"])
        expect(page).to_have_url(re.compile(r"[?&]q=asset"))  # pushed by htmx
        query = parse_qs(urlsplit(page.url).query)
        assert query["status"] == ["Running"] and query["q"] == ['asset = "b.mov"'], page.url
        shot(page, "filter-status-and-input")

        page.reload()
        expect(names).to_have_text(["filter-b-running"])
        expect(page.locator("input[name=status][value=Running]")).to_be_checked()
        expect(page.get_by_label("Input field")).to_have_value('asset = "b.mov"')
        expect(page.get_by_label("Name starts with")).to_have_value("filter-")

        # Only the input condition: both b.mov executions, newest first.
        page.locator("input[name=status][value=Running]").uncheck()
        page.get_by_role("button", name="Filter").click()
        expect(names).to_have_text(["filter-b-done", "filter-b-running"])
        expect(page).not_to_have_url(re.compile(r"[?&]status="))
        assert parse_qs(urlsplit(page.url).query)["q"] == ['asset = "b.mov"']
        shot(page, "filter-input-only")
    finally:
        stop_quietly(system, flow, "filter-b-running", "filter-c-running")


def test_stop_several_at_once(system, open_as):
    """Select three running executions, give a reason and type the confirmation: they are
    Stopped, a fourth that was not selected still runs. A wrong confirmation stops none."""
    from playwright.sync_api import expect

    flow = "demo-polling"
    chosen = [f"bulk-{n}" for n in (1, 2, 3)]
    for name in [*chosen, "bulk-keep"]:
        system.start(flow, {"asset": f"{name}.mov", **FOREVER}, name=name)
    try:
        page = open_as("operator")
        page.goto("/executions/?name=bulk-")
        table = page.locator("#executions-results table tbody")
        expect(table.locator("tr")).to_have_count(4)
        for name in chosen:
            page.get_by_label(f"Select {name}", exact=True).check()
        page.get_by_text("Stop selected executions…").click()
        page.get_by_label("Reason").fill("duplicate renders")
        page.get_by_label("Confirm").fill("2")
        page.get_by_role("button", name="Stop selected").click()
        expect(page.locator(".messages")).to_contain_text("Nothing was stopped")
        assert {status_of(system, flow, n) for n in chosen} == {"Running"}

        for name in chosen:
            page.get_by_label(f"Select {name}", exact=True).check()
        page.get_by_text("Stop selected executions…").click()
        page.get_by_label("Reason").fill("duplicate renders")
        page.get_by_label("Confirm").fill("3")
        shot(page, "bulk-stop-form")
        page.get_by_role("button", name="Stop selected").click()
        expect(page.locator(".messages")).to_contain_text("Stopped 3")
        expect(page).to_have_url(re.compile(r"/executions/\?name=bulk-$"))
        for name in chosen:
            expect(table.locator("tr", has_text=name).locator(".badge")).to_have_text(
                re.compile("Stopped")
            )
        expect(table.locator("tr", has_text="bulk-keep").locator(".badge")).to_have_text(
            re.compile("Running")
        )
        shot(page, "bulk-stop-done")
        assert [status_of(system, flow, n) for n in chosen] == ["Stopped"] * 3
        assert status_of(system, flow, "bulk-keep") == "Running"
        for name in chosen:
            ((detail,),) = [r[2:] for r in audit_rows(system, "execution.stop", name)]
            assert "duplicate renders" in str(detail)
    finally:
        stop_quietly(system, flow, "bulk-keep")


HOSTILE = {
    "request_id": '<a hx-get="/audit/" hx-trigger="load" hx-target="body">PO-666</a>',
    "approver": "javascript:window.__pwned='approver'",
    "summary": '<img src="x" onerror="window.__pwned=1"><script>window.__pwned=2</script>',
}


def test_hostile_input_and_decisions_stay_text_in_the_browser(system, open_as):
    """Markup, hx-* attributes and javascript: URLs in an input, a rejection's cause and the
    live updates render as text in a real browser: nothing runs, htmx makes no request they
    ask for, no element they describe exists."""
    from playwright.sync_api import expect

    flow, name = "demo-approval", "hostile-po-666"
    system.start(flow, HOSTILE, name=name)
    task_id = open_task(system, flow, name)
    page = open_as("approver")
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/audit/" in r.url else None)
    page.goto("/approvals/")
    row = page.locator(f"#task-{task_id}")
    row.locator("details.json-peek summary").click()
    expect(row.locator("pre")).to_contain_text('<img src=\\"x\\" onerror=')
    page.goto(execution_url(flow, name))
    expect(page.locator("section[aria-labelledby=input-title] pre")).to_contain_text(
        "javascript:window.__pwned='approver'"
    )
    approvals = page.locator(".approvals-card")
    approvals.get_by_label("Cause").fill(HOSTILE["summary"])
    approvals.get_by_role("button", name=re.compile("Reject")).click()
    expect(header_badge(page)).to_have_text(re.compile("Failed"), timeout=LIVE_DEADLINE_MS)
    expect(page.locator("#exec-result")).to_contain_text(HOSTILE["summary"])
    # The newest history event's JSON opened too, then look.
    page.locator("#history-rows details").first.locator("summary").click()
    shot(page, "hostile-execution")
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("img[src=x], main script, a[hx-get='/audit/']").count() == 0
    assert asked == []
    assert page.dialogs == ["Reject this step?"]  # the page's own confirmation only


def test_readme_screenshots(system, open_as):
    """The README's pictures at 1280x800 (and a phone's 390 px): the overview, an execution
    of demo-polling mid-run (graph, history), the approvals inbox."""
    from playwright.sync_api import expect

    update = os.environ.get("FLOWSITE_UPDATE_SCREENSHOTS") == "1"
    # Something in every list: waiting approvals, a failure, a fan-out.
    for n, summary in ((2001, "a standing desk, 640 EUR"), (2002, "conference trip, 1,250 EUR")):
        system.start(
            "demo-approval",
            {"request_id": f"PO-{n}", "approver": "dana@example.com", "summary": summary},
            name=f"po-{n}",
        )
    for n in (2001, 2002):
        open_task(system, "demo-approval", f"po-{n}")
    system.start("demo-polling", {"asset": "teaser.broken", "duration": 0}, name="teaser-cut")
    system.start(
        "demo-fanout",
        {"parts": [{"id": f"p{i}", "data": f"part {i}"} for i in range(1, 6)]},
        name="upload-2041",
    )
    flow, name = "demo-polling", "trailer-render"
    system.start(flow, {"asset": "trailer.mov", **FOREVER}, name=name)
    try:
        page = open_as("operator")
        page.goto(execution_url(flow, name))
        # Mid-run: the loop went round a few times and the Wait's timer is running.
        expect(node(page, "CheckRender").locator(".fg-count")).to_have_text(
            re.compile(r"^×[3-9]"), timeout=LIVE_DEADLINE_MS
        )
        expect(node(page, "WaitBeforePoll")).to_have_class(
            re.compile(r"\bis-waiting-timer\b"), timeout=LIVE_DEADLINE_MS
        )
        # A state selected in the graph: its visits show beside it.
        page.locator("#graph a.fg-link", has=node(page, "CheckRender")).click()
        expect(page.locator("#state-panel .visits")).to_be_visible()
        expect(node(page, "CheckRender")).to_have_class(re.compile(r"\bis-selected\b"))
        # The whole page is ~3,000 px tall: two 1280x800 pictures, the top (head, why it
        # waits, graph, visits) and the timeline with the start of the history.
        page.evaluate("window.scrollTo(0, 0)")
        pictures = {"execution": shot(page, "readme-execution", full_page=False)}
        # The timeline is drawn at page load; its Refresh button redraws it while it runs.
        bars = page.locator("#timeline-body a.tl-link").count()
        page.locator("#timeline").get_by_role("link", name="Refresh").click()
        page.wait_for_function(
            "n => document.querySelectorAll('#timeline-body a.tl-link').length > n", arg=bars
        )
        page.locator("#timeline").evaluate("element => element.scrollIntoView()")
        expect(page.locator("#history-rows tr").first).to_be_in_viewport()
        pictures["execution-history"] = shot(page, "readme-execution-history", full_page=False)

        phone = open_as("operator", PHONE)
        phone.goto(execution_url(flow, name))
        expect(phone.locator("#graph svg")).to_be_visible()
        pictures["execution-phone"] = shot(phone, "readme-execution-phone", full_page=False)

        approver = open_as("approver")
        approver.goto("/approvals/")
        for n in (2001, 2002):
            expect(approver.locator("table.approvals tbody tr", has_text=f"po-{n}")).to_be_visible()
        pictures["approvals"] = shot(approver, "readme-approvals", full_page=False)

        assert system.wait_done("demo-polling", "teaser-cut")["status"] == "Failed"
        system.wait_done("demo-fanout", "upload-2041")
        page.goto("/")
        expect(page.get_by_role("heading", name="Overview")).to_be_visible()
        pictures["overview"] = shot(page, "readme-overview", full_page=False)
        page.goto("/flows/")
        polling = page.locator("tr", has=page.get_by_role("link", name="demo-polling", exact=True))
        expect(polling.locator(".counts .badge").first).to_be_visible()  # counts of the last day
        shot(page, "flows", full_page=False)
    finally:
        stop_quietly(system, flow, name)
    if update:
        README_SHOTS.mkdir(parents=True, exist_ok=True)
        for key, path in pictures.items():
            (README_SHOTS / f"{key}.png").write_bytes(path.read_bytes())


def test_live_badges_and_symbols_are_the_servers():
    """execution.js redraws badges and graph symbols as the live partial reports new statuses:
    its tables must be the server's (ui.STATUSES, graph_svg.SYMBOLS), or a live page shows
    other glyphs than a reload (an emoji-only one is a box without an emoji font)."""
    from executions.graph_svg import SYMBOLS
    from flowsite.ui.templatetags.ui import STATUSES

    script = (ROOT / "static" / "flowsite" / "execution.js").read_text()
    badges_js = re.search(r"var BADGES = \{(.*?)\};", script, re.S).group(1)
    badges = {
        key: (css, symbol, word)
        for key, css, symbol, word in re.findall(
            r'(\w+): \["([\w-]+)", "([^"]*)", "([^"]*)"\]', badges_js
        )
    }
    assert badges == {key: STATUSES[key] for key in SYMBOLS}
    symbols_js = re.search(r"var SYMBOLS = \{(.*?)\};", script, re.S).group(1)
    assert dict(re.findall(r'(\w+): "([^"]*)"', symbols_js)) == SYMBOLS
