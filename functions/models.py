"""Functions: Python handlers ``handler(event, context)`` that flows (and users) invoke, and the
invocations that workers run for them."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models.functions import Now

NAME_RE = r"^[A-Za-z_][A-Za-z0-9_-]{0,127}$"
# The shape only (ASCII, no part starting with _); functions/loader.py has the full rules.
HANDLER_RE = r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+\Z"


class Function(models.Model):
    name = models.CharField(
        max_length=128,
        unique=True,
        validators=[
            RegexValidator(NAME_RE, "letters, digits, _ and -, starting with a letter or _")
        ],
    )
    handler = models.CharField(
        max_length=255,
        validators=[RegexValidator(HANDLER_RE, "a dotted path such as module.function")],
        help_text="module.function: a function defined in module.py (or package/module.py) "
        "inside a FLOWSITE_FUNCTIONS_PATH folder.",
    )
    description = models.TextField(blank=True, max_length=4096)
    timeout_seconds = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(1), MaxValueValidator(86400)]
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class InvocationStatus(models.TextChoices):
    """The async-task lifecycle names (Function Compute's task mode), so that tracked async
    tasks can grow from these rows: Enqueued -> Running -> Succeeded | Failed, or
    Enqueued -> Expired (never run)."""

    ENQUEUED = "Enqueued"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    EXPIRED = "Expired"


ENDED_STATUSES = (InvocationStatus.SUCCEEDED, InvocationStatus.FAILED, InvocationStatus.EXPIRED)


class InvocationType(models.TextChoices):
    SYNC = "Sync"  # someone waits for the result (POST /functions/{name}/invocations/)
    ASYNC = "Async"  # reserved for tracked async tasks


class Invocation(models.Model):
    """One call of a function, recorded for a worker to run (handlers never run in the web
    process). The web process inserts it ``Enqueued`` and publishes its id after commit; a
    worker claims it with a compare-and-set to ``Running`` (only while ``expires_at`` is in the
    future, by the database's clock) and records the outcome; a row nobody claimed in time
    becomes ``Expired``, also by compare-and-set, and can never run afterwards."""

    request_id = models.CharField(max_length=64, unique=True)
    function = models.ForeignKey(
        "functions.Function", null=True, on_delete=models.SET_NULL, related_name="invocations"
    )
    # Kept when the function is deleted, so the record still says what was called.
    function_name = models.CharField(max_length=128)
    invocation_type = models.CharField(
        max_length=8, choices=InvocationType.choices, default=InvocationType.SYNC
    )
    status = models.CharField(
        max_length=16, choices=InvocationStatus.choices, default=InvocationStatus.ENQUEUED
    )
    payload = models.BinaryField(help_text="The event, exactly as the handler receives it.")
    # JSON text, not a JSONField: PostgreSQL's jsonb cannot hold "\u0000" inside a string,
    # which a handler may well return; JSON text escapes it.
    result_json = models.TextField(
        blank=True, help_text="The handler's return value (the envelope's Body), as JSON text."
    )
    error = models.CharField(max_length=128, blank=True)
    cause = models.TextField(
        blank=True, help_text="The error's message and the handler's own traceback frames."
    )
    worker = models.CharField(max_length=128, blank=True)
    invoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(db_default=Now())
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Not started by then: Expired, never run."
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["function", "-created_at"], name="functions_inv_function"),
            models.Index(fields=["status", "expires_at"], name="functions_inv_status"),
            models.Index(fields=["created_at"], name="functions_inv_created"),  # retention
        ]

    def __str__(self) -> str:
        return f"{self.function_name} {self.request_id}"

    @property
    def ended(self) -> bool:
        return self.status in ENDED_STATUSES

    @property
    def result(self) -> Any:
        """The handler's return value (None until the invocation succeeded)."""
        return json.loads(self.result_json) if self.result_json else None
