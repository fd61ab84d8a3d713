"""Handlers the API and functions tests register (``apihandlers.<name>``).

This folder (tests/functions/handlers) is a functions folder for the whole test run; see
tests/conftest.py.
"""

import json
import time


def echo(event, context):
    return event


def describe(event, context):
    return {
        "type": type(event).__name__,
        "text": event.decode("utf-8", errors="replace"),
        "request_id": context.request_id,
        "function": context.function.name,
    }


def context_view(event, context):
    return {
        "request_id": context.request_id,
        "attempt": getattr(context, "attempt", None),
        "idempotency_key": getattr(context, "idempotency_key", None),
        "function": context.function.name,
        "remaining_ms_positive": context.get_remaining_time_in_millis() > 0,
    }


def explode(event, context):
    raise ValueError("bad input\nsecond line")


def sleepy(event, context):
    time.sleep(5)
    return "too late"


def not_json(event, context):
    return object()


def parse_strictly(event, context):
    # The error comes from inside the standard library: its frames must not be shown.
    return _parse(event)


def _parse(event):
    return json.loads(event)


def parse_field(event, context):
    """Parses the event's "text" as JSON: fails inside the standard library for bad text."""
    return _parse(json.loads(event)["text"])


CALLS = 0


def count(event, context):
    """Module-level state persists between calls in one worker process."""
    global CALLS
    CALLS += 1
    return {"calls": CALLS}


def count_calls():
    return CALLS


def nul_result(event, context):
    return {"text": "a\x00b"}


def nul_error(event, context):
    raise ValueError("bad\x00byte \ud800 here")


def exits(event, context):
    raise SystemExit(3)
