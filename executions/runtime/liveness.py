"""Liveness rows: how the sweeper tells a dead worker from a slow one within seconds.

Every process that runs work items stamps its :class:`~executions.models.Heartbeat` row every
``FLOWSITE_WORKER_HEARTBEAT`` seconds from a daemon thread, with the database's clock. A worker
killed with SIGKILL stops stamping; once its row is older than ``FLOWSITE_WORKER_DEAD_AFTER``
the sweeper reclaims the attempts it held (``sweeper.reap_dead_workers``), whatever the
function's own timeout, instead of waiting for the attempt's lease (timeout + grace) to run out.

The id of a worker is ``<host>:<pid>`` of the process that runs the handler (a prefork child),
computed per process: a module-level constant would be the pool parent's pid in every child.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from django.conf import settings
from django.db import connection
from django.db.models.functions import Now

from ..models import Heartbeat, HeartbeatKind

log = logging.getLogger(__name__)

_HOST = socket.gethostname()


def worker_id() -> str:
    return f"{_HOST}:{os.getpid()}"


def is_local_and_dead(worker: str) -> bool:
    """True when ``worker`` names a process of this host that no longer exists (a prefork child
    the pool replaced after it died). Cheap, and only ever says "dead" for this host."""
    host, _, pid = worker.rpartition(":")
    if host != _HOST or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def stamp(name: str, kind: str) -> None:
    """Set ``name``'s row to the database's now (created on first use)."""
    updated = Heartbeat.objects.filter(name=name).update(last_seen=Now())
    if not updated:
        Heartbeat.objects.get_or_create(
            name=name, defaults={"kind": kind, "started_at": Now(), "last_seen": Now()}
        )


class _Beat(threading.Thread):
    def __init__(self, name: str):
        super().__init__(name="flowsite-liveness", daemon=True)
        self.worker = name
        self.pid = os.getpid()
        self.stopping = threading.Event()

    def run(self) -> None:
        interval = settings.FLOWSITE_WORKER_HEARTBEAT
        while not self.stopping.is_set():
            try:
                stamp(self.worker, HeartbeatKind.WORKER)
                wait = interval
            except Exception:  # noqa: BLE001 - database down: try again soon, never die
                log.warning("liveness: could not stamp %s", self.worker, exc_info=True)
                connection.close()
                # After an outage, stamp again quickly: the sweeper judges staleness.
                wait = min(interval, 1.0)
            self.stopping.wait(wait)
        connection.close()


_beat: _Beat | None = None
_lock = threading.Lock()
# Set in Celery worker processes (flowsite/celery.py, worker_init; inherited by prefork
# children): only they stamp rows. Work run in-process elsewhere (tests, a shell) does not.
ENABLED = False


def ensure_started() -> None:
    """Start this process's heartbeat thread if it is not running (idempotent, fork-safe: a
    child forked from a process with a running thread starts its own)."""
    global _beat
    if not ENABLED:
        return
    with _lock:
        if _beat is not None and _beat.pid == os.getpid() and _beat.is_alive():
            return
        # The first stamp is synchronous, so the row exists before this process claims
        # anything: the sweeper treats a running attempt whose worker has no row as orphaned.
        stamp(worker_id(), HeartbeatKind.WORKER)
        _beat = _Beat(worker_id())
        _beat.start()


def stop() -> None:
    """Stop stamping and remove this process's row (a clean shutdown is not a death)."""
    global _beat
    with _lock:
        if _beat is None or _beat.pid != os.getpid():
            return
        _beat.stopping.set()
        _beat = None
    try:
        Heartbeat.objects.filter(name=worker_id()).delete()
    except Exception:  # noqa: BLE001 - best effort at shutdown
        log.debug("liveness: could not remove %s", worker_id(), exc_info=True)
