"""REST API for functions: ``/api/v1/functions/`` (views parse, call a service, render).

Changing functions needs the admin role and invoking one the operator role (the services check
the acting user; ``flowsite/access.py``); reading needs any role. An invocation never runs in
this (web) process: the service records it, a Celery worker runs it, and the request waits for
the recorded outcome.
"""

from __future__ import annotations

from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from flowsite.access import api_actor
from flowsite.api import ERR_400, ERR_401, check_same_name, error_response, parse
from flowsite.errors import ServiceError

from . import services
from .models import Function, InvocationStatus
from .serializers import (
    FunctionCreateSerializer,
    FunctionErrorSerializer,
    FunctionPatchSerializer,
    FunctionReplaceSerializer,
    FunctionSerializer,
    InvocationResultSerializer,
)

# --------------------------------------------------------------------------------------------
# Functions
# --------------------------------------------------------------------------------------------

_NOT_FOUND = error_response("FunctionNotFound.")
_FORBIDDEN = error_response("Forbidden: changing functions needs staff rights.")
_BAD_FUNCTION = error_response(
    "InvalidArgument (a field) or InvalidHandler: the handler is not a function in a module "
    "file inside a FLOWSITE_FUNCTIONS_PATH folder."
)


class FunctionListView(GenericAPIView):
    """List (cursor-paginated, newest first) and create functions."""

    queryset = Function.objects.all()
    serializer_class = FunctionSerializer
    filter_backends: list = []

    @extend_schema(
        operation_id="functions_list",
        summary="List functions",
        responses={200: FunctionSerializer(many=True), 400: ERR_400, 401: ERR_401},
    )
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(FunctionSerializer(page, many=True).data)

    @extend_schema(
        operation_id="functions_create",
        summary="Register a function",
        request=FunctionCreateSerializer,
        responses={
            201: FunctionSerializer,
            400: _BAD_FUNCTION,
            401: ERR_401,
            403: _FORBIDDEN,
            409: error_response("FunctionAlreadyExists."),
        },
    )
    def post(self, request: Request) -> Response:
        data = parse(FunctionCreateSerializer, request.data)
        function = services.function_create(**data, actor=api_actor(request))
        return Response(
            FunctionSerializer(function).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": f"{request.path.rstrip('/')}/{function.name}/"},
        )


class FunctionDetailView(APIView):
    """One function: read, replace (PUT), change (PATCH), delete."""

    @extend_schema(
        operation_id="functions_retrieve",
        summary="Get a function",
        responses={200: FunctionSerializer, 401: ERR_401, 404: _NOT_FOUND},
    )
    def get(self, request: Request, name: str) -> Response:
        return Response(FunctionSerializer(services.function_get(name)).data)

    @extend_schema(
        operation_id="functions_replace",
        summary="Replace a function",
        description="Omitted optional fields go back to their defaults.",
        request=FunctionReplaceSerializer,
        responses={
            200: FunctionSerializer,
            400: _BAD_FUNCTION,
            401: ERR_401,
            403: _FORBIDDEN,
            404: _NOT_FOUND,
        },
    )
    def put(self, request: Request, name: str) -> Response:
        return self._update(request, name, FunctionReplaceSerializer)

    @extend_schema(
        operation_id="functions_update",
        summary="Change some fields of a function",
        request=FunctionPatchSerializer,
        responses={
            200: FunctionSerializer,
            400: _BAD_FUNCTION,
            401: ERR_401,
            403: _FORBIDDEN,
            404: _NOT_FOUND,
        },
    )
    def patch(self, request: Request, name: str) -> Response:
        return self._update(request, name, FunctionPatchSerializer)

    def _update(self, request: Request, name: str, serializer_class) -> Response:
        function = services.function_get(name)
        data = parse(serializer_class, request.data)
        check_same_name(data, name)
        function = services.function_update(function=function, actor=api_actor(request), **data)
        return Response(FunctionSerializer(function).data)

    @extend_schema(
        operation_id="functions_destroy",
        summary="Delete a function",
        responses={204: None, 401: ERR_401, 403: _FORBIDDEN, 404: _NOT_FOUND},
    )
    def delete(self, request: Request, name: str) -> Response:
        services.function_delete(function=services.function_get(name), actor=api_actor(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class RawBodyParser(BaseParser):
    """Any content type: the invocation view reads ``request.body`` itself (this parser only
    tells DRF, and the schema, that every media type is accepted)."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None) -> bytes:
        return stream.read() if stream is not None else b""


# How a failed invocation is answered: error name -> (status, code). Anything else is the
# handler's own failure (or a platform error about its result): 502 FunctionError.
_INVOKE_ERRORS = {
    services.ERR_NOT_FOUND: (404, "FunctionNotFound"),
    services.ERR_TIMEOUT: (504, "FunctionTimeout"),
}


class FunctionInvokeView(APIView):
    """Invoke a function with the request body as its event: a worker runs it, the request
    waits for the recorded outcome (see ``services.invocation_call``)."""

    parser_classes = [RawBodyParser]

    @classmethod
    def as_view(cls, **initkwargs):
        # The request waits for a worker's commit: inside ATOMIC_REQUESTS' transaction it would
        # wait for a row that no worker can see yet.
        return transaction.non_atomic_requests(super().as_view(**initkwargs))

    def initial(self, request: Request, *args, **kwargs) -> None:
        # Read the body before authentication: SessionAuthentication's CSRF check reads
        # request.POST, which for a multipart body would consume the stream and make
        # request.body unreadable afterwards.
        request._request.body  # noqa: B018 - cached on the HttpRequest
        super().initial(request, *args, **kwargs)

    @extend_schema(
        operation_id="functions_invoke",
        summary="Invoke a function",
        description=(
            "The request body, exactly as sent (any JSON value, text or bytes), is the event "
            "the handler gets. A worker runs it (never the web server) while the request "
            "waits: at most the function's timeout once a worker started it. 503 "
            "NoWorkerAvailable when no worker started it in time (it will then never run)."
        ),
        request={
            "application/json": OpenApiTypes.ANY,
            "text/plain": OpenApiTypes.STR,
            "application/octet-stream": OpenApiTypes.BINARY,
        },
        responses={
            200: InvocationResultSerializer,
            401: ERR_401,
            404: _NOT_FOUND,
            413: error_response("EntityTooLarge: the event is over the task payload limit."),
            502: OpenApiResponse(
                FunctionErrorSerializer,
                description="FunctionError: the handler raised, could not be loaded, or "
                "returned something that is not JSON.",
                examples=[
                    OpenApiExample(
                        "Handler raised",
                        value={
                            "code": "FunctionError",
                            "message": "ValueError: bad input",
                            "error": "ValueError",
                            "cause": "bad input\nTraceback (most recent call last):\n"
                            '  File "mymodule.py", line 7, in handler\n'
                            "    raise ValueError('bad input')\n"
                            "ValueError: bad input",
                            "request_id": "4f1c...",
                        },
                    )
                ],
            ),
            503: error_response(
                "NoWorkerAvailable: no worker started the invocation in time; it never runs."
            ),
            504: OpenApiResponse(
                FunctionErrorSerializer,
                description="FunctionTimeout: the handler ran longer than its timeout, or no "
                "result arrived in time (then the invocation may still be running).",
            ),
        },
    )
    def post(self, request: Request, name: str) -> Response:
        function = services.function_get(name)
        invocation = services.invocation_call(
            function=function, payload=request.body, actor=api_actor(request)
        )
        request_id = invocation.request_id
        if invocation.status == InvocationStatus.SUCCEEDED:
            return Response(
                {
                    "request_id": request_id,
                    "result": invocation.result,
                    "duration_ms": invocation.duration_ms,
                }
            )
        if invocation.status == InvocationStatus.EXPIRED:
            raise ServiceError(
                f"{invocation.cause or 'no worker started the invocation'}; it will not run",
                code="NoWorkerAvailable",
                status=503,
                extra={"request_id": request_id},
            )
        if invocation.status == InvocationStatus.FAILED:
            error, cause = invocation.error, invocation.cause
        else:  # still running past the function's timeout (a busy or dead worker)
            error = services.ERR_TIMEOUT
            cause = (
                f"no result within {function.timeout_seconds} s of the start; the invocation "
                "may still be running"
            )
        status_code, code = _INVOKE_ERRORS.get(error, (502, "FunctionError"))
        first_line = (cause or "").strip().splitlines()[:1]
        message = f"{error}: {first_line[0]}" if first_line else error
        raise ServiceError(
            message,
            code=code,
            status=status_code,
            extra={"error": error, "cause": cause, "request_id": request_id},
        )
