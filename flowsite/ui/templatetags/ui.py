"""Template tags every dashboard page uses: status badges, times, JSON, query strings.

Everything that shows user data escapes it (``format_html``, autoescaped templates); nothing here
marks user data safe.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import urlencode

register = template.Library()

# Status -> (css modifier, symbol, label). Colour is never the only cue: every badge has a
# symbol and a word (the colours are Okabe-Ito, safe for colour-blind readers). The symbols are
# from blocks common fonts cover (DejaVu, Liberation): emoji-like ones (✋ ⏲ ⌛) show as boxes
# on machines without an emoji font.
STATUSES = {
    "Starting": ("starting", "◔", "Starting"),
    "Running": ("running", "▶", "Running"),
    "Succeeded": ("succeeded", "✓", "Succeeded"),
    "Failed": ("failed", "✕", "Failed"),
    "Stopped": ("stopped", "■", "Stopped"),
    "TimedOut": ("timedout", "◴", "Timed out"),
    # step states (the graph and the visits list)
    "not_reached": ("idle", "○", "Not reached"),
    "running": ("running", "▶", "Running"),
    "waiting_callback": ("waiting", "✉", "Waiting for a callback"),
    "waiting_timer": ("timer", "◷", "Waiting on a timer"),
    "succeeded": ("succeeded", "✓", "Succeeded"),
    "failed": ("failed", "✕", "Failed"),
    "caught": ("caught", "↷", "Failed, caught"),
    "retrying": ("retrying", "↻", "Retrying"),
    "cancelled": ("stopped", "■", "Cancelled"),
    # function invocations
    "Enqueued": ("starting", "◔", "Enqueued"),
    "Expired": ("stopped", "◴", "Expired"),
}


@register.simple_tag
def status_badge(status: str, label: str | None = None):
    css, symbol, text = STATUSES.get(status, ("idle", "•", status))
    return format_html(
        '<span class="badge badge--{}"><span class="badge__icon" aria-hidden="true">{}</span>'
        "{}</span>",
        css,
        symbol,
        label or text,
    )


def _relative(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 45:
        text = "just now" if not future else "in a few seconds"
        return text
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            n = round(seconds / size)
            word = f"{n} {unit}{'s' if unit == 'day' and n != 1 else ''}"
            return f"in {word}" if future else f"{word} ago"
    return "just now"  # pragma: no cover


@register.simple_tag
def when(value: datetime | None, now: datetime | None = None):
    """``<time>`` with the exact UTC moment (ISO) and a relative text; app.js shows it in the
    viewer's own time zone and keeps the relative text fresh."""
    if value is None:
        return format_html('<span class="muted">—</span>')
    now = now or timezone.now()
    exact = value.astimezone(UTC)
    iso = value.isoformat()
    return format_html(
        '<time datetime="{}" title="{} UTC" data-relative>{}</time>',
        iso,
        exact.strftime("%Y-%m-%d %H:%M:%S"),
        _relative(now - value),
    )


@register.simple_tag
def due(value: datetime | None, now: datetime | None = None):
    """A deadline: like :func:`when`, but one that has passed (the sweeper is about to act on
    it) reads "any moment now" rather than "just now"."""
    now = now or timezone.now()
    if value is not None and value <= now:
        return format_html(
            '<time datetime="{}" title="{} UTC">any moment now</time>',
            value.isoformat(),
            value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        )
    return when(value, now)


@register.filter
def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = float(seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {sec} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    return f"{hours // 24} days {hours % 24} h"


@register.filter
def pretty_json(value: Any) -> str:
    """Indented JSON text (to put in an autoescaped ``<pre>``)."""
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)
    except (TypeError, ValueError):
        return repr(value)


@register.filter
def compact_json(value: Any, limit: int = 120) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@register.simple_tag(takes_context=True)
def query(context, **changes) -> str:
    """The current page's query string with ``changes`` (a value of None removes the key)."""
    params = context["request"].GET.copy()
    for key, value in changes.items():
        if value is None or value == "":
            params.pop(key, None)
        else:
            params[key] = value
    encoded = urlencode(sorted((k, v) for k, v in params.items()))
    return f"?{encoded}" if encoded else "?"
