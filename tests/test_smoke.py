"""Smoke tests for the project skeleton: settings, health check, OpenAPI schema and docs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Group

BASE_DIR = Path(__file__).resolve().parent.parent

PLAIN_STATIC = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}


def test_settings_default_to_sqlite_with_wal_and_immediate(tmp_path):
    # A fresh interpreter, without any DATABASE_URL / broker URL from the caller's environment.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_DEBUG", "FLOWSITE_FAULTS"}
    }
    env["FLOWSITE_DATA_DIR"] = str(tmp_path / "data")
    env["DJANGO_SETTINGS_MODULE"] = "flowsite.settings"
    code = """
import json, django
django.setup()
from django.conf import settings
from django.db import connection
with connection.cursor() as c:
    pragmas = {}
    for name in ("journal_mode", "synchronous", "busy_timeout"):
        c.execute("PRAGMA " + name)
        pragmas[name] = c.fetchone()[0]
db = settings.DATABASES["default"]
print(json.dumps({
    "engine": db["ENGINE"], "name": str(db["NAME"]), "options": db["OPTIONS"],
    "pragmas": pragmas, "broker": settings.CELERY_BROKER_URL,
    "queue": settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("data_folder_in"),
}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["engine"] == "django.db.backends.sqlite3"
    assert info["name"] == str((tmp_path / "data" / "flowsite.sqlite3").resolve())
    assert info["options"]["transaction_mode"] == "IMMEDIATE"
    assert info["options"]["timeout"] == 20
    assert "journal_mode=WAL" in info["options"]["init_command"]
    # Every ';'-separated statement of init_command really ran on the connection.
    assert info["pragmas"] == {"journal_mode": "wal", "synchronous": 1, "busy_timeout": 20000}
    assert info["broker"] == "flowsitefs://"
    assert Path(info["queue"]).is_dir()


@pytest.mark.django_db
def test_healthz_needs_a_recent_sweeper_round(client, settings):
    from executions.models import Heartbeat, HeartbeatKind
    from executions.runtime import liveness
    from executions.runtime.transition import db_now

    settings.FLOWSITE_SWEEP_INTERVAL = 1.0
    never = client.get("/healthz")
    assert never.status_code == 503
    assert never["Content-Type"].startswith("application/json")
    assert never.json()["status"] == "error"
    assert never.json()["sweeper"]["last_run"] is None

    liveness.stamp("sweeper:test", HeartbeatKind.SWEEPER)
    fresh = client.get("/healthz")
    assert fresh.status_code == 200
    body = fresh.json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert 0 <= body["sweeper"]["age_seconds"] <= 3.0

    # Older than three sweep intervals (by the database's clock): unhealthy.
    Heartbeat.objects.update(last_seen=db_now() - timedelta(seconds=3.5))
    stale = client.get("/healthz")
    assert stale.status_code == 503
    assert stale.json()["sweeper"]["age_seconds"] >= 3.5


@pytest.mark.django_db
def test_schema_needs_authentication_and_errors_are_json(client, django_user_model):
    anonymous = client.get("/api/v1/schema/")
    assert anonymous.status_code in (401, 403)
    assert anonymous["Content-Type"].startswith("application/json")
    body = anonymous.json()
    assert body["code"] in ("Unauthenticated", "Forbidden")
    assert body["message"]

    user = django_user_model.objects.create_user("smoke", password="pw-smoke-1234")
    client.force_login(user)
    # A user without a role sees nothing, the schema included.
    assert client.get("/api/v1/schema/").status_code == 403
    user.groups.add(Group.objects.get(name="viewer"))
    client.force_login(user)
    response = client.get("/api/v1/schema/")
    assert response.status_code == 200
    text = response.content.decode()
    assert "openapi:" in text or '"openapi"' in text
    assert "flowsite API" in text


@pytest.mark.django_db
def test_api_docs_page_uses_only_local_static_files(client, django_user_model, settings):
    settings.STORAGES = PLAIN_STATIC  # no collectstatic manifest needed
    # Anonymous visitors are sent to the login page first.
    redirect = client.get("/api/v1/docs/")
    assert redirect.status_code == 302
    assert redirect["Location"].startswith("/login/")

    docs = django_user_model.objects.create_user("docs", password="pw-docs-1234")
    docs.groups.add(Group.objects.get(name="viewer"))
    client.force_login(docs)
    response = client.get("/api/v1/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    refs = re.findall(r"<(?:script|link)\b[^>]*?\b(?:src|href)=[\"']([^\"']+)[\"']", html)
    assert refs, html
    assert any(ref.endswith(".js") for ref in refs)
    for ref in refs:
        assert not re.match(r"^(?:https?:)?//", ref), f"external reference {ref!r}"
        assert ref.startswith("/static/"), ref
