"""Settings for the test run (pyproject.toml's ``DJANGO_SETTINGS_MODULE``): flowsite's own, with
a test-only secret key when the environment has none.

pytest-django loads the settings before any conftest.py is imported, and DEBUG is off by default,
so without a key here every test run would need ``DJANGO_SECRET_KEY`` from the developer's shell.
It goes into ``os.environ`` (not only into ``SECRET_KEY``) so that the subprocesses tests start
(``manage.py``, ``python -c``) inherit it too.
"""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-secret-key-" + "not-secret-" * 4)

from flowsite.settings import *  # noqa: E402, F403
