"""Handler code never runs in a web process: the guard, and who sets it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowsite.access import SYSTEM
from functions import loader, process, services, tasks
from functions.models import Invocation, InvocationStatus

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def web_process(monkeypatch):
    monkeypatch.setattr(process, "_web_process", True)


@pytest.fixture
def canary(tmp_path, settings):
    """A handler whose module writes ``marker`` when loaded and when called."""
    marker = tmp_path / "marker"
    folder = tmp_path / "fns"
    folder.mkdir()
    (folder / "web_canary.py").write_text(
        "import pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text('loaded')\n"
        "def run(event, context):\n"
        f"    pathlib.Path({str(marker)!r}).write_text('called')\n"
    )
    settings.FLOWSITE_FUNCTIONS_PATH = [str(folder)]
    return marker


def test_nothing_runs_handler_code_in_a_web_process(canary, web_process):
    function = services.function_create(name="c", handler="web_canary.run", actor=SYSTEM)
    for attempt in (
        lambda: services.invoke(function, b"{}"),
        lambda: services.invoke("c", b"{}"),
        lambda: loader.load("web_canary.run"),
        lambda: loader.load_module("web_canary"),
    ):
        with pytest.raises(process.HandlerInWebProcess) as caught:
            attempt()
        assert (caught.value.code, caught.value.status) == ("HandlerInWebProcess", 500)
    assert not canary.exists()


def test_a_task_run_eagerly_in_a_web_process_is_refused_before_it_claims(canary, web_process):
    # e.g. CELERY_TASK_ALWAYS_EAGER turned on by mistake: the row must stay claimable.
    function = services.function_create(name="c", handler="web_canary.run", actor=SYSTEM)
    invocation = services.invocation_submit(function=function, payload=b"{}", actor=SYSTEM)
    with pytest.raises(process.HandlerInWebProcess):
        tasks.run_invocation(invocation.pk)
    invocation.refresh_from_db()
    assert invocation.status == InvocationStatus.ENQUEUED
    assert not canary.exists()


def test_outside_a_web_process_the_same_calls_run(canary):
    services.function_create(name="c", handler="web_canary.run", actor=SYSTEM)
    assert services.invoke("c", b"{}").ok
    assert canary.read_text() == "called"


def test_a_created_function_is_checked_without_loading_its_module(canary, web_process):
    # The save-time check works in the web process because it never imports anything.
    services.function_create(name="c", handler="web_canary.run", actor=SYSTEM)
    assert not canary.exists()
    assert Invocation.objects.count() == 0


def test_the_wsgi_entry_point_marks_its_process():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": os.environ["DJANGO_SETTINGS_MODULE"]}
    code = (
        "from functions import process\n"
        "before = process.is_web_process()\n"
        "import flowsite.wsgi\n"
        "print(before, process.is_web_process())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "True"]
