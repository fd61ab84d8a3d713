"""Fault-injection hooks for the integration tests (``FLOWSITE_FAULTS``; refused in production
by the settings unless ``FLOWSITE_ALLOW_FAULTS=1``)."""

from __future__ import annotations

from django.conf import settings


def fault(name: str) -> bool:
    """True when fault-injection hook ``name`` is on."""
    return name in settings.FLOWSITE_FAULTS.split(",") if settings.FLOWSITE_FAULTS else False
