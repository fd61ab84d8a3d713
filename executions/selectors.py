"""Reads that the API and the pages share: one query each, with the indexes they need.

Writes live in ``services.py``.
"""

from __future__ import annotations

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
