"""Dashboard pages: the overview, flows, the executions list, the approvals inbox.

Views parse the request, call one selector or service, and render. Who may do what is decided
by the services (``flowsite/access.py``); a view only checks the read permission every page
needs, and calls :func:`flowsite.access.require` (the services' own check) before parsing a
form, so that a role that may not use a form gets 403 whatever it posted.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_POST

from flowsite.access import Perm, require, web_actor
from flowsite.errors import ServiceError

from . import selectors, services
from .models import NAME_RE, Execution, ExecutionStatus, Flow, TaskToken

log = logging.getLogger(__name__)

_name = re.compile(NAME_RE)
_prefix = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


# --- shared by every page (functions/views.py and flowsite/audit/views.py use these too) ------


def forbidden(request: HttpRequest, message: str, *, nav: str = "") -> HttpResponse:
    """The friendly 403 page (a logged-in user without the role a page or form needs)."""
    return render(request, "pages/403.html", {"message": message, "nav": nav}, status=403)


def page(nav: str, perm: Perm = Perm.READ) -> Callable:
    """A dashboard view: login required (anonymous: the login page), and ``perm`` (every page
    needs a role; a user without one gets the 403 page, not an error)."""

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            try:
                require(request.user, perm)
            except ServiceError as exc:
                return forbidden(request, exc.message, nav=nav)
            return view(request, *args, **kwargs)

        return login_required(wrapped)

    return decorate


def form_actor(request: HttpRequest, perm: Perm, nav: str) -> tuple[Any, HttpResponse | None]:
    """The acting party of a form post, or the 403 answer when it may not use that form (the
    services' own check, made before anything is parsed)."""
    actor = web_actor(request)
    try:
        return require(actor, perm), None
    except ServiceError as exc:
        if request.htmx:
            return None, HttpResponse(exc.message, status=exc.status, content_type="text/plain")
        return None, forbidden(request, exc.message, nav=nav)


def cursor(request: HttpRequest, key: str) -> int | None:
    """A keyset cursor (a row id) from the query string; anything else is no cursor."""
    raw = request.GET.get(key, "")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        return None
    value = int(raw)
    return value if 0 < value <= selectors.MAX_ID else None


def local_next(request: HttpRequest, default: str) -> str:
    """Where to go back after a form: the ``next`` field when it is a path on this site."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if (
        target.startswith("/")
        and not target.startswith(("//", "/\\"))
        and url_has_allowed_host_and_scheme(target, allowed_hosts=set())
    ):
        return target
    return default


def parse_json_text(text: str, what: str) -> tuple[Any, str]:
    """(value, "") or (None, an error naming the line and column)."""
    try:
        return json.loads(text), ""
    except json.JSONDecodeError as exc:
        return None, f"{what} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
    except RecursionError:
        return None, f"{what} nests too deeply"
    except ValueError:  # an integer longer than Python converts (sys.get_int_max_str_digits)
        return None, f"{what} holds a number too long to read"


def parse_utc(text: str, what: str) -> tuple[datetime | None, str]:
    """A ``YYYY-MM-DDTHH:MM`` time (as a datetime-local field sends it), read as UTC."""
    text = text.strip()
    if not text:
        return None, ""
    if len(text) > 40:
        return None, f"{what}: write a time as YYYY-MM-DD HH:MM (UTC)"
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None, f"{what}: write a time as YYYY-MM-DD HH:MM (UTC)"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value, ""


# --- the overview ------------------------------------------------------------------------------

CHART_W, CHART_H, CHART_TOP, CHART_BOTTOM, CHART_LEFT = 960, 200, 10, 22, 34
CHART_CSS = {
    "Succeeded": "succeeded",
    "Failed": "failed",
    "TimedOut": "timedout",
    "Stopped": "stopped",
    "Running": "running",
}
CHART_LABELS = {
    "Succeeded": "succeeded",
    "Failed": "failed",
    "TimedOut": "timed out",
    "Stopped": "stopped",
    "Running": "running",
}


def _nice_max(value: int) -> int:
    """The chart's top: the smallest of 2, 4, 6, 8, 10, 20, 40… at or above ``value`` (so the
    middle grid line is a whole number too)."""
    scale = 1
    while True:
        for step in (2, 4, 6, 8, 10):
            if value <= step * scale:
                return step * scale
        scale *= 10


def chart_geometry(buckets: list[dict]) -> dict:
    """Bars for the overview's SVG chart (positions in SVG units; stacked by status)."""
    top = max((sum(b["counts"].values()) for b in buckets), default=0)
    scale_max = _nice_max(max(top, 1))
    plot_h = CHART_H - CHART_TOP - CHART_BOTTOM
    slot = (CHART_W - CHART_LEFT) / len(buckets)
    bar_w = slot * 0.7
    bars = []
    for i, bucket in enumerate(buckets):
        x = CHART_LEFT + i * slot + (slot - bar_w) / 2
        y = CHART_H - CHART_BOTTOM
        segments = []
        parts = []
        for status in selectors.CHART_STATUSES:
            n = bucket["counts"][status]
            if not n:
                continue
            h = plot_h * n / scale_max
            y -= h
            segments.append({"css": CHART_CSS[status], "y": round(y, 2), "h": round(h, 2)})
            parts.append(f"{n} {CHART_LABELS[status]}")
        label = bucket["start"].strftime("%H:00")
        bars.append(
            {
                "x": round(x, 2),
                "w": round(bar_w, 2),
                "segments": segments,
                "label": label,
                "show_label": i % 3 == 0,
                "label_x": round(x + bar_w / 2, 2),
                "total": sum(bucket["counts"].values()),
                "summary": f"{label} UTC: " + (", ".join(parts) if parts else "none"),
            }
        )
    ticks = [
        {"y": round(CHART_H - CHART_BOTTOM - plot_h * f, 2), "value": int(scale_max * f)}
        for f in (0, 0.5, 1)
    ]
    return {
        "width": CHART_W,
        "height": CHART_H,
        "bars": bars,
        "ticks": ticks,
        "left": CHART_LEFT,
        "right": CHART_W,
        "base": CHART_H - CHART_BOTTOM,
        "label_y": CHART_H - 6,
        "total": sum(b["total"] for b in bars),
        "failed_total": sum(b["counts"]["Failed"] + b["counts"]["TimedOut"] for b in buckets),
        "legend": [(CHART_CSS[s], CHART_LABELS[s]) for s in selectors.CHART_STATUSES],
    }


@require_GET
@page("overview")
def overview(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    running_count, running = selectors.running_now()
    context = {
        "nav": "overview",
        "now": now,
        "chart": chart_geometry(selectors.overview_chart(now)),
        "running_count": running_count,
        "running": running,
        "waiting": selectors.newest_waiting(),
        "failures": selectors.latest_failures(),
    }
    return render(request, "pages/overview.html", context)


# --- flows -------------------------------------------------------------------------------------


@require_GET
@page("flows")
def flow_list(request: HttpRequest) -> HttpResponse:
    after = request.GET.get("after", "")
    if not _name.match(after):
        after = ""
    # The counts cover executions started since this minute (the executions list's links
    # below filter from the same minute, so a count and the list it opens agree).
    since = (timezone.now() - selectors.FLOW_COUNTS_WINDOW).replace(second=0, microsecond=0)
    flows, next_after = selectors.flows_page(after=after or None, since=since)
    context = {
        "nav": "flows",
        "flows": flows,
        "next_after": next_after,
        "after": after,
        "since": since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M"),
    }
    return render(request, "pages/flows.html", context)


# Definitions above this size are shown as plain text: highlighting a 1 MiB definition would
# cost a page view about a second.
HIGHLIGHT_MAX_BYTES = 200_000


def highlight_definition(text: str, digest: str) -> str | None:
    """The definition as Pygments HTML (classes only; Pygments escapes the text itself), cached
    by the version's digest: a version never changes. None when too large to highlight."""
    if len(text) > HIGHLIGHT_MAX_BYTES:
        return None
    key = f"flowsite:definition-html:{digest}"
    html = cache.get(key)
    if html is None:
        try:
            from pygments import highlight  # noqa: PLC0415
            from pygments.formatters import HtmlFormatter  # noqa: PLC0415
            from pygments.lexers import JsonLexer, YamlLexer  # noqa: PLC0415
        except ImportError:  # pragma: no cover - an install without Pygments: plain text
            return None

        lexer = JsonLexer() if text.lstrip().startswith(("{", "[")) else YamlLexer()
        html = highlight(text, lexer, HtmlFormatter(cssclass="highlight", linenos=False))
        cache.set(key, html, 24 * 3600)
    return html


def flow_diagram(version) -> str | None:
    """The step diagram of a flow version, when the execution page's module provides one
    (``executions.graph_svg.flow_svg``); nothing rather than an error page otherwise."""
    try:
        from . import graph_svg  # noqa: PLC0415
    except ImportError:
        return None
    flow_svg = getattr(graph_svg, "flow_svg", None)
    if flow_svg is None:
        return None
    try:
        return flow_svg(version)
    except Exception:  # noqa: BLE001 - a diagram that fails must not take the page down
        log.warning("flow diagram failed for %s", version, exc_info=True)
        return None


def _flow_context(request: HttpRequest, flow: Flow, form: dict) -> dict:
    version_param = request.GET.get("version", "")
    number = flow.version
    if version_param.isascii() and version_param.isdigit() and len(version_param) < 10:
        number = int(version_param)
    version = selectors.flow_version_get(flow, number)
    missing_version = version is None
    if version is None:
        version = selectors.flow_version_get(flow, flow.version)
    definition_html = None
    diagram = None
    if version is not None:
        html = highlight_definition(version.definition, version.digest)
        # Pygments escapes every character of the definition it writes out (its HtmlFormatter
        # turns &, <, >, " and ' into entities), so its markup is safe to embed as is.
        definition_html = mark_safe(html) if html is not None else None  # noqa: S308
        svg = flow_diagram(version)
        # flow_svg's contract: escaped, static SVG markup (no script, no style attribute).
        diagram = mark_safe(svg) if svg else None  # noqa: S308
    return {
        "nav": "flows",
        "flow": flow,
        "version": version,
        "missing_version": number if missing_version else None,
        "versions": selectors.flow_versions(flow),
        "definition_html": definition_html,
        "diagram": diagram,
        "recent": selectors.flow_recent_executions(flow),
        "form": form,
    }


def _flow_or_404(name: str) -> Flow:
    try:
        return selectors.flow_get(name)
    except ServiceError:
        raise Http404(f"no flow named {name!r}") from None


@require_GET
@page("flows")
def flow_detail(request: HttpRequest, flow: str) -> HttpResponse:
    flow_obj = _flow_or_404(flow)
    form: dict[str, Any] = {"name": "", "input": "{}", "errors": {}, "note": ""}
    source = request.GET.get("input_from", "")
    if source:
        value = selectors.execution_input(flow_obj, source) if _name.match(source) else None
        if value is None:
            form["note"] = "There is no execution of this flow by that name to copy the input from."
        else:
            form["input"] = json.dumps(value, indent=2, ensure_ascii=False)
            form["note"] = f"Input copied from execution {source}: edit it, then start."
    return render(request, "pages/flow.html", _flow_context(request, flow_obj, form))


# Where a start refusal is shown: beside the field it is about.
_START_FIELD = {
    "ExecutionAlreadyExists": "name",
    "EntityTooLarge": "input",
}


@require_POST
@login_required
def flow_start(request: HttpRequest, flow: str) -> HttpResponse:
    flow_obj = _flow_or_404(flow)
    actor, refused = form_actor(request, Perm.START, "flows")
    if refused is not None:
        return refused
    name = request.POST.get("name", "").strip()
    text = request.POST.get("input", "")
    form: dict[str, Any] = {"name": name, "input": text, "errors": {}, "note": ""}
    status = 400
    value, error = parse_json_text(text.strip() or "{}", "the input")
    if error:
        form["errors"]["input"] = error
    elif not isinstance(value, dict):
        form["errors"]["input"] = "the input must be a JSON object ({…})"
    else:
        try:
            execution, created = services.execution_start(
                flow=flow_obj, name=name or None, input=value, actor=actor
            )
        except ServiceError as exc:
            status = exc.status
            field = _START_FIELD.get(exc.code)
            if field is None and exc.code == "InvalidArgument":
                field = "name" if exc.message.startswith("name") else "input"
            form["errors"][field or "form"] = exc.message
        else:
            if created:
                messages.success(request, f"Started {execution.name}.")
            else:
                messages.info(
                    request, f"An execution named {execution.name} is already running: here it is."
                )
            return HttpResponseRedirect(reverse("execution", args=[flow_obj.name, execution.name]))
    return render(request, "pages/flow.html", _flow_context(request, flow_obj, form), status=status)


# --- executions --------------------------------------------------------------------------------


def _execution_filter(request: HttpRequest) -> tuple[selectors.ExecutionFilter, dict, dict]:
    """The filter from the query string, the values to show in the form, and errors by field.
    A filter with an error is not applied (the list says so)."""
    get = request.GET
    errors: dict[str, str] = {}
    f = selectors.ExecutionFilter()
    statuses = get.getlist("status")[: len(ExecutionStatus.values) + 1]
    for status in statuses:
        if status not in ExecutionStatus.values:
            errors["status"] = "choose statuses from the list"
            break
    else:
        f.statuses = list(dict.fromkeys(statuses))
    flow = get.get("flow", "").strip()
    if flow and not _name.match(flow):
        errors["flow"] = "no flow has this name"
    else:
        f.flow = flow
    prefix = get.get("name", "").strip()
    if prefix and not _prefix.match(prefix):
        errors["name"] = "names are letters, digits, _ and - (at most 128)"
    else:
        f.prefix = prefix
    f.started_from, error = parse_utc(get.get("started_from", ""), "started from")
    if error:
        errors["started_from"] = error
    f.started_to, error = parse_utc(get.get("started_to", ""), "started before")
    if error:
        errors["started_to"] = error
    condition = get.get("q", "").strip()
    if condition:
        try:
            f.condition = selectors.parse_condition(condition)
        except selectors.ConditionError as exc:
            errors["q"] = str(exc)
    shown = {
        "statuses": f.statuses,
        "flow": flow[:200],
        "name": prefix[:200],
        "started_from": get.get("started_from", "")[:40],
        "started_to": get.get("started_to", "")[:40],
        "q": condition[: selectors.CONDITION_MAX + 20],
    }
    return f, shown, errors


def _durations(rows: list[Execution], now: datetime) -> None:
    for row in rows:
        end = row.stopped_at or now
        row.duration_seconds = max(0.0, (end - row.started_at).total_seconds())


@require_GET
@page("executions")
def execution_list(request: HttpRequest) -> HttpResponse:
    f, shown, errors = _execution_filter(request)
    if errors:
        result = selectors.KeysetPage([])
    else:
        result = selectors.keyset_page(
            selectors.executions_filtered(f),
            before=cursor(request, "before"),
            after=cursor(request, "after"),
        )
    _durations(result.rows, timezone.now())
    filtered = any(shown[k] for k in shown)
    context = {
        "nav": "executions",
        "page": result,
        "filter": shown,
        "filtered": filtered,
        "errors": errors,
        "statuses": [(s, s in shown["statuses"]) for s in ExecutionStatus.values],
        "flow_names": list(Flow.objects.order_by("name").values_list("name", flat=True)[:500]),
        "max_bulk": services.MAX_BULK,
    }
    template = "pages/executions.html"
    if request.htmx and request.htmx.target == "executions-results":
        template = "pages/_executions_results.html"
    return render(request, template, context)


@require_POST
@login_required
def executions_stop(request: HttpRequest) -> HttpResponse:
    actor, refused = form_actor(request, Perm.STOP, "executions")
    if refused is not None:
        return refused
    back = local_next(request, reverse("executions"))
    raw_ids = request.POST.getlist("ids")
    ids = []
    for raw in raw_ids[: services.MAX_BULK + 1]:
        if raw.isascii() and raw.isdigit() and len(raw) <= 18:
            ids.append(int(raw))
    ids = list(dict.fromkeys(ids))
    confirm = request.POST.get("confirm", "").strip()
    reason = request.POST.get("reason", "").strip()
    if not ids:
        messages.error(request, "Select the executions to stop first.")
        return HttpResponseRedirect(back)
    if len(raw_ids) > services.MAX_BULK:
        messages.error(request, f"Stop at most {services.MAX_BULK} executions at once.")
        return HttpResponseRedirect(back)
    if confirm.upper() != "STOP" and confirm != str(len(ids)):
        messages.error(
            request,
            f"Nothing was stopped: to confirm, type {len(ids)} (the number of selected "
            "executions) or STOP.",
        )
        return HttpResponseRedirect(back)
    executions = list(
        Execution.objects.filter(pk__in=ids).select_related("flow").only("id", "name", "flow")
    )
    try:
        done = services.executions_stop(
            executions=executions, error="Stopped", cause=reason, actor=actor
        )
    except ServiceError as exc:
        if exc.status == 403:
            return forbidden(request, exc.message, nav="executions")
        messages.error(request, f"Nothing more was stopped: {exc.message}")
        return HttpResponseRedirect(back)
    parts = []
    if done["stopped"]:
        parts.append(f"Stopped {len(done['stopped'])}: {', '.join(done['stopped'])}.")
    if done["not_running"]:
        parts.append(
            f"Not running, left as they were ({len(done['not_running'])}): "
            f"{', '.join(done['not_running'])}."
        )
    gone = len(ids) - len(executions)
    if gone:
        parts.append(f"{gone} selected execution(s) no longer exist.")
    level = messages.SUCCESS if done["stopped"] else messages.WARNING
    messages.add_message(request, level, " ".join(parts))
    return HttpResponseRedirect(back)


# --- approvals ---------------------------------------------------------------------------------


@require_GET
@page("approvals")
def approvals(request: HttpRequest) -> HttpResponse:
    result = selectors.keyset_page(
        selectors.waiting_tasks(), before=cursor(request, "before"), after=cursor(request, "after")
    )
    selectors.with_step_inputs(result.rows)
    context = {"nav": "approvals", "page": result, "now": timezone.now()}
    return render(request, "pages/approvals.html", context)


def _row_id(value: int) -> int:
    # A hand-made URL may carry any number: past the largest id there is no row (0 is none),
    # and the database driver is never handed an integer it cannot hold.
    return value if 0 < value <= selectors.MAX_ID else 0


def _execution_field(request: HttpRequest) -> int | None:
    """The decided task's execution, which the forms carry: with it the service tells a late
    second decision ("already decided", 409) from a wrong id, after the task's row is gone."""
    text = request.POST.get("execution", "")
    return _row_id(int(text)) or None if text.isdigit() and len(text) < 19 else None


def _task_label(task_id: int) -> tuple[TaskToken | None, str]:
    row = (
        TaskToken.objects.filter(pk=task_id)
        .select_related("execution__flow")
        .only("id", "state_name", "execution__name", "execution__flow__name")
        .first()
    )
    if row is None:
        return None, f"step #{task_id}"
    return row, f"step {row.state_name} of {row.execution.flow.name}/{row.execution.name}"


def _decided(request: HttpRequest, task_id: int, verb: str, decide: Callable) -> HttpResponse:
    actor, refused = form_actor(request, Perm.APPROVE, "approvals")
    if refused is not None:
        return refused
    row, label = _task_label(task_id)
    back = local_next(request, reverse("approvals"))
    error, status = "", 200
    try:
        decide(actor)
    except ServiceError as exc:
        error, status = exc.message, exc.status
        if exc.code == "TaskAlreadyCompleted":
            error = f"Already decided: {label} was approved, rejected or ended before this."
        elif exc.code == "TaskNotExist":
            # Decided, and its execution ended since (which clears its tasks), or never was.
            error = (
                "No step is waiting with this id: it was already decided and its execution "
                "has ended, or the id is wrong."
            )
    if request.htmx:
        # The row again: with its forms and the error while the step still waits, else what
        # became of it. Marked for pages.js, which lets htmx swap it in on a 4xx too.
        still_open = None
        if error:
            still_open = selectors.with_step_inputs(
                list(selectors.waiting_tasks().filter(pk=task_id))
            )
        if still_open:
            context = {
                "t": still_open[0],
                "row_error": error,
                "output_text": request.POST.get("output", "")[:20_000],
                "now": timezone.now(),
            }
            response = render(request, "pages/_approval_row.html", context, status=status)
        else:
            context = {"row": row, "task_id": task_id, "label": label, "error": error, "verb": verb}
            response = render(request, "pages/_approval_done.html", context, status=status)
        response["X-Flowsite-Partial"] = "1"
        return response
    if error:
        if status == 403:
            return forbidden(request, error, nav="approvals")
        messages.error(request, f"Could not {verb[:-1].lower()} {label}: {error}")
    else:
        messages.success(request, f"{verb} {label}.")
    return HttpResponseRedirect(back)


@require_POST
@login_required
def task_approve(request: HttpRequest, task_id: int) -> HttpResponse:
    task_id = _row_id(task_id)
    text = request.POST.get("output", "").strip()

    def decide(actor):
        output = None
        if text:
            output, error = parse_json_text(text, "the output")
            if error:
                raise ServiceError(error, code="InvalidArgument")
        services.task_approve(
            task_id=task_id, output=output, actor=actor, execution_id=_execution_field(request)
        )

    return _decided(request, task_id, "Approved", decide)


@require_POST
@login_required
def task_reject(request: HttpRequest, task_id: int) -> HttpResponse:
    task_id = _row_id(task_id)
    error = request.POST.get("error", "").strip()
    cause = request.POST.get("cause", "").strip()

    def decide(actor):
        if not error:
            raise ServiceError("write an error code (why it is rejected)", code="InvalidArgument")
        services.task_reject(
            task_id=task_id,
            error=error,
            cause=cause,
            actor=actor,
            execution_id=_execution_field(request),
        )

    return _decided(request, task_id, "Rejected", decide)
