"""flowsite settings: one file, everything that varies comes from the environment.

The small ``env_*`` helpers below fail loudly (ImproperlyConfigured) on a value they cannot
parse, so a typo in a deployment shows up at start-up rather than as odd behaviour later.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------------------------
# Typed environment helpers
# --------------------------------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no)")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ImproperlyConfigured(f"{name}={raw!r} is not a finite number")
    return value


def env_list(name: str, default: list[str] | None = None, sep: str = ",") -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default or [])
    return [item.strip() for item in raw.split(sep) if item.strip()]


def _positive(name: str, value: float) -> float:
    if value <= 0:
        raise ImproperlyConfigured(f"{name} must be > 0 (got {value!r})")
    return value


# --------------------------------------------------------------------------------------------
# Core
# --------------------------------------------------------------------------------------------

DEV_SECRET_KEY = "django-insecure-flowsite-dev-key-do-not-use-in-production"

DEBUG = env_bool("DJANGO_DEBUG", True)
SECRET_KEY = env_str("DJANGO_SECRET_KEY", DEV_SECRET_KEY) or DEV_SECRET_KEY
if not DEBUG and SECRET_KEY == DEV_SECRET_KEY and not env_bool("FLOWSITE_ALLOW_DEV_KEY"):
    raise ImproperlyConfigured(
        "DJANGO_DEBUG is off but DJANGO_SECRET_KEY is not set: refusing to run with the "
        "development key (set DJANGO_SECRET_KEY, or FLOWSITE_ALLOW_DEV_KEY=1 for a local trial)."
    )

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])

# Where the service keeps its files: SQLite database, embedded broker queue, logs, static.
FLOWSITE_DATA_DIR = Path(env_str("FLOWSITE_DATA_DIR") or (BASE_DIR / "var")).expanduser()
FLOWSITE_DATA_DIR = FLOWSITE_DATA_DIR.resolve()
FLOWSITE_DATA_DIR.mkdir(parents=True, exist_ok=True)

# Folders holding user function modules (handlers). Appended to sys.path here, at settings
# import, so the web process AND Celery workers (which import settings too) can import them.
FLOWSITE_FUNCTIONS_PATH = [
    str(Path(p).expanduser().resolve())
    for p in env_list(
        "FLOWSITE_FUNCTIONS_PATH", [str(BASE_DIR / "demo" / "functions")], sep=os.pathsep
    )
]
for _folder in FLOWSITE_FUNCTIONS_PATH:
    if _folder not in sys.path:
        sys.path.append(_folder)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_filters",
    "django_htmx",
    "django_celery_beat",
    "executions.apps.ExecutionsConfig",
    "functions.apps.FunctionsConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "flowsite.api_errors.ApiErrorMiddleware",
]

ROOT_URLCONF = "flowsite.urls"
WSGI_APPLICATION = "flowsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --------------------------------------------------------------------------------------------
# Database
# --------------------------------------------------------------------------------------------

DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    import dj_database_url

    try:
        DATABASES = {
            "default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)
        }
    except Exception as exc:  # dj_database_url raises several types on a bad URL
        raise ImproperlyConfigured(f"DATABASE_URL is not usable: {exc}") from exc
else:
    # SQLite shared by web, worker and beat processes. Django's defaults failed ~half of the
    # write transactions with "database is locked" under that load; WAL + BEGIN IMMEDIATE +
    # a 20 s busy timeout gave none. Django runs each ';'-separated init_command statement
    # separately on every new connection (django/db/backends/sqlite3/base.py).
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": FLOWSITE_DATA_DIR / "flowsite.sqlite3",
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": (
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;"
                ),
            },
            # Keep connections (and their PRAGMAs) between requests and tasks.
            "CONN_MAX_AGE": 600,
            "CONN_HEALTH_CHECKS": True,
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

LOGIN_URL = "/admin/login/"
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

# --------------------------------------------------------------------------------------------
# Static files (whitenoise)
# --------------------------------------------------------------------------------------------

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = FLOWSITE_DATA_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        # Hashed, compressed names need `collectstatic`; tests can switch to the plain
        # StaticFilesStorage (whitenoise's hashed names 404 under pytest-django's live_server).
        "BACKEND": env_str(
            "FLOWSITE_STATICFILES_STORAGE",
            "whitenoise.storage.CompressedManifestStaticFilesStorage",
        )
    },
}
# In DEBUG, serve straight from the finders so a missing collectstatic is not fatal.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# --------------------------------------------------------------------------------------------
# REST API
# --------------------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.BasicAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "flowsite.api_errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "flowsite.pagination.CursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
}

SPECTACULAR_SETTINGS = {
    "TITLE": "flowsite API",
    "DESCRIPTION": "Workflow definitions, executions and functions.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema is not public: it needs a logged-in user or a token (docs page: a login).
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1",
}

# --------------------------------------------------------------------------------------------
# Celery
# --------------------------------------------------------------------------------------------

# Default: the embedded broker (flowsite/broker.py), a folder under FLOWSITE_DATA_DIR, no
# server needed. Production: redis://... (or amqp://...).
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or "flowsitefs://"
FLOWSITE_BROKER_POLL = _positive("FLOWSITE_BROKER_POLL", env_float("FLOWSITE_BROKER_POLL", 0.05))
FLOWSITE_BROKER_DIR = FLOWSITE_DATA_DIR / "broker"

if CELERY_BROKER_URL.split("://", 1)[0] in ("flowsitefs", "filesystem"):
    _queue_dir = FLOWSITE_BROKER_DIR / "queue"
    _processed_dir = FLOWSITE_BROKER_DIR / "processed"
    _control_dir = FLOWSITE_BROKER_DIR / "control"
    for _d in (_queue_dir, _processed_dir, _control_dir):
        _d.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(_processed_dir),
        "control_folder": str(_control_dir),
        "store_processed": False,
        "polling_interval": FLOWSITE_BROKER_POLL,
    }
else:
    # Publishing gives up fast when the broker is down: the work is already recorded in the
    # database and the sweeper re-publishes it, so a request must not hang on kombu's default
    # reconnect loop (several seconds per publish during an outage).
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "max_retries": 1,
        "interval_start": 0,
        "interval_step": 0.2,
        "interval_max": 0.5,
    }
    if CELERY_BROKER_URL.startswith(("redis://", "rediss://", "redis+socket://")):
        # A message not acked within this many seconds is delivered again (acks_late).
        CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] = env_float(
            "FLOWSITE_REDIS_VISIBILITY_TIMEOUT", 3600.0
        )

# The engine keeps its own state in the database: no result backend.
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_ENABLE_UTC = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Celery's Django fix-up closes the database connection around every task unless this is set:
# a new PostgreSQL session per step cost more than the step itself. Broken or expired
# connections are still dropped before each task (flowsite/celery.py, task_prerun).
CELERY_DB_REUSE_MAX = env_int("FLOWSITE_DB_REUSE_MAX", 1000)

FLOWSITE_SWEEP_INTERVAL = _positive(
    "FLOWSITE_SWEEP_INTERVAL", env_float("FLOWSITE_SWEEP_INTERVAL", 1.0)
)
# The sweeper (timers, lost attempts, re-publishing) runs as a thread of the beat process, not
# as a scheduled task: a task would wait behind long function attempts in the worker pool.
# Set FLOWSITE_SWEEPER_IN_BEAT=0 to run `manage.py flowsite_sweeper` yourself instead.
FLOWSITE_SWEEPER_IN_BEAT = env_bool("FLOWSITE_SWEEPER_IN_BEAT", True)
CELERY_BEAT_SCHEDULE: dict = {}

# --------------------------------------------------------------------------------------------
# Engine settings (all from the environment)
#
# FLOWSITE_REDISPATCH_AFTER       s   re-enqueue runnable work with no live attempt after this
# FLOWSITE_LEASE_GRACE            s   extra time past a task attempt's lease before it is reaped
# FLOWSITE_INLINE_BUDGET          n   max state transitions run inline in one engine step before
#                                     the rest is handed back to the queue
# FLOWSITE_MAP_MAX_CONCURRENCY    n   upper bound for a Map state's MaxConcurrency
# FLOWSITE_MAX_PAYLOAD_BYTES      B   max size of an execution's input/output / a state's data
# FLOWSITE_MAX_HISTORY_EVENTS     n   an execution that would exceed this many events fails
# FLOWSITE_MAX_DEFINITION_BYTES   B   max size of a flow definition (YAML/JSON) document
# FLOWSITE_MAX_TASK_PAYLOAD_BYTES B   max size of a function (task) input or result
# FLOWSITE_MAX_LOST_ATTEMPTS      n   times a lost (crashed worker) attempt is retried before
#                                     the task fails with a lost-worker error
# FLOWSITE_FAULTS                 str fault-injection hooks for tests; refused unless DEBUG or
#                                     FLOWSITE_ALLOW_FAULTS=1
# --------------------------------------------------------------------------------------------

FLOWSITE_REDISPATCH_AFTER = _positive(
    "FLOWSITE_REDISPATCH_AFTER", env_float("FLOWSITE_REDISPATCH_AFTER", 15.0)
)
FLOWSITE_LEASE_GRACE = env_float("FLOWSITE_LEASE_GRACE", 30.0)
FLOWSITE_INLINE_BUDGET = env_int("FLOWSITE_INLINE_BUDGET", 1000)
FLOWSITE_MAP_MAX_CONCURRENCY = env_int("FLOWSITE_MAP_MAX_CONCURRENCY", 100)
FLOWSITE_MAX_PAYLOAD_BYTES = env_int("FLOWSITE_MAX_PAYLOAD_BYTES", 262144)
FLOWSITE_MAX_HISTORY_EVENTS = env_int("FLOWSITE_MAX_HISTORY_EVENTS", 25000)
FLOWSITE_MAX_DEFINITION_BYTES = env_int("FLOWSITE_MAX_DEFINITION_BYTES", 1048576)
FLOWSITE_MAX_TASK_PAYLOAD_BYTES = env_int("FLOWSITE_MAX_TASK_PAYLOAD_BYTES", 1048576)
FLOWSITE_MAX_LOST_ATTEMPTS = env_int("FLOWSITE_MAX_LOST_ATTEMPTS", 3)
# A worker that finishes a Task runs the execution's next function attempt itself, without a
# broker round trip, up to this many times in a row (0: always go through the broker).
FLOWSITE_EAGER_STEPS = env_int("FLOWSITE_EAGER_STEPS", 10)
for _name in (
    "FLOWSITE_INLINE_BUDGET",
    "FLOWSITE_MAP_MAX_CONCURRENCY",
    "FLOWSITE_MAX_PAYLOAD_BYTES",
    "FLOWSITE_MAX_HISTORY_EVENTS",
    "FLOWSITE_MAX_DEFINITION_BYTES",
    "FLOWSITE_MAX_TASK_PAYLOAD_BYTES",
):
    _positive(_name, globals()[_name])
if FLOWSITE_LEASE_GRACE < 0 or FLOWSITE_MAX_LOST_ATTEMPTS < 0 or FLOWSITE_EAGER_STEPS < 0:
    raise ImproperlyConfigured(
        "FLOWSITE_LEASE_GRACE, FLOWSITE_MAX_LOST_ATTEMPTS and FLOWSITE_EAGER_STEPS must be >= 0"
    )

FLOWSITE_FAULTS = env_str("FLOWSITE_FAULTS").strip()
if FLOWSITE_FAULTS and not (DEBUG or env_bool("FLOWSITE_ALLOW_FAULTS")):
    raise ImproperlyConfigured(
        "FLOWSITE_FAULTS is set but DEBUG is off: fault injection is refused in production "
        "(set FLOWSITE_ALLOW_FAULTS=1 to force it)."
    )

# --------------------------------------------------------------------------------------------
# Logging: to stderr; scripts/run redirects each process to $FLOWSITE_DATA_DIR/logs/.
# --------------------------------------------------------------------------------------------

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(process)d: %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("FLOWSITE_LOG_LEVEL", "INFO").upper()},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
    },
}
