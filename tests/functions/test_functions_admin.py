"""The functions admin: the same handler rules as the API, no handler code run by its pages, and
read-only invocation records."""

from __future__ import annotations

import pytest
from django.urls import reverse

from flowsite.access import SYSTEM
from functions import services
from functions.models import Function, Invocation

pytestmark = pytest.mark.django_db

PLAIN_STATIC = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}


@pytest.fixture(autouse=True)
def plain_static(settings):
    settings.STORAGES = PLAIN_STATIC  # no collectstatic manifest needed


def url(model, view: str, *args) -> str:
    return reverse(f"admin:functions_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def canary_folder(tmp_path, settings):
    """A functions folder whose module writes ``marker`` if anything loads it."""
    folder = tmp_path / "fns"
    folder.mkdir()
    marker = tmp_path / "marker"
    (folder / "loud.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('loaded')\n\n"
        "def run(event, context):\n    return 1\n\n"
        "if True:\n    def nested(event, context):\n        return 2\n"
    )
    settings.FLOWSITE_FUNCTIONS_PATH = [str(folder)]
    return marker


@pytest.mark.parametrize("handler", ["os.system", "cProfile.run", "loud._private", "../loud.run"])
def test_the_add_form_refuses_what_the_api_refuses(admin_client, canary_folder, handler):
    response = admin_client.post(
        url(Function, "add"), {"name": "pwn", "handler": handler, "timeout_seconds": 5}
    )
    assert response.status_code == 200  # the form again, with the error
    assert response.context["adminform"].form.errors["handler"]
    assert not Function.objects.filter(name="pwn").exists()
    assert not canary_folder.exists()


def test_the_check_action_reads_the_source_and_runs_nothing(admin_client, canary_folder):
    names = {"ok": "loud.run", "nested": "loud.nested", "absent": "loud.nothing"}
    for name, handler in names.items():
        services.function_create(name=name, handler=handler, actor=SYSTEM)
    Function.objects.create(name="stale", handler="os.system")  # saved before the rules
    response = admin_client.post(
        url(Function, "changelist"),
        {
            "action": "check_handlers",
            "index": 0,
            "_selected_action": list(Function.objects.values_list("pk", flat=True)),
        },
        follow=True,
    )
    text = response.content.decode()
    assert "2 handler(s) can be imported." in text
    assert "Function absent: cannot load loud.nothing: loud.py defines no nothing" in text
    assert "Function stale: cannot load os.system: no module os in the functions folders" in text
    assert not canary_folder.exists()


def test_deleting_in_the_admin_goes_through_the_service(admin_client, monkeypatch):
    function = services.function_create(name="gone", handler="apihandlers.echo", actor=SYSTEM)
    calls = []
    real = services.function_delete

    def spy(**kwargs):
        calls.append((kwargs["actor"].user.username, kwargs["actor"].via))
        real(**kwargs)

    monkeypatch.setattr(services, "function_delete", spy)
    response = admin_client.post(url(Function, "delete", function.pk), {"post": "yes"})
    assert response.status_code == 302
    assert calls == [("admin", "admin")]
    assert not Function.objects.filter(name="gone").exists()


def test_invocations_are_listed_and_read_only(admin_client):
    function = services.function_create(name="boom", handler="apihandlers.explode", actor=SYSTEM)
    invocation = services.invocation_submit(function=function, payload=b'{"<b>": 1}', actor=SYSTEM)
    services.invocation_run(invocation.pk)
    response = admin_client.get(url(Invocation, "changelist"))
    assert response.status_code == 200 and response.context["cl"].result_count == 1
    page = admin_client.get(url(Invocation, "change", invocation.pk))
    assert page.status_code == 200
    text = page.content.decode()
    assert "ValueError" in text and "10 bytes" in text
    assert b'name="_save"' not in page.content
    assert admin_client.get(url(Invocation, "add")).status_code == 403
    assert (
        admin_client.post(url(Invocation, "delete", invocation.pk), {"post": "yes"}).status_code
        == 403
    )
