"""Task handlers for the integration tests (imported by the system's workers through
FLOWSITE_FUNCTIONS_PATH=tests/integration/functions).

Every handler that matters for counting real side effects writes to the *ledger*:
``$FLOWSITE_DATA_DIR/ledger.jsonl``, one JSON object per line, written with a single
``os.write`` on an ``O_APPEND`` descriptor so lines from concurrent processes never interleave.

A line: ``{"execution", "entry", "attempt", "request_id", "pid", "pgid", "worker", "phase", "t"}``
where ``phase`` is ``start`` or ``end``. ``execution`` comes from the event (the flows pass
``$Context.Execution.Name``); ``entry`` and ``attempt`` come from the invocation's request id
(``<execution id>-<entry>-<attempt>``, see executions/runtime/transition.py) and
``context.attempt``;
``worker`` is the ``FLOWSITE_IT_WORKER`` tag the harness gives each worker process.
"""

from __future__ import annotations

import json
import os
import time


def _event(event) -> dict:
    if isinstance(event, bytes | bytearray):
        event = bytes(event).decode() or "{}"
    if isinstance(event, str):
        event = json.loads(event or "{}")
    return event if isinstance(event, dict) else {"value": event}


def _ids(event: dict, context) -> dict:
    request_id = str(getattr(context, "request_id", "") or "")
    parts = request_id.split("-")
    entry = int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None
    attempt = getattr(context, "attempt", None)
    if attempt is None and len(parts) == 3 and parts[2].isdigit():
        attempt = int(parts[2])
    return {
        "execution": event.get("execution"),
        "entry": entry,
        "attempt": attempt,
        "request_id": request_id,
        "step": event.get("step"),
    }


def ledger(ids: dict, phase: str) -> None:
    path = os.path.join(os.environ["FLOWSITE_DATA_DIR"], "ledger.jsonl")
    line = dict(ids)
    line.update(
        {
            "pid": os.getpid(),
            "pgid": os.getpgid(0),
            "worker": os.environ.get("FLOWSITE_IT_WORKER", "?"),
            "phase": phase,
            "t": time.time(),
        }
    )
    data = (json.dumps(line, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def work(event, context):
    """Write ledger start, sleep ``sleep`` seconds (default 0), write ledger end."""
    data = _event(event)
    ids = _ids(data, context)
    ledger(ids, "start")
    time.sleep(float(data.get("sleep") or 0))
    ledger(ids, "end")
    return {"ok": True, "execution": ids["execution"], "step": ids["step"], "pid": os.getpid()}


def submit_job(event, context):
    """Start a 'job' that is done ``duration`` seconds from now (never, when null)."""
    data = _event(event)
    ids = _ids(data, context)
    ledger(ids, "start")
    duration = data.get("duration")
    ready_at = None if duration is None else time.time() + float(duration)
    ledger(ids, "end")
    return {"job": f"job-{ids['execution']}", "ready_at": ready_at, "polls": 0}


def job_status(event, context):
    """The job is done once now >= ready_at (carried in the data); counts the polls."""
    data = _event(event)
    ids = _ids(data, context)
    ledger(ids, "start")
    ready_at = data.get("ready_at")
    done = ready_at is not None and time.time() >= float(ready_at)
    ledger(ids, "end")
    return {"state": "done" if done else "working", "polls": int(data.get("polls") or 0) + 1}


def slow_first(event, context):
    """Like :func:`work`, but only the first attempt sleeps (``sleep`` seconds): a re-run after
    a lost worker finishes at once. Records ``context.idempotency_key`` in the ledger."""
    data = _event(event)
    ids = _ids(data, context)
    ids["idempotency_key"] = getattr(context, "idempotency_key", None)
    ledger(ids, "start")
    if ids["attempt"] == 1:
        time.sleep(float(data.get("sleep") or 0))
    ledger(ids, "end")
    return {"ok": True, "execution": ids["execution"], "attempt": ids["attempt"]}
