"""Handlers the security tests register as functions (``sechandlers.<name>``): a folder of
their own, added to ``FLOWSITE_FUNCTIONS_PATH`` by ``tests/security/conftest.py``."""

import json


def ok(event, context):
    return {"ok": True}


def echo(event, context):
    """Returns its event as it came: for a callback step, with the live task token in it."""
    return json.loads(event)


def raise_message(event, context):
    """Fails with the event's ``message`` as the error text (hostile text reaches the pages as
    a handler's own error)."""
    raise ValueError(json.loads(event).get("message", "no message"))


def raise_event(event, context):
    """Fails with the whole event in the error text (for a callback step: the live token)."""
    raise RuntimeError(event.decode("utf-8", errors="replace"))
