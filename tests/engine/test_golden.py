"""Golden histories: each ``golden/*.yaml`` keeps a flow, its input and the exact history the
engine must produce (``event_id schedule_event_id type step``). A change in the engine that
alters a history fails here and must be looked at; regenerate deliberately with
``FLOWSITE_REGOLD=1 pytest tests/engine/test_golden.py`` and review the diff."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from .sim import HandlerError, Sim

GOLDEN = Path(__file__).parent / "golden"


def _boom(event):
    raise HandlerError("Boom", "always")


def _count():
    state = {"n": 0}

    def poll(event):
        state["n"] += 1
        return {
            "status": "done" if state["n"] >= event.get("need", 2) else "running",
            "polls": state["n"],
        }

    return poll


def functions():
    return {
        "echo": lambda e: e,
        "submit": lambda e: {"job": "job-1"},
        "poll": _count(),
        "boom": _boom,
        "double": lambda e: {"n": e["n"] * 2},
    }


CASES = sorted(GOLDEN.glob("*.yaml"))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden_history(path: Path):
    case = yaml.safe_load(path.read_text())
    sim = Sim(case["definition"], functions()).run(case.get("input", {}))
    sim.check_invariants()
    got = {
        "status": sim.status,
        "output": sim.output,
        "error": list(sim.error or ("", ""))[:1],
        "history": sim.compact(),
    }
    if os.environ.get("FLOWSITE_REGOLD"):
        case.update(got)
        path.write_text(yaml.safe_dump(case, sort_keys=False, allow_unicode=True, width=100))
        pytest.skip("regenerated")
    assert got["history"] == case["history"]
    assert got["status"] == case["status"]
    assert got["output"] == case["output"]
    assert got["error"] == case["error"]


def test_there_are_golden_cases():
    assert len(CASES) >= 4
