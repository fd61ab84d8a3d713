"""Publishing work item ids to Celery, after commit.

Messages carry only the work item's id. A publish that never happens (crash after commit,
broker down) is repaired by the sweeper, which re-publishes pending work items whose
``next_dispatch_at`` has passed; a message delivered twice finds its work item already claimed
and does nothing. Tasks are sent by name, so this module does not import ``executions.tasks``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from celery import current_app
from django.conf import settings

from .faults import fault

log = logging.getLogger(__name__)

RUN_WORK = "executions.run_work"


def redispatch_at(now: datetime) -> datetime:
    """When the sweeper re-publishes a work item that nobody has claimed by then."""
    return now + timedelta(seconds=settings.FLOWSITE_REDISPATCH_AFTER)


def dispatch(ids, *, after_commit: bool = True) -> None:
    """Publish work item ids. Never raises: a failed publish is retried by the sweeper."""
    if after_commit and fault("lose_publish"):
        # Test hook: behave as if the process died between commit and publish.
        log.warning("fault lose_publish: not publishing %s", list(ids))
        return
    for work_id in ids:
        try:
            current_app.send_task(RUN_WORK, args=[work_id], retry=False)
            if fault("duplicate_publish"):
                current_app.send_task(RUN_WORK, args=[work_id], retry=False)
        except Exception:  # noqa: BLE001 - broker down: the sweeper re-sends
            log.warning(
                "could not publish work item %s; the sweeper will retry", work_id, exc_info=True
            )
