"""The sweeper: fires due timers, reclaims attempts whose worker died, re-publishes work nobody
claimed, and stamps its own liveness row for ``/healthz``.

It runs as its own process (``manage.py flowsite_sweeper``, recommended in production) or as a
thread of the beat process (started by the ``beat_init`` signal in ``flowsite/celery.py``) —
never as a task in the worker pool: a sweep queued behind long-running function attempts would
leave every Wait, retry back-off, timeout and crashed-worker recovery waiting for a free slot.
Running more than one is harmless: every action it takes is a compare-and-set on the row it
acts on, judged by the database's clock.

Outages: when a round fails on the database, or the broker was unreachable or restarted (a
Redis restart without persistence loses every queued message), the first good round after it
re-publishes every pending work item at once instead of waiting for each one's re-publish
deadline, so work resumes within a round or two of the service coming back.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections
from django.db.models import F
from django.db.models.functions import Now

from ..engine import events as ev
from ..models import Execution, Heartbeat, HeartbeatKind, Timer, WorkItem, WorkKind, WorkStatus
from . import liveness, publish
from .transition import db_now, transition

log = logging.getLogger(__name__)

DB_ERRORS = (OperationalError, InterfaceError)


def sweep(*, batch: int = 500, reap_dead: bool = True, republish_all: bool = False) -> dict:
    """One round. ``reap_dead``: also reclaim the attempts of workers whose liveness row went
    stale (the loop turns it off for a while after a database outage, when every row is stale
    only because nobody could write). ``republish_all``: re-publish every pending item now."""
    counts = {
        "timers": fire_due_timers(batch=batch),
        "lost": reap_lost_work(batch=batch),
        "dead": reap_dead_workers(batch=batch) if reap_dead else 0,
    }
    if republish_all:
        counts["republished"] = republish_pending(batch=batch * 10)
    else:
        counts["redispatched"] = redispatch_pending(batch=batch)
    return counts


def _sweep_one(execution_id: int, event: ev.Event, claim) -> bool:
    """One sweeper transition; a failure is logged and skipped so that one bad row cannot stop
    every other timer. A database outage ends the round (the next one retries)."""
    try:
        return transition(execution_id, event, claim=claim) is not None
    except DB_ERRORS:
        raise
    except Exception:
        log.exception("sweeper: %r on execution %s failed; skipped this round", event, execution_id)
        return False


# --- timers ------------------------------------------------------------------------------------


def fire_due_timers(*, batch: int) -> int:
    # Due-ness is judged by the database's clock (one clock for every machine), twice: once to
    # find candidates, and again in the claim, under the execution's lock: a heartbeat that
    # moved the timer in between wins, and the timer does not fire.
    due = list(
        Timer.objects.filter(fired_at__isnull=True, due_at__lte=Now())
        .order_by("due_at")
        .values_list("pk", "execution_id", "key")[:batch]
    )
    fired = 0
    for pk, execution_id, key in due:

        def claim(execution: Execution, now: datetime, pk=pk) -> bool:
            return bool(
                Timer.objects.filter(pk=pk, fired_at__isnull=True, due_at__lte=now).update(
                    fired_at=now
                )
            )

        if _sweep_one(execution_id, ev.TimerFired(key), claim):
            fired += 1
    return fired


# --- lost attempts -----------------------------------------------------------------------------


def report_lost(pk: int, execution_id: int, entry_id: int, attempt: int) -> bool:
    """Tell the engine that a running attempt lost its worker (it re-runs or fails it)."""

    def claim(execution: Execution, now: datetime) -> bool:
        return bool(
            WorkItem.objects.filter(pk=pk, status=WorkStatus.RUNNING).update(
                status=WorkStatus.LOST, finished_at=now, payload=None
            )
        )

    lost = _sweep_one(execution_id, ev.TaskLost(entry_id, attempt), claim)
    if lost:
        log.warning("work item %s (execution %s) lost its worker", pk, execution_id)
    return lost


def _reclaim(items: list[tuple]) -> int:
    count = 0
    for pk, execution_id, kind, entry_id, attempt in items:
        if kind == WorkKind.DETACHED:
            # Nothing waits for an async-submitted run: record it as lost.
            count += WorkItem.objects.filter(pk=pk, status=WorkStatus.RUNNING).update(
                status=WorkStatus.LOST, finished_at=Now()
            )
        elif report_lost(pk, execution_id, entry_id, attempt):
            count += 1
    return count


_RUNNING_FIELDS = ("pk", "execution_id", "kind", "entry_id", "attempt")


def reap_lost_work(*, batch: int) -> int:
    """Attempts whose lease ran out: a hung handler, or a worker that kept stamping its liveness
    row without finishing (the lease is the function's timeout plus a grace)."""
    lost = list(
        WorkItem.objects.filter(
            kind__in=(WorkKind.INVOKE, WorkKind.DETACHED),
            status=WorkStatus.RUNNING,
            lease_until__lte=Now(),
        ).values_list(*_RUNNING_FIELDS)[:batch]
    )
    return _reclaim(lost)


def reap_dead_workers(*, batch: int) -> int:
    """Attempts held by a worker whose liveness row is older than FLOWSITE_WORKER_DEAD_AFTER,
    or missing (a cleanly stopped worker removes its row; one killed mid-shutdown leaves its
    attempts behind). Attempts started less than that long ago are left alone: their worker
    may not have stamped since."""
    cutoff = db_now() - timedelta(seconds=settings.FLOWSITE_WORKER_DEAD_AFTER)
    live = Heartbeat.objects.filter(kind=HeartbeatKind.WORKER, last_seen__gte=cutoff).values("name")
    orphaned = list(
        WorkItem.objects.filter(
            kind__in=(WorkKind.INVOKE, WorkKind.DETACHED),
            status=WorkStatus.RUNNING,
            started_at__lt=cutoff,
        )
        .exclude(worker__in=live)
        .values_list(*_RUNNING_FIELDS)[:batch]
    )
    return _reclaim(orphaned) + _fail_orphaned_invocations(live, cutoff)


def _fail_orphaned_invocations(live, cutoff: datetime) -> int:
    """Direct invocations (``functions.Invocation``) a dead worker was running: failed with
    ``FC.WorkerLost`` so the caller waiting for them hears it now, not at its timeout. They are
    not re-run: the caller (a person or a script) decides whether to call again."""
    from functions.models import Invocation, InvocationStatus  # noqa: PLC0415 - app order

    return (
        Invocation.objects.filter(status=InvocationStatus.RUNNING, started_at__lt=cutoff)
        .exclude(worker__in=live)
        .update(
            status=InvocationStatus.FAILED,
            finished_at=Now(),
            error="FC.WorkerLost",
            cause="the worker running the invocation died before it finished",
        )
    )


# --- re-publishing -----------------------------------------------------------------------------


def redispatch_pending(*, batch: int) -> int:
    """Re-publish pending items whose re-publish deadline passed (a crash between commit and
    publish, a message the broker lost), backing off per item."""
    now = db_now()
    due = list(
        WorkItem.objects.filter(status=WorkStatus.PENDING, next_dispatch_at__lte=now)
        .order_by("next_dispatch_at")
        .values_list("pk", "dispatch_count")[:batch]
    )
    ids = []
    for pk, count in due:
        # Back off: an item still unclaimed after several sends is most likely stuck behind a
        # long queue, and more copies would only make that queue longer.
        delay = settings.FLOWSITE_REDISPATCH_AFTER * min(2**count, 32)
        updated = WorkItem.objects.filter(
            pk=pk, status=WorkStatus.PENDING, dispatch_count=count
        ).update(
            dispatch_count=F("dispatch_count") + 1, next_dispatch_at=now + timedelta(seconds=delay)
        )
        if updated:
            ids.append(pk)
    if ids:
        log.info("re-publishing %d unclaimed work items", len(ids))
        publish.dispatch(ids, after_commit=False)
    return len(ids)


def republish_pending(*, batch: int) -> int:
    """After an outage: re-publish every pending item now. Items whose message survived get a
    duplicate, which finds the item claimed and does nothing."""
    now = db_now()
    ids = list(
        WorkItem.objects.filter(status=WorkStatus.PENDING)
        .order_by("pk")
        .values_list("pk", flat=True)[:batch]
    )
    if ids:
        WorkItem.objects.filter(pk__in=ids, status=WorkStatus.PENDING).update(
            next_dispatch_at=publish.redispatch_at(now)
        )
        log.warning("outage over: re-publishing %d pending work items", len(ids))
        publish.dispatch(ids, after_commit=False)
    return len(ids)


# --- the broker --------------------------------------------------------------------------------


class BrokerWatch:
    """Notices that the broker was unreachable or restarted since the last look.

    Redis is asked for its ``run_id`` (a restart without persistence loses every message, and
    may happen between two looks); other brokers are known to have failed when the kept
    connection breaks. The embedded broker keeps its messages in files: nothing to watch.
    """

    def __init__(self):
        from celery import current_app  # noqa: PLC0415

        self.app = current_app
        self.conn = None
        self.run_id: str | None = None
        scheme = self.app.conf.broker_url.split("://", 1)[0]
        self.enabled = scheme not in ("flowsitefs", "filesystem", "memory")
        self.redis = scheme.startswith("redis") or scheme.startswith("rediss")

    def look(self) -> bool:
        """True when the broker restarted or came back since the last look (or never was seen)."""
        if not self.enabled:
            return False
        try:
            if self.conn is None:
                self.conn = self.app.connection_for_write()
                self.conn.ensure_connection(max_retries=1, timeout=2)
            if self.redis:
                run_id = self.conn.default_channel.client.info("server")["run_id"]
            else:
                self.conn.drain_events(timeout=0.01)
                run_id = "up"
        except TimeoutError:
            run_id = "up"  # the connection is fine, there was simply nothing to read
        except Exception:  # noqa: BLE001 - any broker error: down for now
            self.close()
            if self.run_id is not None:
                log.warning("broker unreachable; will re-publish when it is back")
            self.run_id = None
            return False
        changed = run_id != self.run_id
        self.run_id = run_id
        return changed

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.release()
        self.conn = None


# --- the loop ----------------------------------------------------------------------------------


def sweeper_name() -> str:
    return f"sweeper:{liveness.worker_id()}"


class Sweeper(threading.Thread):
    """Sweeps every ``FLOWSITE_SWEEP_INTERVAL`` seconds until stopped."""

    def __init__(self, interval: float | None = None):
        super().__init__(name="flowsite-sweeper", daemon=True)
        self.interval = interval or settings.FLOWSITE_SWEEP_INTERVAL
        self.stopping = threading.Event()
        self.broker = BrokerWatch()
        # Monotonic time since which the database has answered every round. Liveness rows are
        # judged only once it has been up long enough for every live worker to stamp again.
        self.db_up_since = time.monotonic()
        self.outage = True  # at start-up, assume messages may have been lost meanwhile
        self.rounds = 0

    def run(self) -> None:
        log.info("sweeper running every %.2f s", self.interval)
        while not self.stopping.is_set():
            self.sweep_once()
            self.stopping.wait(self.interval)
        self.broker.close()

    def sweep_once(self) -> dict | None:
        # Drop connections the database closed (a restart) before and after each round.
        close_old_connections()
        if self.broker.look():
            self.outage = True
        # After an outage (or at start, when one may have just ended) every live worker stamps
        # its row within a second or two (its thread retries every second while stamping
        # fails); give them a full heartbeat interval before any row counts as stale.
        settle = settings.FLOWSITE_WORKER_HEARTBEAT + 2.0
        try:
            liveness.stamp(sweeper_name(), HeartbeatKind.SWEEPER)
            counts = sweep(
                reap_dead=time.monotonic() - self.db_up_since >= settle,
                republish_all=self.outage,
            )
            self.outage = False
        except DB_ERRORS:
            log.warning("sweep failed: database unavailable; retrying in %.2f s", self.interval)
            self.db_up_since = time.monotonic()
            self.outage = True
            counts = None
        except Exception:  # noqa: BLE001 - never let the loop die
            log.exception("sweep failed; retrying in %.2f s", self.interval)
            counts = None
        finally:
            close_old_connections()
        self.rounds += 1
        if counts and any(counts.values()):
            log.info("sweep: %s", counts)
        return counts

    def stop(self) -> None:
        self.stopping.set()


_sweeper: Sweeper | None = None


def start_in_background() -> Sweeper:
    global _sweeper
    if _sweeper is None or not _sweeper.is_alive():
        _sweeper = Sweeper()
        _sweeper.start()
    return _sweeper
