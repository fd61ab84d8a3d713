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


def dispatch(ids, *, after_commit: bool = True) -> int:
    """Publish work item ids; returns how many were sent. Never raises: when the broker is
    unreachable it stops at the first failure (each try would only wait for the same timeout)
    and marks the rest due for re-publishing at once, so the sweeper resends them on its next
    round instead of after ``FLOWSITE_REDISPATCH_AFTER``."""
    ids = list(ids)
    if after_commit and fault("lose_publish"):
        # Test hook: behave as if the process died between commit and publish.
        log.warning("fault lose_publish: not publishing %s", ids)
        return 0
    for sent, work_id in enumerate(ids):
        try:
            current_app.send_task(RUN_WORK, args=[work_id], retry=False)
            if fault("duplicate_publish"):
                current_app.send_task(RUN_WORK, args=[work_id], retry=False)
        except Exception:  # noqa: BLE001 - broker down: the sweeper re-sends
            log.warning(
                "could not publish work items %s; the sweeper will retry",
                ids[sent:],
                exc_info=True,
            )
            _due_now(ids[sent:])
            return sent
    return len(ids)


def _due_now(ids: list[int]) -> None:
    from django.db.models.functions import Now  # noqa: PLC0415

    from ..models import WorkItem, WorkStatus  # noqa: PLC0415

    try:
        WorkItem.objects.filter(pk__in=ids, status=WorkStatus.PENDING).update(
            next_dispatch_at=Now()
        )
    except Exception:  # noqa: BLE001 - the database may be down too; the deadline stands
        log.warning("could not mark work items %s for re-publishing", ids, exc_info=True)
