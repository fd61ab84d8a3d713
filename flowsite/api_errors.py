"""One error shape for the whole API: ``{"code": <stable code>, "message": <human text>}``.

* :func:`exception_handler` is DRF's ``EXCEPTION_HANDLER``: it renders DRF and Django exceptions
  and :class:`flowsite.errors.ServiceError` raised by services.
* :class:`ApiErrorMiddleware` refuses oversized ``/api/`` bodies with 413 before any view runs
  (DRF's JSON parser reads the raw stream and so never applies Django's
  ``DATA_UPLOAD_MAX_MEMORY_SIZE``), and turns Django's HTML 404 page into JSON under ``/api/``.
* :func:`handler404` / :func:`handler500` are Django's handlers (wired in ``flowsite.urls``):
  JSON under ``/api/``, Django's usual pages elsewhere.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.core import exceptions as django_exceptions
from django.core import signals
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions as drf_exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import set_rollback

from flowsite.errors import ServiceError

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"

# DRF exception class -> (status, code). Looked up along the class's MRO, so subclasses of
# these (and of ServiceError) get their parent's mapping unless listed themselves.
_DRF_CODES: dict[type[Exception], tuple[int, str]] = {
    drf_exceptions.ParseError: (400, "MalformedJSON"),
    drf_exceptions.ValidationError: (400, "InvalidArgument"),
    drf_exceptions.NotAuthenticated: (401, "Unauthenticated"),
    drf_exceptions.AuthenticationFailed: (401, "Unauthenticated"),
    drf_exceptions.PermissionDenied: (403, "Forbidden"),
    drf_exceptions.NotFound: (404, "NotFound"),
    drf_exceptions.MethodNotAllowed: (405, "MethodNotAllowed"),
    drf_exceptions.NotAcceptable: (406, "NotAcceptable"),
    drf_exceptions.UnsupportedMediaType: (415, "UnsupportedMediaType"),
    drf_exceptions.Throttled: (429, "Throttled"),
}


def is_api_request(request: HttpRequest) -> bool:
    return request.path_info.startswith(API_PREFIX)


def error_body(code: str, message: str, errors: list[dict[str, Any]] | None = None) -> dict:
    body: dict[str, Any] = {"code": code, "message": message}
    if errors:
        body["errors"] = errors
    return body


def _camel(code: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in code.replace("-", "_").split("_"))


def _join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if key == api_settings.NON_FIELD_ERRORS_KEY or key == "__all__":
        return path
    return f"{path}.{key}" if path else str(key)


def flatten_errors(detail: Any, path: str = "") -> Iterator[dict[str, Any]]:
    """Flatten DRF's nested ``ValidationError.detail`` into ``[{"path","line","message"}]``.

    Paths are dotted field names with ``[i]`` for list items (``steps[2].name``); errors
    that belong to the whole object have path ``""``.
    """
    if isinstance(detail, dict):
        for key, value in detail.items():
            yield from flatten_errors(value, _join(path, key))
    elif isinstance(detail, list | tuple):
        for index, item in enumerate(detail):
            if isinstance(item, dict | list | tuple):
                # A list of nested errors: one entry per item (ListSerializer / many=True).
                yield from flatten_errors(item, _join(path, index))
            else:
                yield from flatten_errors(item, path)
    else:
        yield {"path": path, "line": None, "message": str(detail)}


def _summary(errors: list[dict[str, Any]]) -> str:
    if not errors:
        return "The request is invalid."
    first = errors[0]
    text = f"{first['path']}: {first['message']}" if first["path"] else first["message"]
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
    return text


def entity_too_large_body() -> dict:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return error_body(
        "EntityTooLarge",
        f"The request body is larger than the limit of {limit} bytes."
        if limit
        else "The request body is too large.",
    )


_ERROR_FORMATS = {"json", "api"}  # JSONRenderer, BrowsableAPIRenderer


def _response(
    context: dict, status: int, body: dict, headers: dict[str, str] | None = None
) -> Response:
    # Errors are always JSON, even from views whose renderers are not (the OpenAPI schema
    # view renders YAML) or when content negotiation itself failed. DRF's finalize_response
    # keeps a renderer already chosen on the request, so choose JSON there.
    request = context.get("request")
    if request is not None:
        renderer = getattr(request, "accepted_renderer", None)
        if renderer is None or getattr(renderer, "format", None) not in _ERROR_FORMATS:
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = JSONRenderer.media_type
    return Response(body, status=status, headers=headers)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF ``EXCEPTION_HANDLER``. Returns ``None`` for unexpected errors (-> Django's 500)."""
    headers: dict[str, str] = {}

    if isinstance(exc, ServiceError):
        set_rollback()
        return _response(context, exc.status, exc.as_dict())

    if isinstance(exc, RequestDataTooBig):
        set_rollback()
        return _response(context, 413, entity_too_large_body())

    if isinstance(exc, RecursionError):
        # A JSON body nested deeper than the parser can follow (json's scanner recurses, and
        # DRF's parser only turns ValueError into a ParseError).
        set_rollback()
        return _response(context, 400, error_body("MalformedJSON", "the JSON nests too deeply"))

    if isinstance(exc, OperationalError | InterfaceError):
        # The database is down or restarting: nothing was committed, the client may retry.
        set_rollback()
        logger.warning("database unavailable: %s", exc)
        body = error_body("ServiceUnavailable", "the database is unavailable; try again shortly")
        return _response(context, 503, body, {"Retry-After": "5"})

    # Django exceptions that DRF's default handler also translates.
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound(*(exc.args[:1] or ()))
    elif isinstance(exc, django_exceptions.PermissionDenied):
        exc = drf_exceptions.PermissionDenied(*(exc.args[:1] or ()))
    elif isinstance(exc, django_exceptions.ValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        exc = drf_exceptions.ValidationError(detail)

    if not isinstance(exc, drf_exceptions.APIException):
        return None

    set_rollback()

    status, code = exc.status_code, None
    for klass in type(exc).__mro__:
        if klass in _DRF_CODES:
            status, code = _DRF_CODES[klass]
            break
    if code is None:
        default = getattr(exc, "default_code", "error")
        code = "InternalError" if exc.status_code >= 500 and default == "error" else _camel(default)

    if isinstance(exc, drf_exceptions.ValidationError):
        errors = list(flatten_errors(exc.detail))
        return _response(context, status, error_body(code, _summary(errors), errors))

    if isinstance(exc, drf_exceptions.NotAuthenticated | drf_exceptions.AuthenticationFailed):
        # DRF downgrades these to 403 when the first authenticator (Session) has no
        # WWW-Authenticate challenge; we always answer 401, and challenge with "Token" so that
        # browsers do not pop up a Basic-auth dialog for XHR/HTMX calls.
        headers["WWW-Authenticate"] = getattr(exc, "auth_header", None) or 'Token realm="api"'
    if getattr(exc, "wait", None):
        headers["Retry-After"] = f"{int(exc.wait)}"

    detail = exc.detail
    if isinstance(detail, list | dict):
        message = _summary(list(flatten_errors(detail)))
    else:
        message = str(detail)
    return _response(context, status, error_body(code, message), headers or None)


# ------------------------------------------------------------------------------------------
# Django level
# ------------------------------------------------------------------------------------------


class ApiErrorMiddleware:
    """JSON errors for ``/api/`` requests that never reach a DRF view's handler."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if is_api_request(request):
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if limit is not None and length > limit:
                return JsonResponse(entity_too_large_body(), status=413)
        response = self.get_response(request)
        if (
            response.status_code == 404
            and is_api_request(request)
            and response.get("Content-Type", "").startswith("text/html")
        ):
            # Django's (DEBUG) HTML 404 page for an unknown /api/ URL.
            return JsonResponse(error_body("NotFound", "No such API endpoint."), status=404)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception):
        if not is_api_request(request):
            return None
        if isinstance(exception, RequestDataTooBig):
            return JsonResponse(entity_too_large_body(), status=413)
        if isinstance(exception, ServiceError):
            return JsonResponse(exception.as_dict(), status=exception.status)
        if isinstance(exception, _DJANGO_ANSWERS):
            return None  # Django answers these itself (404, 403, 400)
        # Anything else is a bug. Answer as handler500 does even under DEBUG, whose technical
        # 500 page would hand the server's traceback and settings to an API client; the
        # traceback goes to the log (and to got_request_exception receivers) instead.
        logger.error("unexpected error on %s", request.path, exc_info=exception)
        signals.got_request_exception.send(sender=None, request=request)
        return handler500(request)


# Exceptions Django turns into 4xx responses itself.
_DJANGO_ANSWERS = (
    Http404,
    django_exceptions.PermissionDenied,
    django_exceptions.BadRequest,
    django_exceptions.SuspiciousOperation,
)


def handler404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if is_api_request(request):
        return JsonResponse(error_body("NotFound", "Not found."), status=404)
    return defaults.page_not_found(request, exception)


def handler500(request: HttpRequest) -> HttpResponse:
    if is_api_request(request):
        return JsonResponse(
            error_body("InternalError", "The server failed to process the request."), status=500
        )
    return defaults.server_error(request)
