"""Handlers the runtime tests register as functions."""

import json


def echo(event, context):
    return json.loads(event)


def boom(event, context):
    raise RuntimeError("boom")
