"""Hostile text renders as text. The payloads (``<script>``, an ``onerror`` image, a closing
``</script>``, an ``hx-get`` div that would call the API on load, ``javascript:``, ``{{7*7}}``,
U+2028, an ``onload`` SVG) are put everywhere user data reaches a page (see
``support.hostile_world``), then every page and partial that shows them is rendered as an admin
and parsed: no element and no attribute may come from user data, no URL may leave the site or
run script, and the payloads must be there as text. Then Debian's Chromium opens the same pages
and must see no dialog, no console error and no request to another host or to the API.

Names of flows, executions and functions cannot carry markup at all: the services refuse them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from django.urls import reverse

from executions import graph_svg
from executions import services as execution_services
from executions.models import Execution
from flowsite.access import SYSTEM
from flowsite.errors import ServiceError
from functions import services as function_services
from tests.factories import PASS_FLOW

from . import support
from .support import ALL_PAYLOADS, MARKUP_PAYLOADS, PAYLOADS, Page

HTMX = {"HTTP_HX_REQUEST": "true"}


# --- which pages show the hostile data ---------------------------------------------------------


def _execution_url(execution: Execution, part: str = "") -> str:
    return reverse("execution", args=[execution.flow.name, execution.name]) + part


class Pages(list):
    """(label, method, URL, form data, headers) of the pages to look at."""

    def get(self, label: str, url: str, headers: dict | None = None) -> None:
        self.append((label, "GET", url, {}, headers or {}))

    def post(self, label: str, url: str, data: dict, headers: dict | None = None) -> None:
        self.append((label, "POST", url, data, headers or {}))


def hostile_pages(world: support.HostileWorld) -> Pages:
    """Every page and partial that shows the hostile data, and the forms that echo it back."""
    q = quote(ALL_PAYLOADS[:150])
    executions, audit = reverse("executions"), reverse("audit")
    pages = Pages()
    pages.get("overview", reverse("overview"))
    pages.get("flows", reverse("flows"))
    pages.get("executions", executions)
    pages.get("executions-partial", executions, {**HTMX, "HTTP_HX_TARGET": "executions-results"})
    pages.get("executions-filtered", f"{executions}?q={q}&name={q}&flow={q}&started_from={q}")
    pages.get("executions-by-input", f"{executions}?q={quote('x = ' + support.P_SCRIPT)}")
    pages.get("executions-bad-status", f"{executions}?status={q}")
    pages.get("approvals", reverse("approvals"))
    pages.get("functions", reverse("functions"))
    pages.get("audit", audit)
    pages.get("audit-filtered", f"{audit}?user={q}&action={q}&from={q}")
    pages.get("audit-by-user", f"{audit}?user={quote(support.HOSTILE_USERS[0])}")
    pages.get("not-found", "/nothing/" + quote(support.P_SCRIPT) + "/")
    for name in world.flows:
        pages.get(f"flow {name}", reverse("flow", args=[name]))
    flow = reverse("flow", args=["xss_states"])
    pages.get("flow copy input", f"{flow}?input_from={world.executions['failed_fail_state'].name}")
    pages.get("flow bad version", f"{flow}?version={q}")
    start = reverse("flow-start", args=["xss_states"])
    pages.post("start refused", start, {"name": ALL_PAYLOADS, "input": ALL_PAYLOADS})
    pages.post("start bad input", start, {"name": "ok", "input": "{" + ALL_PAYLOADS})
    pages.post("start not an object", start, {"input": json.dumps(support.P_SCRIPT)})
    for name in world.functions:
        pages.get(f"function {name}", reverse("function", args=[name]))
    invoke = reverse("function-invoke", args=["sec_raise"])
    event = json.dumps({"message": ALL_PAYLOADS})
    pages.post("invoke fails", invoke, {"body": event, "kind": "json"})
    pages.post("invoke bad json", invoke, {"body": ALL_PAYLOADS, "kind": "json"})
    pages.post("invoke text", invoke, {"body": ALL_PAYLOADS, "kind": "text"})
    task = world.waiting_task.pk
    pages.post(
        "approve bad output", reverse("task-approve", args=[task]), {"output": ALL_PAYLOADS}, HTMX
    )
    pages.post(
        "reject no error", reverse("task-reject", args=[task]), {"cause": ALL_PAYLOADS}, HTMX
    )
    stop = _execution_url(world.executions["running"], "stop/")
    pages.post("stop without reason", stop, {"reason": ""})
    for key, execution in world.executions.items():
        page = _execution_url(execution)
        pages.get(f"execution {key}", page)
        pages.get(f"live {key}", page + "live/", HTMX)
        pages.get(f"live history {key}", page + "live/?history_live=1&since=1", HTMX)
        pages.get(f"history {key}", page + "history/")
        pages.get(f"history partial {key}", page + f"history/?order=oldest&type={q}", HTMX)
        pages.get(f"failures {key}", page + "history/?failures=1", HTMX)
        pages.get(f"timeline {key}", page + "timeline/")
        pages.get(f"timeline partial {key}", page + "timeline/", HTMX)
        for event_id in range(1, execution.event_count + 1):
            url = page + f"history/?event={event_id}"
            pages.get(f"event {key} {event_id}", url, None if event_id == 1 else HTMX)
        for i, node in enumerate(graph_svg.layout_for(execution.flow_version).nodes):
            url = page + f"states/{node.key}/"
            pages.get(f"visits {key} {node.key}", url, None if i == 0 else HTMX)
    return pages


# A handler's own failure is a 502 (the function's error shown on the page), not a crash.
DESIGNED_5XX = {"invoke fails": 502, "invoke text": 502}


def _check_response(label: str, response) -> tuple[list[str], Page | None]:
    problems: list[str] = []
    if response.status_code >= 500 and DESIGNED_5XX.get(label) != response.status_code:
        return [f"{label}: {response.status_code}"], None
    if not response.get("Content-Type", "").startswith("text/html"):
        body = response.content.decode()
        problems += [f"{label}: {p}" for p in support.hostile_source_problems(body)]
        return problems, None
    html = response.content.decode()
    page = Page(html)
    problems += [f"{label}: {p}" for p in support.markup_problems(page)]
    problems += [f"{label}: {p}" for p in support.hostile_source_problems(html)]
    return problems, page


# --- the server's side -------------------------------------------------------------------------


@pytest.mark.parametrize("payload", MARKUP_PAYLOADS)
def test_the_inspection_sees_a_payload_written_as_markup(payload):
    """The checks below can fail: each markup payload, written unescaped into a page, is
    reported by the source check and (but the closing-script one, which makes no element of
    its own) by the element check."""
    html = f"<html><body><p>{payload}</p><a href='javascript:alert(1)'>x</a></body></html>"
    assert support.hostile_source_problems(html)
    assert support.markup_problems(Page(html))
    assert support.markup_problems(Page(f"<p>{payload}</p>")) or payload.startswith("</script>")


@pytest.mark.django_db
def test_hostile_text_renders_as_text_everywhere(worker_runs):
    world = support.hostile_world()
    admin = support.page_client(support.user_with("admin"))
    problems: list[str] = []
    texts: dict[str, str] = {}
    for label, method, url, data, headers in hostile_pages(world):
        if method == "GET":
            response = admin.get(url, **headers)
        else:
            response = admin.post(url, data, **headers)
        found, page = _check_response(label, response)
        problems += found
        if page is not None:
            texts[label] = page.text + " ".join(page.attribute_values())
    assert not problems, problems
    # The payloads are on the pages, as text: where each kind of data is shown.
    everything = " ".join(texts.values())
    for payload in PAYLOADS:
        assert payload in everything, payload
    shows = {
        "overview": [support.P_SCRIPT],  # the latest failures: a Fail state's code
        "flow xss_states": [support.P_SCRIPT, support.P_HTMX, support.P_SVG, ALL_PAYLOADS],
        "execution failed_fail_state": [support.P_SCRIPT, support.P_IMG, support.P_SVG],
        "execution failed_handler": ["ValueError", support.P_HTMX],
        "execution rejected": [support.P_SCRIPT],
        "execution stopped": [support.HOSTILE_USERS[0], support.P_SVG],  # who, and the reason
        "execution approved": [support.P_SVG, support.P_TEMPLATE],  # the approval's output
        "execution reported_failed": [support.P_IMG],  # a machine's error code
        "approvals": [support.P_SCRIPT, support.P_CLOSE],  # the waiting step's input
        "functions": [ALL_PAYLOADS],
        "function sec_raise": [support.HOSTILE_USERS[0]],
        "invoke fails": [support.P_SCRIPT, support.P_HTMX],
        "audit": [support.HOSTILE_USERS[0], support.HOSTILE_USERS[1]],
        "audit-by-user": [support.HOSTILE_USERS[0]],
    }
    missing = [
        (label, payload)
        for label, payloads in shows.items()
        for payload in payloads
        if payload not in texts[label]
    ]
    assert not missing, missing
    # the state names on the step graph (the SVG's texts), not only in the definition's text
    graph = Page(admin.get(_execution_url(world.executions["failed_fail_state"])).content.decode())
    svg_texts = [v for tag, attrs in graph.elements if tag == "g" for v in attrs.values()]
    assert any(v.startswith("gn-") for v in svg_texts)


@pytest.mark.django_db
def test_audit_details_are_text(worker_runs):
    """The audit log shows each change's detail (a stop reason, a reject cause) as JSON text,
    and the acting users' names, whatever they hold."""
    support.hostile_world()
    admin = support.page_client(support.user_with("admin"))
    body = admin.get(reverse("audit") + "?action=execution.stop").content.decode()
    page = Page(body)
    assert not support.markup_problems(page) and not support.hostile_source_problems(body)
    assert json.dumps({"reason": ALL_PAYLOADS}, ensure_ascii=False)[12:80] in page.text
    assert support.HOSTILE_USERS[1] in page.text  # who stopped it


# The admin carries inline code of its own (it is exempt from the policy), so what it shows
# of user data must be escaped: nothing else stops a payload there.
ADMIN_MODELS = (
    "executions.flow", "executions.flowversion", "executions.execution",
    "executions.historyevent", "executions.workitem", "executions.timer", "executions.tasktoken",
    "functions.function", "functions.invocation", "audit.auditentry", "auth.user",
)  # fmt: skip


def admin_problems(html: str) -> list[str]:
    problems = support.hostile_source_problems(html)
    for tag, attrs in Page(html).elements:
        if tag == "img" and not attrs.get("src", "").startswith("/static/"):
            problems.append(f"an <img> from {attrs.get('src')!r}")  # the admin's icons only
        elif tag in support.NEVER_TAGS - {"img"}:
            problems.append(f"a <{tag}>")
        for name, value in attrs.items():
            if name.startswith("on") and "alert(" in value:
                problems.append(f"{name}={value!r}")
            if name.startswith("hx-"):
                problems.append(f"{name}= in the admin")
            if name in support.URL_ATTRIBUTES and value.strip().lower().startswith("javascript:"):
                problems.append(f"{name}={value!r}")
    return problems


@pytest.mark.django_db
def test_the_admin_shows_hostile_text_as_text(worker_runs):
    from django.apps import apps

    support.hostile_world()
    admin = support.page_client(support.user_with("admin"))
    problems = []
    pages = 0
    for label in ADMIN_MODELS:
        app, model = label.split(".")
        changelist = reverse(f"admin:{app}_{model}_changelist")
        urls = [changelist, f"{changelist}?q={quote(support.P_SCRIPT)}"]
        for pk in apps.get_model(label).objects.order_by("-pk").values_list("pk", flat=True)[:8]:
            urls.append(reverse(f"admin:{app}_{model}_change", args=[pk]))
        for url in urls:
            response = admin.get(url)
            assert response.status_code == 200, (url, response.status_code)
            problems += [f"{url}: {p}" for p in admin_problems(response.content.decode())]
            pages += 1
    assert not problems, problems
    assert pages > 40


@pytest.mark.django_db
@pytest.mark.parametrize("payload", PAYLOADS)
def test_names_cannot_carry_markup(payload):
    """Flow, execution and function names are letters, digits, _ and - (services, API and
    forms all refuse anything else with a coded 400)."""
    payload = f"n{payload}n"  # inside a name (forms strip spaces such as U+2028 at its ends)
    flow = support.make_flow("named", PASS_FLOW)
    with pytest.raises(ServiceError) as caught:
        execution_services.flow_create(name=payload, definition=PASS_FLOW, actor=SYSTEM)
    assert (caught.value.code, caught.value.status) == ("InvalidArgument", 400)
    with pytest.raises(ServiceError) as caught:
        execution_services.execution_start(flow=flow, name=payload, input={}, actor=SYSTEM)
    assert (caught.value.code, caught.value.status) == ("InvalidArgument", 400)
    with pytest.raises(ServiceError) as caught:
        function_services.function_create(name=payload, handler="sechandlers.ok", actor=SYSTEM)
    assert caught.value.status == 400 and caught.value.code == "InvalidArgument"
    api = support.api_client(support.user_with("admin"))
    for url, body in (
        ("/api/v1/flows/", {"name": payload, "definition": PASS_FLOW}),
        ("/api/v1/flows/named/executions/", {"name": payload, "input": {}}),
        ("/api/v1/functions/", {"name": payload, "handler": "sechandlers.ok"}),
    ):
        response = api.post(url, body, format="json")
        assert response.status_code == 400, (url, response.content)
        assert response.json()["code"] == "InvalidArgument"
    page = support.page_client(support.user_with("admin"))
    response = page.post(reverse("flow-start", args=["named"]), {"name": payload, "input": "{}"})
    assert response.status_code == 400
    assert not support.markup_problems(Page(response.content.decode()))
    assert not support.hostile_source_problems(response.content.decode())
    assert not Execution.objects.exists()


@pytest.mark.django_db
def test_redirects_after_a_form_stay_on_this_site(worker_runs):
    """The ``next`` a form carries back: only a path of this site (never another host, a
    protocol-relative URL, a backslash trick or a script URL)."""
    world = support.make_world()
    admin = support.page_client(support.user_with("admin"))
    for target in (
        "//evil.example/", "/\\evil.example/", "https://evil.example/", "/\t/evil.example",
        "javascript:alert(1)", " //evil.example", "\\\\evil.example", "/%2F%2Fevil.example",
    ):  # fmt: skip
        task = world.fresh_task()
        response = admin.post(reverse("task-approve", args=[task.pk]), {"next": target})
        assert response.status_code == 302
        location = urlsplit(response["Location"])
        assert not location.scheme and not location.netloc, (target, response["Location"])
        assert response["Location"].startswith("/") and not response["Location"].startswith(
            ("//", "/\\")
        )
        running = world.fresh_running()
        response = admin.post(
            reverse("executions-stop"),
            {"ids": [running.pk], "confirm": "STOP", "reason": "r", "next": target},
        )
        assert response.status_code == 302
        assert not urlsplit(response["Location"]).netloc, (target, response["Location"])


# --- in a browser -------------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]  # fmt: skip


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (scripts/setup installs it)")
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


BROWSER_PAGES = [
    "overview", "flows", "flow xss_states", "flow xss_handler", "executions",
    "executions-filtered", "execution failed_fail_state", "execution failed_handler",
    "execution approved", "execution rejected", "execution waiting", "execution stopped",
    "execution running", "approvals", "functions", "function sec_raise", "audit", "not-found",
]  # fmt: skip


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_no_script_runs_in_a_browser(live_server, browser, worker_runs):
    from django.conf import settings

    world = support.hostile_world()
    admin = support.user_with("admin")
    session = support.page_client(admin).cookies[settings.SESSION_COOKIE_NAME].value
    host = urlsplit(live_server.url).netloc
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": live_server.url}]
    )
    page = context.new_page()
    where = ["start"]  # the page being looked at (what each finding is reported with)
    dialogs: list[str] = []
    errors: list[tuple[str, str]] = []
    outside: list[str] = []

    def on_dialog(dialog):
        dialogs.append(f"{where[0]}: {dialog.message}")
        dialog.dismiss()

    def on_request(request):
        parts = urlsplit(request.url)
        if parts.scheme in ("data", "blob", "about"):
            return
        if parts.netloc != host or parts.path.startswith("/api/"):
            outside.append(f"{where[0]}: {request.url}")

    page.on("dialog", on_dialog)
    page.on("console", lambda m: m.type == "error" and errors.append((where[0], m.text)))
    page.on("pageerror", lambda e: errors.append((where[0], str(e))))
    page.on("request", on_request)
    support.ARTIFACTS.mkdir(parents=True, exist_ok=True)
    urls = {label: url for label, method, url, _, _ in hostile_pages(world) if method == "GET"}
    for label in BROWSER_PAGES:
        # goto waits for the load event: htmx has processed the page by then (it starts on
        # DOMContentLoaded), so a request an injected hx-trigger="load" made is already seen.
        where[0] = label
        page.goto(live_server.url + urls[label])
        page.screenshot(path=str(support.ARTIFACTS / f"xss-{label.replace(' ', '-')}.png"))
    # htmx swaps in place: a state's visits (from the graph), a failure's detail, a decision
    # the service refuses (the row comes back, 400, with the typed output and the error)
    where[0] = "state visits"
    page.goto(live_server.url + urls["execution failed_fail_state"])
    with page.expect_response(lambda r: "/states/" in r.url):
        page.locator("a.fg-link").first.click()
    page.locator("tr.ev-failure summary").first.click()
    page.screenshot(path=str(support.ARTIFACTS / "xss-execution-partials.png"), full_page=True)
    where[0] = "approval refused"
    page.goto(live_server.url + reverse("approvals"))
    row = page.locator(f"#task-{world.waiting_task.pk}")
    row.locator("summary", has_text="Output").click()
    row.locator("textarea[name=output]").fill(ALL_PAYLOADS)
    with page.expect_response(lambda r: "/approve/" in r.url) as answer:
        row.locator("button.btn--ok").click()
    assert answer.value.status == 400
    page.locator(f"#task-{world.waiting_task.pk} .error").wait_for()
    page.screenshot(path=str(support.ARTIFACTS / "xss-approvals-refused.png"))
    # the watchers see what they watch for: a dialog, a console error, a call to the API
    where[0] = "probe"
    page.evaluate("() => { alert('probe'); console.error('probe'); fetch('/api/v1/flows/'); }")
    page.wait_for_timeout(100)
    assert dialogs.pop() == "probe: probe"
    assert errors.pop() == ("probe", "probe")
    assert outside.pop().startswith("probe: ")
    context.close()
    assert not dialogs, dialogs
    assert not outside, outside
    # Chromium reports the pages that answer 404 and 400 by design, and nothing else
    expected = {"not-found": "status of 404", "approval refused": "status of 400"}
    errors = [(w, text) for w, text in errors if expected.get(w, "\0") not in text]
    assert not errors, errors
