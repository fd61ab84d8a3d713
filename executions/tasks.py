"""Celery tasks: thin, ids in, one runtime call each (the logic lives in ``runtime/``)."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import Reject

from .runtime import sweeper, worker

log = logging.getLogger(__name__)


@shared_task(name="executions.run_work", ignore_result=True)
def run_work(work_id: int) -> str:
    try:
        return worker.run_with_database(lambda: worker.run_work_item(work_id))
    except worker.DatabaseUnavailable:
        # Hand the message back rather than fail and drop it (acks_late): another try, here or
        # on another worker, once the database answers again.
        log.error("work item %s: database unavailable for too long; requeueing", work_id)
        raise Reject("database unavailable", requeue=True) from None


@shared_task(name="executions.sweep", ignore_result=True)
def sweep() -> dict:
    return sweeper.sweep()


@shared_task(name="executions.prune", ignore_result=True)
def prune() -> int:
    """The daily retention job (``CELERY_BEAT_SCHEDULE`` in settings)."""
    from datetime import timedelta  # noqa: PLC0415

    from django.conf import settings  # noqa: PLC0415

    from .services import executions_prune  # noqa: PLC0415

    return executions_prune(older_than=timedelta(days=settings.FLOWSITE_RETENTION_DAYS))
