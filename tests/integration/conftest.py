"""Fixtures for the integration suite (``pytest -m integration``).

``system`` is module-scoped: each test module gets one fresh :class:`~.harness.System` (its
own data dir, database, broker, web server, workers and beat), configured by the module's
optional ``SYSTEM_OPTIONS`` dict (``workers``, ``concurrency``, ``faults``, ``extra_env``).
These tests never touch pytest-django's test database: the system under test runs as separate
processes and is reached over HTTP and through its own database.
"""

from __future__ import annotations

import pytest

from .harness import System


@pytest.fixture(scope="module")
def system(request):
    options = dict(getattr(request.module, "SYSTEM_OPTIONS", {}))
    name = request.module.__name__.rsplit(".", 1)[-1]
    sys_ = System(name, **options)
    failed_before = request.session.testsfailed
    try:
        sys_.boot()
    except BaseException:
        sys_.stop(keep_data=True)
        raise
    yield sys_
    # Keep the data dir (database, broker folder, ledger) when something failed here.
    sys_.stop(keep_data=request.session.testsfailed > failed_before)
