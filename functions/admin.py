"""The Django admin for functions and their invocations.

Saves and deletes go through ``functions.services`` with the acting user (the same validation
and permission check as the API). Nothing here runs a handler's code: the form checks where the
handler lives (``loader.locate``), and the "check" action also reads the module's syntax tree.
Invocations are read-only records of what workers ran.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.utils.html import format_html

from flowsite.access import admin_actor
from flowsite.admin_base import ReadOnlyAdmin

from . import loader, services
from .models import Function, Invocation


class FunctionForm(forms.ModelForm):
    class Meta:
        model = Function
        fields = ["name", "handler", "description", "timeout_seconds"]

    def clean_handler(self) -> str:
        handler = self.cleaned_data["handler"]
        try:
            services.check_handler(handler)
        except loader.InvalidHandler as exc:
            raise forms.ValidationError(exc.reason) from None
        return handler


@admin.register(Function)
class FunctionAdmin(admin.ModelAdmin):
    form = FunctionForm
    list_display = ["name", "handler", "timeout_seconds", "short_description", "updated_at"]
    list_filter = ["updated_at", "created_at"]
    search_fields = ["name", "handler", "description"]
    ordering = ["name"]
    date_hierarchy = "updated_at"
    actions = ["check_handlers"]

    def get_fields(self, request, obj=None):
        fields = ["name", "handler", "description", "timeout_seconds"]
        return fields if obj is None else [*fields, "created_at", "updated_at"]

    def get_readonly_fields(self, request, obj=None):
        # The name is how flows refer to a function (resourceArn): no renames.
        return [] if obj is None else ["name", "created_at", "updated_at"]

    @admin.display(description="description")
    def short_description(self, obj: Function) -> str:
        text = obj.description.strip().splitlines()[0] if obj.description.strip() else ""
        return text[:80] + ("…" if len(text) > 80 else "")

    def save_model(self, request, obj: Function, form, change: bool) -> None:
        data = form.cleaned_data
        if change:
            services.function_update(
                function=obj,
                actor=admin_actor(request),
                handler=data["handler"],
                description=data.get("description", ""),
                timeout_seconds=data["timeout_seconds"],
            )
            return
        created = services.function_create(
            name=data["name"],
            handler=data["handler"],
            description=data.get("description", ""),
            timeout_seconds=data["timeout_seconds"],
            actor=admin_actor(request),
        )
        for field in Function._meta.concrete_fields:
            setattr(obj, field.attname, getattr(created, field.attname))
        obj._state.adding = False
        obj._state.db = created._state.db

    def delete_model(self, request, obj: Function) -> None:
        services.function_delete(function=obj, actor=admin_actor(request))

    def delete_queryset(self, request, queryset: QuerySet[Function]) -> None:
        for function in queryset:
            services.function_delete(function=function, actor=admin_actor(request))

    @admin.action(description="Check that the selected handlers can be imported")
    def check_handlers(self, request, queryset: QuerySet[Function]) -> None:
        """Where each handler lives and whether its module defines the name, judged without
        running any of its code (that happens on workers only)."""
        ok = 0
        for function in queryset:
            try:
                location = services.check_handler(function.handler)
                defined = loader.defines_statically(location)
            except loader.InvalidHandler as exc:
                problem = exc.reason
            except (OSError, SyntaxError, ValueError, RecursionError, MemoryError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if defined:
                    ok += 1
                    continue
                problem = (
                    f"{location.relative_file} defines no {location.attribute} at its top level"
                )
            self.message_user(
                request,
                f"Function {function.name}: cannot load {function.handler}: {problem}",
                messages.ERROR,
            )
        if ok:
            self.message_user(request, f"{ok} handler(s) can be imported.", messages.SUCCESS)


@admin.register(Invocation)
class InvocationAdmin(ReadOnlyAdmin):
    """Read-only: the rows are the workers' record of what ran."""

    list_display = ["request_id", "function_name", "status", "error", "created_at", "duration_ms"]
    list_filter = ["status", "created_at"]
    search_fields = ["request_id", "function_name"]
    ordering = ["-created_at", "-id"]
    date_hierarchy = "created_at"
    list_select_related = ["function"]
    fields = [
        "request_id",
        "function",
        "function_name",
        "invocation_type",
        "status",
        "payload_size",
        "result_json",
        "error",
        "cause_text",
        "worker",
        "invoked_by",
        "created_at",
        "expires_at",
        "started_at",
        "finished_at",
        "duration_ms",
    ]
    readonly_fields = fields

    @admin.display(description="payload")
    def payload_size(self, obj: Invocation) -> str:
        return f"{len(obj.payload or b'')} bytes"

    @admin.display(description="cause")
    def cause_text(self, obj: Invocation) -> str:
        return format_html('<pre style="margin:0;white-space:pre-wrap">{}</pre>', obj.cause)
