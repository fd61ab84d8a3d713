"""Celery tasks: thin, ids in, one runtime call each (the logic lives in runtime.py)."""

from __future__ import annotations

from celery import shared_task

from . import runtime


@shared_task(name="executions.run_work", ignore_result=True)
def run_work(work_id: int) -> str:
    return runtime.run_work_item(work_id)


@shared_task(name="executions.sweep", ignore_result=True)
def sweep() -> dict:
    return runtime.sweep()
