"""A package in a functions folder: ``pkg.handler`` and ``pkg.mod.handler`` are handlers."""

LOADED_AS = __name__


def handler(event, context):
    return {"package": True}
