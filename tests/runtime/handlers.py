"""The runtime tests' handlers now live in tests/functions/handlers/rthandlers.py: a handler must
be a function in a functions folder (functions/loader.py). Register them as
``rthandlers.echo``, ``rthandlers.boom``, ``rthandlers.record``.

Attributes read here (``handlers.CALLS``) come from the very module object that workers run,
which the loader executes from that file under a private name, not from an import of this
package."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    from functions import loader

    return getattr(loader.load_module("rthandlers"), name)
