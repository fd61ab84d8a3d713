"""The audit log in the admin (read-only, admins), and role changes made in the admin recorded
in it: the user admin writes an audit entry whenever a user's roles (groups), superuser or active
flag change."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db import transaction

from flowsite import audit
from flowsite.access import Perm, admin_actor, can
from flowsite.admin_base import ReadOnlyAdmin

from .models import AuditEntry

User = get_user_model()


def _site_permission(request) -> bool:
    # Anyone with a role may open the admin (what they see follows the roles, through
    # flowsite.admin_base.RoleBackend); without a role, nothing.
    return request.user.is_active and can(request.user, Perm.READ)


admin.site.has_permission = _site_permission


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["at", "actor_name", "via", "ip", "action", "object_name"]
    list_filter = ["action", "via", "at"]
    search_fields = ["actor_name", "object_name", "action"]
    date_hierarchy = "at"
    readonly_fields = [f.name for f in AuditEntry._meta.fields]


def _roles(user) -> dict:
    return {
        "groups": sorted(user.groups.values_list("name", flat=True)),
        "superuser": user.is_superuser,
        "active": user.is_active,
        "staff": user.is_staff,
    }


admin.site.unregister(User)


@admin.register(User)
class AuditedUserAdmin(UserAdmin):
    """Django's user admin, with role changes written to the audit log."""

    def save_related(self, request, form, formsets, change):
        user = form.instance
        before = getattr(form, "_roles_before", None)
        with transaction.atomic():
            super().save_related(request, form, formsets, change)
            after = _roles(user)
            if before != after:
                audit.record(
                    admin_actor(request),
                    "user.roles" if change else "user.create",
                    "user",
                    user.get_username(),
                    before=before,
                    after=after,
                )

    def get_form(self, request, obj=None, change=False, **kwargs):
        form_class = super().get_form(request, obj, change=change, **kwargs)
        before = _roles(obj) if obj is not None and obj.pk else None

        class Remembering(form_class):
            def __init__(self, *args, **kw):
                super().__init__(*args, **kw)
                self._roles_before = before

        return Remembering

    def delete_model(self, request, obj):
        with transaction.atomic():
            audit.record(admin_actor(request), "user.delete", "user", obj.get_username())
            super().delete_model(request, obj)
