"""What the demo handlers share: reading the event Function Compute-style.

A handler receives the request body as bytes of JSON text (``json.loads(event)`` works), and a
direct call may hand it an already parsed value; this accepts both.
"""

from __future__ import annotations

import json
from typing import Any


def parse_event(event: Any, error: type[Exception] = ValueError) -> dict:
    """The event as a dict; ``error`` (the handler's own exception class, which becomes the
    task's error name) when it is not a JSON object."""
    if isinstance(event, bytes | bytearray):
        event = bytes(event).decode("utf-8")
    if isinstance(event, str):
        event = json.loads(event) if event.strip() else {}
    if not isinstance(event, dict):
        raise error(f"the event must be a JSON object, not {type(event).__name__}")
    return event
