"""What the list pages' tests share: clients per role, the demo flows driven in-process,
plain static files, and an HTML check that nothing in a page came from user data."""

from __future__ import annotations

import io
from html.parser import HTMLParser

import pytest
from django.core.management import call_command
from django.test import Client

from executions import services
from executions.models import Execution, Flow, TaskToken, WorkItem, WorkStatus
from executions.runtime import worker
from flowsite.access import SYSTEM
from tests.factories import UserFactory

ROLES = ("viewer", "operator", "approver", "admin")

PLAIN_STATIC = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Markup a hostile user may put wherever text goes.
PAYLOADS = (
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "</script><script>alert(2)</script>",
    '<div hx-get="/api/v1/flows/" hx-trigger="load">x</div>',
    "<a href='javascript:alert(3)'>click</a>",
    "\u2028<svg onload=alert(4)>",
)


@pytest.fixture(autouse=True)
def plain_static(settings):
    # The manifest storage needs collectstatic; pages only need {% static %} to resolve.
    settings.STORAGES = PLAIN_STATIC


def client_for(*roles: str, username: str | None = None) -> Client:
    client = Client()
    kwargs = {"roles": list(roles)}
    if username:
        kwargs["username"] = username
    user = UserFactory(**kwargs)
    client.force_login(user)
    client.user = user
    return client


@pytest.fixture
def clients(db) -> dict[str, Client]:
    """One logged-in client per role, plus ``none`` (a user without a role)."""
    made = {role: client_for(role) for role in ROLES}
    made["none"] = client_for()
    return made


@pytest.fixture
def demo(db):
    call_command("flowsite_demo", "--quiet", stdout=io.StringIO(), stderr=io.StringIO())


def start(flow_name: str, input: dict | None = None, name: str | None = None) -> Execution:
    execution, created = services.execution_start(
        flow=Flow.objects.get(name=flow_name), name=name, input=input or {}, actor=SYSTEM
    )
    assert created
    return execution


def run_pending(execution: Execution) -> Execution:
    """Run the execution's pending work items here (a worker's part), once."""
    for pk in WorkItem.objects.filter(execution=execution, status=WorkStatus.PENDING).values_list(
        "pk", flat=True
    ):
        worker.run_work_item(pk)
    execution.refresh_from_db()
    return execution


APPROVAL_INPUT = {"request_id": "PO-1042", "approver": "dana@example.com", "summary": "a laptop"}


def waiting_approval(input: dict | None = None, name: str | None = None) -> TaskToken:
    """A demo-approval-v2 execution waiting for its callback; its open task row."""
    execution = run_pending(start("demo-approval-v2", input or APPROVAL_INPUT, name=name))
    return TaskToken.objects.get(execution=execution, is_open=True)


# Attributes whose value is text for people (never a URL, a handler or an instruction to htmx).
TEXT_ATTRIBUTES = {"value", "title", "aria-label", "placeholder", "datetime"}


class Tree(HTMLParser):
    """Every start tag of a page with its attributes, and its text."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def assert_no_markup_from_users(html: str) -> Tree:
    """No element or attribute of the page comes from user data: no event handler attribute,
    no script but our static ones, no ``javascript:`` URL, no element the payloads would make,
    no htmx attribute aimed at the API; and the payloads' text is there, escaped."""
    tree = Tree(html)
    for tag, attrs in tree.tags:
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            assert "javascript:" not in (value or "").lower(), (tag, name, value)
            if name not in TEXT_ATTRIBUTES:  # user text may be a field's value or a title
                assert "alert(" not in (value or ""), (tag, name, value)
            if name.startswith("hx-"):
                assert "/api/" not in (value or ""), (tag, name, value)
        if tag == "script":
            assert (attrs.get("src") or "").startswith("/static/"), attrs
        assert tag not in {"img", "svg", "iframe", "object"} or "alert" not in str(attrs), tag
        assert tag != "img", attrs  # the pages show no images at all
    return tree
