"""Demo handler for the fan-out flows (``demo-fanout`` and ``demo-fanout-legacy``).

``process_part`` checksums one part of a larger upload; the flows run it once per part, several
at a time, and collect the results.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from flowsite_demo_events import parse_event

log = logging.getLogger(__name__)

ALGORITHMS = {"md5": "md5", "sha1": "sha1", "sha256": "sha256", "sha512": "sha512"}


class InvalidPart(ValueError):
    """The event does not describe a part."""


def process_part(event: Any, context: Any) -> dict:
    """Event: ``{"id": <any>, "data": <string or JSON value>, "algorithm"?: "sha256"}``.

    A string ``data`` is hashed as its UTF-8 bytes; any other JSON value as its compact JSON
    text with sorted keys. Returns ``{"id", "algorithm", "checksum", "bytes"}``.
    """
    evt = parse_event(event, InvalidPart)
    if "data" not in evt:
        raise InvalidPart("data is missing")
    algorithm = str(evt.get("algorithm") or "sha256").lower().replace("-", "")
    if algorithm not in ALGORITHMS:
        raise InvalidPart(
            f"algorithm must be one of {', '.join(ALGORITHMS)}, got {evt.get('algorithm')!r}"
        )
    data = evt["data"]
    text = (
        data
        if isinstance(data, str)
        else json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    )
    raw = text.encode("utf-8")
    checksum = hashlib.new(ALGORITHMS[algorithm], raw, usedforsecurity=False).hexdigest()
    log.info("part %s: %d bytes, %s %s", evt.get("id"), len(raw), algorithm, checksum[:12])
    return {"id": evt.get("id"), "algorithm": algorithm, "checksum": checksum, "bytes": len(raw)}
