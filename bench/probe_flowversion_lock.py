#!/usr/bin/env python
"""Shows that the runtime's row lock also locks the (shared) FlowVersion row on PostgreSQL.

``runtime.transition`` locks an execution with
``Execution.objects.select_for_update().select_related("flow_version")``. PostgreSQL's plain
``FOR UPDATE`` on a join locks the selected rows of *every* joined table, so two transitions of
two different executions of the same flow version wait for each other. This script holds that
lock on execution A for 1 s in one thread and times locking execution B in another, then does
the same with ``select_for_update(of=("self",))``.

    .venv/bin/python bench/probe_flowversion_lock.py

Uses a fresh database flowsite_bench_<rand> on postgres://postgres@127.0.0.1:5432 (dropped).
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from flowsite.access import SYSTEM

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import PG_SERVER, pass_flow_yaml, pg_admin  # noqa: E402

HOLD = 1.0


def main() -> None:
    dbname = f"flowsite_bench_{secrets.token_hex(4)}"
    data_dir = tempfile.mkdtemp(prefix="flowsite-probe-")
    pg_admin(f'CREATE DATABASE "{dbname}"')
    try:
        for k in [k for k in os.environ if k.startswith(("FLOWSITE_", "DJANGO_", "CELERY_"))]:
            del os.environ[k]
        os.environ.update(
            FLOWSITE_DATA_DIR=data_dir,
            DATABASE_URL=f"{PG_SERVER}/{dbname}",
            DJANGO_SETTINGS_MODULE="flowsite.settings",
            DJANGO_DEBUG="0",
            DJANGO_SECRET_KEY="probe-only-" + "x" * 40,
        )
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection, connections, transaction

        from executions.models import Execution
        from executions.services import execution_start, flow_create

        call_command("migrate", verbosity=0)
        flow = flow_create(name="probe", definition=pass_flow_yaml("probe"), actor=SYSTEM)
        a, _ = execution_start(flow=flow, input={}, actor=SYSTEM)
        b, _ = execution_start(flow=flow, input={}, actor=SYSTEM)

        def lock(pk, of_self):
            qs = Execution.objects.select_for_update(**({"of": ("self",)} if of_self else {}))
            return qs.select_related("flow_version").filter(pk=pk).first()

        for of_self in (False, True):
            holding = threading.Event()

            def hold(of_self=of_self, holding=holding):
                with transaction.atomic():
                    lock(a.pk, of_self)
                    holding.set()
                    time.sleep(HOLD)
                connection.close()

            t = threading.Thread(target=hold)
            t.start()
            holding.wait()
            t0 = time.perf_counter()
            with transaction.atomic():
                if not of_self:
                    sql = str(
                        Execution.objects.select_for_update()
                        .select_related("flow_version")
                        .filter(pk=b.pk)
                        .query
                    )
                    print(
                        "runtime's lock query ends with:",
                        sql[sql.index(" FROM ") :][:60],
                        "...",
                        sql[-40:],
                    )
                lock(b.pk, of_self)
            waited = time.perf_counter() - t0
            t.join()
            label = (
                'select_for_update(of=("self",))'
                if of_self
                else "select_for_update() (as in runtime/transition.py)"
            )
            print(
                f"{label}: locking execution B waited {waited:.3f} s while another transaction "
                f"held execution A (same flow version) for {HOLD} s"
            )
        connections.close_all()
    finally:
        pg_admin(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
