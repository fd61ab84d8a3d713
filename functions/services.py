"""Function registry writes and the invocation of handlers.

``invoke()`` is the one place a handler runs, for flows (on a worker, see
``executions/runtime/worker.py``) and for direct calls from the API. It never raises for the
handler's own failures: every outcome comes back as an :class:`Invocation` whose error names
follow the flowsite decisions (the exception's class name for handler errors; ``FC.*`` for
platform errors).
"""

from __future__ import annotations

import importlib
import json
import logging
import signal
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from flowsite.errors import ServiceError

from .models import Function

log = logging.getLogger(__name__)

ERR_NOT_FOUND = "FC.FunctionNotFound"
ERR_INVALID_HANDLER = "FC.InvalidHandler"
ERR_INVALID_RESPONSE = "FC.InvalidResponse"
ERR_TIMEOUT = "FC.FunctionTimeout"
ERR_PAYLOAD = "FC.PayloadTooLarge"

FIELDS = ("name", "handler", "description", "timeout_seconds")


# --- registry -----------------------------------------------------------------------------------


def _clean(fn: Function) -> None:
    """Model validation as a ServiceError (400 InvalidArgument listing each bad field)."""
    try:
        fn.full_clean(validate_unique=False)
    except ValidationError as exc:
        errors = [
            {"path": field, "line": None, "message": " ".join(messages)}
            for field, messages in exc.message_dict.items()
        ]
        raise ServiceError(
            "; ".join(f"{e['path']}: {e['message']}" for e in errors), errors=errors
        ) from None


def function_create(*, name: str, handler: str, description: str = "", timeout_seconds: int = 60):
    fn = Function(
        name=name, handler=handler, description=description, timeout_seconds=timeout_seconds
    )
    _clean(fn)
    try:
        with transaction.atomic():
            fn.save()
    except IntegrityError:
        raise ServiceError(
            f"a function named {name!r} already exists", code="FunctionAlreadyExists", status=409
        ) from None
    return fn


def function_update(*, function: Function, **changes) -> Function:
    for key, value in changes.items():
        if key not in FIELDS or key == "name":
            continue
        setattr(function, key, value)
    _clean(function)
    function.save()
    return function


def function_delete(*, function: Function) -> None:
    function.delete()


def function_get(name: str) -> Function:
    try:
        return Function.objects.get(name=name)
    except Function.DoesNotExist:
        raise ServiceError(
            f"no function named {name!r}", code="FunctionNotFound", status=404
        ) from None


# --- invocation ---------------------------------------------------------------------------------


@dataclass
class Invocation:
    ok: bool
    output: Any = None  # the envelope {"Body", "StatusCode", "Headers"} when ok
    error: str = ""
    cause: str = ""
    request_id: str = ""
    duration_ms: float = 0.0


class Context:
    """What a handler gets as ``context`` (shaped after Function Compute's context object)."""

    def __init__(self, *, function: Function, request_id: str, deadline: float, extra=None):
        self.request_id = request_id
        self.function = _FunctionInfo(function)
        self.deadline = deadline
        self.credentials = None
        self.service = None
        self.region = "local"
        self.account_id = "local"
        self.logger = logging.getLogger(f"flowsite.functions.{function.name}")
        for key, value in (extra or {}).items():
            setattr(self, key, value)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


class _FunctionInfo:
    def __init__(self, function: Function):
        self.name = function.name
        self.handler = function.handler
        self.timeout = function.timeout_seconds
        self.memory = None


class FunctionTimeout(BaseException):
    """Raised inside a handler that overran its time limit. A BaseException, so a handler's
    own ``except Exception`` cannot swallow it."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` with :class:`FunctionTimeout` (SIGALRM; only in a
    process's main thread — Celery prefork children and sync web workers — elsewhere the
    attempt's lease in the database is the backstop)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "setitimer"
    ):
        yield
        return

    def on_alarm(signum, frame):
        raise FunctionTimeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


_handlers: dict[str, Any] = {}
_handlers_lock = threading.Lock()


def resolve_handler(path: str):
    """Import ``module.function`` once per process (modules keep module-level state, as FC
    instances do: seed 000's GetJobStatus relies on it)."""
    with _handlers_lock:
        if path in _handlers:
            return _handlers[path]
        module_name, _, attr = path.rpartition(".")
        module = importlib.import_module(module_name)
        handler = getattr(module, attr)
        if not callable(handler):
            raise TypeError(f"{path} is not callable")
        _handlers[path] = handler
        return handler


def encode_event(event: Any) -> bytes:
    """Function Compute hands handlers the request body as bytes: JSON text for JSON values."""
    if isinstance(event, bytes):
        return event
    if isinstance(event, str):
        return event.encode()
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()


def decode_body(value: Any) -> Any:
    """A handler's return becomes the envelope's ``Body``: JSON text is parsed, JSON values are
    kept, other text stays a string."""
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    if value is None:
        return ""
    json.dumps(value)  # TypeError/ValueError for non-JSON values: caught by the caller
    return value


def invoke(
    function: Function | str, event: Any, *, request_id: str | None = None, extra_context=None
) -> Invocation:
    """Run a function's handler on ``event`` here and now. Never raises for the handler's own
    failures (nor for a missing function, a bad handler path, a timeout or a bad result)."""
    request_id = request_id or uuid.uuid4().hex
    started = time.monotonic()

    def failed(error: str, cause: str) -> Invocation:
        return Invocation(
            False, error=error, cause=cause, request_id=request_id, duration_ms=_ms(started)
        )

    if isinstance(function, str):
        found = Function.objects.filter(name=function).first()
        if found is None:
            return failed(ERR_NOT_FOUND, f"function {function!r} does not exist")
        function = found
    payload = encode_event(event)
    limit = settings.FLOWSITE_MAX_TASK_PAYLOAD_BYTES
    if len(payload) > limit:
        return failed(ERR_PAYLOAD, f"the event is {len(payload)} bytes; the limit is {limit}")
    try:
        handler = resolve_handler(function.handler)
    except Exception as exc:  # noqa: BLE001 - any import problem is the function's error
        return failed(
            ERR_INVALID_HANDLER, f"cannot load {function.handler}: {type(exc).__name__}: {exc}"
        )
    context = Context(
        function=function,
        request_id=request_id,
        deadline=time.monotonic() + function.timeout_seconds,
        extra=extra_context,
    )
    try:
        with time_limit(function.timeout_seconds):
            result = handler(payload, context)
    except FunctionTimeout:
        return failed(ERR_TIMEOUT, f"the function ran longer than {function.timeout_seconds} s")
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - the handler's failure (even sys.exit) is data
        tb = traceback.format_exc(limit=20)
        return failed(type(exc).__name__, f"{exc}\n{tb}"[:32768])
    try:
        body = decode_body(result)
        size = len(json.dumps(body, ensure_ascii=False).encode())
    except (TypeError, ValueError) as exc:
        return failed(ERR_INVALID_RESPONSE, f"the handler returned a value that is not JSON: {exc}")
    if size > limit:
        return failed(ERR_PAYLOAD, f"the result is {size} bytes; the limit is {limit}")
    envelope = {"Body": body, "StatusCode": 200, "Headers": {"x-fc-request-id": request_id}}
    return Invocation(True, output=envelope, request_id=request_id, duration_ms=_ms(started))


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 3)
