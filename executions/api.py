"""REST API for flows, executions, history and task callbacks (``/api/v1/``).

Views parse (input serializers), call one service from ``executions/services.py``, and render
(output serializers). Refusals are ``ServiceError``s rendered as ``{"code", "message"}`` by
``flowsite.api_errors.exception_handler``.
"""

from __future__ import annotations

import time

from django.db.models.functions import Substr
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.authentication import TokenAuthentication
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from flowsite.access import api_actor
from flowsite.api import ERR_400, ERR_401, check_same_name, error_response, parse
from flowsite.auth import CachedBasicAuthentication

from . import selectors, services
from .models import Execution, Flow, HistoryEvent
from .serializers import (
    ExecutionListQuerySerializer,
    ExecutionSerializer,
    ExecutionStartSerializer,
    ExecutionStopSerializer,
    ExecutionSummarySerializer,
    ExecutionWaitQuerySerializer,
    FlowCreateSerializer,
    FlowPatchSerializer,
    FlowReplaceSerializer,
    FlowSerializer,
    HistoryPageSerializer,
    HistoryQuerySerializer,
    TaskFailedSerializer,
    TaskHeartbeatSerializer,
    TaskReportResultSerializer,
    TaskSucceededSerializer,
)

# How often ``?wait_seconds=`` re-reads the execution.
WAIT_POLL_SECONDS = 0.2

_FLOW_404 = error_response("FlowNotFound.")
_EXECUTION_404 = error_response("FlowNotFound or ExecutionNotFound.")
_413 = error_response("EntityTooLarge.")


def _execution_url(execution: Execution) -> str:
    return f"/api/v1/flows/{execution.flow.name}/executions/{execution.name}/"


# --------------------------------------------------------------------------------------------
# Flows
# --------------------------------------------------------------------------------------------

_INVALID_DEFINITION = error_response(
    "InvalidArgument, MalformedJSON, or InvalidDefinition with `errors` listing every problem "
    "(path, line, message)."
)


class FlowListView(GenericAPIView):
    """List (cursor-paginated, newest first) and create flows."""

    queryset = Flow.objects.all()
    serializer_class = FlowSerializer
    filter_backends: list = []

    @extend_schema(
        operation_id="flows_list",
        summary="List flows",
        responses={200: FlowSerializer(many=True), 400: ERR_400, 401: ERR_401},
    )
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(FlowSerializer(page, many=True).data)

    @extend_schema(
        operation_id="flows_create",
        summary="Create a flow",
        request=FlowCreateSerializer,
        responses={
            201: FlowSerializer,
            400: _INVALID_DEFINITION,
            401: ERR_401,
            409: error_response("FlowAlreadyExists."),
            413: _413,
        },
    )
    def post(self, request: Request) -> Response:
        data = parse(FlowCreateSerializer, request.data)
        flow = services.flow_create(**data, actor=api_actor(request))
        return Response(
            FlowSerializer(flow).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": f"/api/v1/flows/{flow.name}/"},
        )


class FlowDetailView(APIView):
    """One flow: read, replace (PUT), change (PATCH), delete (with its executions)."""

    @extend_schema(
        operation_id="flows_retrieve",
        summary="Get a flow",
        responses={200: FlowSerializer, 401: ERR_401, 404: _FLOW_404},
    )
    def get(self, request: Request, name: str) -> Response:
        return Response(FlowSerializer(selectors.flow_get(name)).data)

    @extend_schema(
        operation_id="flows_replace",
        summary="Replace a flow's definition and description",
        description="A changed definition makes a new version; running executions keep theirs. "
        "An omitted description becomes empty.",
        request=FlowReplaceSerializer,
        responses={
            200: FlowSerializer,
            400: _INVALID_DEFINITION,
            401: ERR_401,
            404: _FLOW_404,
            413: _413,
        },
    )
    def put(self, request: Request, name: str) -> Response:
        return self._update(request, name, FlowReplaceSerializer)

    @extend_schema(
        operation_id="flows_update",
        summary="Change a flow's definition or description",
        description="A changed definition makes a new version; running executions keep theirs.",
        request=FlowPatchSerializer,
        responses={
            200: FlowSerializer,
            400: _INVALID_DEFINITION,
            401: ERR_401,
            404: _FLOW_404,
            413: _413,
        },
    )
    def patch(self, request: Request, name: str) -> Response:
        return self._update(request, name, FlowPatchSerializer)

    def _update(self, request: Request, name: str, serializer_class) -> Response:
        flow = selectors.flow_get(name)
        data = parse(serializer_class, request.data)
        check_same_name(data, name)
        flow = services.flow_update(flow=flow, **data, actor=api_actor(request))
        return Response(FlowSerializer(flow).data)

    @extend_schema(
        operation_id="flows_destroy",
        summary="Delete a flow, its versions, executions and history",
        responses={204: None, 401: ERR_401, 404: _FLOW_404},
    )
    def delete(self, request: Request, name: str) -> Response:
        services.flow_delete(flow=selectors.flow_get(name), actor=api_actor(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


# --------------------------------------------------------------------------------------------
# Executions
# --------------------------------------------------------------------------------------------


class ExecutionListView(GenericAPIView):
    """A flow's executions: list (cursor-paginated, newest first) and start."""

    serializer_class = ExecutionSummarySerializer
    filter_backends: list = []

    def get_queryset(self):
        # Only for drf-spectacular's introspection; the handlers build their own.
        return Execution.objects.none()

    @extend_schema(
        operation_id="executions_list",
        summary="List a flow's executions",
        parameters=[ExecutionListQuerySerializer],
        responses={
            200: ExecutionSummarySerializer(many=True),
            400: ERR_400,
            401: ERR_401,
            404: _FLOW_404,
        },
    )
    def get(self, request: Request, flow: str) -> Response:
        flow_obj = selectors.flow_get(flow)
        query = parse(ExecutionListQuerySerializer, request.query_params)
        executions = selectors.executions_of(flow_obj).defer("state", "input", "output")
        if query.get("status"):
            executions = executions.filter(status=query["status"])
        prefix = query.get("name_prefix")
        if prefix:
            # startswith may use an index but is case-insensitive on SQLite (LIKE); the
            # Substr equality makes the match exact everywhere.
            executions = executions.filter(name__startswith=prefix)
            executions = executions.annotate(_prefix=Substr("name", 1, len(prefix))).filter(
                _prefix=prefix
            )
        page = self.paginate_queryset(executions)
        return self.get_paginated_response(ExecutionSummarySerializer(page, many=True).data)

    @extend_schema(
        operation_id="executions_start",
        summary="Start an execution",
        description="201 with the new execution. If an execution of that name is still running, "
        "200 with it (a retried start is harmless); if it already ended, 409 "
        "ExecutionAlreadyExists.",
        request=ExecutionStartSerializer,
        responses={
            201: ExecutionSerializer,
            200: OpenApiResponse(
                ExecutionSerializer, description="An execution of that name is already running."
            ),
            400: ERR_400,
            401: ERR_401,
            404: _FLOW_404,
            409: error_response("ExecutionAlreadyExists: that name already ran."),
            413: error_response("EntityTooLarge: the input is over the payload limit."),
        },
    )
    def post(self, request: Request, flow: str) -> Response:
        flow_obj = selectors.flow_get(flow)
        data = parse(ExecutionStartSerializer, request.data)
        execution, created = services.execution_start(
            flow=flow_obj, name=data.get("name"), input=data.get("input"), actor=api_actor(request)
        )
        return Response(
            ExecutionSerializer(execution).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
            headers={"Location": _execution_url(execution)},
        )


class ExecutionDetailView(APIView):
    @extend_schema(
        operation_id="executions_retrieve",
        summary="Get an execution",
        description="With `wait_seconds`, the answer is held until the execution is no longer "
        "Starting/Running or that many seconds have passed, and gives its latest state.",
        parameters=[ExecutionWaitQuerySerializer],
        responses={200: ExecutionSerializer, 400: ERR_400, 401: ERR_401, 404: _EXECUTION_404},
    )
    def get(self, request: Request, flow: str, name: str) -> Response:
        flow_obj = selectors.flow_get(flow)
        wait = parse(ExecutionWaitQuerySerializer, request.query_params)["wait_seconds"]
        execution = selectors.execution_get(flow_obj, name)
        deadline = time.monotonic() + wait
        while execution.is_open:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(WAIT_POLL_SECONDS, remaining))
            execution = selectors.execution_get(flow_obj, name)
        return Response(ExecutionSerializer(execution).data)


class ExecutionStopView(APIView):
    @extend_schema(
        operation_id="executions_stop",
        summary="Stop a running execution",
        request=ExecutionStopSerializer,
        responses={
            200: ExecutionSerializer,
            400: ERR_400,
            401: ERR_401,
            404: _EXECUTION_404,
            409: error_response("ExecutionNotRunning: the execution has already ended."),
        },
    )
    def post(self, request: Request, flow: str, name: str) -> Response:
        execution = selectors.execution_get(selectors.flow_get(flow), name)
        data = parse(ExecutionStopSerializer, request.data)
        execution = services.execution_stop(execution=execution, **data, actor=api_actor(request))
        return Response(ExecutionSerializer(execution).data)


class ExecutionHistoryView(APIView):
    @extend_schema(
        operation_id="executions_history",
        summary="An execution's history events, oldest first",
        parameters=[HistoryQuerySerializer],
        responses={200: HistoryPageSerializer, 400: ERR_400, 401: ERR_401, 404: _EXECUTION_404},
    )
    def get(self, request: Request, flow: str, name: str) -> Response:
        execution = selectors.execution_get(selectors.flow_get(flow), name)
        query = parse(HistoryQuerySerializer, request.query_params)
        limit = query["limit"]
        after = int(query.get("next") or 0)
        # One extra row tells whether another page exists; (execution, event_id) is unique
        # and indexed, so this is a range scan.
        rows = list(
            HistoryEvent.objects.filter(execution=execution, event_id__gt=after).order_by(
                "event_id"
            )[: limit + 1]
        )
        more = len(rows) > limit
        rows = rows[:limit]
        page = {"events": rows, "next": str(rows[-1].event_id) if more else None}
        return Response(HistoryPageSerializer(page).data)


# --------------------------------------------------------------------------------------------
# Task callbacks
# --------------------------------------------------------------------------------------------


class _TaskCallbackView(APIView):
    # Machines report with a token (or basic auth), never with a browser's session cookie:
    # otherwise a logged-in operator's browser could be made to report a task.
    authentication_classes = [TokenAuthentication, CachedBasicAuthentication]


_TASK_ERRORS = {
    400: ERR_400,
    401: ERR_401,
    404: error_response("TaskNotExist: no task has this token."),
    409: error_response("TaskAlreadyCompleted."),
}


class TaskSucceededView(_TaskCallbackView):
    @extend_schema(
        operation_id="tasks_report_succeeded",
        summary="Complete a callback task with its output",
        request=TaskSucceededSerializer,
        responses={200: TaskReportResultSerializer, **_TASK_ERRORS, 413: _413},
    )
    def post(self, request: Request) -> Response:
        data = parse(TaskSucceededSerializer, request.data)
        event_id = services.task_report_succeeded(
            token=data["task_token"], output=data["output"], actor=api_actor(request)
        )
        return Response({"event_id": event_id})


class TaskFailedView(_TaskCallbackView):
    @extend_schema(
        operation_id="tasks_report_failed",
        summary="Fail a callback task",
        request=TaskFailedSerializer,
        responses={200: TaskReportResultSerializer, **_TASK_ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = parse(TaskFailedSerializer, request.data)
        event_id = services.task_report_failed(
            token=data["task_token"],
            error=data["error"],
            cause=data["cause"],
            actor=api_actor(request),
        )
        return Response({"event_id": event_id})


class TaskHeartbeatView(_TaskCallbackView):
    @extend_schema(
        operation_id="tasks_heartbeat",
        summary="Tell a callback task's heartbeat timer the task is alive",
        request=TaskHeartbeatSerializer,
        responses={200: OpenApiResponse(description="Recorded (an empty object)."), **_TASK_ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = parse(TaskHeartbeatSerializer, request.data)
        services.task_heartbeat(token=data["task_token"], actor=api_actor(request))
        return Response({})
