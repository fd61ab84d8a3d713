"""What the apps' admins share, and the authentication backend that makes the admin's model
permissions follow the roles (kept out of ``flowsite.access``, which must stay importable
before Django is set up: scripts import ``SYSTEM`` from it first)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest

from flowsite.access import Perm, can


class ReadOnlyAdmin(admin.ModelAdmin):
    """View-only: rows the service writes itself (the engine's, invocations, the audit log)."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- the Django admin: its model permissions follow the roles -----------------------------------

# Which role permission each Django model permission stands for. View permissions need
# Perm.READ; changing the engine's own tables is never granted (their admins are read-only).
_MODEL_PERMS: dict[tuple[str, str], dict[str, Perm]] = {
    ("executions", "flow"): {"add": Perm.MANAGE_FLOWS, "change": Perm.MANAGE_FLOWS,
                             "delete": Perm.MANAGE_FLOWS},
    ("executions", "execution"): {"change": Perm.STOP, "delete": Perm.MANAGE_FLOWS},
    ("executions", "queuemessage"): {"delete": Perm.MANAGE_FLOWS},
    ("functions", "function"): {"add": Perm.MANAGE_FUNCTIONS, "change": Perm.MANAGE_FUNCTIONS,
                                "delete": Perm.MANAGE_FUNCTIONS},
    ("auth", "user"): {"view": Perm.MANAGE_USERS, "add": Perm.MANAGE_USERS,
                       "change": Perm.MANAGE_USERS, "delete": Perm.MANAGE_USERS},
    ("auth", "group"): {"view": Perm.MANAGE_USERS},
    ("audit", "auditentry"): {"view": Perm.READ_AUDIT},
    ("authtoken", "token"): {"view": Perm.MANAGE_USERS, "add": Perm.MANAGE_USERS,
                             "delete": Perm.MANAGE_USERS},
    ("authtoken", "tokenproxy"): {"view": Perm.MANAGE_USERS, "add": Perm.MANAGE_USERS,
                                  "delete": Perm.MANAGE_USERS},
}  # fmt: skip
_READABLE_APPS = {"executions", "functions"}
_ADMIN_APPS = {"django_celery_beat"}  # schedules: the admin role (a later issue adds more)


def model_perm_to_role_perm(perm: str) -> Perm | None:
    """``"executions.change_flow"`` -> the role permission it needs (None: never granted)."""
    app, _, codename = perm.partition(".")
    action, _, model = codename.partition("_")
    table = _MODEL_PERMS.get((app, model), {})
    if action in table:
        return table[action]
    if action == "view" and app in _READABLE_APPS:
        return Perm.READ
    if app in _ADMIN_APPS:
        return Perm.MANAGE_FLOWS
    return None


class RoleBackend(ModelBackend):
    """Django's model permissions (what the admin asks) answered from the roles, so the admin,
    the API and the dashboard allow the same things. A superuser keeps every permission; the
    services check the roles again whatever the admin allowed."""

    def has_perm(self, user_obj, perm, obj=None):
        if not getattr(user_obj, "is_active", False):
            return False
        needed = model_perm_to_role_perm(perm)
        return needed is not None and can(user_obj, needed)

    def has_module_perms(self, user_obj, app_label):
        if not getattr(user_obj, "is_active", False):
            return False
        return any(
            can(user_obj, needed)
            for (app, _), actions in _MODEL_PERMS.items()
            if app == app_label
            for needed in actions.values()
        ) or (app_label in _READABLE_APPS and can(user_obj, Perm.READ))
