"""The Django admin for functions. Saves go through ``functions.services`` (the same
validation as the API); an action checks that handlers can be imported."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet

from . import services
from .models import Function


@admin.register(Function)
class FunctionAdmin(admin.ModelAdmin):
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
        )
        for field in Function._meta.concrete_fields:
            setattr(obj, field.attname, getattr(created, field.attname))
        obj._state.adding = False
        obj._state.db = created._state.db

    def delete_model(self, request, obj: Function) -> None:
        services.function_delete(function=obj)

    def delete_queryset(self, request, queryset: QuerySet[Function]) -> None:
        for function in queryset:
            services.function_delete(function=function)

    @admin.action(description="Check that the selected handlers can be imported")
    def check_handlers(self, request, queryset: QuerySet[Function]) -> None:
        ok = 0
        for function in queryset:
            try:
                services.resolve_handler(function.handler)
            except Exception as exc:  # noqa: BLE001 - any import problem is reported
                problem = f"{type(exc).__name__}: {exc}"
                self.message_user(
                    request,
                    f"Function {function.name}: cannot load {function.handler}: {problem}",
                    messages.ERROR,
                )
            else:
                ok += 1
        if ok:
            self.message_user(request, f"{ok} handler(s) can be imported.", messages.SUCCESS)
