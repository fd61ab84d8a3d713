"""Function registry writes, the invocation of handlers, and direct (API) invocations.

Rules this module keeps:

* **Only staff change functions** (until roles land): ``function_create``/``_update``/
  ``_delete`` take the acting ``user`` and refuse anyone else with 403 ``Forbidden``; trusted
  internal callers (management commands, benchmarks) pass :data:`SYSTEM`.
* **A handler is confined** to a function in a file inside a ``FLOWSITE_FUNCTIONS_PATH``
  folder, checked when it is saved (400 ``InvalidHandler``) and again before every run
  (``FC.InvalidHandler``); see ``functions/loader.py``.
* **Handler code never runs in a web process.** :func:`invoke` is the one place a handler runs,
  on a Celery worker: for flow steps (``executions/runtime/worker.py``) and for direct calls,
  which the API records as an :class:`~functions.models.Invocation` row that a worker runs
  (:func:`invocation_run`) while the request waits for the row to end (:func:`invocation_wait`).
  :func:`invoke` refuses to run in a process marked as a web process (``process.py``).
* **A handler's failure is data.** :func:`invoke` never raises for it: every outcome comes back
  as an :class:`InvokeResult` whose error names follow the flowsite decisions (the exception's
  class name for handler errors; ``FC.*`` for platform errors), and whose cause shows only the
  handler's own traceback frames.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import DateTimeField, ExpressionWrapper, Q, Value
from django.db.models.functions import Now

from flowsite import access, audit
from flowsite.access import Perm
from flowsite.errors import ServiceError

from . import loader
from .models import ENDED_STATUSES, Function, Invocation, InvocationStatus
from .process import refuse_in_web_process

log = logging.getLogger(__name__)

ERR_NOT_FOUND = "FC.FunctionNotFound"
ERR_INVALID_HANDLER = "FC.InvalidHandler"
ERR_INVALID_RESPONSE = "FC.InvalidResponse"
ERR_TIMEOUT = "FC.FunctionTimeout"
ERR_PAYLOAD = "FC.PayloadTooLarge"

FIELDS = ("name", "handler", "description", "timeout_seconds")
MAX_CAUSE_CHARS = 32768

RUN_INVOCATION = "functions.run_invocation"  # functions/tasks.py; sent by name


# Trusted internal callers (management commands, benchmarks) act as the system.
SYSTEM = access.SYSTEM


# --- registry -----------------------------------------------------------------------------------


def worker_id() -> str:
    # Read at call time: Celery imports this module in the parent before forking its children.
    return f"{socket.gethostname()}:{os.getpid()}"


def check_handler(handler: Any) -> loader.Location:
    """Where ``handler`` lives; 400 ``InvalidHandler`` unless it names a module file inside a
    functions folder (no code is imported or run to find out)."""
    return loader.locate(handler)


def _clean(fn: Function) -> None:
    """Model validation as a ServiceError (400 InvalidArgument listing each bad field), then
    the handler's confinement (400 InvalidHandler)."""
    try:
        fn.full_clean(exclude=["handler"], validate_unique=False)
    except ValidationError as exc:
        errors = [
            {"path": field, "line": None, "message": " ".join(messages)}
            for field, messages in exc.message_dict.items()
        ]
        raise ServiceError(
            "; ".join(f"{e['path']}: {e['message']}" for e in errors), errors=errors
        ) from None
    check_handler(fn.handler)


def function_create(
    *, name: str, handler: str, description: str = "", timeout_seconds: int = 60, actor: Any
) -> Function:
    # Checked before validation, so someone without the role cannot probe the folders.
    actor = access.require(actor, Perm.MANAGE_FUNCTIONS)
    fn = Function(
        name=name, handler=handler, description=description, timeout_seconds=timeout_seconds
    )
    _clean(fn)
    try:
        with transaction.atomic():
            fn.save()
            audit.record(actor, "function.create", "function", name, handler=handler)
    except IntegrityError:
        raise ServiceError(
            f"a function named {name!r} already exists", code="FunctionAlreadyExists", status=409
        ) from None
    return fn


def function_update(*, function: Function, actor: Any, **changes) -> Function:
    actor = access.require(actor, Perm.MANAGE_FUNCTIONS)
    changed = []
    for key, value in changes.items():
        if key not in FIELDS or key == "name":
            continue
        if getattr(function, key) != value:
            changed.append(key)
        setattr(function, key, value)
    _clean(function)
    with transaction.atomic():
        function.save()
        if changed:
            audit.record(
                actor,
                "function.update",
                "function",
                function.name,
                changed=changed,
                handler=function.handler,
            )
    return function


def function_delete(*, function: Function, actor: Any) -> None:
    actor = access.require(actor, Perm.MANAGE_FUNCTIONS)
    with transaction.atomic():
        audit.record(actor, "function.delete", "function", function.name)
        function.delete()


def function_get(name: str) -> Function:
    try:
        return Function.objects.get(name=name)
    except Function.DoesNotExist:
        raise ServiceError(
            f"no function named {name!r}", code="FunctionNotFound", status=404
        ) from None


# --- running a handler (workers only) -------------------------------------------------------


@dataclass
class InvokeResult:
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
    process's main thread, as in Celery's prefork children; elsewhere the attempt's lease in
    the database is the backstop)."""
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
) -> InvokeResult:
    """Run a function's handler on ``event`` here and now, on a worker. Never raises for the
    handler's own failures (nor for a missing function, a bad handler path, a timeout or a bad
    result); raises :class:`~functions.process.HandlerInWebProcess` in a web process."""
    refuse_in_web_process()
    request_id = request_id or uuid.uuid4().hex
    started = time.monotonic()

    def failed(error: str, cause: str) -> InvokeResult:
        return InvokeResult(
            False,
            error=_storable(error),
            cause=_storable(cause[:MAX_CAUSE_CHARS]),
            request_id=request_id,
            duration_ms=_ms(started),
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
    timeout = function.timeout_seconds
    try:
        # Loading runs the module's top-level code the first time: it is under the time limit
        # too, so a module that hangs on import cannot hold the worker.
        with time_limit(timeout):
            try:
                handler = loader.load(function.handler)
            except loader.InvalidHandler as exc:
                return failed(ERR_INVALID_HANDLER, f"cannot load {function.handler}: {exc.reason}")
            except (KeyboardInterrupt, FunctionTimeout):
                raise
            except BaseException as exc:  # noqa: BLE001 - the module's own failure is data
                detail = f"{type(exc).__name__}: {loader.handler_error(exc)}"
                return failed(ERR_INVALID_HANDLER, f"cannot load {function.handler}: {detail}")
            context = Context(
                function=function,
                request_id=request_id,
                deadline=time.monotonic() + timeout,
                extra=extra_context,
            )
            result = handler(payload, context)
    except FunctionTimeout:
        return failed(ERR_TIMEOUT, f"the function ran longer than {timeout} s")
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - the handler's failure (even sys.exit) is data
        return failed(type(exc).__name__, loader.handler_error(exc))
    try:
        body = decode_body(result)
        size = len(json.dumps(body, ensure_ascii=False).encode())
    except (TypeError, ValueError) as exc:
        return failed(ERR_INVALID_RESPONSE, f"the handler returned a value that is not JSON: {exc}")
    if size > limit:
        return failed(ERR_PAYLOAD, f"the result is {size} bytes; the limit is {limit}")
    envelope = {"Body": body, "StatusCode": 200, "Headers": {"x-fc-request-id": request_id}}
    return InvokeResult(True, output=envelope, request_id=request_id, duration_ms=_ms(started))


def _json_text(value: Any) -> str:
    # json.dumps escapes control characters (NUL included) even with ensure_ascii=False.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _storable(text: str) -> str:
    """Text any database column takes: no NUL (PostgreSQL refuses it in text and jsonb) and no
    lone surrogates (not UTF-8). A handler's message may hold either."""
    text = text.replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 3)


# --- direct invocations: recorded by the web process, run by a worker ---------------------------

# Seconds a direct invocation may wait for a worker to start it; then it is Expired and never
# runs. The web request waits at most this, plus the function's timeout once it started, plus
# RESULT_GRACE for the worker to record the outcome.
DEFAULT_PICKUP_SECONDS = 10.0
RESULT_GRACE_SECONDS = 2.0

# The wait loop's clock and pause, module attributes so that tests can drive the loop without
# sleeping (they run the worker's side, or advance the clock, from the pause).
_clock = time.monotonic
_pause = time.sleep


def pickup_seconds() -> float:
    return float(getattr(settings, "FLOWSITE_INVOKE_PICKUP_SECONDS", DEFAULT_PICKUP_SECONDS))


def _db_now_plus(seconds: float) -> ExpressionWrapper:
    # Judged by the database's clock (the worker's claim compares with Now()), so a skewed
    # web or worker clock cannot start an invocation late or expire it early.
    return ExpressionWrapper(
        Now() + Value(timedelta(seconds=seconds)), output_field=DateTimeField()
    )


def invocation_submit(*, function: Function, payload: bytes, actor: Any) -> Invocation:
    """Record a direct invocation (``Enqueued``) and publish its id to the workers after
    commit (needs the operator role). 413 ``EntityTooLarge`` for an event over the task payload
    limit."""
    actor = access.require(actor, Perm.INVOKE)
    limit = settings.FLOWSITE_MAX_TASK_PAYLOAD_BYTES
    if len(payload) > limit:
        raise ServiceError(
            f"the event is {len(payload)} bytes; the limit is {limit} bytes",
            code="EntityTooLarge",
            status=413,
        )
    user = actor.user
    invoked_by = user if getattr(user, "is_authenticated", False) else None
    with transaction.atomic():
        invocation = Invocation.objects.create(
            request_id=uuid.uuid4().hex,
            function=function,
            function_name=function.name,
            payload=payload,
            invoked_by=invoked_by,
            expires_at=_db_now_plus(pickup_seconds()),
        )
        audit.record(
            actor,
            "function.invoke",
            "function",
            function.name,
            request_id=invocation.request_id,
            event_bytes=len(payload),
        )
        transaction.on_commit(lambda pk=invocation.pk: publish_invocation(pk))
    invocation.refresh_from_db(fields=["created_at", "expires_at"])  # set by the database
    return invocation


def publish_invocation(invocation_id: int) -> None:
    """Send the invocation's id to the workers. A broker that cannot take it ends the row
    ``Expired`` at once, so the waiting request answers now rather than at its deadline."""
    try:
        current_app.send_task(RUN_INVOCATION, args=[invocation_id], retry=False)
    except Exception:  # noqa: BLE001 - broker down: nothing will ever run it
        log.warning("could not publish invocation %s", invocation_id, exc_info=True)
        _expire(invocation_id, "the task queue could not be reached")


def _expire(invocation_id: int, cause: str) -> bool:
    """Compare-and-set ``Enqueued`` -> ``Expired``: false when a worker claimed it first."""
    return bool(
        Invocation.objects.filter(pk=invocation_id, status=InvocationStatus.ENQUEUED).update(
            status=InvocationStatus.EXPIRED, finished_at=Now(), cause=cause
        )
    )


def invocation_run(invocation_id: int) -> str:
    """The worker's side (``functions.run_invocation``): claim the row, run the handler, record
    the outcome. A second delivery, or a row that expired, runs nothing."""
    refuse_in_web_process()  # before the claim: a refused run must not strand the row Running
    claimable = Q(expires_at__isnull=True) | Q(expires_at__gt=Now())
    claimed = Invocation.objects.filter(
        claimable, pk=invocation_id, status=InvocationStatus.ENQUEUED
    ).update(status=InvocationStatus.RUNNING, started_at=Now(), worker=worker_id())
    if not claimed:
        if _expire(invocation_id, "no worker started the invocation in time"):
            return "expired"
        return "duplicate"
    invocation = Invocation.objects.select_related("function").get(pk=invocation_id)
    if invocation.function is None:  # deleted after the call was recorded
        result = InvokeResult(
            False,
            error=ERR_NOT_FOUND,
            cause=f"function {invocation.function_name!r} was deleted",
            request_id=invocation.request_id,
        )
    else:
        result = invoke(
            invocation.function, bytes(invocation.payload), request_id=invocation.request_id
        )
    outcome = InvocationStatus.SUCCEEDED if result.ok else InvocationStatus.FAILED
    Invocation.objects.filter(pk=invocation_id, status=InvocationStatus.RUNNING).update(
        status=outcome,
        finished_at=Now(),
        duration_ms=result.duration_ms,
        result_json=_json_text(result.output["Body"]) if result.ok else "",
        error=result.error[:128],
        cause=result.cause,
    )
    return outcome


def invocation_wait(invocation: Invocation, *, timeout_seconds: float) -> Invocation:
    """Poll the row (short back-off) until it ends. Not started within the pickup window: it is
    expired (compare-and-set; if a worker won that race, the wait goes on). Started: the wait
    lasts the function's timeout plus a grace, after which the row is returned still
    ``Running``."""
    pickup_deadline = _clock() + pickup_seconds()
    run_deadline: float | None = None
    delay = 0.002
    while True:
        status = (
            Invocation.objects.filter(pk=invocation.pk).values_list("status", flat=True).first()
        )
        now = _clock()
        if status is None:
            raise ServiceError(
                "the invocation's record was deleted while waiting for it",
                code="InvocationGone",
                status=500,
            )
        if status in ENDED_STATUSES:
            break
        if status == InvocationStatus.RUNNING and run_deadline is None:
            run_deadline = now + timeout_seconds + RESULT_GRACE_SECONDS
        if status == InvocationStatus.ENQUEUED and now >= pickup_deadline:
            if _expire(invocation.pk, "no worker started the invocation in time"):
                break
            continue  # a worker claimed it a moment ago: wait for its result
        if run_deadline is not None and now >= run_deadline:
            break
        deadline = run_deadline if run_deadline is not None else pickup_deadline
        _pause(max(0.0, min(delay, deadline - now)))
        delay = min(delay * 2, 0.1)
    return Invocation.objects.defer("payload").get(pk=invocation.pk)


def invocation_call(*, function: Function, payload: bytes, actor: Any) -> Invocation:
    """A synchronous call (the API, the dashboard): record it, let a worker run it, wait for
    the outcome."""
    invocation = invocation_submit(function=function, payload=payload, actor=actor)
    return invocation_wait(invocation, timeout_seconds=function.timeout_seconds)
