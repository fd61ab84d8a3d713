"""System checks (``manage.py check``) for the functions folders."""

from __future__ import annotations

import os

from django.conf import settings
from django.core.checks import Warning, register

from .loader import unsafe_folder_reason


@register()
def check_functions_path(app_configs=None, **kwargs) -> list[Warning]:
    """A folder that overlaps the standard library, installed packages or flowsite's code is
    ignored by the loader (its modules would let a handler reach that code); a missing folder
    finds nothing. Both are reported so the deployment can be fixed."""
    problems: list[Warning] = []
    for entry in settings.FLOWSITE_FUNCTIONS_PATH:
        real = os.path.realpath(entry)
        if not os.path.isdir(real):
            problems.append(
                Warning(
                    f"FLOWSITE_FUNCTIONS_PATH folder {entry} does not exist",
                    hint="Create it or remove it from FLOWSITE_FUNCTIONS_PATH.",
                    id="functions.W001",
                )
            )
            continue
        reason = unsafe_folder_reason(real)
        if reason:
            problems.append(
                Warning(
                    f"FLOWSITE_FUNCTIONS_PATH folder {entry} is ignored: {reason}",
                    hint="Keep handlers in a folder of their own.",
                    id="functions.W002",
                )
            )
    return problems
