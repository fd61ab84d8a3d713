#!/usr/bin/env python
"""How many bytes does a Map write to the database, as a function of its size?

Runs a Map of N items (each iteration one Task calling ``bench_echo``, MaxConcurrency 10) to
its end in ONE process with no broker (work items are run directly, as in
``bench/profile_runtime.py``), and counts every byte the runtime sends to the database in
INSERT and UPDATE statements (the parameters' sizes), split into the execution row (the
engine's state) and everything else (history, work items, side values). Before container
results moved out of the state, every transition rewrote all results collected so far, so the
total grew with N²; now it must grow with N (bytes per item about constant).

    .venv/bin/python bench/map_bytes.py [--sizes 125,250,500,1000] [--item-bytes 100]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

from flowsite.access import SYSTEM

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MAP_FLOW = """\
Type: StateMachine
Name: bench-map
SpecVersion: v1
StartAt: Each
States:
  - Type: Map
    Name: Each
    ItemsPath: $Input.items
    MaxConcurrency: 10
    Processor:
      StartAt: Echo
      States:
        - Type: Task
          Name: Echo
          Action: FC:InvokeFunction
          Parameters:
            invocationType: Sync
            resourceArn: acs:fc:::functions/bench_echo/LATEST
            body:
              item.$: $Input
          OutputConstructor:
            $: $Output.Body
          End: true
    End: true
"""


def size(value) -> int:
    if value is None:
        return 0
    if isinstance(value, bytes | bytearray | memoryview):
        return len(value)
    if isinstance(value, str):
        return len(value.encode())
    return 8


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="125,250,500,1000")
    ap.add_argument("--item-bytes", type=int, default=100)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="flowsite-mapbytes-"))
    try:
        for k in [k for k in os.environ if k.startswith(("FLOWSITE_", "DJANGO_", "CELERY_"))]:
            del os.environ[k]
        os.environ.pop("DATABASE_URL", None)
        os.environ.update(
            FLOWSITE_DATA_DIR=str(tmp),
            FLOWSITE_FUNCTIONS_PATH=str(ROOT / "bench" / "functions"),
            DJANGO_SETTINGS_MODULE="flowsite.settings",
            DJANGO_DEBUG="0",
            DJANGO_SECRET_KEY="bench-only-" + "x" * 40,
        )
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection

        from executions.models import Execution, ExecutionStatus
        from executions.runtime import publish, worker
        from executions.services import execution_start, flow_create
        from functions.models import Function

        call_command("migrate", verbosity=0)
        Function.objects.create(
            name="bench_echo", handler="bench_handlers.echo", timeout_seconds=10
        )
        flow = flow_create(name="bench-map", definition=MAP_FLOW, actor=SYSTEM)
        queue: list[int] = []
        publish.dispatch = lambda ids, **kw: queue.extend(ids) or len(ids)

        written: Counter = Counter()

        def count(execute, sql, params, many, context):
            head = sql.lstrip()[:6].upper()
            if head in ("INSERT", "UPDATE"):
                table = "execution" if '"executions_execution"' in sql.split("SET")[0] else "other"
                rows = params if many else [params]
                written[table] += sum(size(p) for row in rows for p in (row or ()))
            return execute(sql, params, many, context)

        print(
            f"Map of N items ({args.item_bytes}-byte strings), one Task per item, "
            "MaxConcurrency 10; bytes sent to the database in INSERT/UPDATE parameters"
        )
        print(
            f"{'N':>6} {'total bytes':>14} {'per item':>10} {'state (execution row)':>22} "
            f"{'per item':>9} {'transitions':>12}"
        )
        for n in sizes:
            items = [f"{i:06d}-" + "x" * (args.item_bytes - 7) for i in range(n)]
            written.clear()
            with connection.execute_wrapper(count):
                execution, _ = execution_start(
                    flow=flow, input={"items": items}, name=f"m{n}", actor=SYSTEM
                )
                while queue:
                    worker.run_work_item(queue.pop(0))
            execution = Execution.objects.get(pk=execution.pk)
            assert execution.status == ExecutionStatus.SUCCEEDED, execution.error_message
            assert len(execution.output["Items"]) == n
            total = written["execution"] + written["other"]
            print(
                f"{n:>6} {total:>14,} {total / n:>10,.0f} {written['execution']:>22,} "
                f"{written['execution'] / n:>9,.0f} {execution.revision:>12,}"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
