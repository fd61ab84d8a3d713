"""Reads that the API and the pages share: one query each, with the indexes they need.

Writes live in ``services.py``.
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import QuerySet

from flowsite.errors import ServiceError

from .models import Execution, Flow


def flow_get(name: str) -> Flow:
    flow = Flow.objects.filter(name=name).first()
    if flow is None:
        raise ServiceError(f"no flow named {name!r}", code="FlowNotFound", status=404)
    return flow


def executions_of(flow: Flow) -> QuerySet[Execution]:
    """A flow's executions without their heavy columns (engine state, definition texts)."""
    return (
        Execution.objects.filter(flow=flow)
        .select_related("flow", "flow_version")
        .defer("state", "flow__definition", "flow_version__definition")
    )


def execution_get(flow: Flow, name: str) -> Execution:
    execution = executions_of(flow).filter(name=name).first()
    if execution is None:
        raise ServiceError(
            f"flow {flow.name!r} has no execution named {name!r}",
            code="ExecutionNotFound",
            status=404,
        )
    return execution


def runtime_health() -> dict:
    """What ``/healthz`` reports: the sweeper's last round and the live workers, judged by the
    database's clock. ``ok`` is False when no sweeper has stamped its row within three sweep
    intervals: then no timer fires and no lost work is recovered, whatever else works."""
    from django.conf import settings  # noqa: PLC0415
    from django.db.models import Max  # noqa: PLC0415

    from .models import Heartbeat, HeartbeatKind  # noqa: PLC0415
    from .runtime.transition import db_now  # noqa: PLC0415

    now = db_now()
    last = Heartbeat.objects.filter(kind=HeartbeatKind.SWEEPER).aggregate(last=Max("last_seen"))[
        "last"
    ]
    stale_after = 3 * settings.FLOWSITE_SWEEP_INTERVAL
    age = (now - last).total_seconds() if last else None
    live_since = now - timedelta(seconds=settings.FLOWSITE_WORKER_DEAD_AFTER)
    workers = Heartbeat.objects.filter(kind=HeartbeatKind.WORKER, last_seen__gte=live_since)
    return {
        "ok": age is not None and age <= stale_after,
        "sweeper": {
            "last_run": last.isoformat() if last else None,
            "age_seconds": round(age, 3) if age is not None else None,
            "stale_after_seconds": stale_after,
        },
        "workers": workers.count(),
    }


def waiting_for_people_count() -> int:
    """How many steps wait for a callback now (the approvals badge): an index-only count over
    the open tasks (partial index ``tasktoken_open``)."""
    from .models import TaskToken  # noqa: PLC0415

    return TaskToken.objects.filter(is_open=True).count()
