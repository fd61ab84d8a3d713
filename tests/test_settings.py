"""Settings as a deployment gets them: each case loads ``flowsite.settings`` in a fresh interpreter
with only the environment it names (nothing inherited from the developer's shell or pytest)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent

# Printed by the child as JSON: the settings these tests look at.
DUMP = """
import json
import django
django.setup()
from django.conf import settings as s
names = [
    "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY", "SECURE_SSL_REDIRECT",
    "SECURE_PROXY_SSL_HEADER", "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD", "SECURE_REDIRECT_EXEMPT", "X_FRAME_OPTIONS",
    "SECURE_CONTENT_TYPE_NOSNIFF", "SECURE_REFERRER_POLICY", "STATIC_ROOT",
]
out = {name: getattr(s, name) for name in names}
out["STATIC_ROOT"] = str(out["STATIC_ROOT"])
db = dict(s.DATABASES["default"])
db["NAME"] = str(db["NAME"])
out["db"] = {k: db[k] for k in ("ENGINE", "NAME", "OPTIONS", "CONN_MAX_AGE", "CONN_HEALTH_CHECKS")}
out["renderers"] = s.REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"]
out["authentication"] = s.REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"]
if out["db"]["ENGINE"].endswith("sqlite3"):
    from django.db import connection
    with connection.cursor() as c:
        out["pragmas"] = {}
        for name in ("journal_mode", "synchronous", "busy_timeout"):
            c.execute("PRAGMA " + name)
            out["pragmas"][name] = c.fetchone()[0]
print("SETTINGS=" + json.dumps(out))
"""


def clean_env(data_dir: Path, **extra: str) -> dict:
    """The caller's environment minus everything that configures flowsite, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "FLOWSITE_", "CELERY_", "PYTEST_")) and k != "DATABASE_URL"
    }
    env.update(DJANGO_SETTINGS_MODULE="flowsite.settings", FLOWSITE_DATA_DIR=str(data_dir), **extra)
    return env


def run(argv: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv, cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def load_settings(data_dir: Path, **extra: str) -> dict:
    done = run([sys.executable, "-c", DUMP], clean_env(data_dir, **extra))
    assert done.returncode == 0, done.stderr[-3000:]
    line = [x for x in done.stdout.splitlines() if x.startswith("SETTINGS=")][-1]
    return json.loads(line.removeprefix("SETTINGS="))


def strong_key() -> str:
    return secrets.token_urlsafe(50)


# --- DEBUG and the secret key -------------------------------------------------------------------


def test_debug_is_off_unless_asked_for(tmp_path):
    key = strong_key()
    info = load_settings(tmp_path, DJANGO_SECRET_KEY=key)
    assert info["DEBUG"] is False
    assert info["SECRET_KEY"] == key
    # No browsable API pages in production, only JSON.
    assert info["renderers"] == ["rest_framework.renderers.JSONRenderer"]
    assert load_settings(tmp_path, DJANGO_DEBUG="1")["DEBUG"] is True


def test_without_debug_the_development_key_is_refused(tmp_path):
    done = run([sys.executable, "manage.py", "check"], clean_env(tmp_path))
    assert done.returncode != 0
    assert "refusing to run with the development key" in done.stderr
    assert str(tmp_path / "secret_key") in done.stderr  # says where a key may go


def test_the_key_file_in_the_data_dir_is_used_when_the_variable_is_unset(tmp_path):
    key = strong_key()
    (tmp_path / "secret_key").write_text(key + "\n")
    assert load_settings(tmp_path)["SECRET_KEY"] == key
    # The variable wins over the file.
    other = strong_key()
    assert load_settings(tmp_path, DJANGO_SECRET_KEY=other)["SECRET_KEY"] == other


def test_an_empty_key_file_is_an_error_not_the_development_key(tmp_path):
    (tmp_path / "secret_key").write_text("\n")
    done = run([sys.executable, "-c", DUMP], clean_env(tmp_path, DJANGO_DEBUG="1"))
    assert done.returncode != 0
    assert "ImproperlyConfigured" in done.stderr
    assert "secret_key is empty" in done.stderr


def test_static_root_does_not_follow_the_data_dir(tmp_path):
    # collectstatic (scripts/setup) and the web server may run with different data dirs.
    info = load_settings(tmp_path, DJANGO_SECRET_KEY=strong_key())
    assert info["STATIC_ROOT"] == str(BASE_DIR / "staticfiles")
    elsewhere = tmp_path / "static-elsewhere"
    info = load_settings(
        tmp_path, DJANGO_SECRET_KEY=strong_key(), FLOWSITE_STATIC_ROOT=str(elsewhere)
    )
    assert info["STATIC_ROOT"] == str(elsewhere)


# --- HTTPS ----------------------------------------------------------------------------------------


def deploy_env(tmp_path: Path, **extra: str) -> dict:
    return clean_env(
        tmp_path,
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=strong_key(),
        DJANGO_ALLOWED_HOSTS="flows.example.com",
        **extra,
    )


def test_check_deploy_prints_no_warning_with_https(tmp_path):
    done = run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        deploy_env(tmp_path, FLOWSITE_HTTPS="1"),
    )
    hint = ""
    if "could not resolve authenticator" in done.stderr or "basicAuth" in done.stderr:
        hint = (
            "\n(a view still names DRF's BasicAuthentication: use "
            "flowsite.auth.CachedBasicAuthentication, which also spares it a hash per request)"
        )
    assert done.returncode == 0, done.stdout + done.stderr + hint
    assert "System check identified no issues" in done.stdout
    assert "WARNING" not in done.stderr.upper()


def test_check_deploy_without_https_names_what_is_missing(tmp_path):
    # The same check fails without FLOWSITE_HTTPS: it is FLOWSITE_HTTPS that silences it.
    done = run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        deploy_env(tmp_path),
    )
    assert done.returncode != 0
    for code in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert code in done.stderr, code


def test_https_settings(tmp_path):
    info = load_settings(
        tmp_path,
        DJANGO_SECRET_KEY=strong_key(),
        FLOWSITE_HTTPS="1",
        DJANGO_CSRF_TRUSTED_ORIGINS="https://flows.example.com, https://ops.example.com",
    )
    assert info["SESSION_COOKIE_SECURE"] is True
    assert info["CSRF_COOKIE_SECURE"] is True
    assert info["SECURE_SSL_REDIRECT"] is True
    assert info["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert info["SECURE_HSTS_SECONDS"] == 365 * 24 * 3600
    assert info["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert info["SECURE_HSTS_PRELOAD"] is True
    assert info["CSRF_TRUSTED_ORIGINS"] == ["https://flows.example.com", "https://ops.example.com"]
    # Always on, HTTPS or not.
    assert info["SESSION_COOKIE_HTTPONLY"] is True
    assert info["X_FRAME_OPTIONS"] == "DENY"
    assert info["SECURE_CONTENT_TYPE_NOSNIFF"] is True
    assert info["SECURE_REFERRER_POLICY"] == "same-origin"

    plain = load_settings(tmp_path, DJANGO_SECRET_KEY=strong_key())
    assert plain["SESSION_COOKIE_SECURE"] is False
    assert plain["SECURE_SSL_REDIRECT"] is False
    assert plain["SECURE_PROXY_SSL_HEADER"] is None  # X-Forwarded-Proto is not trusted
    assert plain["SECURE_HSTS_SECONDS"] == 0
    assert plain["CSRF_TRUSTED_ORIGINS"] == []


def test_a_trusted_origin_without_scheme_is_refused(tmp_path):
    done = run(
        [sys.executable, "-c", DUMP],
        clean_env(tmp_path, DJANGO_DEBUG="1", DJANGO_CSRF_TRUSTED_ORIGINS="flows.example.com"),
    )
    assert done.returncode != 0
    assert "needs a scheme (https://flows.example.com)" in done.stderr


@pytest.fixture
def https_settings(settings):
    """The settings FLOWSITE_HTTPS=1 gives, applied to this process."""
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 365 * 24 * 3600
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = True
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True
    return settings


def test_https_settings_fixture_matches_flowsite_https(tmp_path, https_settings):
    # Keeps the fixture below honest: it is exactly what FLOWSITE_HTTPS=1 sets.
    info = load_settings(tmp_path, DJANGO_SECRET_KEY=strong_key(), FLOWSITE_HTTPS="1")
    for name in (
        "SECURE_SSL_REDIRECT",
        "SECURE_REDIRECT_EXEMPT",
        "SECURE_HSTS_SECONDS",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS",
        "SECURE_HSTS_PRELOAD",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
    ):
        assert info[name] == getattr(https_settings, name), name
    assert tuple(info["SECURE_PROXY_SSL_HEADER"]) == https_settings.SECURE_PROXY_SSL_HEADER


@pytest.mark.django_db
def test_behind_an_https_proxy(client, https_settings, django_user_model):
    # Plain HTTP (the proxy did not say https) is redirected to HTTPS.
    response = client.get("/api/v1/flows/")
    assert response.status_code == 301
    assert response["Location"] == "https://testserver/api/v1/flows/"
    # The health check is answered over plain HTTP (not redirected): load balancers probe
    # gunicorn directly. (Its verdict, 200 or 503, depends on a sweeper this test lacks.)
    health = client.get("/healthz")
    assert health.status_code in (200, 503)
    assert "status" in health.json()

    # A browser logging in through the proxy gets Secure cookies (the session one HttpOnly).
    https = {"X-Forwarded-Proto": "https"}
    django_user_model.objects.create_superuser("https", "h@example.com", "pw-https-12345")
    login = client.get("/admin/login/", headers=https)
    assert login.status_code == 200
    assert login.cookies["csrftoken"]["secure"] is True
    response = client.post(
        "/admin/login/", {"username": "https", "password": "pw-https-12345"}, headers=https
    )
    assert response.status_code == 302, response.content[:500]
    assert response.cookies["sessionid"]["secure"] is True
    assert response.cookies["sessionid"]["httponly"] is True

    # What the proxy forwards as https is served, with HSTS and the hardening headers.
    response = client.get("/api/v1/flows/", headers=https)
    assert response.status_code == 200
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


# --- DATABASE_URL=sqlite:// -----------------------------------------------------------------------


def test_sqlite_database_url_gets_the_default_sqlite_options(tmp_path):
    key = strong_key()
    default = load_settings(tmp_path / "a", DJANGO_SECRET_KEY=key)
    db_file = tmp_path / "elsewhere.sqlite3"
    from_url = load_settings(
        tmp_path / "b", DJANGO_SECRET_KEY=key, DATABASE_URL=f"sqlite:///{db_file}"
    )
    assert from_url["db"]["NAME"] == str(db_file)
    assert from_url["db"]["ENGINE"] == "django.db.backends.sqlite3"
    for name in ("OPTIONS", "CONN_MAX_AGE", "CONN_HEALTH_CHECKS"):
        assert from_url["db"][name] == default["db"][name], name
    assert from_url["db"]["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert from_url["db"]["CONN_MAX_AGE"] == 600
    # ... and the PRAGMAs really run on its connections.
    expected = {"journal_mode": "wal", "synchronous": 1, "busy_timeout": 20000}
    assert from_url["pragmas"] == expected
    assert default["pragmas"] == expected


def test_sqlite_database_url_query_overrides_single_options(tmp_path):
    info = load_settings(
        tmp_path,
        DJANGO_SECRET_KEY=strong_key(),
        DATABASE_URL=f"sqlite:///{tmp_path / 'x.sqlite3'}?timeout=5",
    )
    assert info["db"]["OPTIONS"]["timeout"] == 5
    assert info["db"]["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in info["db"]["OPTIONS"]["init_command"]
