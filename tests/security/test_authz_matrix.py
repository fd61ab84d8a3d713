"""The authorization matrix: every route of the site (pages, partials, forms, the REST API, the
schema and its docs, login, logout, health) x GET, POST, PUT, PATCH, DELETE x every role, a
logged-in user without a role, and nobody.

Routes are enumerated from Django's URL resolver, so a route added without a line in ``TABLE``
fails here; ``TABLE`` says what each (route, method) needs. A request is an *allow* when its
answer is neither 401, 403 nor 405 and not a redirect to a login page (one that asks to come
back: ``?next=``). An allow where the table says the role may not is an *unexpected allow*, a
refusal where it says the role may is an *unexpected refusal*; both must be 0. Every write is
made against objects of its own (a fresh running execution, a fresh waiting task, a fresh
flow...), so one cell's success never turns the next one into a 409, and each accepted change
must have written exactly one audit entry (by that user, with that action), each refused one
none. The Django admin has its own, smaller table (``ADMIN_TABLE``).

Pages are asked with a session (the browser's way); the API with an API token (the machines'
way, and the only one the callback endpoints accept).
"""

from __future__ import annotations

import json
from collections import Counter
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from executions import graph_svg
from executions.models import Execution, Flow
from executions.runtime.transition import token_of
from flowsite.access import Perm
from flowsite.audit.models import AuditEntry
from tests.factories import PASS_FLOW, WAIT_FLOW

from . import conftest, support
from .support import ROLES, WHO, World

pytestmark = pytest.mark.django_db

# --- what each role may do (issue 6, "Roles"), written out here rather than imported ----------

R, START, STOP, INVOKE, REPORT, APPROVE = (
    Perm.READ, Perm.START, Perm.STOP, Perm.INVOKE, Perm.REPORT, Perm.APPROVE,
)  # fmt: skip
FLOWS, FUNCS, USERS, AUDIT = (
    Perm.MANAGE_FLOWS, Perm.MANAGE_FUNCTIONS, Perm.MANAGE_USERS, Perm.READ_AUDIT,
)  # fmt: skip

GRANTED: dict[str, frozenset] = {
    "viewer": frozenset({R}),
    "operator": frozenset({R, START, STOP, INVOKE, REPORT}),
    "approver": frozenset({R, APPROVE}),
    "admin": frozenset(Perm),
    "none": frozenset(),
    "anonymous": frozenset(),
}

PUBLIC = "public"  # anyone, logged in or not
LOGGED_IN = "logged-in"  # any logged-in user, with a role or without
NO = "405"  # method not allowed: refused to everyone (405 to whoever may use the route)

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

# fmt: off
TABLE: dict[str, tuple] = {
    # route name                  GET        POST       PUT        PATCH      DELETE
    # the dashboard
    "overview":                   (R,        NO,        NO,        NO,        NO),
    "flows":                      (R,        NO,        NO,        NO,        NO),
    "flow":                       (R,        NO,        NO,        NO,        NO),
    "flow-start":                 (NO,       START,     NO,        NO,        NO),
    "executions":                 (R,        NO,        NO,        NO,        NO),
    "executions-stop":            (NO,       STOP,      NO,        NO,        NO),
    "execution":                  (R,        NO,        NO,        NO,        NO),
    "execution-live":             (R,        NO,        NO,        NO,        NO),
    "execution-history":          (R,        NO,        NO,        NO,        NO),
    "execution-timeline":         (R,        NO,        NO,        NO,        NO),
    "execution-state":            (R,        NO,        NO,        NO,        NO),
    "execution-stop":             (NO,       STOP,      NO,        NO,        NO),
    "execution-run-again":        (NO,       START,     NO,        NO,        NO),
    "approvals":                  (R,        NO,        NO,        NO,        NO),
    "task-approve":               (NO,       APPROVE,   NO,        NO,        NO),
    "task-reject":                (NO,       APPROVE,   NO,        NO,        NO),
    "functions":                  (R,        NO,        NO,        NO,        NO),
    "function":                   (R,        NO,        NO,        NO,        NO),
    "function-invoke":            (NO,       INVOKE,    NO,        NO,        NO),
    "audit":                      (AUDIT,    NO,        NO,        NO,        NO),
    # logging in and out. Django's login view takes PUT as it takes POST (a form post), and
    # sends a logged-in user home whatever the method: PATCH/DELETE are 405 only to nobody.
    "login":                      (PUBLIC,   PUBLIC,    PUBLIC,    LOGGED_IN, LOGGED_IN),
    "logout":                     (NO,       PUBLIC,    NO,        NO,        NO),
    "healthz":                    (PUBLIC,   NO,        NO,        NO,        NO),
    # the API's description: for any logged-in user (it holds no data)
    "schema":                     (Perm.READ, NO,       NO,        NO,        NO),
    "api-docs":                   (Perm.READ, NO,       NO,        NO,        NO),
    # the REST API
    "api-functions":              (R,        FUNCS,     NO,        NO,        NO),
    "api-function":               (R,        NO,        FUNCS,     FUNCS,     FUNCS),
    "api-function-invocations":   (NO,       INVOKE,    NO,        NO,        NO),
    "api-flows":                  (R,        FLOWS,     NO,        NO,        NO),
    "api-flow":                   (R,        NO,        FLOWS,     FLOWS,     FLOWS),
    "api-executions":             (R,        START,     NO,        NO,        NO),
    "api-execution":              (R,        NO,        NO,        NO,        NO),
    "api-execution-stop":         (NO,       STOP,      NO,        NO,        NO),
    "api-execution-history":      (R,        NO,        NO,        NO,        NO),
    "api-task-report-succeeded":  (NO,       REPORT,    NO,        NO,        NO),
    "api-task-report-failed":     (NO,       REPORT,    NO,        NO,        NO),
    "api-task-heartbeat":         (NO,       REPORT,    NO,        NO,        NO),
    "api-audit":                  (AUDIT,    NO,        NO,        NO,        NO),
}
# fmt: on

# Routes asked with an API token (everything else with a session, as a browser does).
API_ROUTES = {name for name in TABLE if name.startswith("api-") and name != "api-docs"} | {"schema"}


def expected_allow(need, who: str) -> bool:
    if need == PUBLIC:
        return True
    if need == LOGGED_IN:
        return who != "anonymous"
    if need == NO:
        return False
    return need in GRANTED[who]


def is_refusal(response) -> bool:
    if response.status_code in (401, 403, 405):
        return True
    if response.status_code in (301, 302, 303, 307, 308):
        target = urlsplit(response["Location"])
        login_pages = {settings.LOGIN_URL, reverse("admin:login")}
        return target.path in login_pages and "next" in parse_qs(target.query)
    return False


# --- the routes --------------------------------------------------------------------------------


def site_routes() -> tuple[dict[str, URLPattern], list[str]]:
    """Every named route outside the admin, from the resolver (recursively), and the patterns
    that have no name (which the table could not name)."""
    routes: dict[str, URLPattern] = {}
    unnamed: list[str] = []

    def walk(patterns, prefix: str) -> None:
        for p in patterns:
            if isinstance(p, URLResolver):
                if str(p.pattern) == "admin/":
                    continue  # its own table below
                walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                if p.name is None:
                    unnamed.append(prefix + str(p.pattern))
                else:
                    routes[p.name] = p

    walk(get_resolver().url_patterns, "")
    return routes, unnamed


def test_every_route_has_a_line_in_the_table():
    routes, unnamed = site_routes()
    assert not unnamed, f"routes without a name (give them one and a line in TABLE): {unnamed}"
    missing = sorted(set(routes) - set(TABLE))
    assert not missing, f"routes without a line in the authorization table: {missing}"
    stale = sorted(set(TABLE) - set(routes))
    assert not stale, f"lines in the table for routes that no longer exist: {stale}"
    assert all(len(row) == len(METHODS) for row in TABLE.values())


# --- what each request is made against -----------------------------------------------------


def _execution_args(execution: Execution) -> dict:
    return {"flow": execution.flow.name, "name": execution.name}


def read_targets(route: str, w: World) -> list[tuple[str, dict]]:
    """(label, URL arguments) for requests that change nothing: real objects; an execution
    route is asked about a running and an ended execution (one waiting on a callback: see
    test_tokens.py, which reads every page of one)."""
    executions = [("running", w.running), ("ended", w.ended)]
    node = graph_svg.layout_for(w.running.flow_version).nodes[0].key
    by_route = {
        "flow": [("", {"flow": w.flow.name})],
        "flow-start": [("", {"flow": w.flow.name})],
        "execution-state": [
            (label, {**_execution_args(e), "path": node}) for label, e in executions
        ],
        "task-approve": [("", {"task_id": w.task.pk})],
        "task-reject": [("", {"task_id": w.task.pk})],
        "function": [("", {"name": w.function.name})],
        "function-invoke": [("", {"name": w.function.name})],
        "api-function": [("", {"name": w.function.name})],
        "api-function-invocations": [("", {"name": w.function.name})],
        "api-flow": [("", {"name": w.flow.name})],
        "api-executions": [("", {"flow": w.flow.name})],
    }
    for route_name in (
        "execution", "execution-live", "execution-history", "execution-timeline",
        "execution-stop", "execution-run-again", "api-execution", "api-execution-stop",
        "api-execution-history",
    ):  # fmt: skip
        by_route[route_name] = [(label, _execution_args(e)) for label, e in executions]
    return by_route.get(route, [("", {})])


class Write:
    """One change request against objects made for it: URL arguments, body, and the audit
    action an accepted request records (None: it records none)."""

    def __init__(self, args: dict, data=None, action: str | None = None, raw: bytes | None = None):
        self.args, self.data, self.action, self.raw = args, data, action, raw


def write_for(route: str, method: str, w: World) -> Write | None:
    """The request for a (route, method) that changes something, made against fresh objects."""
    name = support.unique("m")
    key = (route, method)
    if key == ("flow-start", "POST"):
        return Write({"flow": w.flow.name}, {"name": name, "input": "{}"}, "execution.start")
    if key == ("executions-stop", "POST"):
        e = w.fresh_running()
        return Write({}, {"ids": [str(e.pk)], "confirm": "STOP", "reason": "m"}, "execution.stop")
    if key == ("execution-stop", "POST"):
        return Write(_execution_args(w.fresh_running()), {"reason": "matrix"}, "execution.stop")
    if key == ("execution-run-again", "POST"):
        return Write(_execution_args(w.ended), {}, "execution.run_again")
    if key == ("task-approve", "POST"):
        task = w.fresh_task()
        return Write({"task_id": task.pk}, {"output": '{"ok": 1}'}, "task.approve")
    if key == ("task-reject", "POST"):
        task = w.fresh_task()
        return Write({"task_id": task.pk}, {"error": "No", "cause": "matrix"}, "task.reject")
    if key == ("function-invoke", "POST"):
        return Write({"name": w.function.name}, {"body": "{}", "kind": "json"}, "function.invoke")
    if key == ("login", "POST") or key == ("login", "PUT"):
        return Write({}, {"username": "nobody", "password": "wrong"})
    if key == ("logout", "POST"):
        return Write({}, {})
    if key == ("api-functions", "POST"):
        return Write({}, {"name": name, "handler": "sechandlers.ok"}, "function.create")
    if route == "api-function" and method in ("PUT", "PATCH", "DELETE"):
        fn = support.make_function(name, "sechandlers.ok")
        data = {
            "PUT": {"handler": "sechandlers.echo", "description": "replaced"},
            "PATCH": {"description": "changed"},
            "DELETE": None,
        }[method]
        action = "function.delete" if method == "DELETE" else "function.update"
        return Write({"name": fn.name}, data, action)
    if key == ("api-function-invocations", "POST"):
        return Write({"name": w.function.name}, None, "function.invoke", raw=b'{"a": 1}')
    if key == ("api-flows", "POST"):
        return Write({}, {"name": name, "definition": WAIT_FLOW}, "flow.create")
    if route == "api-flow" and method in ("PUT", "PATCH", "DELETE"):
        flow = support.make_flow(name, WAIT_FLOW)
        data = {
            "PUT": {"definition": PASS_FLOW, "description": "replaced"},
            "PATCH": {"description": "changed"},
            "DELETE": None,
        }[method]
        action = "flow.delete" if method == "DELETE" else "flow.update"
        return Write({"name": flow.name}, data, action)
    if key == ("api-executions", "POST"):
        return Write({"flow": w.flow.name}, {"name": name, "input": {}}, "execution.start")
    if key == ("api-execution-stop", "POST"):
        e = w.fresh_running()
        return Write(_execution_args(e), {"error": "Stopped", "cause": "m"}, "execution.stop")
    if route.startswith("api-task-") and method == "POST":
        token = token_of(w.fresh_task())
        if route == "api-task-report-succeeded":
            return Write({}, {"task_token": token, "output": {"ok": 1}}, "task.succeed")
        if route == "api-task-report-failed":
            return Write({}, {"task_token": token, "error": "No", "cause": "c"}, "task.fail")
        return Write({}, {"task_token": token})  # a heartbeat: recorded nowhere
    return None


def send(client, route: str, method: str, path: str, data=None, raw: bytes | None = None):
    call = getattr(client, method.lower())
    if route in API_ROUTES:
        if raw is not None:
            return call(path, data=raw, content_type="application/json")
        return call(path, data, format="json") if data is not None else call(path)
    if method == "GET":
        return call(path)
    if method == "POST":
        return call(path, data or {})
    return call(path)  # PUT, PATCH, DELETE from a form client: no body


# The answers an allowed request must give (anything else: the cell tested the wrong thing).
READ_OK = {200, 286}  # 286: the live partial of an ended execution (htmx: stop polling)
WRITE_OK = {200, 201, 204, 302}
SPECIAL_OK = {"healthz": {200, 503}, "login": {200, 302}, "logout": {302}}


def test_the_authorization_matrix(worker_runs, record_property):
    world = support.make_world()
    users = {role: support.user_with(role) for role in ROLES}
    users["none"] = support.user_with()
    users["anonymous"] = None
    made = support.Clients()
    pages = {who: made.page(users[who]) for who in WHO}
    apis = {who: made.api(users[who]) for who in WHO}
    routes, _ = site_routes()

    totals: Counter = Counter()
    unexpected_allows: list[str] = []
    unexpected_refusals: list[str] = []
    problems: list[str] = []
    for route in sorted(routes):
        row = TABLE[route]
        for method, need in zip(METHODS, row, strict=True):
            for who in WHO:
                client = apis[who] if route in API_ROUTES else pages[who]
                changes = need not in (NO, PUBLIC, LOGGED_IN) and method != "GET"
                write = write_for(route, method, world) if changes or need == PUBLIC else None
                if write is not None:
                    targets = [("", write.args)]
                else:
                    targets = read_targets(route, world)
                    if method != "GET":
                        targets = targets[:1]
                for label, args in targets:
                    cell = f"{method} {route}{'@' + label if label else ''} as {who}"
                    path = reverse(route, kwargs=args)
                    audit_before = AuditEntry.objects.count()
                    try:
                        response = send(
                            client,
                            route,
                            method,
                            path,
                            write.data if write else None,
                            write.raw if write else None,
                        )
                    except Exception as exc:  # noqa: BLE001 - a 500: report it with the cell
                        problems.append(f"{cell}: raised {type(exc).__name__}: {exc}")
                        continue
                    newest = AuditEntry.objects.order_by("-id").first()
                    audit_added = AuditEntry.objects.count() - audit_before
                    totals["cells"] += 1
                    refused = is_refusal(response)
                    allowed = not refused
                    totals["allows" if allowed else "refusals"] += 1
                    should = expected_allow(need, who)
                    status = response.status_code
                    if allowed and not should:
                        unexpected_allows.append(f"{cell}: {status}")
                    if refused and should:
                        unexpected_refusals.append(f"{cell}: {status}")
                    if who == "anonymous" and method != "GET" and allowed and need != PUBLIC:
                        totals["anonymous writes accepted"] += 1
                    if status >= 500 and not (route == "healthz" and status == 503):
                        problems.append(f"{cell}: {status}")
                    # an allowed request did what it was asked; a refused one changed nothing
                    if allowed and should:
                        ok = SPECIAL_OK.get(route) or (READ_OK if method == "GET" else WRITE_OK)
                        if status not in ok:
                            problems.append(f"{cell}: allowed but answered {status}")
                    expected_rows = 1 if (allowed and write and write.action) else 0
                    if audit_added != expected_rows:
                        problems.append(f"{cell}: {audit_added} audit entries, not {expected_rows}")
                    elif expected_rows:
                        said = (newest.action, newest.actor_name)
                        if said != (write.action, users[who].username):
                            problems.append(f"{cell}: the audit entry says {said}")
                    # the admin may use every route: a refusal to the admin is the method's
                    if need == NO and who == "admin" and status != 405:
                        problems.append(f"{cell}: {status}, not 405")
                    if route == "logout" and allowed and users[who] is not None:
                        client.force_login(users[who])  # logged out: log in again

    line = (
        f"authorization matrix: {totals['cells']} cells, {totals['allows']} allows, "
        f"{totals['refusals']} refusals; unexpected allows {len(unexpected_allows)}, "
        f"unexpected refusals {len(unexpected_refusals)}, anonymous writes accepted "
        f"{totals['anonymous writes accepted']}"
    )
    # Shown after the run (tests/security/conftest.py), kept in the JUnit report (a property,
    # which also crosses from an xdist worker) and as an artifact.
    conftest.SUMMARY.append(line)
    record_property("authorization_matrix", line)
    support.ARTIFACTS.parent.parent.mkdir(parents=True, exist_ok=True)
    (support.ARTIFACTS.parent.parent / "authz-matrix.txt").write_text(line + "\n")
    assert not unexpected_allows, unexpected_allows
    assert not unexpected_refusals, unexpected_refusals
    assert totals["anonymous writes accepted"] == 0
    assert not problems, problems
    # the matrix really covered every route, method and party
    assert totals["cells"] >= len(TABLE) * len(METHODS) * len(WHO)


def test_the_callback_endpoints_take_no_session(worker_runs):
    """A logged-in operator's browser cannot be made to report a task: the callback endpoints
    accept tokens and Basic auth only, never the session cookie."""
    world = support.make_world()
    operator = support.page_client(support.user_with("operator"))
    token = token_of(world.task)
    for route, body in (
        ("api-task-report-succeeded", {"task_token": token, "output": {}}),
        ("api-task-report-failed", {"task_token": token, "error": "E"}),
        ("api-task-heartbeat", {"task_token": token}),
    ):
        response = operator.post(reverse(route), json.dumps(body), content_type="application/json")
        assert response.status_code in (401, 403), route
    world.task.refresh_from_db()
    assert world.task.is_open
    assert not AuditEntry.objects.filter(action__startswith="task.").exists()


def test_ids_that_name_nothing_are_refused_with_a_code():
    """Ids and names in URLs and forms that name nothing (or something that is no longer
    waiting) are refused with a coded answer, never a 500, and change nothing: a task id that is
    an execution's id, a decided task's id, ids past any column's range, a state path that is
    not a node, stop ids that are not numbers, a token of the right shape with the wrong MAC."""
    world = support.make_world()
    admin = support.page_client(support.user_with("admin"))
    api = support.api_client(support.user_with("admin"))
    decided = world.fresh_task()
    admin.post(reverse("task-approve", args=[decided.pk]), {})
    audit_before = AuditEntry.objects.count()
    htmx = {"HTTP_HX_REQUEST": "true"}
    for task_id in (world.running.pk + 10_000, decided.pk, 2**63 - 1, 2**64, 10**30):
        for verb in ("approve", "reject"):
            response = admin.post(f"/tasks/{task_id}/{verb}/", {"error": "E"}, **htmx)
            assert response.status_code in (404, 409), (verb, task_id, response.status_code)
    for path in ("nope", "States-999", "..", "States-0%00", "%3Cscript%3E"):
        url = reverse("execution", kwargs=_execution_args(world.running)) + f"states/{path}/"
        assert admin.get(url).status_code == 404, path
    for ids in (["-1"], ["1e9"], [str(2**70)], ["<script>"], [""]):
        response = admin.post(reverse("executions-stop"), {"ids": ids, "confirm": "STOP"})
        assert response.status_code == 302, ids
    real = token_of(world.task)
    for token in (real[:-1] + ("0" if real[-1] != "0" else "1"), "1.2.3." + "0" * 40, "x" * 600):
        response = api.post(
            reverse("api-task-report-succeeded"), {"task_token": token, "output": {}}, format="json"
        )
        assert response.status_code in (400, 404, 409), token
        assert response.json()["code"] in ("InvalidArgument", "TaskNotExist"), response.json()
    world.task.refresh_from_db()
    assert world.task.is_open
    assert Execution.objects.get(pk=world.running.pk).is_open
    assert AuditEntry.objects.count() == audit_before


# --- the Django admin ----------------------------------------------------------------------

# fmt: off
ADMIN_TABLE: list[tuple[str, str, object]] = [
    # URL name                                   method  needs
    ("admin:index",                              "GET",  R),
    ("admin:executions_flow_changelist",         "GET",  R),
    ("admin:executions_flow_add",                "GET",  FLOWS),
    ("admin:executions_flow_add",                "POST", FLOWS),
    ("admin:executions_execution_changelist",    "GET",  R),
    ("admin:functions_function_changelist",      "GET",  R),
    ("admin:functions_function_add",             "GET",  FUNCS),
    ("admin:audit_auditentry_changelist",        "GET",  AUDIT),
    ("admin:auth_user_changelist",               "GET",  USERS),
    ("admin:auth_user_add",                      "GET",  USERS),
    ("admin:auth_group_changelist",              "GET",  USERS),
    ("admin:authtoken_tokenproxy_changelist",    "GET",  USERS),
]
# fmt: on


def test_the_admin_by_role():
    users = {role: support.user_with(role) for role in ROLES}
    users["none"] = support.user_with()
    users["anonymous"] = None
    made = support.Clients()
    clients = {who: made.page(users[who]) for who in WHO}
    wrong: list[str] = []
    cells = 0
    for url_name, method, need in ADMIN_TABLE:
        for who in WHO:
            client = clients[who]
            name = support.unique("admin")
            audit_before = AuditEntry.objects.count()
            if method == "POST":
                response = client.post(
                    reverse(url_name),
                    {"name": name, "description": "", "definition": WAIT_FLOW},
                )
            else:
                response = client.get(reverse(url_name))
            cells += 1
            allowed = not is_refusal(response)
            if allowed != expected_allow(need, who):
                wrong.append(f"{method} {url_name} as {who}: {response.status_code}")
            if method == "POST":
                created = Flow.objects.filter(name=name).exists()
                audited = AuditEntry.objects.count() - audit_before
                if created != expected_allow(need, who) or audited != int(created):
                    wrong.append(f"POST {url_name} as {who}: created {created}, audit {audited}")
    assert not wrong, wrong
    assert cells == len(ADMIN_TABLE) * len(WHO)


# --- cross-site requests -----------------------------------------------------------------------


def test_forms_and_session_api_writes_need_the_csrf_token(worker_runs):
    """A page in another site cannot make a logged-in browser change anything: every form
    (plain or htmx) and every API write made with the session cookie needs the CSRF token;
    with the token from the page's ``hx-headers`` the same request works."""
    from django.test import Client
    from rest_framework.test import APIClient

    world = support.make_world()
    admin = support.user_with("admin")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin)
    api = APIClient(enforce_csrf_checks=True)
    api.force_login(admin)
    running = world.fresh_running()
    task = world.fresh_task()
    posts = [
        (reverse("flow-start", args=[world.flow.name]), {"name": "csrf", "input": "{}"}),
        (reverse("executions-stop"), {"ids": [running.pk], "confirm": "STOP", "reason": "r"}),
        (reverse("execution-stop", kwargs=_execution_args(running)), {"reason": "r"}),
        (reverse("execution-run-again", kwargs=_execution_args(world.ended)), {}),
        (reverse("task-approve", args=[task.pk]), {}),
        (reverse("task-reject", args=[task.pk]), {"error": "E"}),
        (reverse("function-invoke", args=[world.function.name]), {"body": "{}"}),
    ]
    audit_before = AuditEntry.objects.count()
    for url, data in posts:
        assert browser.post(url, data).status_code == 403, url
        assert browser.post(url, data, HTTP_HX_REQUEST="true").status_code == 403, url
    for url, data in (
        ("/api/v1/flows/", {"name": "csrf_flow", "definition": WAIT_FLOW}),
        (f"/api/v1/flows/{world.flow.name}/executions/", {"name": "csrf"}),
        (f"/api/v1/flows/{world.flow.name}/executions/{running.name}/stop/", {}),
    ):
        assert api.post(url, data, format="json").status_code == 403, url
    assert AuditEntry.objects.count() == audit_before
    assert Execution.objects.get(pk=running.pk).is_open
    # the token the page carries (hx-headers on <body>) makes the same post work
    page = browser.get(reverse("approvals")).content.decode()
    headers = json.loads(support.Page(page).elements_with("body")[0]["hx-headers"])
    response = browser.post(
        reverse("task-approve", args=[task.pk]), {}, HTTP_X_CSRFTOKEN=headers["X-CSRFToken"]
    )
    assert response.status_code == 302
    assert AuditEntry.objects.filter(action="task.approve").count() == 1
