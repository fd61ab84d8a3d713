"""Fixtures of the hostile-input suite (helpers are in ``support.py``)."""

from __future__ import annotations

import pytest

from tests.hostile.support import Timed


@pytest.fixture
def hostile(api_client) -> Timed:
    """The authenticated API client, each request timed (and bounded) in CPU seconds."""
    return Timed(api_client)
