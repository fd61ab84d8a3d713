"""The dashboard's security headers and what its pages may hold under them.

Every HTML answer of the dashboard (every page route from the URL resolver, each execution
route for a running, an ended and a waiting execution, as an admin; the HTMX partials of the
same routes; the forms' answers, refused and invalid ones included; the 403, 404 and login
pages) carries the Content-Security-Policy of ``flowsite/ui/middleware.py`` (no
``unsafe-inline``, no ``unsafe-eval``), ``X-Frame-Options: DENY`` and ``nosniff``, and holds no
inline ``<script>``, no ``<style>``, no ``style=``, no ``on*=`` and no ``hx-on``. Full pages
configure htmx without eval. The API answers JSON that a browser will not sniff as HTML.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.urls import reverse

from flowsite.ui import middleware

from . import support
from .support import Page
from .test_authz_matrix import API_ROUTES, METHODS, NO, TABLE, read_targets, site_routes

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
# Routes that are not the dashboard's HTML: the API's description (Swagger UI ships inline
# code and is exempt from the policy), health (JSON), logging out (a redirect).
NOT_DASHBOARD = {"api-docs", "healthz", "logout"}


def policy() -> str:
    return getattr(settings, "FLOWSITE_CSP", middleware.POLICY)


def directives(text: str) -> dict[str, list[str]]:
    out = {}
    for part in text.split(";"):
        words = part.split()
        if words:
            out[words[0]] = words[1:]
    return out


def test_the_policy_is_strict():
    rules = directives(policy())
    text = policy().lower()
    assert "unsafe-inline" not in text and "unsafe-eval" not in text
    assert "unsafe-hashes" not in text and "*" not in text
    assert rules["script-src"] == ["'self'"]
    assert rules["style-src"] == ["'self'"]
    assert rules["default-src"] == ["'self'"]
    assert rules["object-src"] == ["'none'"]
    assert rules["frame-ancestors"] == ["'none'"]
    assert rules["base-uri"] == ["'self'"]
    assert rules["form-action"] == ["'self'"]
    assert settings.X_FRAME_OPTIONS == "DENY"


# What a form route is sent so that it answers with HTML (an invalid or refused form), by route.
FORM_POSTS = {
    "flow-start": ({"name": "n", "input": "{"}, "flow"),
    "executions-stop": ({"ids": [], "confirm": ""}, None),
    "execution-stop": ({"reason": ""}, "execution"),
    "execution-run-again": ({}, "execution"),
    "task-approve": ({"output": "{"}, "task"),
    "task-reject": ({"error": ""}, "task"),
    "function-invoke": ({"body": "{", "kind": "json"}, "function"),
    "login": ({"username": "nobody", "password": "wrong"}, None),
}


def dashboard_requests(world: support.World) -> list[tuple[str, str, str, dict, dict]]:
    """(route, method, URL, data, headers) for every dashboard route the admin may use: each
    page (and each HTMX partial), each form posted plainly and by htmx."""
    routes, _ = site_routes()
    out = []
    for route in sorted(routes):
        if route in API_ROUTES or route in NOT_DASHBOARD:
            continue
        for method, need in zip(METHODS, TABLE[route], strict=True):
            if need == NO or method not in ("GET", "POST"):
                continue
            if method == "GET":
                for _, args in read_targets(route, world):
                    url = reverse(route, kwargs=args)
                    out.append((route, "GET", url, {}, {}))
                    out.append((route, "GET", url, {}, HTMX))
                continue
            assert route in FORM_POSTS, f"say in FORM_POSTS how {route} answers with HTML"
            data, _ = FORM_POSTS[route]
            args = read_targets(route, world)[0][1]
            url = reverse(route, kwargs=args)
            out.append((route, "POST", url, data, {}))
            out.append((route, "POST", url, data, HTMX))
    # the htmx partials chosen by target, and an event's detail
    execution = reverse(
        "execution", kwargs={"flow": world.running.flow.name, "name": world.running.name}
    )
    target = {**HTMX, "HTTP_HX_TARGET": "executions-results"}
    out.append(("executions", "GET", reverse("executions"), {}, target))
    for event_id in range(1, world.task.execution.event_count + 1):
        page = reverse(
            "execution",
            kwargs={"flow": world.task.execution.flow.name, "name": world.task.execution.name},
        )
        out.append(("execution-history", "GET", f"{page}history/?event={event_id}", {}, HTMX))
        out.append(("execution-history", "GET", f"{page}history/?event={event_id}", {}, {}))
    out.append(("execution-live", "GET", execution + "live/?history_live=1&since=1", {}, HTMX))
    return out


CONFIGURED: list[str] = []  # the pages whose htmx config was read (the check is not vacuous)


def check_html(label: str, response, *, full_page: bool) -> list[str]:
    problems = []
    if response.get("Content-Security-Policy") != policy():
        problems.append(f"{label}: CSP {response.get('Content-Security-Policy')!r}")
    if response.get("X-Frame-Options") != "DENY":
        problems.append(f"{label}: X-Frame-Options {response.get('X-Frame-Options')!r}")
    if response.get("X-Content-Type-Options") != "nosniff":
        problems.append(f"{label}: no nosniff")
    body = response.content.decode()
    if not body:
        return problems  # a redirect
    page = Page(body)
    problems += [f"{label}: {p}" for p in support.csp_problems(page)]
    loads_htmx = any(
        tag == "script" and "htmx" in attrs.get("src", "") for tag, attrs in page.elements
    )
    if full_page and loads_htmx:
        config = page.htmx_config()
        CONFIGURED.append(label)
        if config is None:
            problems.append(f"{label}: no htmx config")
        else:
            wanted = {
                "allowEval": False,
                "allowScriptTags": False,
                "includeIndicatorStyles": False,  # htmx would add a <style> element
                "selfRequestsOnly": True,
            }
            for key, value in wanted.items():
                if config.get(key) is not value:
                    problems.append(f"{label}: htmx config {key}={config.get(key)!r}")
    return problems


def test_every_dashboard_answer_carries_the_policy_and_holds_no_inline_code(worker_runs):
    world = support.make_world()
    clients = support.Clients()
    admin = clients.page(support.user_with("admin"))
    CONFIGURED.clear()
    problems: list[str] = []
    seen_routes: set[str] = set()
    html_answers = 0
    for route, method, url, data, headers in dashboard_requests(world):
        label = f"{method} {url}{' (htmx)' if headers else ''}"
        response = (
            admin.get(url, **headers) if method == "GET" else admin.post(url, data, **headers)
        )
        assert response.status_code < 500, (label, response.status_code)
        seen_routes.add(route)
        if response.get("Content-Type", "").startswith("text/html"):
            html_answers += 1
            problems += check_html(label, response, full_page=not headers)
        elif response.status_code != 302:
            # htmx refusals answer plain text (no markup to run), nothing else
            assert response.get("Content-Type", "").startswith("text/plain"), label
    # the pages other people get: the login page, the friendly 403, a 404
    others = [
        ("login", clients.page().get(reverse("login"))),
        ("403", clients.page(support.user_with("viewer")).get(reverse("audit"))),
        ("403 no role", clients.page(support.user_with()).get(reverse("overview"))),
        ("404", admin.get("/no/such/page/")),
        ("404 flow", admin.get(reverse("flow", args=["nope"]))),
        ("404 execution", admin.get(reverse("execution", args=[world.flow.name, "nope"]))),
    ]
    for label, response in others:
        assert response.get("Content-Type", "").startswith("text/html"), label
        html_answers += 1
        problems += check_html(label, response, full_page=True)
    assert not problems, problems
    dashboard = {r for r in site_routes()[0] if r not in API_ROUTES and r not in NOT_DASHBOARD}
    assert seen_routes == dashboard
    assert html_answers > 2 * len(dashboard)
    assert len(CONFIGURED) > len(dashboard)


def test_the_admin_and_the_api_docs_cannot_be_framed_either():
    client = support.page_client(support.user_with("admin"))
    for name in ("admin:index", "api-docs", "admin:executions_flow_changelist"):
        url = reverse(name)
        response = client.get(url)
        assert response.status_code == 200, url
        assert response["X-Frame-Options"] == "DENY", url
        assert response["X-Content-Type-Options"] == "nosniff", url


def test_the_api_answers_json_a_browser_will_not_sniff():
    world = support.make_world()
    api = support.api_client(support.user_with("admin"))
    routes, _ = site_routes()
    answered = 0
    for route in sorted(routes):
        if route not in API_ROUTES or route == "schema" or TABLE[route][0] == NO:
            continue
        for _, args in read_targets(route, world):
            response = api.get(reverse(route, kwargs=args))
            assert response.status_code == 200, route
            assert response["Content-Type"] == "application/json", route
            assert response["X-Content-Type-Options"] == "nosniff", route
            answered += 1
    # errors too: a 404 under /api/ is JSON, not Django's HTML page
    for url in ("/api/v1/flows/nope/", "/api/v1/nothing/"):
        response = api.get(url)
        assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert answered >= 10


def test_the_checks_see_what_they_look_for():
    from django.http import HttpResponse

    bare = HttpResponse(
        "<p style='color:red' onclick='x()'>a</p><style>p{}</style><script>1</script>"
    )
    found = " ".join(check_html("bare", bare, full_page=True))
    for needle in ("CSP", "X-Frame-Options", "nosniff", "style=", "onclick=", "<style>", "inline"):
        assert needle in found, needle
    page = HttpResponse(
        '<html><head><script src="/static/htmx.min.js"></script>'
        '<meta name="htmx-config" content=\'{"allowEval": true}\'></head>'
        "<body hx-on:click='x()'></body></html>"
    )
    found = " ".join(check_html("page", page, full_page=True))
    assert "allowEval=True" in found and "hx-on:click" in found
