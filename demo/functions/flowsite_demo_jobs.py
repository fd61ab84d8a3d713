"""Demo handlers for the polling flow (``demo/flows/demo-polling.yaml``).

``submit_render`` pretends to start a long media render and answers at once with a job id.
``render_status`` pretends to ask the render farm how the job is doing.

Nothing is kept in module globals: a status poll may run in a different worker process from
the submit (or from the previous poll), so everything the status check needs travels in the
event. The submit returns ``ready_at`` (epoch seconds when the fake render will be finished) and
the flow hands it back on every poll.

Handlers get the event as JSON bytes (as Function Compute passes it) and return a dict, which
becomes the ``Body`` of the task's output envelope.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from flowsite_demo_events import parse_event

log = logging.getLogger(__name__)

DEFAULT_DURATION_SECONDS = 8.0
DEFAULT_MAX_POLLS = 10
MAX_DURATION_SECONDS = 86_400.0


class InvalidRenderRequest(ValueError):
    """The event is missing something or has a bad value (the task fails with this name)."""


def _number(evt: dict, key: str, default: float, *, low: float, high: float) -> float:
    value = evt.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidRenderRequest(
            f"{key} must be a number between {low:g} and {high:g}, got {value!r}"
        )
    return float(value)


def submit_render(event: Any, context: Any) -> dict:
    """Start a fake render of ``asset`` that takes ``duration`` seconds.

    Event: ``{"asset": "trailer.mov", "duration": 8, "max_polls": 10}`` (all optional).
    Returns ``{"job_id", "asset", "submitted_at", "ready_at", "max_polls"}`` with times as epoch
    seconds. An asset whose name ends in ``.broken`` will be reported as failed by the status
    check (to show the flow's failure branch).
    """
    evt = parse_event(event, InvalidRenderRequest)
    asset = str(evt.get("asset") or "untitled.mov")
    duration = _number(evt, "duration", DEFAULT_DURATION_SECONDS, low=0, high=MAX_DURATION_SECONDS)
    max_polls = int(_number(evt, "max_polls", DEFAULT_MAX_POLLS, low=1, high=10_000))
    now = time.time()
    job = {
        "job_id": f"render-{uuid.uuid4().hex[:12]}",
        "asset": asset,
        "submitted_at": round(now, 3),
        "ready_at": round(now + duration, 3),
        "max_polls": max_polls,
    }
    log.info("render %s of %s submitted; ready in %.1f s", job["job_id"], asset, duration)
    return job


def render_status(event: Any, context: Any) -> dict:
    """Report on a fake render: ``running`` until ``ready_at``, then ``done``.

    Event: ``{"job_id", "ready_at", "submitted_at"?, "asset"?, "polls"?}``.
    Returns ``{"job_id", "status", "progress", "polls", "checked_at"}`` where ``polls`` is the
    incoming count plus one, ``progress`` a percentage, and, when done, ``artifact``.
    """
    evt = parse_event(event, InvalidRenderRequest)
    job_id = evt.get("job_id")
    if not isinstance(job_id, str) or not job_id:
        raise InvalidRenderRequest("job_id is missing")
    ready_at = _number(evt, "ready_at", float("nan"), low=0, high=1e12)
    if ready_at != ready_at:  # NaN: the default, i.e. missing
        raise InvalidRenderRequest("ready_at is missing (pass along what submit_render returned)")
    submitted_at = _number(evt, "submitted_at", ready_at, low=0, high=1e12)
    polls = int(_number(evt, "polls", 0, low=0, high=1e9)) + 1
    now = time.time()

    if str(evt.get("asset", "")).endswith(".broken"):
        status, progress = "failed", 0
    elif now >= ready_at:
        status, progress = "done", 100
    else:
        status = "running"
        span = ready_at - submitted_at
        progress = int(max(0.0, min(99.0, (now - submitted_at) / span * 100))) if span > 0 else 0

    result = {
        "job_id": job_id,
        "status": status,
        "progress": progress,
        "polls": polls,
        "checked_at": round(now, 3),
    }
    if status == "done":
        result["artifact"] = f"renders/{job_id}.mp4"
    log.info("render %s: %s (%d%%), poll %d", job_id, status, progress, polls)
    return result
