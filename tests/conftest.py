# Shared pytest fixtures for flowsite (the lead fills this in).
#
# Notes for whoever does:
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

import pytest  # noqa: E402


@pytest.fixture
def user(db):
    from tests.factories import UserFactory

    return UserFactory()


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
