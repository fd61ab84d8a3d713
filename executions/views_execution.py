"""The execution page: step graph, state visits, timeline, history, "why is it waiting?", and
its buttons (stop, run again; approve and reject post to the approvals' own views).

One full page and its partials. Each partial is also reachable without JavaScript: a plain
request for it renders the whole page with that part chosen (a history page, a timeline page,
a state's visits). The live partial (``execution-live``) is the one thing that polls: it sends
the node statuses (``static/flowsite/execution.js`` applies them as classes: the layout never
moves), the head, the "why" line, the result and the newest events; once the execution has
ended it answers 286 so htmx stops polling.

What a role may do is decided by the services; the templates only hide what would be refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseStopPolling

from flowsite.access import Perm, require, web_actor
from flowsite.errors import ServiceError

from . import detail as reads
from . import graph_svg, services
from .models import Execution, StepStatus
from .views import forbidden, page

MAX_ID = 2**63 - 1
LEGEND = [
    "not_reached",
    StepStatus.RUNNING,
    StepStatus.WAITING_CALLBACK,
    StepStatus.WAITING_TIMER,
    StepStatus.RETRYING,
    StepStatus.SUCCEEDED,
    StepStatus.FAILED,
    StepStatus.CAUGHT,
    StepStatus.CANCELLED,
]


def _number(request: HttpRequest, key: str) -> int | None:
    raw = request.GET.get(key, "")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        return None
    value = int(raw)
    return value if 0 < value <= MAX_ID else None


def _not_found(request: HttpRequest, exc: ServiceError) -> HttpResponse:
    if request.htmx:
        return HttpResponse(exc.message, status=exc.status, content_type="text/plain")
    return render(
        request,
        "executions/refused.html",
        {"message": exc.message, "title": "Not found", "nav": "executions"},
        status=exc.status,
    )


def _of_execution(view: Callable) -> Callable:
    """A view of one execution: called as ``view(request, execution, **rest)`` once the flow and
    name in the URL resolve to it; otherwise the dashboard's not-found answer."""

    @wraps(view)
    def wrapped(request: HttpRequest, flow: str, name: str, **rest) -> HttpResponse:
        try:
            execution = reads.execution_for_page(flow, name)
        except ServiceError as exc:
            return _not_found(request, exc)
        return view(request, execution, **rest)

    return wrapped


def _links(execution: Execution) -> dict[str, str]:
    args = [execution.flow.name, execution.name]
    return {
        "page": reverse("execution", args=args),
        "live": reverse("execution-live", args=args),
        "history": reverse("execution-history", args=args),
        "timeline": reverse("execution-timeline", args=args),
        "stop": reverse("execution-stop", args=args),
        "run_again": reverse("execution-run-again", args=args),
        "state": reverse("execution-state", args=[*args, "NODE"]).removesuffix("NODE/"),
    }


def _history_options(request: HttpRequest) -> dict:
    return {
        "order": request.GET.get("order", "newest")[:10],
        "type": request.GET.get("type", "")[:40],
        "failures": request.GET.get("failures", "") in ("1", "on", "true"),
        "cursor": _number(request, "cursor"),
    }


def _head_context(execution: Execution) -> dict:
    now = timezone.now()
    end = execution.stopped_at or now
    starter = execution.started_by.get_username() if execution.started_by_id else ""
    return {
        "execution": execution,
        "flow": execution.flow,
        "took": max((end - execution.started_at).total_seconds(), 0.0),
        "starter": starter,
        "why": reads.why_waiting(execution),
        "live": execution.is_open,
        "links": _links(execution),
    }


def _page(request: HttpRequest, execution: Execution, *, state: str | None = None, timeline=False):
    """The whole page. The timeline is drawn only when asked for (``timeline``, a plain
    request for it): otherwise the page loads it when it scrolls into view, which halves the
    page's rendering time for a long execution."""
    layout = graph_svg.layout_for(execution.flow_version)
    statuses = reads.step_statuses(execution)
    links = _links(execution)
    context = _head_context(execution)
    history = reads.history_page(execution, **_history_options(request))
    context.update(
        {
            "nav": "executions",
            "layout": layout,
            "graph": graph_svg.render(
                layout,
                statuses,
                lambda key: f"{links['state']}{key}/",
                label=f"Step graph of {execution.name}",
            ),
            "states": _state_rows(layout, statuses),
            "legend": LEGEND,
            "history": history,
            "timeline": reads.timeline(execution, after=_number(request, "after"))
            if timeline
            else None,
            "event_types": reads.EVENT_TYPES,
            "input_text": json.dumps(execution.input, indent=2, ensure_ascii=False),
            "state_page": None,
        }
    )
    if state is not None:
        context.update(_visits_context(request, execution, layout, statuses, state))
    return render(request, "executions/detail.html", context)


def _state_rows(layout: graph_svg.Layout, statuses: dict) -> list[dict]:
    idle = graph_svg.NodeStatus("not_reached")
    return [{"node": node, "status": statuses.get(node.key, idle)} for node in layout.nodes]


@require_GET
@page("executions")
@_of_execution
def detail(request: HttpRequest, execution: Execution) -> HttpResponse:
    return _page(request, execution)


@require_GET
@page("executions")
@_of_execution
def live(request: HttpRequest, execution: Execution) -> HttpResponse:
    """What changes while the execution runs, in one response (polled every 2 s)."""
    context = _head_context(execution)
    context["statuses"] = reads.step_statuses(execution)
    context["oob"] = True
    since = _number(request, "since")
    live_history = request.GET.get("history_live") == "1" and since is not None
    if live_history and execution.event_count > since:
        rows = reads.events_since(execution, since)
        context["new_events"] = rows
        context["gap"] = bool(rows) and rows[-1].event_id > since + 1
        context["since"] = rows[0].event_id if rows else since
    if not execution.is_open:
        # The last poll: the timeline is drawn once more (it is not live while running).
        context["final_timeline"] = reads.timeline(execution, after=None)
        context["links"] = _links(execution)
    content = render(request, "executions/_live.html", context).content
    if not execution.is_open:
        return HttpResponseStopPolling(content)
    return HttpResponse(content)


@require_GET
@page("executions")
@_of_execution
def history(request: HttpRequest, execution: Execution) -> HttpResponse:
    """A page of the history (filters and cursor in the query string); ``?event=<id>``: one
    event's whole detail."""
    if "event" in request.GET:
        event_id = _number(request, "event")
        try:
            event = reads.event_detail(execution, event_id or 0)
        except ServiceError as exc:
            return _not_found(request, exc)
        text = json.dumps(event.detail, indent=2, ensure_ascii=False)
        context = {"event": event, "text": text, "execution": execution, "nav": "executions"}
        template = "executions/_event_detail.html" if request.htmx else "executions/event.html"
        return render(request, template, context)
    if not request.htmx:
        return _page(request, execution)
    page_ = reads.history_page(execution, **_history_options(request))
    context = {
        "execution": execution,
        "history": page_,
        "links": _links(execution),
        "event_types": reads.EVENT_TYPES,
        "live": execution.is_open,
    }
    return render(request, "executions/_history.html", context)


@require_GET
@page("executions")
@_of_execution
def timeline(request: HttpRequest, execution: Execution) -> HttpResponse:
    if not request.htmx:
        return _page(request, execution, timeline=True)
    context = {
        "execution": execution,
        "timeline": reads.timeline(execution, after=_number(request, "after")),
        "links": _links(execution),
    }
    return render(request, "executions/_timeline.html", context)


def _visits_context(request, execution, layout, statuses, key: str) -> dict:
    node = layout.by_key[key]
    status = statuses.get(key, graph_svg.NodeStatus("not_reached"))
    return {
        "state_page": reads.state_visits(execution, key, before=_number(request, "before")),
        "state_node": node,
        "state_status": status,
    }


@require_GET
@page("executions")
@_of_execution
def state_visits(request: HttpRequest, execution: Execution, path: str) -> HttpResponse:
    """The visits of one state (``path``: the node id the graph gives it)."""
    layout = graph_svg.layout_for(execution.flow_version)
    if path not in layout.by_key:
        return _not_found(
            request,
            ServiceError("this flow version has no such state", code="StateNotFound", status=404),
        )
    if not request.htmx:
        return _page(request, execution, state=path)
    statuses = reads.step_statuses(execution)
    context = {"execution": execution, "links": _links(execution)}
    context.update(_visits_context(request, execution, layout, statuses, path))
    return render(request, "executions/_visits.html", context)


def _refused(request: HttpRequest, execution: Execution, exc: ServiceError) -> HttpResponse:
    """A service said no: 403 gets the friendly page; other refusals (409 not running, 400 bad
    input) are told on the execution page, with the service's status for htmx."""
    if request.htmx:
        return HttpResponse(exc.message, status=exc.status, content_type="text/plain")
    if exc.status == 403:
        return forbidden(request, exc.message, nav="executions")
    return render(
        request,
        "executions/refused.html",
        {
            "message": exc.message,
            "title": "Not done",
            "nav": "executions",
            "back": _links(execution)["page"],
        },
        status=exc.status,
    )


@require_POST
@page("executions")
@_of_execution
def stop(request: HttpRequest, execution: Execution) -> HttpResponse:
    reason = request.POST.get("reason", "").strip()
    try:
        if not reason:
            # The role check first: a role that may not stop hears that, not "give a reason".
            require(web_actor(request), Perm.STOP)
            raise ServiceError("say why you stop it (the reason is kept)", code="InvalidArgument")
        services.execution_stop(
            execution=execution, error="Stopped", cause=reason, actor=web_actor(request)
        )
    except ServiceError as exc:
        return _refused(request, execution, exc)
    messages.success(request, f"Stopped {execution.name}.")
    return HttpResponseRedirect(_links(execution)["page"])


@require_POST
@page("executions")
@_of_execution
def run_again(request: HttpRequest, execution: Execution) -> HttpResponse:
    """Start a new execution of the same flow with the same input."""
    try:
        new = services.execution_run_again(execution=execution, actor=web_actor(request))
    except ServiceError as exc:
        return _refused(request, execution, exc)
    messages.success(request, f"Started {new.name} with the input of {execution.name}.")
    return HttpResponseRedirect(reverse("execution", args=[execution.flow.name, new.name]))
