"""Names that resolve to a file in a functions folder but are not handlers: each must fail with
FC.InvalidHandler when a worker loads it, without running anything."""

import functools
import os  # noqa: F401 - "confinement_cases.os" is a module
import shutil
from os import system  # noqa: F401 - "confinement_cases.system" is os.system
from subprocess import getoutput  # noqa: F401

rmtree = shutil.rmtree
LIMIT = 5
run_anything = functools.partial(exec)


class Handler:
    def __init__(self, event, context):
        self.event = event


async def later(event, context):
    return {}


def wrapped_ok(event, context):
    return {"ok": True}


@functools.wraps(wrapped_ok)
def decorated(event, context):
    return wrapped_ok(event, context)
