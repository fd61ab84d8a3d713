"""Celery tasks: thin, ids in, one runtime call each (the logic lives in ``runtime/``)."""

from __future__ import annotations

from celery import shared_task

from .runtime import sweeper, worker


@shared_task(name="executions.run_work", ignore_result=True)
def run_work(work_id: int) -> str:
    return worker.run_work_item(work_id)


@shared_task(name="executions.sweep", ignore_result=True)
def sweep() -> dict:
    return sweeper.sweep()
