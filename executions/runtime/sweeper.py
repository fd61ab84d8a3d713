"""The sweeper: fires due timers, reaps attempts whose worker died, re-publishes work nobody
claimed.

It runs as a thread of the beat process (started by the ``beat_init`` signal in
``flowsite/celery.py``), or as its own process (``manage.py flowsite_sweeper``), not as a task
in the worker pool: a sweep queued behind long-running function attempts would leave every
Wait, retry back-off, timeout and crashed-worker recovery waiting for a free slot. Running
more than one is harmless: every action it takes is a compare-and-set on the row it acts on.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections
from django.db.models import F
from django.db.models.functions import Now
from django.utils import timezone

from ..engine import events as ev
from ..models import Execution, Timer, WorkItem, WorkKind, WorkStatus
from . import publish
from .transition import transition

log = logging.getLogger(__name__)


def sweep(*, batch: int = 500) -> dict:
    """Fire due timers, reap lost attempts, re-publish unclaimed work. Safe to run anywhere and
    concurrently: every action is a compare-and-set on the row it acts on."""
    return {
        "timers": fire_due_timers(batch=batch),
        "lost": reap_lost_work(batch=batch),
        "redispatched": redispatch_pending(batch=batch),
    }


def _sweep_one(execution_id: int, event: ev.Event, claim) -> bool:
    """One sweeper transition; a failure is logged and skipped so that one bad row cannot stop
    every other timer. A database outage ends the round (the next one retries)."""
    try:
        return transition(execution_id, event, claim=claim) is not None
    except (OperationalError, InterfaceError):
        raise
    except Exception:
        log.exception("sweeper: %r on execution %s failed; skipped this round", event, execution_id)
        return False


def fire_due_timers(*, batch: int) -> int:
    # Due-ness is judged by the database's clock (one clock for every machine).
    due = list(
        Timer.objects.filter(fired_at__isnull=True, due_at__lte=Now())
        .order_by("due_at")
        .values_list("pk", "execution_id", "key")[:batch]
    )
    fired = 0
    for pk, execution_id, key in due:

        def claim(execution: Execution, now: datetime, pk=pk) -> bool:
            return bool(Timer.objects.filter(pk=pk, fired_at__isnull=True).update(fired_at=now))

        if _sweep_one(execution_id, ev.TimerFired(key), claim):
            fired += 1
    return fired


def reap_lost_work(*, batch: int) -> int:
    # A detached (async-submitted) run whose worker died: nothing waits for it; record it.
    WorkItem.objects.filter(
        kind=WorkKind.DETACHED, status=WorkStatus.RUNNING, lease_until__lte=Now()
    ).update(status=WorkStatus.LOST, finished_at=timezone.now())
    lost = list(
        WorkItem.objects.filter(
            kind=WorkKind.INVOKE, status=WorkStatus.RUNNING, lease_until__lte=Now()
        ).values_list("pk", "execution_id", "entry_id", "attempt")[:batch]
    )
    count = 0
    for pk, execution_id, entry_id, attempt in lost:

        def claim(execution: Execution, now: datetime, pk=pk) -> bool:
            return bool(
                WorkItem.objects.filter(pk=pk, status=WorkStatus.RUNNING).update(
                    status=WorkStatus.LOST, finished_at=now
                )
            )

        if _sweep_one(execution_id, ev.TaskLost(entry_id, attempt), claim):
            count += 1
            log.warning("work item %s (execution %s) lost its worker", pk, execution_id)
    return count


def redispatch_pending(*, batch: int) -> int:
    now = timezone.now()
    due = list(
        WorkItem.objects.filter(status=WorkStatus.PENDING, next_dispatch_at__lte=Now())
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


class Sweeper(threading.Thread):
    def __init__(self, interval: float | None = None):
        super().__init__(name="flowsite-sweeper", daemon=True)
        self.interval = interval or settings.FLOWSITE_SWEEP_INTERVAL
        self.stopping = threading.Event()

    def run(self) -> None:
        log.info("sweeper running every %.2f s", self.interval)
        while not self.stopping.is_set():
            self.sweep_once()
            self.stopping.wait(self.interval)

    def sweep_once(self) -> dict | None:
        # Drop connections the database closed (a restart) before and after each round.
        close_old_connections()
        try:
            counts = sweep()
        except Exception:  # noqa: BLE001 - a sweep fails when the database is down; retry later
            log.exception("sweep failed; retrying in %.2f s", self.interval)
            counts = None
        finally:
            close_old_connections()
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
