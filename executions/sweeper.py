"""The sweeper loop: fires due timers, reaps attempts whose worker died, re-publishes work
nobody claimed (``runtime.sweep``).

It runs as a thread of the beat process (started by the ``beat_init`` signal in
``flowsite/celery.py``), not as a task in the worker pool: a sweep queued behind long-running
function attempts would leave every Wait, retry back-off, timeout and crashed-worker recovery
waiting for a free slot. Beat runs once per installation; a second sweeper anywhere (the
``flowsite_sweeper`` command, the ``executions.sweep`` task) is harmless, as every action it
takes is a compare-and-set.
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.db import close_old_connections

from . import runtime

log = logging.getLogger(__name__)


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
            counts = runtime.sweep()
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
