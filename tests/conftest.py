# Shared pytest fixtures for flowsite.
#
# Notes:
# * pytest loads tests/settings.py (pyproject's DJANGO_SETTINGS_MODULE): flowsite.settings plus
#   a test-only DJANGO_SECRET_KEY in os.environ (DEBUG is off by default, and pytest-django
#   loads the settings before any conftest.py). Subprocesses inherit that key.
# * pytest-django runs with DEBUG=False, so the default whitenoise
#   CompressedManifestStaticFilesStorage needs `collectstatic` and its hashed names 404 under
#   live_server: tests that render {% static %} should switch STORAGES["staticfiles"] to
#   "django.contrib.staticfiles.storage.StaticFilesStorage" (see tests/test_smoke.py), or set
#   FLOWSITE_STATICFILES_STORAGE before Django is configured.
# * With live_server + Playwright set DJANGO_ALLOW_ASYNC_UNSAFE=true and launch Debian's
#   /usr/bin/chromium (never `playwright install`).
# * The SQLite test database is in memory by default; integration tests that start real
#   worker processes need a file database they can share (DATABASES["default"]["TEST"]["NAME"]).

# --- API fixtures (tests/api) ------------------------------------------------------------------

import os  # noqa: E402
import re  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture
def user(db):
    """A user with the admin role: may do everything (role limits: ``role_client``)."""
    from tests.factories import UserFactory

    return UserFactory(roles=["admin"])


@pytest.fixture
def api_client(user):
    """A DRF APIClient authenticated as ``user`` (force_authenticate: no CSRF, no token)."""
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def anon_client():
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def staff_user(db):
    """A user with the admin role (may create, change and delete flows and functions)."""
    from tests.factories import UserFactory

    return UserFactory(is_staff=True, roles=["admin"])


@pytest.fixture
def staff_client(staff_user):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(staff_user)
    return client


@pytest.fixture
def role_client(db):
    """``role_client("operator")``: an APIClient of a new user with those roles (none: ``""``)."""
    from rest_framework.test import APIClient

    from tests.factories import UserFactory

    def make(*roles: str) -> APIClient:
        client = APIClient()
        client.force_authenticate(UserFactory(roles=[r for r in roles if r]))
        return client

    return make


# --- functions folders -------------------------------------------------------------------------

# Handlers that tests register live here (a functions folder, like demo/functions), e.g.
# "apihandlers.echo", "rthandlers.record"; see functions/loader.py for why they must.
TEST_FUNCTIONS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "functions/handlers")


@pytest.fixture(scope="session", autouse=True)
def _test_functions_folder():
    """Add the tests' handler folder to FLOWSITE_FUNCTIONS_PATH for the whole run (pytest-django
    loads the settings before any conftest, so the environment is too late for this)."""
    from django.conf import settings
    from django.test import override_settings

    folders = [*settings.FLOWSITE_FUNCTIONS_PATH, TEST_FUNCTIONS_DIR]
    with override_settings(FLOWSITE_FUNCTIONS_PATH=folders):
        yield


# --- no response ever carries a live task token ------------------------------------------------

TOKENS_SEEN: dict[str, str] = {}  # the secret part of each token (its 40 hex digits) -> token
LEAKS: list[tuple[str, str]] = []
# Every run of 40 hex digits in a body, overlapping ones included: one pass over the body
# whatever the number of tokens seen (a substring test per token made each response cost
# O(tokens x body), seconds for a large body late in the run).
_HEX40 = re.compile(r"(?=([0-9a-f]{40}))")


@pytest.fixture(scope="session", autouse=True)
def _watch_task_tokens():
    """Record every task token flowsite derives during the run (the real, secret ones) and
    check every response Django produces — test client, API client, live server — for any of
    them (for its secret part: the MAC alone is as good as the token). A leak fails the test
    that caused it (``_no_token_leak``)."""
    from django.core.handlers.base import BaseHandler

    from executions.runtime import transition

    real_token = transition.task_token

    def recording(*args, **kwargs):
        token = real_token(*args, **kwargs)
        TOKENS_SEEN[token.rsplit(".", 1)[-1]] = token
        return token

    real_get_response = BaseHandler.get_response

    def scanned(self, request):
        response = real_get_response(self, request)
        if TOKENS_SEEN and not getattr(response, "streaming", False):
            body = response.content.decode("utf-8", errors="replace")
            for mac in _HEX40.findall(body):
                if mac in TOKENS_SEEN:
                    LEAKS.append((request.get_full_path(), TOKENS_SEEN[mac]))
        return response

    patches = [
        (transition, "task_token", recording),
        (BaseHandler, "get_response", scanned),
    ]
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
    for obj, name, value in patches:
        setattr(obj, name, value)
    yield
    for obj, name, value in saved:
        setattr(obj, name, value)


@pytest.fixture(autouse=True)
def _no_token_leak():
    LEAKS.clear()
    yield
    assert not LEAKS, f"a response carried a live task token: {LEAKS[:3]}"
