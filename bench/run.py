#!/usr/bin/env python
"""flowsite benchmark: state transitions per second and per-transition latency, beside raw
Celery chains of the same length on the same worker and broker.

    .venv/bin/python bench/run.py [--backend embedded|postgres-redis|both] [--executions N]

For each backend this script (the *orchestrator*) builds a fresh environment (a temporary
FLOWSITE_DATA_DIR; for postgres-redis also a fresh PostgreSQL database and Redis db 14), runs
``manage.py migrate``, starts one Celery worker (``-c 2 -P prefork``) and Celery beat, then
re-invokes itself as the *driver* (``--driver``: a separate process with the same environment
and ``django.setup()``), which creates the bench function and flows, runs the measurements and
writes them as JSON. Everything it started (processes, database, temp folder) is removed in a
``finally`` block. See bench/README.md for the method.

Outputs: a table per backend on stdout, ``bench/results-<backend>.json`` and
``bench/RESULTS.md`` (rendered from every ``bench/results-*.json`` present).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PY = sys.executable
CELERY = str(Path(sys.executable).parent / "celery")

PG_SERVER = "postgres://postgres@127.0.0.1:5432"
REDIS_URL = "redis://127.0.0.1:6379/14"

PASS_STATES = 20
TASK_STATES = 10
FUNCTION_NAME = "bench_echo"
POLL = 0.005  # how often the driver looks for finished executions / chains (seconds)
PHASE_TIMEOUT = 240.0  # one measurement phase may not take longer than this (seconds)

BACKENDS = ("embedded", "postgres-redis")


# =============================================================================================
# Small helpers (both sides)
# =============================================================================================


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def proc_cpu_seconds(match, *, children: bool = False) -> float:
    """Sum of user+system CPU seconds of the live processes for which ``match(pid, pgrp,
    cmdline)`` is true (read from /proc); with ``children``, of their exited (reaped) children
    instead."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        rest = stat.rsplit(")", 1)[1].split()
        # rest[0] = state, rest[2] = pgrp, rest[11:15] = utime, stime, cutime, cstime
        if match(int(name), int(rest[2]), cmdline):
            total += int(rest[13]) + int(rest[14]) if children else int(rest[11]) + int(rest[12])
    return total / tick


# =============================================================================================
# Driver: runs inside the benchmark environment (django.setup()), prints nothing important,
# writes its measurements to --out.
# =============================================================================================


def pass_flow_yaml(name: str) -> str:
    lines = ["Type: StateMachine", f"Name: {name}", "SpecVersion: v1", "StartAt: P01", "States:"]
    for i in range(1, PASS_STATES + 1):
        lines += ["  - Type: Pass", f"    Name: P{i:02d}"]
        lines.append(f"    Next: P{i + 1:02d}" if i < PASS_STATES else "    End: true")
    return "\n".join(lines) + "\n"


def task_flow_yaml(name: str) -> str:
    lines = ["Type: StateMachine", f"Name: {name}", "SpecVersion: v1", "StartAt: T01", "States:"]
    for i in range(1, TASK_STATES + 1):
        lines += [
            "  - Type: Task",
            f"    Name: T{i:02d}",
            "    Action: FC:InvokeFunction",
            "    TaskMode: RequestComplete",
            "    Parameters:",
            "      invocationType: Sync",
            f"      resourceArn: acs:fc:::functions/{FUNCTION_NAME}/LATEST",
            # keep the data the same size at every step (else each envelope nests the last)
            "    OutputConstructor:",
            "      $: $Output.Body",
            f"    Next: T{i + 1:02d}" if i < TASK_STATES else "    End: true",
        ]
    return "\n".join(lines) + "\n"


class CpuMeter:
    """CPU seconds used by the worker (its process group), the driver, and the PostgreSQL
    backends serving the benchmark database, over one phase."""

    def __init__(self, worker_pgid: int, dbname: str | None):
        self.worker_pgid = worker_pgid
        self.dbname = dbname

    def sample(self) -> dict:
        t = os.times()
        out = {
            "worker": proc_cpu_seconds(lambda pid, pgrp, cmd: pgrp == self.worker_pgid),
            "driver": t.user + t.system,
        }
        if self.dbname:
            needle = f" {self.dbname} "
            # live backends of the benchmark database, plus the CPU of backends that exited
            # (reaped by the postmaster: its cutime+cstime; this part is server-wide)
            out["postgres"] = proc_cpu_seconds(
                lambda pid, pgrp, cmd: cmd.startswith("postgres:") and needle in cmd
            ) + proc_cpu_seconds(lambda pid, pgrp, cmd: "/bin/postgres " in cmd, children=True)
            from django.db import connection

            with connection.cursor() as cur:  # sessions ever opened on the benchmark database
                cur.execute("SELECT pg_stat_clear_snapshot()")
                cur.execute(
                    "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
                )
                out["pg_sessions"] = float(cur.fetchone()[0])
        return out

    @staticmethod
    def per_transition(before: dict, after: dict, transitions: int) -> dict:
        if not transitions:
            return {}
        out = {
            f"{k}_cpu_ms_per_transition": _r((after[k] - before[k]) * 1000 / transitions, 3)
            for k in before
            if k != "pg_sessions"
        }
        if "pg_sessions" in before:
            out["pg_sessions_per_transition"] = _r(
                (after["pg_sessions"] - before["pg_sessions"]) / transitions, 3
            )
        return out


def run_window(n: int, concurrency: int, start, finished) -> float:
    """Keep ``concurrency`` units in flight until ``n`` have finished. ``start(i)`` launches
    unit i and returns its key; ``finished(keys)`` returns the keys that are done."""
    inflight: set = set()
    started = done = 0
    t0 = time.perf_counter()
    deadline = t0 + PHASE_TIMEOUT
    while done < n:
        while started < n and len(inflight) < concurrency:
            inflight.add(start(started))
            started += 1
        ready = finished(inflight) if inflight else set()
        if ready:
            inflight -= ready
            done += len(ready)
            continue
        if time.perf_counter() > deadline:
            raise RuntimeError(f"phase timed out: {done}/{n} finished, {len(inflight)} stuck")
        time.sleep(POLL)
    return time.perf_counter() - t0


def summarize(
    *,
    transitions_per_unit: int,
    units: int,
    wall: float,
    hops: list[float],
    execs: list[float],
    failed: int = 0,
    cpu: dict | None = None,
) -> dict:
    transitions = transitions_per_unit * units
    out = {
        "executions": units,
        "failed": failed,
        "transitions": transitions,
        "wall_s": _r(wall, 3),
        "transitions_per_s": _r(transitions / wall if wall else None, 1),
        "transition_p50_ms": _r(pct(hops, 50), 2),
        "transition_p99_ms": _r(pct(hops, 99), 2),
        "transition_mean_ms": _r(sum(hops) / len(hops) if hops else None, 2),
        "execution_p50_ms": _r(pct(execs, 50), 1),
        "execution_p99_ms": _r(pct(execs, 99), 1),
    }
    if cpu:
        out.update(cpu)
    return out


def driver(opts) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flowsite.settings")
    import django

    django.setup()
    from celery import chain
    from django.db import connection

    from bench.celery_bench import noop
    from executions.models import Execution, ExecutionStatus, HistoryEvent
    from executions.services import execution_start, flow_create
    from functions.services import SYSTEM, function_create

    meter = CpuMeter(opts.worker_pgid, opts.dbname)
    outdir = Path(opts.chain_dir)
    outdir.mkdir(parents=True, exist_ok=True)
    open_statuses = ExecutionStatus.open()

    function_create(
        name=FUNCTION_NAME, handler="bench_handlers.echo", timeout_seconds=10, actor=SYSTEM
    )
    pass_flow = flow_create(
        name="bench-pass20", definition=pass_flow_yaml("bench-pass20"), actor=SYSTEM
    )
    task_flow = flow_create(
        name="bench-task10", definition=task_flow_yaml("bench-task10"), actor=SYSTEM
    )

    # --- flowsite: function (Task) flow, executed by the worker -----------------------------

    def start_task_execution(i: int) -> int:
        execution, _ = execution_start(flow=task_flow, input={"i": i}, actor=SYSTEM)
        return execution.pk

    finished_sql = (
        f"SELECT id FROM {Execution._meta.db_table} WHERE status NOT IN (%s, %s) AND id IN ({{}})"
    )

    def finished_executions(keys: set) -> set:
        # Raw SQL: this runs every POLL seconds, and the ORM's query building would cost the
        # driver (and so the 2 cores the worker also needs) ~1 ms of CPU a time.
        keys = list(keys)
        if not keys:
            return set()  # "IN ()" is an error on PostgreSQL (SQLite takes it)
        with connection.cursor() as cur:
            cur.execute(
                finished_sql.format(",".join(["%s"] * len(keys))), [*map(str, open_statuses), *keys]
            )
            return {row[0] for row in cur.fetchall()}

    def task_flow_phase(n: int, concurrency: int) -> dict:
        ids: list[int] = []

        def start(i):
            pk = start_task_execution(i)
            ids.append(pk)
            return pk

        before = meter.sample()
        wall = run_window(n, concurrency, start, finished_executions)
        after = meter.sample()
        # Per-transition latency: gaps between consecutive StepEntered events of an execution,
        # closing with its terminal event (so 10 gaps for 10 states). The history times are
        # the `now` of the transaction that wrote each event, on the worker (or the driver for
        # the start).
        bounds = {"StepEntered", "ExecutionSucceeded", "ExecutionFailed", "ExecutionTimedOut"}
        rows = (
            HistoryEvent.objects.filter(execution_id__in=ids)
            .filter(type__in=[*bounds, "TaskStarted"])
            .order_by("execution_id", "event_id")
            .values_list("execution_id", "type", "time")
        )
        per_exec: dict[int, list] = {}
        for eid, type_, when in rows:
            per_exec.setdefault(eid, []).append((type_, when))
        hops, waits, runs = [], [], []
        for events in per_exec.values():
            times = [when for type_, when in events if type_ in bounds]
            hops += [(b - a).total_seconds() * 1000 for a, b in zip(times, times[1:], strict=False)]
            # split each hop at TaskStarted: before = publish + broker + claim (the wait for a
            # worker), after = TaskStarted commit + function + the TaskSucceeded transaction
            for (t1, w1), (t2, w2) in zip(events, events[1:], strict=False):
                if t1 == "StepEntered" and t2 == "TaskStarted":
                    waits.append((w2 - w1).total_seconds() * 1000)
                elif t1 == "TaskStarted" and t2 in bounds:
                    runs.append((w2 - w1).total_seconds() * 1000)
        execs, failed = [], 0
        for status, started, stopped in Execution.objects.filter(pk__in=ids).values_list(
            "status", "started_at", "stopped_at"
        ):
            if status != ExecutionStatus.SUCCEEDED:
                failed += 1
            elif stopped:
                execs.append((stopped - started).total_seconds() * 1000)
        out = summarize(
            transitions_per_unit=TASK_STATES,
            units=n,
            wall=wall,
            hops=hops,
            execs=execs,
            failed=failed,
            cpu=CpuMeter.per_transition(before, after, TASK_STATES * n),
        )
        out.update(
            {
                "to_task_started_p50_ms": _r(pct(waits, 50)),
                "to_task_started_p99_ms": _r(pct(waits, 99)),
                "task_started_to_next_p50_ms": _r(pct(runs, 50)),
                "task_started_to_next_p99_ms": _r(pct(runs, 99)),
            }
        )
        return out

    # --- flowsite: Pass flow, completes inline in execution_start ---------------------------

    def pass_flow_phase(n: int, concurrency: int) -> dict:
        durations: list[float] = []
        statuses: list[str] = []
        lock = threading.Lock()
        counter = iter(range(n))

        def one(i):
            t = time.perf_counter()
            execution, _ = execution_start(flow=pass_flow, input={"i": i}, actor=SYSTEM)
            d = (time.perf_counter() - t) * 1000
            with lock:
                durations.append(d)
                statuses.append(execution.status)

        finished_work = threading.Semaphore(0)
        release = threading.Event()

        def loop():
            try:
                while True:
                    with lock:
                        i = next(counter, None)
                    if i is None:
                        break
                    one(i)
            finally:
                finished_work.release()
                # keep this thread's connection open until the CPU sample is taken (a closed
                # PostgreSQL backend takes its CPU time with it), then close it
                release.wait()
                connection.close()

        before = meter.sample()
        t0 = time.perf_counter()
        if concurrency == 1:
            for i in range(n):
                one(i)
        else:
            threads = [threading.Thread(target=loop) for _ in range(concurrency)]
            for t in threads:
                t.start()
            for _ in threads:
                finished_work.acquire()
        wall = time.perf_counter() - t0
        after = meter.sample()
        if concurrency != 1:
            release.set()
            for t in threads:
                t.join()
        failed = sum(1 for s in statuses if s != ExecutionStatus.SUCCEEDED)
        # Every state entry happens inside the one start transaction: per transition = the
        # execution's duration / 20.
        hops = [d / PASS_STATES for d in durations]
        return summarize(
            transitions_per_unit=PASS_STATES,
            units=n,
            wall=wall,
            hops=hops,
            execs=durations,
            failed=failed,
            cpu=CpuMeter.per_transition(before, after, PASS_STATES * n),
        )

    # --- raw Celery chain of the same length ------------------------------------------------

    def chain_phase(length: int, n: int, concurrency: int) -> dict:
        sent: dict[str, float] = {}

        def start(i):
            cid = f"c{length}-{concurrency}-{i}-{secrets.token_hex(4)}"
            links = [noop.s([], cid, length == 1, str(outdir))]
            links += [noop.s(cid, k == length - 1, str(outdir)) for k in range(1, length)]
            sent[cid] = time.time()
            chain(*links).apply_async()
            return cid

        def finished(keys):
            return {k for k in keys if (outdir / f"{k}.json").exists()}

        before = meter.sample()
        wall = run_window(n, concurrency, start, finished)
        after = meter.sample()
        hops, execs = [], []
        for cid, t0 in sent.items():
            stamps = [t0] + json.loads((outdir / f"{cid}.json").read_text())
            hops += [(b - a) * 1000 for a, b in zip(stamps, stamps[1:], strict=False)]
            execs.append((stamps[-1] - stamps[0]) * 1000)
        return summarize(
            transitions_per_unit=length,
            units=n,
            wall=wall,
            hops=hops,
            execs=execs,
            cpu=CpuMeter.per_transition(before, after, length * n),
        )

    # --- warm-up: proves the worker is up, loads code in both pool processes ----------------

    t_warm = time.perf_counter()
    warm_ids = {start_task_execution(-1 - i) for i in range(4)}
    warm_chains = set()
    for i in range(4):
        cid = f"warm-{i}"
        chain(noop.s([], cid, False, str(outdir)), noop.s(cid, True, str(outdir))).apply_async()
        warm_chains.add(cid)
    deadline = time.monotonic() + 120
    while warm_ids or warm_chains:
        warm_ids -= finished_executions(warm_ids)
        warm_chains = {c for c in warm_chains if not (outdir / f"{c}.json").exists()}
        if time.monotonic() > deadline:
            raise RuntimeError("warm-up: the worker did not run the warm-up work within 120 s")
        time.sleep(0.05)
    for i in range(5):
        execution_start(flow=pass_flow, input={"warm": i}, actor=SYSTEM)
    warm_s = time.perf_counter() - t_warm

    conc = opts.concurrency
    results: dict = {"warmup_s": round(warm_s, 2), "runs": []}

    def record(flow, mode, flowsite_fn, chain_fn):
        print(f"[driver] {flow} {mode} ...", file=sys.stderr, flush=True)
        f = flowsite_fn()
        c = chain_fn()
        results["runs"].append({"flow": flow, "mode": mode, "flowsite": f, "chain": c})
        print(
            f"[driver]   flowsite {f['transitions_per_s']}/s p50 {f['transition_p50_ms']} ms | "
            f"chain {c['transitions_per_s']}/s p50 {c['transition_p50_ms']} ms"
            + (
                f" | hop split p50: to TaskStarted {f['to_task_started_p50_ms']} ms, "
                f"TaskStarted to next {f['task_started_to_next_p50_ms']} ms"
                if "to_task_started_p50_ms" in f
                else ""
            ),
            file=sys.stderr,
            flush=True,
        )

    np_, nf = opts.pass_executions, opts.function_executions
    nc_pass = opts.pass_chains or np_
    flows = opts.flows.split(",")
    if "pass20" in flows:
        record(
            "pass20",
            "sequential",
            lambda: pass_flow_phase(np_, 1),
            lambda: chain_phase(PASS_STATES, nc_pass, 1),
        )
        record(
            "pass20",
            f"concurrent-{conc}",
            lambda: pass_flow_phase(np_, conc),
            lambda: chain_phase(PASS_STATES, nc_pass, conc),
        )
    if "task10" in flows:
        record(
            "task10",
            "sequential",
            lambda: task_flow_phase(nf, 1),
            lambda: chain_phase(TASK_STATES, nf, 1),
        )
        record(
            "task10",
            f"concurrent-{conc}",
            lambda: task_flow_phase(nf, conc),
            lambda: chain_phase(TASK_STATES, nf, conc),
        )

    Path(opts.out).write_text(json.dumps(results, indent=2))


# =============================================================================================
# Orchestrator: environments, processes, clean-up, report
# =============================================================================================


def base_env(data_dir: Path) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FLOWSITE_", "DJANGO_", "CELERY_")) and k not in ("DATABASE_URL",)
    }
    env.update(
        {
            "FLOWSITE_DATA_DIR": str(data_dir),
            "FLOWSITE_FUNCTIONS_PATH": str(BENCH / "functions"),
            "FLOWSITE_BROKER_POLL": "0.01",
            "DJANGO_SETTINGS_MODULE": "flowsite.settings",
            # Production-like: DEBUG off (DEBUG records every SQL query in memory).
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
            "PYTHONPATH": str(ROOT)
            + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else ""),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def start_process(cmd: list[str], env: dict, log_path: Path) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def stop_process(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGTERM the process we started (Celery's warm shutdown stops its own pool), then
    SIGKILL its whole process group (it was started in a new session) if anything of it is
    still alive after ``grace`` seconds."""
    pgid = proc.pid  # start_new_session=True: the leader's pid is the group id
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while (proc.poll() is None or _group_alive(pgid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    if proc.poll() is None or _group_alive(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(sql)


def redis_flush() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


def scan_logs(paths: list[Path]) -> dict:
    problems: dict[str, list[str]] = {}
    for path in paths:
        if not path.exists():
            continue
        hits = []
        for line in path.read_text(errors="replace").splitlines():
            if any(
                w in line for w in ("ERROR", "CRITICAL", "Traceback", "WARNING", "Unrecoverable")
            ):
                hits.append(line.strip()[:300])
        problems[path.name] = hits
    return {name: {"count": len(hits), "first": hits[:15]} for name, hits in problems.items()}


def run_backend(backend: str, args) -> dict:
    tag = secrets.token_hex(4)
    tmp = Path(tempfile.mkdtemp(prefix=f"flowsite-bench-{backend}-"))
    logs = tmp / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen] = []
    dbname = None
    t_start = time.perf_counter()
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    try:
        env = base_env(tmp / "data")
        if backend == "postgres-redis":
            dbname = f"flowsite_bench_{tag}"
            pg_admin(f'CREATE DATABASE "{dbname}"')
            env["DATABASE_URL"] = f"{PG_SERVER}/{dbname}"
            env["CELERY_BROKER_URL"] = REDIS_URL
            redis_flush()
        else:
            env["CELERY_BROKER_URL"] = "flowsitefs://"
        print(f"[{backend}] migrate ({tmp})", flush=True)
        with open(logs / "migrate.log", "wb") as migrate_log:
            subprocess.run(
                [PY, "manage.py", "migrate", "--noinput", "-v", "0"],
                cwd=ROOT,
                env=env,
                check=True,
                stdout=migrate_log,
                stderr=subprocess.STDOUT,
                timeout=300,
            )
        worker = start_process(
            [
                CELERY,
                "-A",
                "flowsite",
                "worker",
                "-c",
                "2",
                "-P",
                "prefork",
                "-n",
                f"bench-{tag}@%h",
                "-I",
                "bench.celery_bench",
                "--loglevel",
                "INFO",
            ],
            env,
            logs / "worker.log",
        )
        procs.append(worker)
        procs.append(
            start_process(
                [
                    CELERY,
                    "-A",
                    "flowsite",
                    "beat",
                    "--loglevel",
                    "INFO",
                    "--pidfile",
                    str(tmp / "beat.pid"),
                    "-s",
                    str(tmp / "beat-schedule"),
                ],
                env,
                logs / "beat.log",
            )
        )
        out = tmp / "driver.json"
        cmd = [
            PY,
            str(Path(__file__).resolve()),
            "--driver",
            "--out",
            str(out),
            "--chain-dir",
            str(tmp / "chains"),
            "--worker-pgid",
            str(worker.pid),
            "--pass-executions",
            str(args.pass_executions),
            "--function-executions",
            str(args.function_executions),
            "--concurrency",
            str(args.concurrency),
            "--flows",
            args.flows,
        ]
        if args.pass_chains:
            cmd += ["--pass-chains", str(args.pass_chains)]
        if dbname:
            cmd += ["--dbname", dbname]
        print(f"[{backend}] worker pid {worker.pid}; running the driver", flush=True)
        drv = start_process(cmd, env, logs / "driver.log")
        procs.append(drv)
        try:
            rc = drv.wait(timeout=900)
        except subprocess.TimeoutExpired:
            rc = None
        if rc != 0:
            tail = (logs / "driver.log").read_text(errors="replace")[-4000:]
            raise RuntimeError(f"driver failed (rc={rc}):\n{tail}")
        for line in (logs / "driver.log").read_text().splitlines():
            if line.startswith("[driver]"):
                print(f"[{backend}] {line[9:]}", flush=True)
        data = json.loads(out.read_text())
    finally:
        for proc in reversed(procs):
            stop_process(proc)
        log_report = scan_logs([logs / "worker.log", logs / "beat.log", logs / "driver.log"])
        if dbname:
            try:
                pg_admin(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            except Exception as exc:  # noqa: BLE001 - report, keep cleaning
                print(f"[{backend}] could not drop database {dbname}: {exc}", file=sys.stderr)
        if backend == "postgres-redis":
            try:
                redis_flush()
            except Exception as exc:  # noqa: BLE001
                print(f"[{backend}] could not flush redis db 14: {exc}", file=sys.stderr)
        if args.keep:
            print(f"[{backend}] kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    data.update(
        {
            "backend": backend,
            "database": "postgresql" if backend == "postgres-redis" else "sqlite (WAL)",
            "broker": "redis" if backend == "postgres-redis" else "flowsitefs (poll 0.01 s)",
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": (
                f"{os.cpu_count()} CPU, {platform.system()} {platform.release()}, "
                f"Python {platform.python_version()}"
            ),
            "setup": (
                "1 worker (celery -c 2 -P prefork) + beat; driver in its own process; "
                "DJANGO_DEBUG=0"
            ),
            "concurrency": args.concurrency,
            "total_s": round(time.perf_counter() - t_start, 1),
            "loadavg_before": load_before,
            "logs": log_report,
        }
    )
    return data


# --- report ------------------------------------------------------------------------------------


def _fmt(v, digits=1):
    if v is None:
        return "-"
    return f"{v:,.{digits}f}"


def _ratio(a, b):
    return f"{a / b:.2f}" if a and b else "-"


def _spread(side: dict, key: str, digits: int = 1) -> str:
    """``median (min–max)`` when the figure comes from several repeats, else the figure."""
    value = _fmt(side.get(key), digits)
    low, high = side.get(f"{key}_min"), side.get(f"{key}_max")
    if low is None or high is None:
        return value
    return f"{value} ({_fmt(low, digits)}–{_fmt(high, digits)})"


def _ratio_cell(run: dict, name: str, f_key: str, c_key: str) -> str:
    ratios = run.get("ratios", {}).get(name)
    if ratios:  # median (min–max) of the per-repeat ratios
        return f"{ratios['median']:.2f} ({ratios['min']:.2f}–{ratios['max']:.2f})"
    return _ratio(run["flowsite"].get(f_key), run["chain"].get(c_key))


def table(data: dict) -> str:
    head = (
        "| flow | mode | runs | flowsite tr/s | flowsite p50 / p99 ms | chain tr/s "
        "| chain p50 / p99 ms | throughput ratio | p50 ratio | p99 ratio "
        "| exec p50 ms (flowsite / chain) |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    rows = []
    names = {"pass20": "20-state Pass", "task10": "10-step function"}
    for run in data["runs"]:
        f, c = run["flowsite"], run["chain"]
        runs = f"{f['executions']}" + (f" ({f['failed']} failed)" if f["failed"] else "")
        if c["executions"] != f["executions"]:
            runs += f" / {c['executions']}"
        rows.append(
            f"| {names.get(run['flow'], run['flow'])} | {run['mode']} | {runs} "
            f"| {_spread(f, 'transitions_per_s')} "
            f"| {_fmt(f['transition_p50_ms'], 2)} / {_fmt(f['transition_p99_ms'], 2)} "
            f"| {_spread(c, 'transitions_per_s')} "
            f"| {_fmt(c['transition_p50_ms'], 2)} / {_fmt(c['transition_p99_ms'], 2)} "
            f"| {_ratio_cell(run, 'throughput', 'transitions_per_s', 'transitions_per_s')} "
            f"| {_ratio_cell(run, 'p50', 'transition_p50_ms', 'transition_p50_ms')} "
            f"| {_ratio_cell(run, 'p99', 'transition_p99_ms', 'transition_p99_ms')} "
            f"| {_fmt(f['execution_p50_ms'])} / {_fmt(c['execution_p50_ms'])} |"
        )
    return head + "\n".join(rows) + "\n"


def aggregate(repeats: list[dict]) -> dict:
    """One result from several complete runs of a backend: every numeric figure becomes the
    median of the repeats, with ``<key>_min``/``<key>_max`` beside it; ratios are the median
    (and range) of each repeat's own flowsite/chain ratio, so a noisy moment of the shared
    machine hits both sides of a ratio alike."""
    data = dict(repeats[-1])
    data["repeats"] = len(repeats)
    data["date"] = repeats[0]["date"] + " – " + repeats[-1]["date"][11:]
    data["loadavg_before"] = " / ".join(str(r.get("loadavg_before", "?")) for r in repeats)
    data["total_s"] = round(sum(r["total_s"] for r in repeats), 1)
    runs = []
    for i, first in enumerate(repeats[0]["runs"]):
        merged: dict = {"flow": first["flow"], "mode": first["mode"], "ratios": {}}
        for side in ("flowsite", "chain"):
            merged[side] = {}
            for key, value in first[side].items():
                values = [r["runs"][i][side].get(key) for r in repeats]
                if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
                    merged[side][key] = statistics.median(values)
                    if len(values) > 1:
                        merged[side][f"{key}_min"] = min(values)
                        merged[side][f"{key}_max"] = max(values)
                else:
                    merged[side][key] = value
        for name, key in (
            ("throughput", "transitions_per_s"),
            ("p50", "transition_p50_ms"),
            ("p99", "transition_p99_ms"),
        ):
            ratios = [
                r["runs"][i]["flowsite"][key] / r["runs"][i]["chain"][key]
                for r in repeats
                if r["runs"][i]["flowsite"].get(key) and r["runs"][i]["chain"].get(key)
            ]
            if ratios:
                merged["ratios"][name] = {
                    "median": statistics.median(ratios),
                    "min": min(ratios),
                    "max": max(ratios),
                }
        runs.append(merged)
    data["runs"] = runs
    data["all_repeats"] = repeats
    return data


def cpu_table(data: dict) -> str:
    keys = [
        k
        for k in ("worker", "driver", "postgres")
        if f"{k}_cpu_ms_per_transition" in data["runs"][0]["flowsite"]
    ]
    head = (
        "| flow | mode | "
        + " | ".join(f"{k} CPU ms/transition (flowsite / chain)" for k in keys)
        + " |\n"
    )
    head += "|---|---|" + "---:|" * len(keys) + "\n"
    rows = []
    for run in data["runs"]:
        cells = []
        for k in keys:
            key = f"{k}_cpu_ms_per_transition"
            cells.append(f"{_fmt(run['flowsite'].get(key), 2)} / {_fmt(run['chain'].get(key), 2)}")
        if "pg_sessions_per_transition" in run["flowsite"]:
            cells.append(
                f"{_fmt(run['flowsite']['pg_sessions_per_transition'], 2)}"
                f" / {_fmt(run['chain'].get('pg_sessions_per_transition'), 2)}"
            )
        rows.append(f"| {run['flow']} | {run['mode']} | " + " | ".join(cells) + " |")
    if "pg_sessions_per_transition" in data["runs"][0]["flowsite"]:
        head = head.replace(
            " |\n|", " | new PostgreSQL sessions/transition (flowsite / chain) |\n|", 1
        )
        head = head.rstrip("\n") + "---:|\n"
    return head + "\n".join(rows) + "\n"


def section(data: dict) -> str:
    repeats = data.get("repeats", 1)
    how = f"median of {repeats} complete runs, (min–max) beside it" if repeats > 1 else "one run"
    return (
        f"### {data['backend']}: {data['database']} + {data['broker']}\n\n"
        f"{data['date']}; {how}; {data['machine']}; {data['setup']}; {data['total_s']} s in "
        f"all; load average before each run {data.get('loadavg_before', '?')}.\n\n"
        + table(data)
        + "\nCPU per transition (worker = the Celery worker's process group; driver = the process"
        " that starts executions / sends chains, where Pass flows run; postgres = the live backends"
        " of the benchmark database plus every backend of the server that exited during the"
        " phase):\n\n" + cpu_table(data)
    )


def write_results_md(folder: Path) -> None:
    parts = [
        "## Benchmark results\n\n"
        "Generated by `bench/run.py` (method: bench/README.md). *tr/s* = state transitions per "
        "second; p50/p99 = latency per transition; *chain* = a raw Celery chain of the same length "
        "(20 or 10 trivial tasks) on the same worker and broker; ratios are flowsite / chain "
        "(throughput: higher is better for flowsite; latency: lower is better).\n"
    ]
    for backend in BACKENDS:
        path = folder / f"results-{backend}.json"
        if path.exists():
            parts.append(section(json.loads(path.read_text())))
    (folder / "RESULTS.md").write_text("\n".join(parts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=[*BACKENDS, "both"], default="both")
    ap.add_argument(
        "--executions",
        type=int,
        help="executions per flow and mode (default: 200 Pass, 50 function)",
    )
    ap.add_argument("--pass-executions", type=int)
    ap.add_argument("--function-executions", type=int)
    ap.add_argument(
        "--pass-chains",
        type=int,
        help="chains of 20 for the Pass baseline (default: as many as executions)",
    )
    ap.add_argument(
        "--concurrency", type=int, default=10, help="executions in flight in the concurrent runs"
    )
    ap.add_argument("--flows", default="pass20,task10", help="which flows to run (comma-separated)")
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="complete runs per backend; figures are the median, with the range (default 3)",
    )
    ap.add_argument(
        "--results",
        default=str(BENCH),
        help="folder for results-<backend>.json and RESULTS.md (default: bench/)",
    )
    ap.add_argument(
        "--keep", action="store_true", help="keep the temporary folder (logs, SQLite, broker)"
    )
    # driver (internal)
    ap.add_argument("--driver", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--chain-dir", help=argparse.SUPPRESS)
    ap.add_argument("--worker-pgid", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--dbname", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.pass_executions = args.pass_executions or args.executions or 200
    args.function_executions = args.function_executions or args.executions or 50

    if args.driver:
        sys.path.insert(0, str(ROOT))
        driver(args)
        return

    def on_term(signum, frame):  # SIGTERM: unwind through the finally blocks (clean-up)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    backends = BACKENDS if args.backend == "both" else (args.backend,)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    failures = 0
    for backend in backends:
        try:
            repeats = []
            for n in range(max(1, args.repeat)):
                print(f"[{backend}] run {n + 1} of {args.repeat}", flush=True)
                repeats.append(run_backend(backend, args))
            data = aggregate(repeats) if len(repeats) > 1 else repeats[0]
        except Exception as exc:  # noqa: BLE001 - report and go on with the next backend
            failures += 1
            print(f"[{backend}] FAILED: {exc}", file=sys.stderr)
            continue
        (results / f"results-{backend}.json").write_text(json.dumps(data, indent=2) + "\n")
        print()
        print(section(data))
        for name, rep in data["logs"].items():
            if rep["count"]:
                print(f"{name}: {rep['count']} warning/error lines, e.g.:")
                for line in rep["first"][:5]:
                    print(f"    {line}")
        print()
    write_results_md(results)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
