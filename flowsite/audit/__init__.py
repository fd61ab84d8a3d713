"""Roles (Django groups, created by this app's migrations) and the append-only audit log."""

from __future__ import annotations

from typing import Any

MAX_DETAIL_TEXT = 2000


def record(actor, action: str, object_type: str, object_name: str, **detail: Any) -> None:
    """Append one audit entry for a change ``actor`` made (call it inside the change's own
    transaction). ``detail`` holds short, non-secret facts (a reason, a version number...)."""
    from .models import AuditEntry  # noqa: PLC0415 - app registry

    user = actor.user if getattr(actor.user, "is_authenticated", False) else None
    AuditEntry.objects.create(
        actor=user,
        actor_name=actor.name[:150],
        via=actor.via[:16],
        ip=actor.ip,
        user_agent=actor.user_agent,
        action=action,
        object_type=object_type,
        object_name=object_name[:300],
        detail={k: _short(v) for k, v in detail.items()},
    )


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_DETAIL_TEXT:
        return value[:MAX_DETAIL_TEXT] + "…"
    return value
