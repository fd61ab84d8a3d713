"""The API docs page in a real browser (Debian's Chromium driven by Playwright): it renders
Swagger UI from our own static files, lists the API, and asks no other host for anything."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
ARTIFACTS = Path(os.environ.get("FLOWSITE_ARTIFACTS", "artifacts")) / "screenshots"


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (scripts/setup installs it)")
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def plain_static(settings):
    # whitenoise's hashed names need collectstatic; the live server serves plain files.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def test_swagger_ui_renders_from_local_files_only(
    live_server, browser, plain_static, django_user_model
):
    django_user_model.objects.create_superuser("docs", "docs@example.com", "pw-docs-123")
    page = browser.new_page()
    foreign: list[str] = []
    host = urlsplit(live_server.url).netloc
    page.on(
        "request",
        lambda r: (
            foreign.append(r.url)
            if urlsplit(r.url).netloc not in (host, "") and not r.url.startswith("data:")
            else None
        ),
    )
    page.goto(f"{live_server.url}/api/v1/docs/")
    # Anonymous visitors are sent to the login page first.
    page.fill("#id_username", "docs")
    page.fill("#id_password", "pw-docs-123")
    page.click("button[type=submit]")
    page.goto(f"{live_server.url}/api/v1/docs/")
    page.wait_for_selector("text=/api/v1/flows/", timeout=15_000)
    assert page.locator(".opblock").count() > 10
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "api-docs.png"), full_page=False)
    assert foreign == [], f"the docs page asked other hosts for {foreign}"
