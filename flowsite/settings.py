"""flowsite settings: one file, everything that varies comes from the environment.

The small ``env_*`` helpers below fail loudly (ImproperlyConfigured) on a value they cannot
parse, so a typo in a deployment shows up at start-up rather than as odd behaviour later.
"""

from __future__ import annotations

import os
from pathlib import Path

from celery.schedules import crontab
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

# Where the service keeps its files: SQLite database, embedded broker queue, logs, and the
# secret key and first admin password that scripts/run creates.
FLOWSITE_DATA_DIR = Path(env_str("FLOWSITE_DATA_DIR") or (BASE_DIR / "var")).expanduser()
FLOWSITE_DATA_DIR = FLOWSITE_DATA_DIR.resolve()
FLOWSITE_DATA_DIR.mkdir(parents=True, exist_ok=True)

# Off unless asked for: a deployment that forgets the variable must not serve tracebacks,
# settings and SQL to whoever triggers an error.
DEBUG = env_bool("DJANGO_DEBUG", False)

DEV_SECRET_KEY = "django-insecure-flowsite-dev-key-do-not-use-in-production"
# scripts/run writes a random key here once (mode 0600). Settings only ever read it: a key made
# up by each process or machine on its own would silently differ between web servers and
# workers, breaking sessions and signed values.
FLOWSITE_SECRET_KEY_FILE = FLOWSITE_DATA_DIR / "secret_key"


def _secret_key() -> str:
    """``DJANGO_SECRET_KEY`` if set, else the contents of ``FLOWSITE_SECRET_KEY_FILE`` if that
    file exists, else the development key (which a non-debug run refuses below)."""
    key = env_str("DJANGO_SECRET_KEY")
    if key:
        return key
    try:
        key = FLOWSITE_SECRET_KEY_FILE.read_text().strip()
    except FileNotFoundError:
        return DEV_SECRET_KEY
    except OSError as exc:
        raise ImproperlyConfigured(f"cannot read {FLOWSITE_SECRET_KEY_FILE}: {exc}") from exc
    if not key:
        raise ImproperlyConfigured(f"{FLOWSITE_SECRET_KEY_FILE} is empty")
    return key


SECRET_KEY = _secret_key()
if not DEBUG and SECRET_KEY == DEV_SECRET_KEY and not env_bool("FLOWSITE_ALLOW_DEV_KEY"):
    raise ImproperlyConfigured(
        "DJANGO_DEBUG is off and no secret key is set: refusing to run with the development "
        f"key. Set DJANGO_SECRET_KEY, or write a random key to {FLOWSITE_SECRET_KEY_FILE} "
        "(scripts/run does), or set DJANGO_DEBUG=1 for development."
    )

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])

# Origins (scheme://host[:port]) allowed to send CSRF-checked writes (admin, pages) whose Origin
# is not the Host header, e.g. "https://flows.example.com" when a proxy rewrites the Host.
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")
for _origin in CSRF_TRUSTED_ORIGINS:
    if "://" not in _origin:
        raise ImproperlyConfigured(
            f"DJANGO_CSRF_TRUSTED_ORIGINS: {_origin!r} needs a scheme (https://{_origin})"
        )

# Browser hardening that is right over plain HTTP too (these are Django's defaults, written
# out so that nobody loosens them by accident).
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True

# FLOWSITE_HTTPS=1: browsers reach the site over HTTPS only, normally through a proxy that
# terminates TLS. The proxy MUST set X-Forwarded-Proto itself, overwriting whatever the client
# sent, and gunicorn must not be reachable around it: Django trusts that header to tell an
# HTTPS request from a plain one (docs/deployment.md).
FLOWSITE_HTTPS = env_bool("FLOWSITE_HTTPS", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = LANGUAGE_COOKIE_SECURE = FLOWSITE_HTTPS
SECURE_SSL_REDIRECT = FLOWSITE_HTTPS
# Health checks from a load balancer or scripts/run talk plain HTTP to gunicorn directly.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if FLOWSITE_HTTPS else None
# HSTS: a year, subdomains included, and the preload token (inert unless someone submits the
# registrable domain to the browsers' preload list; see docs/deployment.md before doing so).
SECURE_HSTS_SECONDS = env_int("FLOWSITE_HSTS_SECONDS", 365 * 24 * 3600) if FLOWSITE_HTTPS else 0
if SECURE_HSTS_SECONDS < 0:
    raise ImproperlyConfigured("FLOWSITE_HSTS_SECONDS must be >= 0")
SECURE_HSTS_INCLUDE_SUBDOMAINS = FLOWSITE_HTTPS
SECURE_HSTS_PRELOAD = FLOWSITE_HTTPS

# Folders holding user function modules (handlers). A handler must be a function in a module
# file inside one of them (functions/loader.py). They are not put on sys.path here: only a
# process that runs handlers (a worker) adds them, when it first loads one, so nothing in a
# folder can ever be imported by the web process.
FLOWSITE_FUNCTIONS_PATH = [
    str(Path(p).expanduser().resolve())
    for p in env_list(
        "FLOWSITE_FUNCTIONS_PATH", [str(BASE_DIR / "demo" / "functions")], sep=os.pathsep
    )
]

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
    "flowsite.audit.apps.AuditConfig",
    "flowsite.ui.apps.UiConfig",
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
    "flowsite.ui.middleware.ContentSecurityPolicyMiddleware",
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
                "flowsite.ui.context.layout",
            ],
        },
    },
]

# --------------------------------------------------------------------------------------------
# Database
# --------------------------------------------------------------------------------------------

# SQLite shared by web, worker and beat processes. Django's defaults failed ~half of the write
# transactions with "database is locked" under that load; WAL + BEGIN IMMEDIATE + a 20 s busy
# timeout gave none. Django runs each ';'-separated init_command statement separately on every
# new connection (django/db/backends/sqlite3/base.py). Used for the default database and for
# DATABASE_URL=sqlite://... alike: the runtime's transitions rely on IMMEDIATE to serialise.
SQLITE_OPTIONS = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
    "init_command": (
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;"
    ),
}


def _sqlite_database(name: str | Path, options: dict | None = None) -> dict:
    """A SQLite ``DATABASES`` entry with flowsite's options; ``options`` (from a URL's query
    string) override single keys."""
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": name,
        "OPTIONS": {**SQLITE_OPTIONS, **(options or {})},
        # Keep connections (and their PRAGMAs) between requests and tasks.
        "CONN_MAX_AGE": 600,
        "CONN_HEALTH_CHECKS": True,
    }


DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    import dj_database_url

    try:
        _db = dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)
    except Exception as exc:  # dj_database_url raises several types on a bad URL
        raise ImproperlyConfigured(f"DATABASE_URL is not usable: {exc}") from exc
    if _db["ENGINE"] == "django.db.backends.sqlite3":
        _db = _sqlite_database(_db["NAME"], _db.get("OPTIONS"))
    DATABASES = {"default": _db}
else:
    DATABASES = {"default": _sqlite_database(FLOWSITE_DATA_DIR / "flowsite.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Model permissions (what the Django admin asks) follow the roles (flowsite/access.py).
AUTHENTICATION_BACKENDS = ["flowsite.admin_base.RoleBackend"]

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

LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

# --------------------------------------------------------------------------------------------
# Static files (whitenoise)
# --------------------------------------------------------------------------------------------

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Built from the code by `collectstatic` (scripts/setup runs it), so it belongs to the checkout,
# not to a data dir: a web server started with another FLOWSITE_DATA_DIR (scripts/run with its
# own, the integration tests' temporary ones) serves the same files. Set FLOWSITE_STATIC_ROOT
# where the checkout is read-only.
STATIC_ROOT = Path(env_str("FLOWSITE_STATIC_ROOT") or (BASE_DIR / "staticfiles")).expanduser()
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

# HTTP Basic auth remembers verified credentials per process for this long (0: never), so a
# script using Basic auth does not pay a PBKDF2 hash (~0.45 s of CPU) on every request; a
# password change or deactivation still applies at once (flowsite/auth.py). At most SIZE
# entries per process.
FLOWSITE_BASIC_AUTH_CACHE_SECONDS = env_float("FLOWSITE_BASIC_AUTH_CACHE_SECONDS", 300.0)
FLOWSITE_BASIC_AUTH_CACHE_SIZE = env_int("FLOWSITE_BASIC_AUTH_CACHE_SIZE", 1024)
if FLOWSITE_BASIC_AUTH_CACHE_SECONDS < 0 or FLOWSITE_BASIC_AUTH_CACHE_SIZE < 1:
    raise ImproperlyConfigured(
        "FLOWSITE_BASIC_AUTH_CACHE_SECONDS must be >= 0 and FLOWSITE_BASIC_AUTH_CACHE_SIZE >= 1"
    )

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
        "flowsite.auth.CachedBasicAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["flowsite.access.CanRead"],
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
    # The schema is not public: it needs a user with a role (docs page: a login and a role).
    "SERVE_PERMISSIONS": ["flowsite.access.CanRead"],
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
# The sweeper (timers, lost attempts, re-publishing) is never a task in the worker pool, where
# it would wait behind long function attempts: it runs as its own process (`manage.py
# flowsite_sweeper`, recommended in production; then set FLOWSITE_SWEEPER_IN_BEAT=0) or as a
# thread of the beat process (the default, for one-machine set-ups).
FLOWSITE_SWEEPER_IN_BEAT = env_bool("FLOWSITE_SWEEPER_IN_BEAT", True)
# Retention (daily): ended executions older than FLOWSITE_RETENTION_DAYS are deleted with
# everything they own (`manage.py flowsite_prune` does the same on demand).
FLOWSITE_RETENTION_DAYS = _positive(
    "FLOWSITE_RETENTION_DAYS", env_float("FLOWSITE_RETENTION_DAYS", 30.0)
)
CELERY_BEAT_SCHEDULE: dict = {
    "flowsite-prune": {
        "task": "executions.prune",
        "schedule": crontab(minute=17, hour=3),
        "options": {"expires": 6 * 3600},
    },
}

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
# FLOWSITE_WORKER_HEARTBEAT       s   how often a worker process stamps its liveness row
# FLOWSITE_WORKER_DEAD_AFTER      s   a worker whose row is older than this is dead: the sweeper
#                                     reclaims its attempts, whatever the function's timeout
# FLOWSITE_DB_OUTAGE_WAIT         s   how long a worker holds a message waiting for the database
#                                     before it hands the message back to the broker
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
FLOWSITE_WORKER_HEARTBEAT = _positive(
    "FLOWSITE_WORKER_HEARTBEAT", env_float("FLOWSITE_WORKER_HEARTBEAT", 5.0)
)
FLOWSITE_WORKER_DEAD_AFTER = env_float("FLOWSITE_WORKER_DEAD_AFTER", 20.0)
if FLOWSITE_WORKER_DEAD_AFTER < 2 * FLOWSITE_WORKER_HEARTBEAT:
    raise ImproperlyConfigured(
        "FLOWSITE_WORKER_DEAD_AFTER must be at least twice FLOWSITE_WORKER_HEARTBEAT, or a "
        "live worker that missed one stamp would be declared dead"
    )
# A direct function call (POST /functions/{name}/invocations/) that no worker started within
# this many seconds is Expired (never runs) and answered 503 NoWorkerAvailable.
FLOWSITE_INVOKE_PICKUP_SECONDS = _positive(
    "FLOWSITE_INVOKE_PICKUP_SECONDS", env_float("FLOWSITE_INVOKE_PICKUP_SECONDS", 10.0)
)
FLOWSITE_DB_OUTAGE_WAIT = _positive(
    "FLOWSITE_DB_OUTAGE_WAIT", env_float("FLOWSITE_DB_OUTAGE_WAIT", 300.0)
)
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
