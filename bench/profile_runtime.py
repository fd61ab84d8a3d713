#!/usr/bin/env python
"""Where does a Task hop's time go? Runs the 10-step function flow of bench/run.py in ONE
process, with no broker: the work items the runtime would publish are collected and run
directly with ``runtime.worker.run_work_item`` (what the Celery task does), so each hop's
queries and
CPU can be counted and profiled.

    .venv/bin/python bench/profile_runtime.py [--executions 30] [--database-url URL] [--top 25]

Uses a temporary SQLite database (FLOWSITE_DATA_DIR in a temp folder) unless --database-url
names an (empty, disposable) database. DJANGO_DEBUG is off; queries are counted with
CaptureQueriesContext.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--executions", type=int, default=30)
    ap.add_argument("--database-url")
    ap.add_argument(
        "--postgres",
        action="store_true",
        help="use a fresh database flowsite_bench_<rand> on postgres://postgres@127.0.0.1:5432"
        " (dropped at the end)",
    )
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--no-profile", action="store_true", help="time the hops without cProfile")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="flowsite-profile-"))
    dbname = None
    if args.postgres:
        import secrets

        from bench.run import PG_SERVER, pg_admin

        dbname = f"flowsite_bench_{secrets.token_hex(4)}"
        pg_admin(f'CREATE DATABASE "{dbname}"')
        args.database_url = f"{PG_SERVER}/{dbname}"
    try:
        for k in [k for k in os.environ if k.startswith(("FLOWSITE_", "DJANGO_", "CELERY_"))]:
            del os.environ[k]
        os.environ.pop("DATABASE_URL", None)
        os.environ.update(
            FLOWSITE_DATA_DIR=str(tmp),
            FLOWSITE_FUNCTIONS_PATH=str(ROOT / "bench" / "functions"),
            DJANGO_SETTINGS_MODULE="flowsite.settings",
            DJANGO_DEBUG="0",
            DJANGO_SECRET_KEY="profile-only-" + "x" * 40,
        )
        if args.database_url:
            os.environ["DATABASE_URL"] = args.database_url
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        from bench.run import FUNCTION_NAME, pct, task_flow_yaml
        from executions.models import Execution, ExecutionStatus
        from executions.runtime import publish, worker
        from executions.services import execution_start, flow_create
        from functions.services import SYSTEM, function_create

        call_command("migrate", verbosity=0)
        function_create(
            name=FUNCTION_NAME, handler="bench_handlers.echo", timeout_seconds=10, actor=SYSTEM
        )
        flow = flow_create(
            name="bench-task10", definition=task_flow_yaml("bench-task10"), actor=SYSTEM
        )

        queue: list[int] = []
        # No broker: collect what would be sent.
        publish.dispatch = lambda ids, **kw: queue.extend(ids)

        hop_ms: list[float] = []
        hop_queries: list[int] = []
        sql_kinds: Counter = Counter()
        prof = cProfile.Profile()
        ids = []
        t_all = time.perf_counter()
        for i in range(args.executions):
            execution, _ = execution_start(flow=flow, input={"i": i}, actor=SYSTEM)
            ids.append(execution.pk)
            while queue:
                work_id = queue.pop(0)
                with CaptureQueriesContext(connection) as ctx:
                    t = time.perf_counter()
                    if not args.no_profile:
                        prof.enable()
                    worker.run_work_item(work_id)
                    if not args.no_profile:
                        prof.disable()
                    hop_ms.append((time.perf_counter() - t) * 1000)
                hop_queries.append(len(ctx.captured_queries))
                for q in ctx.captured_queries:
                    sql = q["sql"].lstrip()
                    head = " ".join(sql.split()[:1]).upper()
                    table = next(
                        (
                            w.strip('"')
                            for w in sql.split()
                            if '"executions_' in w or '"functions_' in w
                        ),
                        "?",
                    )
                    sql_kinds[f"{head} {table.split('.')[0]}"] += 1
        total = time.perf_counter() - t_all
        ok = Execution.objects.filter(pk__in=ids, status=ExecutionStatus.SUCCEEDED).count()
        hops = len(hop_ms)
        print(
            f"{args.executions} executions ({ok} succeeded), {hops} work items run in-process, "
            f"{total:.2f} s"
        )
        print(
            f"per hop (= one Task state: claim+TaskStarted, invoke, TaskSucceeded+next state): "
            f"p50 {pct(hop_ms, 50):.2f} ms, p99 {pct(hop_ms, 99):.2f} ms, "
            f"{sum(hop_queries) / hops:.1f} SQL statements"
        )
        print("SQL statements per hop by kind:")
        for kind, n in sql_kinds.most_common():
            print(f"  {n / hops:5.2f}  {kind}")
        if args.no_profile:
            return
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(
            r"flowsite|executions|functions", args.top
        )
        print(out.getvalue())
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_callers(
            r"__init__.py:\d+\(__eq__\)"
        )
        print(out.getvalue()[-3000:])
        out = io.StringIO()
        stats = pstats.Stats(prof, stream=out)
        stats.sort_stats("cumulative").print_stats(args.top)
        print(out.getvalue())
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(args.top)
        print(out.getvalue())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if dbname:
            from django.db import connections

            connections.close_all()
            pg_admin(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


if __name__ == "__main__":
    main()
