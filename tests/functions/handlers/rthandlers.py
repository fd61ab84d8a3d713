"""Handlers the runtime tests register as functions (``rthandlers.<name>``)."""

import json


def echo(event, context):
    return json.loads(event)


def boom(event, context):
    raise RuntimeError("boom")


CALLS: list = []


def record(event, context):
    CALLS.append(json.loads(event))
    return {"recorded": True}
