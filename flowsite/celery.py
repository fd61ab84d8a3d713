"""The Celery app: ``celery -A flowsite worker`` / ``celery -A flowsite beat``."""

import os

from celery import Celery
from celery.signals import (
    beat_init,
    task_prerun,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
)

from flowsite import broker

# Register the embedded broker's alias before anything resolves the broker URL, so that
# ``flowsitefs://`` works in web, worker and beat processes alike.
broker.register()

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flowsite.settings")

app = Celery("flowsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@beat_init.connect
def _start_sweeper(sender=None, **kwargs):
    """Beat hosts the sweeper thread (see executions/runtime/sweeper.py for why not a pool task)."""
    from django.conf import settings  # noqa: PLC0415 - after Django is configured

    if settings.FLOWSITE_SWEEPER_IN_BEAT:
        from executions.runtime.sweeper import start_in_background  # noqa: PLC0415

        start_in_background()


@task_prerun.connect
def _drop_unusable_connections(**kwargs):
    """Connections live across tasks (CELERY_DB_REUSE_MAX); drop one the database closed."""
    from django.db import close_old_connections  # noqa: PLC0415

    close_old_connections()


@worker_init.connect
def _enable_liveness(**kwargs):
    """Worker processes stamp liveness rows (executions/runtime/liveness.py); the flag is set
    before the pool forks, so prefork children inherit it."""
    from executions.runtime import liveness  # noqa: PLC0415

    liveness.ENABLED = True


@worker_process_init.connect
def _start_liveness(**kwargs):
    from executions.runtime import liveness  # noqa: PLC0415

    liveness.ensure_started()


@worker_process_shutdown.connect
def _stop_liveness(**kwargs):
    from executions.runtime import liveness  # noqa: PLC0415

    liveness.stop()
