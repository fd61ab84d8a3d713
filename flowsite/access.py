"""Who may do what: roles, the acting party of a change, and the one check every service makes.

Roles are Django groups (created by a migration of ``flowsite.audit``):

* ``viewer``   reads everything (flows, executions, history, functions);
* ``operator`` reads; starts, stops and runs executions again; invokes functions; reports task
  callbacks over the API (machines get a token of a user with this role);
* ``approver`` reads; approves and rejects steps waiting for a person (from the dashboard);
* ``admin``    everything: flows, functions, users and roles, the audit log.

A superuser holds every role. A logged-in user with no role sees nothing.

The check lives in the services (``require(actor, Perm.X)``), so the REST API, the dashboard and
the Django admin refuse the same things with the same 403 ``Forbidden``; views and templates use
:func:`can` only to hide what would be refused anyway.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from flowsite.errors import Forbidden


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    APPROVER = "approver"
    ADMIN = "admin"


class Perm(StrEnum):
    READ = "read"
    START = "start"  # start an execution, or run one again
    STOP = "stop"
    INVOKE = "invoke"  # call a function directly
    REPORT = "report"  # report a callback task's outcome over the API (machines)
    APPROVE = "approve"  # approve or reject a waiting step as a person
    MANAGE_FLOWS = "manage_flows"
    MANAGE_FUNCTIONS = "manage_functions"
    MANAGE_USERS = "manage_users"
    READ_AUDIT = "read_audit"


GRANTS: dict[Role, frozenset[Perm]] = {
    Role.VIEWER: frozenset({Perm.READ}),
    Role.OPERATOR: frozenset({Perm.READ, Perm.START, Perm.STOP, Perm.INVOKE, Perm.REPORT}),
    Role.APPROVER: frozenset({Perm.READ, Perm.APPROVE}),
    Role.ADMIN: frozenset(Perm),
}

# The role a refusal names ("needs the operator role").
NEEDED: dict[Perm, Role] = {
    Perm.READ: Role.VIEWER,
    Perm.START: Role.OPERATOR,
    Perm.STOP: Role.OPERATOR,
    Perm.INVOKE: Role.OPERATOR,
    Perm.REPORT: Role.OPERATOR,
    Perm.APPROVE: Role.APPROVER,
    Perm.MANAGE_FLOWS: Role.ADMIN,
    Perm.MANAGE_FUNCTIONS: Role.ADMIN,
    Perm.MANAGE_USERS: Role.ADMIN,
    Perm.READ_AUDIT: Role.ADMIN,
}


@dataclass(frozen=True)
class Actor:
    """Who makes a change, and from where: what every write service takes and the audit log
    records. ``via`` is ``api``, ``web`` (the dashboard), ``admin`` (the Django admin),
    ``system`` (management commands, the engine's own housekeeping)."""

    user: Any = None
    via: str = "system"
    ip: str = ""
    user_agent: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def is_system(self) -> bool:
        return self.user is None and self.via == "system"

    @property
    def name(self) -> str:
        if self.user is None:
            return "system"
        return getattr(self.user, "username", "") or f"user {getattr(self.user, 'pk', '?')}"

    @classmethod
    def from_request(cls, request, via: str) -> Actor:
        meta = getattr(request, "META", {})
        return cls(
            user=getattr(request, "user", None),
            via=via,
            ip=_client_ip(meta),
            user_agent=str(meta.get("HTTP_USER_AGENT", ""))[:256],
        )


SYSTEM = Actor()


def _client_ip(meta: dict) -> str:
    # REMOTE_ADDR only: X-Forwarded-For is set by whoever sends the request. Behind a proxy,
    # the proxy's address is what is known for sure (documented in docs/deployment.md).
    return str(meta.get("REMOTE_ADDR", ""))[:64]


def as_actor(who: Any) -> Actor:
    """An :class:`Actor` for ``who``: an Actor, a user (acting from an unknown place), or
    ``None`` (refused: no anonymous writes)."""
    if isinstance(who, Actor):
        return who
    return Actor(user=who, via="unknown")


def roles_of(user: Any) -> frozenset[Role]:
    """The roles of a user (cached on the user object for the request)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return frozenset()
    if not getattr(user, "is_active", False):
        return frozenset()
    cached = getattr(user, "_flowsite_roles", None)
    if cached is not None:
        return cached
    if getattr(user, "is_superuser", False):
        roles = frozenset(Role)
    else:
        names = set(user.groups.values_list("name", flat=True))
        roles = frozenset(r for r in Role if r.value in names)
    user._flowsite_roles = roles
    return roles


def perms_of(who: Any) -> frozenset[Perm]:
    actor = as_actor(who)
    if actor.is_system:
        return frozenset(Perm)
    granted: set[Perm] = set()
    for role in roles_of(actor.user):
        granted |= GRANTS[role]
    return frozenset(granted)


def can(who: Any, perm: Perm) -> bool:
    return perm in perms_of(who)


def require(who: Any, perm: Perm) -> Actor:
    """The acting party, if it may do ``perm``; else 403 ``Forbidden`` naming the role needed."""
    actor = as_actor(who)
    if perm not in perms_of(actor):
        role = NEEDED[perm]
        raise Forbidden(
            f"this needs the {role.value} role",
            extra={"required_role": role.value},
        )
    return actor


# --- the REST API ------------------------------------------------------------------------------

from rest_framework.permissions import BasePermission  # noqa: E402


class CanRead(BasePermission):
    """The API's default: a logged-in user with a role (anonymous: 401; no role: 403). Writes
    are checked again, by the services, for the permission each one needs."""

    message = "this needs the viewer role (or any other role)"

    def has_permission(self, request, view) -> bool:
        user = getattr(request, "user", None)
        if user is None or not getattr(user, "is_authenticated", False):
            return False
        return can(user, Perm.READ)


def api_actor(request) -> Actor:
    return Actor.from_request(request, "api")


def admin_actor(request) -> Actor:
    return Actor.from_request(request, "admin")


def web_actor(request) -> Actor:
    return Actor.from_request(request, "web")
