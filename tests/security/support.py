"""What the security tests share: users and clients per role, flows and executions in every
state the pages show, the hostile payloads, and one HTML inspection that lists everything in a
page that did not come from our own templates (inline code, handlers, foreign URLs).

Executions are driven in-process (a worker's part and the sweeper's timers run here), as the
page tests do, so nothing needs a Celery worker.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

from django.core.management import call_command
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from executions import services
from executions.models import Execution, Flow, TaskToken, WorkItem, WorkStatus
from executions.runtime import worker
from flowsite.access import SYSTEM
from functions import services as function_services
from functions.models import Function, Invocation, InvocationStatus
from tests.factories import WAIT_FLOW, UserFactory

HANDLERS_DIR = str(Path(__file__).resolve().parent / "handlers")
ARTIFACTS = Path(os.environ.get("FLOWSITE_ARTIFACTS", "artifacts")) / "screenshots" / "security"

PLAIN_STATIC = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

ROLES = ("viewer", "operator", "approver", "admin")
# Who the matrix asks: each role, a logged-in user without a role, and nobody.
WHO = (*ROLES, "none", "anonymous")

# Markup and script a hostile user may put wherever text goes (the list).
PAYLOADS = (
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "</script><script>alert(1)</script>",
    '<div hx-get="/api/v1/flows/" hx-trigger="load">x</div>',
    "javascript:alert(1)",
    "{{7*7}}",
    "\u2028",
    "<svg onload=alert(1)>",
)
# The payloads that are markup: their raw text must never be in a page's source.
MARKUP_PAYLOADS = tuple(p for p in PAYLOADS if "<" in p)
ALL_PAYLOADS = " ".join(PAYLOADS)  # one string holding every payload at once


# --- clients -----------------------------------------------------------------------------------


def user_with(*roles: str, username: str | None = None):
    kwargs: dict = {"roles": list(roles)}
    if username is not None:
        kwargs["username"] = username
    return UserFactory(**kwargs)


class Clients:
    """Clients for several users that share one request handler: each new test client would
    otherwise build the middleware again, and whitenoise's part of that scans every static
    file (a fifth of a second each time)."""

    def __init__(self):
        self._handlers: dict[type, object] = {}

    def _shared(self, client):
        handler = self._handlers.setdefault(type(client), client.handler)
        client.handler = handler
        return client

    def page(self, user=None) -> Client:
        """A browser-like client: a session (force_login) for ``user``, nobody for None."""
        client = self._shared(Client())
        if user is not None:
            client.force_login(user)
        client.user = user
        return client

    def api(self, user=None) -> APIClient:
        """A machine-like client: the user's API token (``Authorization: Token``), as scripts
        and the callback reporters use it; no credentials for None."""
        client = self._shared(APIClient())
        if user is not None:
            token, _ = Token.objects.get_or_create(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        client.user = user
        return client


def page_client(user=None) -> Client:
    return Clients().page(user)


def api_client(user=None) -> APIClient:
    return Clients().api(user)


# --- flows and executions ------------------------------------------------------------------------

# A step that calls a function and then waits for a person (or a machine) to report.
CALLBACK_FLOW = """\
Type: StateMachine
Name: callback
SpecVersion: v1
StartAt: Ask
States:
  - Type: Task
    Name: Ask
    Action: FC:InvokeFunction
    TaskMode: WaitForCustomCallback
    Parameters:
      resourceArn: acs:fc:::functions/{function}/LATEST
      body:
        task_token.$: $Context.Current.TaskToken
        note: "please decide"
        payload.$: $Input
    End: true
"""


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def load_demo() -> None:
    call_command("flowsite_demo", "--quiet", stdout=io.StringIO(), stderr=io.StringIO())


def make_flow(name: str, definition: str, description: str = "") -> Flow:
    return services.flow_create(
        name=name, definition=definition, description=description, actor=SYSTEM
    )


def make_function(name: str, handler: str, description: str = "") -> Function:
    return function_services.function_create(
        name=name, handler=handler, description=description, actor=SYSTEM
    )


def callback_flow(name: str, function: str) -> Flow:
    return make_flow(name, CALLBACK_FLOW.replace("{function}", function))


def start(flow: Flow | str, input: dict | None = None, name: str | None = None, actor=SYSTEM):
    if isinstance(flow, str):
        flow = Flow.objects.get(name=flow)
    execution, created = services.execution_start(
        flow=flow, name=name or unique("x"), input=input or {}, actor=actor
    )
    assert created
    return execution


def run_pending(execution: Execution) -> Execution:
    """Run the execution's pending work items here (a worker's part), until none is left."""
    for _ in range(20):
        pending = list(
            WorkItem.objects.filter(execution=execution, status=WorkStatus.PENDING).values_list(
                "pk", flat=True
            )
        )
        if not pending:
            break
        for pk in pending:
            worker.run_work_item(pk)
    execution.refresh_from_db()
    return execution


def waiting_task(flow: Flow | str, input: dict | None = None, name: str | None = None):
    """An execution of a callback flow, waiting for its report; its open task row."""
    execution = run_pending(start(flow, input, name=name))
    return TaskToken.objects.get(execution=execution, is_open=True)


def run_invocations() -> None:
    """The worker's side of direct invocations: run every one still waiting for a worker."""
    for pk in Invocation.objects.filter(status=InvocationStatus.ENQUEUED).values_list(
        "pk", flat=True
    ):
        function_services.invocation_run(pk)


@dataclass
class World:
    """Real objects for every path parameter: a flow whose executions wait an hour, a running
    and an ended execution, an execution waiting on a callback (its task), a function."""

    flow: Flow
    running: Execution
    ended: Execution
    task: TaskToken
    callback: Flow
    function: Function
    extra: dict = field(default_factory=dict)

    def fresh_running(self) -> Execution:
        return start(self.flow)

    def fresh_task(self) -> TaskToken:
        return waiting_task(self.callback)


def make_world() -> World:
    function = make_function("sec_ok", "sechandlers.ok", "answers ok")
    flow = make_flow("sec_wait", WAIT_FLOW)
    callback = callback_flow("sec_callback", "sec_ok")
    running = start(flow, name="running_one")
    ended = start(flow, name="ended_one")
    services.execution_stop(execution=ended, error="Stopped", cause="set up", actor=SYSTEM)
    ended.refresh_from_db()
    task = waiting_task(callback, {"k": 1}, name="waiting_one")
    return World(
        flow=flow, running=running, ended=ended, task=task, callback=callback, function=function
    )


# --- looking at a page ---------------------------------------------------------------------------

# The htmx attributes our templates use, and the triggers they set (anything else came from
# somewhere else).
HX_ATTRIBUTES = {
    "hx-get", "hx-post", "hx-target", "hx-swap", "hx-swap-oob", "hx-trigger", "hx-include",
    "hx-headers", "hx-history", "hx-push-url", "hx-disable",
}  # fmt: skip
HX_TRIGGERS = {"every 2s", "change, submit", "revealed"}
URL_ATTRIBUTES = {
    "href", "src", "action", "formaction", "hx-get", "hx-post", "xlink:href", "poster", "data",
    "background", "cite", "srcset",
}  # fmt: skip
# Attributes whose value is text for people (user text may be a field's value or a tooltip).
TEXT_ATTRIBUTES = {"value", "title", "aria-label", "placeholder", "alt", "datetime"}
NEVER_TAGS = {"img", "iframe", "object", "embed", "base", "frame", "frameset", "applet"}


class Page(HTMLParser):
    """A page's elements (tag, attributes), its text nodes, and its htmx config."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.texts: list[str] = []
        self.inline_scripts = 0
        self._in_script = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        values = {name: (value or "") for name, value in attrs}
        self.elements.append((tag, values))
        if tag == "script" and "src" not in values:
            self.inline_scripts += 1

    handle_startendtag = handle_starttag

    def handle_data(self, data):
        self.texts.append(data)

    @property
    def text(self) -> str:
        return "".join(self.texts)

    def elements_with(self, tag: str) -> list[dict[str, str]]:
        return [attrs for t, attrs in self.elements if t == tag]

    def attribute_values(self) -> list[str]:
        return [v for _, attrs in self.elements for v in attrs.values()]

    def htmx_config(self) -> dict | None:
        for tag, attrs in self.elements:
            if tag == "meta" and attrs.get("name") == "htmx-config":
                return json.loads(attrs.get("content", ""))
        return None


def csp_problems(page: Page) -> list[str]:
    """What a strict Content-Security-Policy forbids in a page: inline script, style elements
    and attributes, event handler attributes, ``hx-on``."""
    problems = []
    if page.inline_scripts:
        problems.append(f"{page.inline_scripts} inline <script>")
    for tag, attrs in page.elements:
        if tag == "style":
            problems.append("a <style> element")
        for name in attrs:
            if name == "style":
                problems.append(f"style= on <{tag}>")
            if name.startswith("on"):
                problems.append(f"{name}= on <{tag}>")
            if name.startswith(("hx-on", "data-hx-on")):
                problems.append(f"{name}= on <{tag}>")
    return problems


def _local_url(value: str) -> bool:
    v = value.strip()
    if not v:
        return True
    if v.startswith(("//", "/\\")):
        return False
    if v.startswith(("/", "?", "#")):
        return True
    parts = urlsplit(v)
    # A relative path (no scheme, no host) stays on this site.
    return not parts.scheme and not parts.netloc


def markup_problems(page: Page) -> list[str]:
    """Everything in a page that our templates never write: inline code, scripts from anywhere
    but our static files, elements the pages never use, htmx attributes or triggers of someone
    else's making, URLs to other hosts or with a script scheme."""
    problems = csp_problems(page)
    for tag, attrs in page.elements:
        if tag in NEVER_TAGS:
            problems.append(f"a <{tag}> element {attrs}")
        if tag == "script" and not attrs.get("src", "").startswith("/static/"):
            problems.append(f"a script from {attrs.get('src')!r}")
        if tag == "meta" and attrs.get("http-equiv", "").lower() == "refresh":
            problems.append("a meta refresh")
        for name, value in attrs.items():
            low = value.lower().replace("\t", "").replace("\n", "").strip()
            if name.startswith("hx-") and name not in HX_ATTRIBUTES:
                problems.append(f"{name}= on <{tag}>")
            if name == "hx-trigger" and value not in HX_TRIGGERS:
                problems.append(f"hx-trigger={value!r} on <{tag}>")
            if name in URL_ATTRIBUTES:
                if low.startswith(("javascript:", "data:", "vbscript:")):
                    problems.append(f"{name}={value!r} on <{tag}>")
                elif not _local_url(value):
                    problems.append(f"{name}={value!r} on <{tag}> leaves this site")
                if name in ("hx-get", "hx-post") and "/api/" in value:
                    problems.append(f"{name}={value!r} on <{tag}> calls the API")
            if name not in TEXT_ATTRIBUTES and "alert(" in value:
                problems.append(f"{name}={value!r} on <{tag}> holds user text")
    return problems


def hostile_source_problems(html: str) -> list[str]:
    """A markup payload present in the raw source was written unescaped."""
    return [f"raw {p!r} in the source" for p in MARKUP_PAYLOADS if p in html]


# --- a world full of hostile text ------------------------------------------------------------

P_SCRIPT, P_IMG, P_CLOSE, P_HTMX, P_JS, P_TEMPLATE, P_LINESEP, P_SVG = PAYLOADS


def _expr_string(text: str) -> str:
    """A string literal of the expression language (JSON escapes)."""
    return json.dumps(text)


def hostile_definition() -> str:
    """A flow whose state names, Choice conditions, Catch errors and Fail code and detail are
    the payloads. Written as JSON (which YAML reads): U+2028 stays an escape in the text, since
    YAML would read the raw character as a line break."""
    names = [P_SCRIPT, P_IMG, P_CLOSE, P_HTMX, P_JS, P_TEMPLATE, f"line{P_LINESEP}sep", P_SVG]
    states: list[dict] = [
        {"Type": "Pass", "Name": name, "Next": following}
        for name, following in zip(names[:-1], names[1:], strict=True)
    ]
    states.append(
        {
            "Type": "Choice",
            "Name": names[-1],
            "Branches": [
                {"Condition": f"$Input.x == {_expr_string(P_SCRIPT)}", "Next": "fail-a"},
                {"Condition": f"$Input.y == {_expr_string(P_IMG)}", "Next": "fail-a"},
                {"Condition": f"$Input.z == {_expr_string(P_HTMX)}", "Next": "fail-a"},
            ],
            "Default": "fail-b",
        }
    )
    states.append({"Type": "Fail", "Name": "fail-a", "Code": P_SCRIPT, "Detail": ALL_PAYLOADS})
    states.append({"Type": "Fail", "Name": "fail-b", "Code": P_IMG, "Detail": ALL_PAYLOADS})
    definition = {
        "Type": "StateMachine",
        "Name": "xss",
        "SpecVersion": "v1",
        "StartAt": names[0],
        "States": states,
    }
    return json.dumps(definition, indent=2, ensure_ascii=False).replace(P_LINESEP, "\\u2028")


# A function step that fails with the handler's own error (its text: the input's message); its
# Catch names a hostile error (never raised), drawn as an edge label.
HANDLER_FAILS_FLOW = """\
Type: StateMachine
Name: handler-fails
SpecVersion: v1
StartAt: Call
States:
  - Type: Task
    Name: Call
    Action: FC:InvokeFunction
    Parameters:
      resourceArn: acs:fc:::functions/sec_raise/LATEST
      body:
        message.$: $Input.message
    Catch:
      - Errors: ["<b>never</b><script>alert(1)</script>"]
        Next: Caught
    End: true
  - Type: Pass
    Name: Caught
    End: true
"""

HOSTILE_INPUT = {
    "x": P_SCRIPT,
    "y": P_IMG,
    "message": ALL_PAYLOADS,
    P_SCRIPT: P_CLOSE,
    "hx": P_HTMX,
    "url": P_JS,
    "template": P_TEMPLATE,
    "sep": f"a{P_LINESEP}b",
    "svg": P_SVG,
    "deep": {"a": [{"b": P_SVG}]},
}
HOSTILE_OUTPUT = {p: p for p in PAYLOADS}
# User names (a directory or the admin may allow any text): two, to stay within 150 chars.
HOSTILE_USERS = (P_SCRIPT + P_IMG + P_JS, P_HTMX + P_SVG + P_TEMPLATE)


@dataclass
class HostileWorld:
    executions: dict[str, Execution]
    flows: dict[str, Flow]
    functions: dict[str, Function]
    users: list
    waiting_task: TaskToken


def hostile_world() -> HostileWorld:
    """Every place user text reaches a page, filled with the payloads: state names, Choice
    conditions, Catch errors, a flow's description, Fail codes and details, inputs and
    outputs, a handler's error, stop reasons, reject errors and causes, approval outputs,
    function descriptions, audit details, user names."""
    from executions.runtime.transition import token_of  # noqa: PLC0415

    operator = user_with("operator", "approver", username=HOSTILE_USERS[0])
    approver = user_with("approver", "operator", username=HOSTILE_USERS[1])
    as_operator = _actor(operator)
    as_approver = _actor(approver)
    functions = {
        "sec_raise": make_function("sec_raise", "sechandlers.raise_message", ALL_PAYLOADS),
        "sec_ok": make_function("sec_ok", "sechandlers.ok", ALL_PAYLOADS),
    }
    flows = {
        "xss_states": make_flow("xss_states", hostile_definition(), ALL_PAYLOADS),
        "xss_handler": make_flow("xss_handler", HANDLER_FAILS_FLOW, ALL_PAYLOADS),
        "xss_callback": callback_flow("xss_callback", "sec_ok"),
        "xss_wait": make_flow("xss_wait", WAIT_FLOW, ALL_PAYLOADS),
    }
    ex: dict[str, Execution] = {}
    ex["failed_fail_state"] = run_pending(
        start(flows["xss_states"], HOSTILE_INPUT, "failed_fail_state", as_operator)
    )
    ex["failed_handler"] = run_pending(
        start(flows["xss_handler"], HOSTILE_INPUT, "failed_handler", as_operator)
    )
    waiting = waiting_task(flows["xss_callback"], HOSTILE_INPUT, name="waiting")
    ex["waiting"] = waiting.execution
    approved = waiting_task(flows["xss_callback"], HOSTILE_INPUT, name="approved")
    services.task_approve(task_id=approved.pk, output=HOSTILE_OUTPUT, actor=as_approver)
    ex["approved"] = run_pending(approved.execution)
    rejected = waiting_task(flows["xss_callback"], HOSTILE_INPUT, name="rejected")
    services.task_reject(task_id=rejected.pk, error=P_SCRIPT, cause=ALL_PAYLOADS, actor=as_approver)
    ex["rejected"] = run_pending(rejected.execution)
    reported = waiting_task(flows["xss_callback"], HOSTILE_INPUT, name="reported_failed")
    services.task_report_failed(
        token=token_of(reported), error=P_IMG, cause=ALL_PAYLOADS, actor=as_operator
    )
    ex["reported_failed"] = run_pending(reported.execution)
    ex["running"] = start(flows["xss_wait"], HOSTILE_INPUT, "running", as_operator)
    stopped = start(flows["xss_wait"], HOSTILE_INPUT, "stopped", as_operator)
    services.execution_stop(
        execution=stopped, error="Stopped", cause=ALL_PAYLOADS, actor=as_approver
    )
    stopped.refresh_from_db()
    ex["stopped"] = stopped
    invocation = function_services.invocation_submit(
        function=functions["sec_raise"],
        payload=json.dumps({"message": ALL_PAYLOADS}).encode(),
        actor=as_operator,
    )
    function_services.invocation_run(invocation.pk)
    for execution in ex.values():
        execution.refresh_from_db()
    return HostileWorld(
        executions=ex,
        flows=flows,
        functions=functions,
        users=[operator, approver],
        waiting_task=waiting,
    )


def _actor(user):
    from flowsite.access import Actor  # noqa: PLC0415

    return Actor(user=user, via="web", ip="127.0.0.1", user_agent=P_SCRIPT)
