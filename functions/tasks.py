"""Celery tasks: thin, ids in, one service call each."""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(name=services.RUN_INVOCATION, ignore_result=True)
def run_invocation(invocation_id: int) -> str:
    """Run a recorded direct invocation (see ``services.invocation_run``)."""
    return services.invocation_run(invocation_id)
