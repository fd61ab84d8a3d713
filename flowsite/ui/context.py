"""What the layout needs on every page: the user's permissions (to show only what they may use)
and the number of steps waiting for a person (the badge in the navigation)."""

from __future__ import annotations

from django.utils.functional import SimpleLazyObject

from flowsite.access import Perm, perms_of, roles_of


def layout(request) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}

    def waiting() -> int:
        from executions.selectors import waiting_for_people_count  # noqa: PLC0415

        return waiting_for_people_count()

    perms = perms_of(user)
    return {
        "perms_": {p.value: p in perms for p in Perm},
        "roles_": sorted(r.value for r in roles_of(user)),
        "approvals_waiting": SimpleLazyObject(waiting) if Perm.READ in perms else 0,
    }
