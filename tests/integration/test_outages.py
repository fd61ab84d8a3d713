"""F3/F5: the database and the broker restarted (and the database stopped for 20 s) under load.

The system runs on PostgreSQL + Redis of its own (a private cluster and a private redis-server,
so the machine's shared services are never touched), with the sweeper as its own process as
the README recommends for production. Under a steady load of short task chains:

* every execution ends Succeeded and no handler runs twice (the ledger counts real runs);
* progress resumes within 5 s of the service being back, and never stalls longer than 5 s
  after that (gaps between consecutive history events, system-wide);
* while the database is down the web answers 503, never 500, and no 2xx start is lost.

On the embedded default (SQLite, file broker) there is no server to restart: skipped there.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
import requests

from . import flows
from .harness import wait_until

pytestmark = pytest.mark.integration

SYSTEM_OPTIONS = {
    "workers": 2,
    "concurrency": 2,
    "private_database": True,
    "sweeper_process": True,
}
STEPS = 4
STEP_SECONDS = 0.3
N = 24
MAX_STALL = 5.0


def chain(name: str) -> str:
    states = ""
    for i in range(STEPS):
        following = f"S{i + 1}" if i + 1 < STEPS else None
        states += flows.task(f"S{i}", "it_step", following, sleep=STEP_SECONDS)
    return flows.flow(name, "S0", states)


@pytest.fixture(scope="module")
def loaded(system):
    if not system.is_pg or system.broker_kind != "redis":
        pytest.skip("restarts a PostgreSQL server and a Redis server (the PostgreSQL+Redis run)")
    system.create_function("it_step", f"{flows.HANDLERS}.work", timeout_seconds=60)
    return system


class Starter(threading.Thread):
    """Keeps starting executions (one every 0.2 s) during an outage; records every answer."""

    def __init__(self, system, flow: str, prefix: str):
        super().__init__(daemon=True)
        self.system, self.flow, self.prefix = system, flow, prefix
        self.codes: Counter = Counter()
        self.stopping = threading.Event()
        self.session = requests.Session()
        self.session.headers.update(system.session.headers)

    def run(self) -> None:
        i = 0
        while not self.stopping.is_set():
            name = f"{self.prefix}-{i}"
            i += 1
            try:
                r = self.session.post(
                    f"{self.system.base_url}/api/v1/flows/{self.flow}/executions/",
                    json={"name": name, "input": {}},
                    timeout=30,
                )
                self.codes[r.status_code] += 1
                if r.status_code in (200, 201):
                    self.system.started.append((self.flow, name))
            except requests.RequestException as exc:
                self.codes[type(exc).__name__] += 1
            self.stopping.wait(0.2)


def _outage(system, flow: str, names: list[str], down, up, *, down_for: float = 0.0):
    """Start the load, take the service down 1.5 s in, bring it back; return the moment it came
    back and what the starter thread saw meanwhile."""
    system.create_flow(flow, chain(flow))
    system.start_many(flow, names)
    wait_until(
        lambda: len({r["execution"] for r in system.ledger()}) >= 4,
        30,
        0.05,
        "the load to be running",
        system.describe,
    )
    starter = Starter(system, flow, f"{flow}-during")
    starter.start()
    down()
    if down_for:
        time.sleep(down_for)  # the scenario: the service stays down this long
    up()
    back_at = time.time()
    starter.stopping.set()
    starter.join(60)
    return back_at, starter


def _check(system, flow: str, back_at: float, starter: Starter) -> dict:
    names = {name for f, name in system.started if f == flow}
    total = len(names)
    statuses = system.wait_all_closed(flow, total, timeout=180)
    assert statuses == {"Succeeded": total}, statuses
    # No handler ran twice: one ledger start per (execution, step).
    runs = Counter(
        (r["execution"], r["step"])
        for r in system.ledger()
        if r["phase"] == "start" and r["execution"] in names
    )
    twice = {k: n for k, n in runs.items() if n > 1}
    assert not twice, f"handlers ran more than once: {twice}"
    assert len(runs) == total * STEPS
    # The web never answered 500 (503 while the database was down is the contract).
    assert not starter.codes[500], starter.codes
    # Progress: the first event after the service is back, and every gap after it.
    times = system.event_times(back_at - 0.001)
    assert times, "nothing happened after the service came back"
    first = times[0] - back_at
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    worst = max([first, *gaps])
    assert first <= MAX_STALL, f"first progress {first:.1f}s after the service was back"
    assert worst <= MAX_STALL, f"progress stalled {worst:.1f}s after the service was back"
    system.assert_invariants()
    return {"executions": total, "first": round(first, 2), "worst_gap": round(worst, 2)}


def test_postgresql_restart_under_load(loaded):
    names = [f"pgr-{i}" for i in range(N)]
    back_at, starter = _outage(
        loaded, "it_pg_restart", names, loaded.stop_database, loaded.start_database
    )
    figures = _check(loaded, "it_pg_restart", back_at, starter)
    print(f"\nPostgreSQL restart: {figures}, web answers during it: {dict(starter.codes)}")


def test_postgresql_down_for_20_seconds_under_load(loaded):
    names = [f"pgd-{i}" for i in range(N)]
    back_at, starter = _outage(
        loaded,
        "it_pg_down",
        names,
        loaded.stop_database,
        loaded.start_database,
        down_for=20,
    )
    # The starter saw the outage: 503s, never 500s.
    assert starter.codes[503] > 0, starter.codes
    figures = _check(loaded, "it_pg_down", back_at, starter)
    print(f"\nPostgreSQL down 20 s: {figures}, web answers during it: {dict(starter.codes)}")


def test_redis_restart_under_load(loaded):
    """Redis runs without persistence: the restart loses every queued message; the sweeper sees
    the new server (its run_id) and re-publishes every pending work item at once."""
    names = [f"rr-{i}" for i in range(N)]
    back_at, starter = _outage(
        loaded, "it_redis_restart", names, loaded.stop_broker, loaded.start_broker
    )
    figures = _check(loaded, "it_redis_restart", back_at, starter)
    print(f"\nRedis restart: {figures}, web answers during it: {dict(starter.codes)}")


def test_the_audit_log_refuses_update_and_delete_in_postgresql(loaded):
    """Beyond the ORM's refusal: a trigger makes the audit table append-only for raw SQL too."""
    import psycopg

    loaded.create_flow("it_audited", chain("it_audited"))
    assert loaded.scalar("SELECT COUNT(*) FROM audit_auditentry WHERE action = 'flow.create'")
    for statement in (
        "UPDATE audit_auditentry SET action = 'rewritten'",
        "DELETE FROM audit_auditentry",
    ):
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            loaded.sql(statement)
    assert not loaded.scalar("SELECT COUNT(*) FROM audit_auditentry WHERE action = 'rewritten'")
