"""Fixtures of the security tests, and the totals they report at the end of a run."""

from __future__ import annotations

import pytest

from . import support

# Lines the tests want shown after the run whatever its verbosity (the matrix's totals).
SUMMARY: list[str] = []


@pytest.fixture(autouse=True)
def _security_setup(settings):
    # {% static %} must resolve without collectstatic; our handlers' folder is a functions
    # folder (read per call, so the settings fixture's override is enough).
    settings.STORAGES = support.PLAIN_STATIC
    settings.FLOWSITE_FUNCTIONS_PATH = [*settings.FLOWSITE_FUNCTIONS_PATH, support.HANDLERS_DIR]


@pytest.fixture
def worker_runs(monkeypatch):
    """A direct invocation's wait runs the worker's side instead of sleeping."""
    from functions import services

    monkeypatch.setattr(services, "_pause", lambda seconds: support.run_invocations())


def pytest_terminal_summary(terminalreporter):
    if SUMMARY:
        terminalreporter.section("security")
        for line in SUMMARY:
            terminalreporter.write_line(line)
