"""Demo handler for the callback flows (``demo-approval`` and ``demo-approval-v2``).

``notify_approver`` stands in for "send the approver an e-mail with Approve / Reject links".
It gets the step's task token in its event and only logs that a request went out; the flow then
waits until someone reports the decision with that token (``ReportTaskSucceeded`` with an
output such as ``{"decision": "approve", "comment": "looks fine"}``, or ``ReportTaskFailed``).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from flowsite_demo_events import parse_event

log = logging.getLogger(__name__)


class MissingTaskToken(ValueError):
    """The flow did not pass the task token: nobody could ever answer this request."""


def notify_approver(event: Any, context: Any) -> dict:
    """Event: ``{"task_token", "request_id"?, "approver"?, "summary"?}``.

    Returns ``{"notified": true, "approver", "request_id", "token_fingerprint"}``. The token is
    a credential (whoever holds it decides the step), so only a fingerprint is logged/returned.
    """
    evt = parse_event(event)
    token = evt.get("task_token")
    if not isinstance(token, str) or not token:
        raise MissingTaskToken("task_token is missing: map the step's task token into the event")
    approver = str(evt.get("approver") or "approver@example.com")
    request_id = str(evt.get("request_id") or "unnamed-request")
    fingerprint = hashlib.sha256(token.encode()).hexdigest()[:12]
    log.info(
        "approval of %s requested from %s (%s); waiting for a report with token %s…",
        request_id,
        approver,
        evt.get("summary") or "no summary",
        fingerprint,
    )
    return {
        "notified": True,
        "approver": approver,
        "request_id": request_id,
        "token_fingerprint": fingerprint,
    }
