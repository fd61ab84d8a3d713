"""Dashboard pages for functions: the list, one function with its recent invocations, and the
invoke form (a worker runs the handler; the page waits for the outcome, as the API does)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from executions.selectors import function_attempts
from executions.views import form_actor, page, parse_json_text
from flowsite.access import Perm
from flowsite.errors import ServiceError
from flowsite.ui.templatetags.ui import pretty_json

from . import services
from .models import Function, Invocation, InvocationStatus

RECENT_INVOCATIONS = 20
# What the page shows of a handler's result or error text (the whole of it is in the API).
SHOW_CHARS = 20_000


@require_GET
@page("functions")
def function_list(request: HttpRequest) -> HttpResponse:
    newest = Invocation.objects.filter(function=OuterRef("pk")).order_by("-created_at")
    functions = list(
        Function.objects.only("id", "name", "handler", "description", "timeout_seconds")
        .annotate(
            last_status=Subquery(newest.values("status")[:1]),
            last_at=Subquery(newest.values("created_at")[:1]),
        )
        .order_by("name")[:500]
    )
    return render(request, "pages/functions.html", {"nav": "functions", "functions": functions})


def _function_or_404(name: str) -> Function:
    try:
        return services.function_get(name)
    except ServiceError:
        raise Http404(f"no function named {name!r}") from None


def _recent(function: Function) -> list[Invocation]:
    return list(
        Invocation.objects.filter(function=function)
        .select_related("invoked_by")
        .only(
            "id",
            "function_id",
            "request_id",
            "status",
            "error",
            "created_at",
            "duration_ms",
            "invoked_by__username",
        )
        .order_by("-created_at")[:RECENT_INVOCATIONS]
    )


def _render(request, function, form, result=None, status=200) -> HttpResponse:
    context = {
        "nav": "functions",
        "function": function,
        "invocations": _recent(function),
        "attempts": function_attempts(function.name),
        "form": form,
        "result": result,
        "now": timezone.now(),
    }
    return render(request, "pages/function.html", context, status=status)


@require_GET
@page("functions")
def function_detail(request: HttpRequest, name: str) -> HttpResponse:
    function = _function_or_404(name)
    return _render(request, function, {"body": "{}", "kind": "json", "errors": {}})


def _shown(text: str) -> str:
    return text if len(text) <= SHOW_CHARS else text[:SHOW_CHARS] + "\n… (cut here)"


# The request waits for a worker's commit, so it must not sit inside a transaction of its own.
@transaction.non_atomic_requests
@require_POST
@login_required
def function_invoke(request: HttpRequest, name: str) -> HttpResponse:
    function = _function_or_404(name)
    actor, refused = form_actor(request, Perm.INVOKE, "functions")
    if refused is not None:
        return refused
    body = request.POST.get("body", "")
    kind = "text" if request.POST.get("kind") == "text" else "json"
    form = {"body": body, "kind": kind, "errors": {}}
    if kind == "json":
        _, error = parse_json_text(body.strip() or "null", "the event")
        if error:
            form["errors"]["body"] = error
            return _render(request, function, form, status=400)
    try:
        invocation = services.invocation_call(
            function=function, payload=body.encode("utf-8", "surrogatepass"), actor=actor
        )
    except ServiceError as exc:
        form["errors"]["body" if exc.code == "EntityTooLarge" else "form"] = exc.message
        return _render(request, function, form, status=exc.status)
    except UnicodeEncodeError:
        form["errors"]["body"] = "the event is not valid text"
        return _render(request, function, form, status=400)
    result = {"invocation": invocation, "status": invocation.status}
    status = 200
    if invocation.status == InvocationStatus.SUCCEEDED:
        result["output"] = _shown(pretty_json(invocation.result))
    elif invocation.status == InvocationStatus.EXPIRED:
        result["message"] = (
            "No worker is available: no worker started the invocation in time, so it will not "
            "run. Start a worker (scripts/run starts one) and try again."
        )
        status = 503
    elif invocation.status == InvocationStatus.FAILED:
        result["error"] = invocation.error
        result["cause"] = _shown(invocation.cause)
        status = 504 if invocation.error == services.ERR_TIMEOUT else 502
    else:
        result["message"] = (
            f"No result within {function.timeout_seconds} s of the start; the invocation may "
            "still be running (see its row below)."
        )
        status = 504
    return _render(request, function, form, result=result, status=status)
