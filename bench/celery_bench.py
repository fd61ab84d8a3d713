"""The raw-Celery baseline: one trivial task, chained, on the project's own Celery app.

The worker imports this module with ``-I bench.celery_bench``. There is no result backend
(the project sets ``task_ignore_result``), so a chain carries the wall-clock time of every link
in its argument, and its last link writes them to ``<outdir>/<chain_id>.json`` (write to a
temporary file, then rename: the driver never reads a half-written file).
"""

from __future__ import annotations

import json
import os
import time

from flowsite.celery import app


@app.task(name="bench.noop", ignore_result=True)
def noop(stamps: list, chain_id: str, last: bool, outdir: str) -> list:
    stamps.append(time.time())
    if last:
        tmp = os.path.join(outdir, f".{chain_id}.tmp")
        with open(tmp, "w") as f:
            json.dump(stamps, f)
        os.rename(tmp, os.path.join(outdir, f"{chain_id}.json"))
    return stamps
