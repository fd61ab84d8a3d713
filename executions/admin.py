"""The Django admin for flows, executions and the runtime's bookkeeping.

Rules this module keeps:

* **Writes go through the services.** Saving a flow calls ``services.flow_create`` /
  ``services.flow_update`` (so every change makes a version and every definition is validated
  first); stopping executions calls ``services.execution_stop``. Nothing here writes engine
  state directly.
* **Runtime tables are read-only.** History events, work items, timers and task tokens are the
  engine's durable state; editing one by hand would break an execution, so the admin only shows
  them. Executions are view-only too (their ``state`` is owned by the engine).
* **User data is escaped.** JSON values (execution input/output, event details, payloads) are
  rendered with ``format_html`` + ``json.dumps(indent=2)`` in a ``<pre>``; nothing user-supplied
  goes through ``mark_safe``.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.text import Truncator

from flowsite.access import admin_actor
from flowsite.admin_base import ReadOnlyAdmin
from flowsite.errors import ServiceError

from . import services
from .models import (
    Execution,
    ExecutionStatus,
    Flow,
    FlowVersion,
    HistoryEvent,
    QueueMessage,
    TaskToken,
    Timer,
    WorkItem,
)

admin.site.site_header = "flowsite"
admin.site.site_title = "flowsite admin"
admin.site.index_title = "Flows, executions and functions"

PREVIEW_CHARS = 80


# --- rendering helpers -------------------------------------------------------------------------


def json_text(value: Any) -> str:
    """Indented JSON text (non-ASCII kept readable); never raises on odd values."""
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)
    except (TypeError, ValueError):
        return repr(value)


def pretty_json(value: Any) -> str:
    """Escaped, indented JSON in a ``<pre>`` (``format_html`` escapes the text)."""
    return format_html(
        '<pre class="flowsite-json" style="margin:0;white-space:pre-wrap">{}</pre>',
        json_text(value),
    )


def json_preview(value: Any, chars: int = PREVIEW_CHARS) -> str:
    """One-line JSON for changelists (plain text: the admin escapes it)."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        text = repr(value)
    return Truncator(text).chars(chars)


def pretty_text(value: str) -> str:
    return format_html('<pre style="margin:0;white-space:pre-wrap">{}</pre>', value or "")


def admin_link(obj: Any, text: Any | None = None) -> str:
    """A link to ``obj``'s admin change page (escaped text)."""
    if obj is None:
        return "-"
    opts = obj._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, obj if text is None else text)


def changelist_link(model, params: dict[str, Any], text: Any) -> str:
    """A link to ``model``'s changelist filtered by ``params``."""
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    return format_html('<a href="{}?{}">{}</a>', url, urlencode(params), text)


class SummarizedDeleteMixin:
    """Deleting a flow or an execution cascades to its runtime rows (history, work items…),
    which can be tens of thousands: the confirmation page lists the objects chosen and only
    *counts* what goes with them. Permission is judged on the chosen objects alone: the runtime
    rows are read-only on their own pages, but they go with their execution."""

    def deletion_counts(self, objs: list) -> dict[Any, int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def deletion_label(self, obj) -> Any:
        return admin_link(obj)

    def get_deleted_objects(self, objs, request):
        objs = list(objs)
        opts = self.model._meta
        to_delete = [self.deletion_label(obj) for obj in objs]
        model_count = {opts.verbose_name_plural: len(objs)}
        for model, count in self.deletion_counts(objs).items():
            if count:
                model_count[model._meta.verbose_name_plural] = count
        perms_needed = set() if self.has_delete_permission(request) else {opts.verbose_name}
        return to_delete, model_count, perms_needed, []


class ExecutionScopedAdmin(ReadOnlyAdmin):
    """Runtime rows that belong to one execution: linked back to it."""

    # Counting a large runtime table on every changelist page is expensive; show "N of many".
    show_full_result_count = False
    list_per_page = 100

    @admin.display(description="execution", ordering="execution_id")
    def execution_link(self, obj) -> str:
        execution = obj.execution
        return admin_link(execution, f"{execution.flow.name}/{execution.name}")


# --- flows -------------------------------------------------------------------------------------


class FlowForm(forms.ModelForm):
    """Validates the definition with the same compiler the API uses; problems become form errors."""

    class Meta:
        model = Flow
        fields = ["name", "description", "definition"]
        widgets = {"description": forms.Textarea(attrs={"rows": 3, "cols": 100})}

    definition = forms.CharField(
        # Kept exactly as typed (no strip), apart from the browser's CRLF line ends, so saving an
        # unchanged definition makes no new version.
        strip=False,
        widget=forms.Textarea(
            attrs={
                "rows": 30,
                "cols": 100,
                "spellcheck": "false",
                "style": "font-family: monospace",
            }
        ),
        help_text="CloudFlow FDL (Type: StateMachine) or legacy FnF FDL (version: v1, type: flow), "
        "as YAML or JSON. It is validated before it is saved; a change makes a new version.",
    )

    def clean_definition(self) -> str:
        definition = self.cleaned_data.get("definition", "").replace("\r\n", "\n")
        try:
            self.compiled = services.definition_compile(definition)
        except ServiceError as exc:
            problems = [
                f"{e.get('path') or '<document>'}"
                + (f" (line {e['line']})" if e.get("line") else "")
                + f": {e.get('message', '')}"
                for e in exc.errors
            ]
            raise forms.ValidationError(problems or [exc.message], code=exc.code) from None
        return definition


class FlowVersionInline(admin.TabularInline):
    """Every saved version of the flow, newest first (read-only: versions are immutable)."""

    model = FlowVersion
    fields = ["version_link", "dialect", "created_at", "created_by"]
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = False
    ordering = ["-version"]
    verbose_name_plural = "versions"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("created_by")

    @admin.display(description="version")
    def version_link(self, obj: FlowVersion) -> str:
        return admin_link(obj, f"v{obj.version}")

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Flow)
class FlowAdmin(SummarizedDeleteMixin, admin.ModelAdmin):
    form = FlowForm
    list_display = ["name", "dialect", "version", "updated_at", "created_at", "executions_link"]
    list_filter = ["dialect", "updated_at", "created_at"]
    search_fields = ["name", "description"]
    ordering = ["name"]
    date_hierarchy = "updated_at"
    inlines = [FlowVersionInline]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["name", "description", "definition"]
        return [
            "name",
            "dialect",
            "version",
            "description",
            "definition",
            "created_at",
            "updated_at",
            "executions_link",
        ]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        # The name is the flow's identity (URLs, executions); a rename is not supported.
        return ["name", "dialect", "version", "created_at", "updated_at", "executions_link"]

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []

    @admin.display(description="executions")
    def executions_link(self, obj: Flow) -> str:
        if obj.pk is None:
            return "-"
        return changelist_link(Execution, {"flow__id__exact": obj.pk}, "executions →")

    def save_model(self, request, obj: Flow, form, change: bool) -> None:
        data = form.cleaned_data
        try:
            if change:
                flow = services.flow_update(
                    flow=obj,
                    definition=data["definition"],
                    description=data.get("description", ""),
                    actor=admin_actor(request),
                )
            else:
                flow = services.flow_create(
                    name=data["name"],
                    definition=data["definition"],
                    description=data.get("description", ""),
                    actor=admin_actor(request),
                )
        except ServiceError:
            # The form already validated the definition, so this is a race (say, a concurrent
            # create of the same name): let it surface rather than pretend the save worked.
            raise
        # The admin goes on with ``obj`` (logging, redirect): make it the saved row.
        for field in Flow._meta.concrete_fields:
            setattr(obj, field.attname, getattr(flow, field.attname))
        obj._state.adding = False
        obj._state.db = flow._state.db
        for warning in getattr(flow, "warnings", []) or []:
            where = warning.get("path") or "<document>"
            self.message_user(
                request, f"warning: {where}: {warning.get('message')}", messages.WARNING
            )

    def deletion_counts(self, objs: list[Flow]) -> dict[Any, int]:
        return {
            FlowVersion: FlowVersion.objects.filter(flow__in=objs).count(),
            Execution: Execution.objects.filter(flow__in=objs).count(),
            HistoryEvent: HistoryEvent.objects.filter(execution__flow__in=objs).count(),
            WorkItem: WorkItem.objects.filter(execution__flow__in=objs).count(),
            Timer: Timer.objects.filter(execution__flow__in=objs).count(),
            TaskToken: TaskToken.objects.filter(execution__flow__in=objs).count(),
            QueueMessage: QueueMessage.objects.filter(execution__flow__in=objs).count(),
        }

    def delete_model(self, request, obj: Flow) -> None:
        services.flow_delete(flow=obj, actor=admin_actor(request))

    def delete_queryset(self, request, queryset: QuerySet[Flow]) -> None:
        for flow in queryset:
            services.flow_delete(flow=flow, actor=admin_actor(request))


@admin.register(FlowVersion)
class FlowVersionAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "flow_link", "version", "dialect", "created_at", "created_by"]
    list_filter = ["dialect", "created_at"]
    search_fields = ["flow__name"]
    list_select_related = ["flow", "created_by"]
    ordering = ["flow__name", "-version"]
    date_hierarchy = "created_at"
    fields = ["flow_link", "version", "dialect", "created_at", "created_by", "definition_text"]
    readonly_fields = fields

    @admin.display(description="flow", ordering="flow__name")
    def flow_link(self, obj: FlowVersion) -> str:
        return admin_link(obj.flow)

    @admin.display(description="definition")
    def definition_text(self, obj: FlowVersion) -> str:
        return pretty_text(obj.definition)


# --- executions --------------------------------------------------------------------------------


@admin.register(Execution)
class ExecutionAdmin(SummarizedDeleteMixin, admin.ModelAdmin):
    """Executions are view-only (the engine owns them); they can be stopped or, once finished,
    deleted."""

    list_display = [
        "name",
        "flow_link",
        "version_number",
        "status",
        "started_at",
        "stopped_at",
        "duration",
        "event_count",
        "error_code",
    ]
    list_filter = ["status", "flow__dialect", "started_at", "stopped_at", "flow"]
    search_fields = ["name", "flow__name", "error_code"]
    list_select_related = ["flow", "flow_version"]
    ordering = ["-id"]
    date_hierarchy = "started_at"
    show_full_result_count = False
    actions = ["stop_executions"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "name",
                    "flow_link",
                    "version_link",
                    "status",
                    "started_at",
                    "stopped_at",
                    "duration",
                    "started_by",
                    "runtime_links",
                ]
            },
        ),
        ("Data", {"fields": ["input_json", "output_json", "error_code", "error_text"]}),
        ("Engine", {"classes": ["collapse"], "fields": ["revision", "event_count", "state_json"]}),
    ]
    readonly_fields = [
        "name",
        "flow_link",
        "version_link",
        "status",
        "started_at",
        "stopped_at",
        "duration",
        "started_by",
        "runtime_links",
        "input_json",
        "output_json",
        "error_code",
        "error_text",
        "revision",
        "event_count",
        "state_json",
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("flow", "flow_version", "started_by")

    # -- permissions: view-only rows, a stop action, deletion of finished executions only

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.is_open:
            return False
        return super().has_delete_permission(request, obj)

    def has_stop_permission(self, request) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    def deletion_counts(self, objs: list[Execution]) -> dict[Any, int]:
        finished = [e for e in objs if not e.is_open]  # running ones are kept (delete_queryset)
        return {
            HistoryEvent: HistoryEvent.objects.filter(execution__in=finished).count(),
            WorkItem: WorkItem.objects.filter(execution__in=finished).count(),
            Timer: Timer.objects.filter(execution__in=finished).count(),
            TaskToken: TaskToken.objects.filter(execution__in=finished).count(),
            QueueMessage: QueueMessage.objects.filter(execution__in=finished).count(),
        }

    def deletion_label(self, obj: Execution) -> Any:
        if obj.is_open:
            return format_html("{} ({}: will be kept, stop it first)", admin_link(obj), obj.status)
        return admin_link(obj)

    def delete_model(self, request, obj: Execution) -> None:
        self.delete_queryset(request, Execution.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset: QuerySet[Execution]) -> None:
        _, skipped = services.executions_delete(executions=queryset)
        if skipped:
            self.message_user(
                request,
                f"{skipped} running execution(s) were not deleted: stop them first.",
                messages.WARNING,
            )

    @admin.action(description="Stop selected executions", permissions=["stop"])
    def stop_executions(self, request, queryset: QuerySet[Execution]) -> None:
        stopped = 0
        skipped = queryset.exclude(status__in=ExecutionStatus.open()).count()
        for execution in queryset.filter(status__in=ExecutionStatus.open()).order_by("pk"):
            try:
                services.execution_stop(
                    execution=execution,
                    cause=f"stopped from the admin by {request.user}",
                    actor=admin_actor(request),
                )
            except ServiceError as exc:
                if exc.code != "ExecutionNotRunning":
                    raise
                skipped += 1  # it finished between the query and the stop
            else:
                stopped += 1
        if stopped:
            self.message_user(request, f"Stopped {stopped} execution(s).", messages.SUCCESS)
        if skipped:
            self.message_user(
                request, f"Skipped {skipped} execution(s) that were not running.", messages.WARNING
            )

    # -- columns and fields

    @admin.display(description="flow", ordering="flow__name")
    def flow_link(self, obj: Execution) -> str:
        return admin_link(obj.flow)

    @admin.display(description="version", ordering="flow_version__version")
    def version_number(self, obj: Execution) -> str:
        return f"v{obj.flow_version.version}"

    @admin.display(description="version")
    def version_link(self, obj: Execution) -> str:
        return admin_link(obj.flow_version, f"v{obj.flow_version.version}")

    @admin.display(description="duration")
    def duration(self, obj: Execution) -> str:
        if obj.stopped_at is None or obj.started_at is None:
            return "-"
        seconds = (obj.stopped_at - obj.started_at).total_seconds()
        return f"{seconds:.3f} s" if seconds < 60 else f"{seconds / 60:.1f} min"

    @admin.display(description="runtime")
    def runtime_links(self, obj: Execution) -> str:
        params = {"execution__id__exact": obj.pk}
        return format_html(
            "{} · {} · {} · {} · {}",
            changelist_link(HistoryEvent, params, f"history ({obj.event_count} events)"),
            changelist_link(WorkItem, params, "work items"),
            changelist_link(Timer, params, "timers"),
            changelist_link(TaskToken, params, "task tokens"),
            changelist_link(QueueMessage, params, "queue messages"),
        )

    @admin.display(description="input")
    def input_json(self, obj: Execution) -> str:
        return pretty_json(obj.input)

    @admin.display(description="output")
    def output_json(self, obj: Execution) -> str:
        return pretty_json(obj.output) if obj.output is not None else "-"

    @admin.display(description="error message")
    def error_text(self, obj: Execution) -> str:
        return pretty_text(obj.error_message) if obj.error_message else "-"

    @admin.display(description="engine state")
    def state_json(self, obj: Execution) -> str:
        return pretty_json(obj.state)


# --- runtime tables (read-only) ----------------------------------------------------------------


@admin.register(HistoryEvent)
class HistoryEventAdmin(ExecutionScopedAdmin):
    list_display = [
        "event_id",
        "type",
        "step_name",
        "time",
        "schedule_event_id",
        "execution_link",
        "detail_preview",
    ]
    list_display_links = ["event_id", "type"]
    list_filter = ["type", "time"]
    search_fields = ["step_name", "type", "execution__name", "execution__flow__name"]
    list_select_related = ["execution", "execution__flow"]
    ordering = ["-execution_id", "event_id"]
    date_hierarchy = "time"
    fields = [
        "execution_link",
        "event_id",
        "schedule_event_id",
        "type",
        "step_name",
        "time",
        "detail_json",
    ]
    readonly_fields = fields

    @admin.display(description="detail")
    def detail_preview(self, obj: HistoryEvent) -> str:
        return json_preview(obj.detail)

    @admin.display(description="detail")
    def detail_json(self, obj: HistoryEvent) -> str:
        return pretty_json(obj.detail)


@admin.register(WorkItem)
class WorkItemAdmin(ExecutionScopedAdmin):
    list_display = [
        "id",
        "kind",
        "status",
        "state_name",
        "function_name",
        "entry_id",
        "attempt",
        "created_at",
        "started_at",
        "finished_at",
        "dispatch_count",
        "error",
        "execution_link",
    ]
    list_filter = ["status", "kind", "mode", "invocation", "created_at"]
    search_fields = ["function_name", "state_name", "worker", "error", "execution__name"]
    list_select_related = ["execution", "execution__flow"]
    ordering = ["-id"]
    date_hierarchy = "created_at"
    fields = [
        "execution_link",
        "kind",
        "status",
        "entry_id",
        "attempt",
        "state_name",
        "function_name",
        "invocation",
        "mode",
        "timeout_seconds",
        "created_at",
        "next_dispatch_at",
        "dispatch_count",
        "started_at",
        "lease_until",
        "finished_at",
        "worker",
        "error",
        "payload_json",
    ]
    readonly_fields = fields

    @admin.display(description="payload")
    def payload_json(self, obj: WorkItem) -> str:
        return pretty_json(obj.payload)


class TimerStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "fired"

    def lookups(self, request, model_admin):
        return [("no", "pending"), ("yes", "fired")]

    def queryset(self, request, queryset):
        if self.value() == "no":
            return queryset.filter(fired_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(fired_at__isnull=False)
        return queryset


@admin.register(Timer)
class TimerAdmin(ExecutionScopedAdmin):
    list_display = ["key", "due_at", "fired_at", "is_fired", "entry_id", "execution_link"]
    list_filter = [TimerStateFilter, "due_at"]
    search_fields = ["key", "execution__name", "execution__flow__name"]
    list_select_related = ["execution", "execution__flow"]
    ordering = ["due_at"]
    date_hierarchy = "due_at"
    fields = ["execution_link", "key", "entry_id", "due_at", "fired_at"]
    readonly_fields = fields

    @admin.display(description="fired", boolean=True)
    def is_fired(self, obj: Timer) -> bool:
        return obj.fired_at is not None


@admin.register(TaskToken)
class TaskTokenAdmin(ExecutionScopedAdmin):
    list_display = [
        "short_hash",
        "state_name",
        "entry_id",
        "is_open",
        "created_at",
        "closed_at",
        "execution_link",
    ]
    list_filter = ["is_open", "created_at"]
    search_fields = ["state_name", "=token_hash", "execution__name"]
    list_select_related = ["execution", "execution__flow"]
    ordering = ["-id"]
    date_hierarchy = "created_at"
    fields = [
        "execution_link",
        "state_name",
        "entry_id",
        "is_open",
        "created_at",
        "closed_at",
        "token_hash",
    ]
    readonly_fields = fields

    @admin.display(description="token (SHA-256)", ordering="token_hash")
    def short_hash(self, obj: TaskToken) -> str:
        return f"{obj.token_hash[:12]}…"


@admin.register(QueueMessage)
class QueueMessageAdmin(ExecutionScopedAdmin):
    """Messages on flowsite's pull queues. Read-only; a stuck message can be deleted."""

    list_display = [
        "id",
        "queue",
        "created_at",
        "visible_at",
        "receive_count",
        "body_preview",
        "execution_link",
    ]
    list_filter = ["queue", "created_at"]
    search_fields = ["queue", "execution__name"]
    list_select_related = ["execution", "execution__flow"]
    ordering = ["id"]
    date_hierarchy = "created_at"
    fields = [
        "queue",
        "execution_link",
        "entry_id",
        "created_at",
        "visible_at",
        "receive_count",
        "body_json",
    ]
    readonly_fields = fields

    def has_delete_permission(self, request, obj=None) -> bool:
        return admin.ModelAdmin.has_delete_permission(self, request, obj)

    @admin.display(description="execution", ordering="execution_id")
    def execution_link(self, obj: QueueMessage) -> str:
        if obj.execution is None:
            return "-"
        return super().execution_link(obj)

    @admin.display(description="body")
    def body_preview(self, obj: QueueMessage) -> str:
        return json_preview(obj.body)

    @admin.display(description="body")
    def body_json(self, obj: QueueMessage) -> str:
        return pretty_json(obj.body)
