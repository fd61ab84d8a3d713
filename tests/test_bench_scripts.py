"""The benchmark scripts still run: each one, at a toy size, in its own process (the way it is
used), printing the figures it exists for. Nothing here is timed; figures come from full runs
(bench/README.md). A script that no test runs rots unseen (two did when roles landed)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_script(*argv: str) -> str:
    done = subprocess.run(
        [sys.executable, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env={k: v for k, v in __import__("os").environ.items() if k != "DJANGO_SETTINGS_MODULE"},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


def test_map_bytes_prints_bytes_per_item_for_each_size():
    out = run_script("bench/map_bytes.py", "--sizes", "4,8")
    rows = [line.split() for line in out.splitlines() if re.match(r"\s+\d+\s+[\d,]+\s", line)]
    assert [row[0] for row in rows] == ["4", "8"]
    for row in rows:
        assert int(row[1].replace(",", "")) > 0 and int(row[2].replace(",", "")) > 0


def test_auth_prints_token_and_basic_starts_per_second():
    out = run_script("bench/auth.py", "--starts", "16", "--runs", "1", "--uncached", "2")
    for label in ("Token", "Basic (cached)", "Basic (uncached, 1 run)"):
        line = next(line for line in out.splitlines() if line.startswith(label))
        assert float(line[len(label) :].split()[0]) > 0, line
    assert re.search(r"Basic / Token \(medians\): \d+\.\d\d", out)
