"""/healthz tells the truth about the sweeper: with beat (which hosts the sweeper thread by
default) killed, it turns 503 within three sweep intervals."""

from __future__ import annotations

import time

import pytest
import requests

from .harness import ENGINE_ENV, wait_until

pytestmark = pytest.mark.integration

SWEEP = float(ENGINE_ENV["FLOWSITE_SWEEP_INTERVAL"])


def test_healthz_turns_503_when_beat_stops(system):
    ok = requests.get(system.base_url + "/healthz", timeout=5)
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["status"] == "ok"
    assert body["sweeper"]["age_seconds"] <= 3 * SWEEP
    assert body["workers"] >= 1  # prefork children stamp liveness rows

    killed_at = time.time()
    system.kill(system.beat)
    system.beat = None

    def unhealthy():
        r = requests.get(system.base_url + "/healthz", timeout=5)
        # (a Response is falsy for an error status: return its body)
        return r.json() if r.status_code == 503 else None

    body = wait_until(unhealthy, 10, 0.05, "/healthz to turn 503", system.describe)
    took = time.time() - killed_at
    print(f"\n/healthz turned 503 {took:.2f}s after beat was killed (sweep every {SWEEP}s)")
    assert body["status"] == "error"
    # The last round was at most one interval before the kill; allow one poll of slack.
    assert took <= 3 * SWEEP + 0.5, took
