"""The admin: every model's pages open with data present, flows are saved through the
services, runtime tables are read-only, the Stop action works and user JSON is escaped."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from executions import services
from executions.models import (
    Execution,
    ExecutionStatus,
    Flow,
    FlowVersion,
    HistoryEvent,
    QueueMessage,
    TaskToken,
    Timer,
    WorkItem,
)
from flowsite.access import SYSTEM
from functions.models import Function

pytestmark = pytest.mark.django_db

PLAIN_STATIC = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

PASS_FLOW = """\
Type: StateMachine
Name: admin-pass
SpecVersion: v1
StartAt: Shape
States:
  - Type: Pass
    Name: Shape
    OutputConstructor:
      echoed.$: $Input.note
    End: true
"""

WAIT_FLOW = """\
Type: StateMachine
Name: admin-wait
SpecVersion: v1
StartAt: Nap
States:
  - Type: Wait
    Name: Nap
    Seconds: 300
    End: true
"""

QUEUE_FLOW = """\
version: v1
type: flow
steps:
  - type: task
    name: Enqueue
    resourceArn: acs:mns:::/queues/admin-jobs/messages
    pattern: waitForCallback
    inputMappings:
      - target: task_token
        source: $context.task.token
    serviceParams:
      MessageBody: $
"""

XSS = "<script>alert('owned')</script>"

MODELS = [
    Flow,
    FlowVersion,
    Execution,
    HistoryEvent,
    WorkItem,
    Timer,
    TaskToken,
    QueueMessage,
    Function,
]


@pytest.fixture(autouse=True)
def plain_static(settings):
    settings.STORAGES = PLAIN_STATIC  # no collectstatic manifest needed


@pytest.fixture
def data():
    call_command("flowsite_demo", "--quiet", stdout=io.StringIO(), stderr=io.StringIO())
    pass_flow = services.flow_create(
        name="admin-pass", definition=PASS_FLOW, description="pass only", actor=SYSTEM
    )
    wait_flow = services.flow_create(name="admin-wait", definition=WAIT_FLOW, actor=SYSTEM)
    queue_flow = services.flow_create(name="admin-queue", definition=QUEUE_FLOW, actor=SYSTEM)
    finished, _ = services.execution_start(
        flow=pass_flow, name="xss", input={"note": XSS, "n": 1}, actor=SYSTEM
    )
    waiting, _ = services.execution_start(
        flow=wait_flow, name="napping", input={"a": 1}, actor=SYSTEM
    )
    queued, _ = services.execution_start(
        flow=queue_flow, name="queued", input={"job": "x"}, actor=SYSTEM
    )
    approval, _ = services.execution_start(
        flow=Flow.objects.get(name="demo-approval-v2"),
        name="approval",
        input={"request_id": "PO-1"},
        actor=SYSTEM,
    )
    return {"finished": finished, "waiting": waiting, "queued": queued, "approval": approval}


def flow_post(flow: Flow, **fields) -> dict:
    """A change-form POST for ``flow``, with the versions inline's management form."""
    versions = list(flow.versions.order_by("-version"))
    data = {
        "versions-TOTAL_FORMS": len(versions),
        "versions-INITIAL_FORMS": len(versions),
        "versions-MIN_NUM_FORMS": 0,
        "versions-MAX_NUM_FORMS": 0,
    }
    for i, version in enumerate(versions):
        data[f"versions-{i}-id"] = version.pk
        data[f"versions-{i}-flow"] = flow.pk
    data.update(fields)
    return data


def copy_demo_with_changes(tmp_path: Path) -> Path:
    """A copy of demo/ whose flows all differ (so loading it makes a second version of each)."""
    target = tmp_path / "demo"
    shutil.copytree(Path(__file__).resolve().parent.parent / "demo", target)
    for path in (target / "flows").glob("*.yaml"):
        path.write_text(path.read_text(encoding="utf-8") + "# changed\n", encoding="utf-8")
    return target


def url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def test_site_header(admin_client):
    response = admin_client.get(reverse("admin:index"))
    assert response.status_code == 200
    assert admin.site.site_header == "flowsite"
    assert b"flowsite" in response.content


def test_fixture_has_every_kind_of_row(data):
    assert data["finished"].status == ExecutionStatus.SUCCEEDED
    assert data["finished"].output == {"echoed": XSS}
    assert data["waiting"].status == ExecutionStatus.RUNNING
    for model in MODELS:
        assert model.objects.exists(), model.__name__


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_changelist_search_and_change_page_open(admin_client, data, model):
    response = admin_client.get(url(model, "changelist"))
    assert response.status_code == 200
    assert response.context["cl"].result_count > 0
    assert admin_client.get(url(model, "changelist"), {"q": "demo"}).status_code == 200
    for obj in model.objects.all()[:5]:
        response = admin_client.get(url(model, "change", obj.pk))
        assert response.status_code == 200, (model.__name__, obj.pk)


def changelist_queries(client, model) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url(model, "changelist")).status_code == 200
    return len(queries)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_changelists_make_no_query_per_row(admin_client, data, model, tmp_path):
    before = changelist_queries(admin_client, model)
    # More of everything: flows, versions, executions and their runtime rows.
    call_command("flowsite_demo", "--quiet", "--demo-dir", str(copy_demo_with_changes(tmp_path)))
    for i in range(3):
        for flow_name in ("admin-wait", "admin-queue", "demo-approval-v2", "admin-pass"):
            services.execution_start(
                flow=Flow.objects.get(name=flow_name), name=f"more-{i}", actor=SYSTEM
            )
    Function.objects.create(name="another_fn", handler="flowsite_demo_parts.process_part")
    assert changelist_queries(admin_client, model) == before


@pytest.mark.parametrize(
    "model", [HistoryEvent, WorkItem, Timer, TaskToken, FlowVersion, Execution]
)
def test_runtime_tables_are_read_only(admin_client, data, model):
    obj = model.objects.first()
    assert admin_client.get(url(model, "add")).status_code == 403
    response = admin_client.get(url(model, "change", obj.pk))
    assert b'name="_save"' not in response.content  # view-only page
    assert admin_client.post(url(model, "change", obj.pk), {}).status_code == 403
    if model is not Execution:
        assert admin_client.post(url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403
    assert model.objects.filter(pk=obj.pk).exists()


def test_running_execution_cannot_be_deleted_but_a_finished_one_can(admin_client, data):
    assert (
        admin_client.post(url(Execution, "delete", data["waiting"].pk), {"post": "yes"}).status_code
        == 403
    )
    response = admin_client.post(url(Execution, "delete", data["finished"].pk), {"post": "yes"})
    assert response.status_code == 302
    assert not Execution.objects.filter(pk=data["finished"].pk).exists()
    response = admin_client.post(
        url(Execution, "changelist"),
        {
            "action": "delete_selected",
            "index": 0,
            "_selected_action": [data["waiting"].pk],
            "post": "yes",
        },
        follow=True,
    )
    assert Execution.objects.filter(pk=data["waiting"].pk).exists()
    assert b"were not deleted" in response.content


def test_execution_json_is_pretty_and_escaped(admin_client, data):
    execution = data["finished"]
    page = admin_client.get(url(Execution, "change", execution.pk)).content.decode()
    assert XSS not in page
    assert "&lt;script&gt;alert(&#x27;owned&#x27;)&lt;/script&gt;" in page
    assert '<pre class="flowsite-json"' in page
    assert "  &quot;n&quot;: 1" in page  # indented JSON (quotes escaped too)
    # The history shows the same input (ExecutionStarted), escaped too.
    for event in HistoryEvent.objects.filter(execution=execution):
        assert XSS not in admin_client.get(url(HistoryEvent, "change", event.pk)).content.decode()
    assert XSS not in admin_client.get(url(HistoryEvent, "changelist")).content.decode()


def test_execution_links_to_its_filtered_history(admin_client, data):
    execution = data["waiting"]
    page = admin_client.get(url(Execution, "change", execution.pk)).content.decode()
    link = f"{url(HistoryEvent, 'changelist')}?execution__id__exact={execution.pk}"
    assert link in page
    response = admin_client.get(link)
    assert response.status_code == 200
    shown = list(response.context["cl"].result_list)
    assert shown and {e.execution_id for e in shown} == {execution.pk}
    assert [e.event_id for e in shown] == sorted(e.event_id for e in shown)


def test_stop_action_stops_running_executions_and_skips_the_rest(admin_client, data):
    waiting, finished = data["waiting"], data["finished"]
    assert Timer.objects.filter(execution=waiting, fired_at__isnull=True).exists()
    response = admin_client.post(
        url(Execution, "changelist"),
        {"action": "stop_executions", "index": 0, "_selected_action": [waiting.pk, finished.pk]},
        follow=True,
    )
    assert response.status_code == 200
    waiting.refresh_from_db()
    finished.refresh_from_db()
    assert waiting.status == ExecutionStatus.STOPPED
    assert finished.status == ExecutionStatus.SUCCEEDED
    assert not Timer.objects.filter(execution=waiting, fired_at__isnull=True).exists()
    text = response.content.decode()
    assert "Stopped 1 execution(s)." in text
    assert "Skipped 1 execution(s) that were not running." in text


def test_adding_a_flow_goes_through_the_services(admin_client, data):
    definition = PASS_FLOW.replace("admin-pass", "admin-new")
    response = admin_client.post(
        url(Flow, "add"),
        {"name": "admin-new", "description": "made in the admin", "definition": definition},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    flow = Flow.objects.get(name="admin-new")
    assert flow.dialect == "cloudflow" and flow.version == 1
    assert list(flow.versions.values_list("version", flat=True)) == [1]
    assert flow.versions.get().created_by is not None  # the admin user

    page = admin_client.get(url(Flow, "change", flow.pk)).content.decode()
    assert url(FlowVersion, "change", flow.versions.get().pk) in page  # the versions inline


def test_changing_a_flow_makes_a_new_version(admin_client, data):
    flow = Flow.objects.get(name="admin-pass")
    changed = PASS_FLOW.replace("echoed.$", "echo.$")
    response = admin_client.post(
        url(Flow, "change", flow.pk), flow_post(flow, description="v2", definition=changed)
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    flow.refresh_from_db()
    assert flow.version == 2 and flow.definition == changed and flow.description == "v2"
    assert sorted(flow.versions.values_list("version", flat=True)) == [1, 2]
    # Saving again without a change to the definition makes no version.
    response = admin_client.post(
        url(Flow, "change", flow.pk), flow_post(flow, description="v2 again", definition=changed)
    )
    assert response.status_code == 302
    flow.refresh_from_db()
    assert flow.version == 2 and flow.description == "v2 again"


def test_an_invalid_definition_is_a_form_error(admin_client, data):
    broken = PASS_FLOW.replace("End: true", "Next: Nowhere")
    response = admin_client.post(url(Flow, "add"), {"name": "admin-broken", "definition": broken})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["definition"]
    assert any("States[0].Next" in e and "Nowhere" in e for e in errors), errors
    assert not Flow.objects.filter(name="admin-broken").exists()

    flow = Flow.objects.get(name="admin-pass")
    response = admin_client.post(
        url(Flow, "change", flow.pk), flow_post(flow, definition="Type: StateMachine\n")
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["definition"]
    flow.refresh_from_db()
    assert flow.version == 1


def test_deleting_a_flow_removes_its_executions(admin_client, data):
    flow = Flow.objects.get(name="admin-pass")
    confirm = admin_client.get(url(Flow, "delete", flow.pk))
    assert confirm.status_code == 200
    assert dict(confirm.context["model_count"]) == {
        "flows": 1,
        "flow versions": 1,
        "executions": 1,
        "history events": 4,
    }
    response = admin_client.post(url(Flow, "delete", flow.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not Flow.objects.filter(name="admin-pass").exists()
    assert not Execution.objects.filter(name="xss").exists()


def test_function_admin_creates_and_updates_through_the_services(admin_client, data):
    response = admin_client.post(
        url(Function, "add"),
        {
            "name": "admin_fn",
            "handler": "flowsite_demo_parts.process_part",
            "description": "",
            "timeout_seconds": 5,
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    fn = Function.objects.get(name="admin_fn")
    response = admin_client.post(
        url(Function, "change", fn.pk),
        {"handler": "flowsite_demo_parts.nothing_here", "description": "d", "timeout_seconds": 7},
    )
    assert response.status_code == 302
    fn.refresh_from_db()
    assert (fn.handler, fn.timeout_seconds, fn.description) == (
        "flowsite_demo_parts.nothing_here",
        7,
        "d",
    )
    bad = admin_client.post(
        url(Function, "add"), {"name": "bad fn", "handler": "nodots", "timeout_seconds": 5}
    )
    assert bad.status_code == 200 and not Function.objects.filter(name="bad fn").exists()

    response = admin_client.post(
        url(Function, "changelist"),
        {
            "action": "check_handlers",
            "index": 0,
            "_selected_action": [fn.pk, Function.objects.get(name="demo_process_part").pk],
        },
        follow=True,
    )
    text = response.content.decode()
    assert "Function admin_fn: cannot load flowsite_demo_parts.nothing_here" in text
    assert "1 handler(s) can be imported." in text
