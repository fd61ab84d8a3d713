"""The audit log page (admins only): entries newest first, keyset paged, filtered by user,
action and time (each filter has its index: ``audit_actor``, ``audit_action``, ``at``)."""

from __future__ import annotations

import re

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from executions.selectors import keyset_page
from executions.views import cursor, page, parse_utc
from flowsite.access import Perm

from .models import AuditEntry

# The actions the services record (a filter picks one; the list is what the select offers).
ACTIONS = (
    "execution.start",
    "execution.run_again",
    "execution.stop",
    "task.approve",
    "task.reject",
    "task.succeed",
    "task.fail",
    "flow.create",
    "flow.update",
    "flow.delete",
    "function.create",
    "function.update",
    "function.delete",
    "function.invoke",
    "user.create",
    "user.delete",
    "user.roles",
)
_action = re.compile(r"^[a-z_]{1,30}\.[a-z_]{1,30}$")


@require_GET
@page("audit", Perm.READ_AUDIT)
def audit_log(request: HttpRequest) -> HttpResponse:
    get = request.GET
    errors: dict[str, str] = {}
    entries = AuditEntry.objects.only(
        "id", "at", "actor_name", "via", "ip", "action", "object_type", "object_name", "detail"
    )
    who = get.get("user", "").strip()
    if who:
        if len(who) > 150:
            errors["user"] = "a user name is at most 150 characters"
        else:
            entries = entries.filter(actor_name=who)
    action = get.get("action", "").strip()
    if action:
        if not _action.match(action):
            errors["action"] = "choose an action from the list"
        else:
            entries = entries.filter(action=action)
    since, error = parse_utc(get.get("from", ""), "from")
    if error:
        errors["from"] = error
    elif since is not None:
        entries = entries.filter(at__gte=since)
    until, error = parse_utc(get.get("to", ""), "to")
    if error:
        errors["to"] = error
    elif until is not None:
        entries = entries.filter(at__lt=until)
    result = (
        keyset_page(entries, before=cursor(request, "before"), after=cursor(request, "after"))
        if not errors
        else None
    )
    shown = {
        "user": who[:160],
        "action": action[:70],
        "from": get.get("from", "")[:40],
        "to": get.get("to", "")[:40],
    }
    context = {
        "nav": "audit",
        "page": result,
        "errors": errors,
        "filter": shown,
        "filtered": any(shown.values()),
        "actions": ACTIONS,
    }
    return render(request, "pages/audit.html", context)
