"""Roles, checked in the services (so the API, the dashboard and the admin agree), and the audit
log every change writes (append-only)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from executions import services
from executions.models import Execution, TaskToken
from executions.runtime import transition
from flowsite.access import SYSTEM, Actor, Perm, can, roles_of
from flowsite.admin_base import model_perm_to_role_perm
from flowsite.audit.models import AppendOnly, AuditEntry
from flowsite.errors import ServiceError
from functions import services as function_services
from tests.factories import PASS_FLOW, WAIT_FLOW, UserFactory

pytestmark = pytest.mark.django_db

CALLBACK_FLOW = """\
Type: StateMachine
Name: cb
SpecVersion: v1
StartAt: Ask
States:
  - Type: Task
    Name: Ask
    Action: FC:InvokeFunction
    TaskMode: WaitForCustomCallback
    Parameters:
      resourceArn: acs:fc:::functions/cb_submit
    End: true
"""

ROLES = ["viewer", "operator", "approver", "admin"]


def actor(*roles: str, ip: str = "203.0.113.7") -> Actor:
    return Actor(user=UserFactory(roles=list(roles)), via="web", ip=ip, user_agent="pytest")


@pytest.fixture
def world():
    function_services.function_create(name="cb_submit", handler="apihandlers.echo", actor=SYSTEM)
    pass_flow = services.flow_create(name="p", definition=PASS_FLOW, actor=SYSTEM)
    wait_flow = services.flow_create(name="w", definition=WAIT_FLOW, actor=SYSTEM)
    cb_flow = services.flow_create(name="cb", definition=CALLBACK_FLOW, actor=SYSTEM)
    AuditEntry.objects.all()  # (set-up rows above are the system's)
    return {"pass": pass_flow, "wait": wait_flow, "cb": cb_flow}


def allowed(call) -> bool:
    try:
        call()
    except ServiceError as exc:
        if exc.code == "Forbidden":
            assert exc.status == 403
            return False
        raise
    return True


# What each role may do, service by service (True: allowed).
MATRIX = {
    "start": {"viewer": False, "operator": True, "approver": False, "admin": True},
    "stop": {"viewer": False, "operator": True, "approver": False, "admin": True},
    "run_again": {"viewer": False, "operator": True, "approver": False, "admin": True},
    "approve": {"viewer": False, "operator": False, "approver": True, "admin": True},
    "reject": {"viewer": False, "operator": False, "approver": True, "admin": True},
    "report": {"viewer": False, "operator": True, "approver": False, "admin": True},
    "flow_change": {"viewer": False, "operator": False, "approver": False, "admin": True},
    "function_change": {"viewer": False, "operator": False, "approver": False, "admin": True},
    "invoke": {"viewer": False, "operator": True, "approver": False, "admin": True},
}


@pytest.mark.parametrize("role", [*ROLES, ""])
def test_every_service_checks_the_role(world, role, monkeypatch):
    who = actor(*([role] if role else []))
    monkeypatch.setattr(function_services, "publish_invocation", lambda pk: None)
    waiting = [
        services.execution_start(flow=world["wait"], name=f"w{i}", actor=SYSTEM)[0]
        for i in range(2)
    ]
    tasks = [
        TaskToken.objects.get(
            execution=services.execution_start(flow=world["cb"], name=f"c{i}", actor=SYSTEM)[0]
        )
        for i in range(3)
    ]
    calls = {
        "start": lambda: services.execution_start(flow=world["pass"], actor=who),
        "stop": lambda: services.execution_stop(execution=waiting[0], cause="x", actor=who),
        "run_again": lambda: services.execution_run_again(execution=waiting[1], actor=who),
        "approve": lambda: services.task_approve(task_id=tasks[0].pk, actor=who),
        "reject": lambda: services.task_reject(task_id=tasks[1].pk, error="No", actor=who),
        "report": lambda: services.task_report_succeeded(
            token=transition.token_of(tasks[2]), output={}, actor=who
        ),
        "flow_change": lambda: services.flow_update(flow=world["pass"], description="d", actor=who),
        "function_change": lambda: function_services.function_update(
            function=function_services.function_get("cb_submit"), timeout_seconds=9, actor=who
        ),
        "invoke": lambda: function_services.invocation_submit(
            function=function_services.function_get("cb_submit"), payload=b"{}", actor=who
        ),
    }
    before = AuditEntry.objects.count()
    got = {name: allowed(call) for name, call in calls.items()}
    expected = {name: (MATRIX[name][role] if role else False) for name in calls}
    assert got == expected
    # Exactly one audit row per allowed change, none for a refused one; all by this person.
    rows = list(AuditEntry.objects.order_by("id")[before:])
    assert len(rows) == sum(got.values())
    assert {r.actor_name for r in rows} <= {who.name}
    assert all(r.via == "web" and r.ip == "203.0.113.7" for r in rows)


def test_audit_rows_say_who_what_and_why(world):
    operator = actor("operator")
    execution, _ = services.execution_start(flow=world["wait"], name="e1", actor=operator)
    services.execution_stop(execution=execution, cause="the customer cancelled", actor=operator)
    again = services.execution_run_again(execution=execution, input={"a": 2}, actor=operator)
    entries = list(AuditEntry.objects.filter(actor_name=operator.name).order_by("id"))
    assert [(e.action, e.object_name) for e in entries] == [
        ("execution.start", "w/e1"),
        ("execution.stop", "w/e1"),
        ("execution.run_again", f"w/{again.name}"),
    ]
    assert entries[1].detail["reason"] == "the customer cancelled"
    assert entries[2].detail == {"again_from": "e1", "same_input": False}
    # A refused change (a second stop) writes nothing.
    with pytest.raises(ServiceError):
        services.execution_stop(execution=execution, actor=operator)
    assert AuditEntry.objects.filter(actor_name=operator.name).count() == 3


def test_approvals_are_audited_with_the_task_fingerprint_never_the_token(world):
    execution, _ = services.execution_start(flow=world["cb"], name="a1", actor=SYSTEM)
    row = TaskToken.objects.get(execution=execution)
    approver = actor("approver")
    services.task_approve(task_id=row.pk, output={"ok": True}, actor=approver)
    entry = AuditEntry.objects.get(action="task.approve")
    assert entry.object_name == "cb/a1/Ask" and entry.detail["task"] == row.fingerprint
    assert transition.token_of(row) not in str(entry.detail)
    with pytest.raises(ServiceError) as again:
        services.task_reject(
            task_id=row.pk, error="Late", actor=actor("approver"), execution_id=execution.pk
        )
    assert again.value.code == "TaskAlreadyCompleted" and again.value.status == 409
    execution.refresh_from_db()
    assert execution.status == "Succeeded" and execution.output == {"ok": True}


def test_the_audit_log_is_append_only():
    services.flow_create(name="x", definition=PASS_FLOW, actor=actor("admin"))
    entry = AuditEntry.objects.get()
    with pytest.raises(AppendOnly):
        AuditEntry.objects.update(action="nothing")
    with pytest.raises(AppendOnly):
        AuditEntry.objects.all().delete()
    entry.action = "rewritten"
    with pytest.raises(AppendOnly):
        entry.save()
    with pytest.raises(AppendOnly):
        entry.delete()
    assert AuditEntry.objects.get().action == "flow.create"


def test_roles_come_from_groups_and_a_superuser_has_them_all():
    assert {g.name for g in Group.objects.all()} >= set(ROLES)
    assert roles_of(UserFactory()) == frozenset()
    assert {r.value for r in roles_of(UserFactory(roles=["approver"]))} == {"approver"}
    boss = UserFactory(is_superuser=True)
    assert {r.value for r in roles_of(boss)} == set(ROLES)
    inactive = UserFactory(roles=["admin"], is_active=False)
    assert not can(inactive, Perm.READ)


@pytest.mark.parametrize(
    ("perm", "needed"),
    [
        ("executions.view_flow", Perm.READ),
        ("executions.add_flow", Perm.MANAGE_FLOWS),
        ("executions.change_execution", Perm.STOP),
        ("executions.change_historyevent", None),
        ("functions.change_function", Perm.MANAGE_FUNCTIONS),
        ("auth.change_user", Perm.MANAGE_USERS),
        ("audit.view_auditentry", Perm.READ_AUDIT),
        ("audit.change_auditentry", None),
        ("sessions.view_session", None),
    ],
)
def test_the_admins_model_permissions_follow_the_roles(perm, needed):
    assert model_perm_to_role_perm(perm) == needed


def test_the_admin_follows_the_roles(client, world):
    viewer = UserFactory(roles=["viewer"])
    client.force_login(viewer)
    flows = reverse("admin:executions_flow_changelist")
    assert client.get(flows).status_code == 200
    assert client.get(reverse("admin:executions_flow_add")).status_code == 403
    assert client.get(reverse("admin:auth_user_changelist")).status_code == 403
    assert client.get(reverse("admin:audit_auditentry_changelist")).status_code == 403
    nobody = UserFactory()
    client.force_login(nobody)
    assert client.get(flows).status_code == 302  # to the admin's login: no role, no admin
    admin = UserFactory(roles=["admin"])
    client.force_login(admin)
    assert client.get(reverse("admin:executions_flow_add")).status_code == 200
    assert client.get(reverse("admin:audit_auditentry_changelist")).status_code == 200


def test_role_changes_in_the_admin_are_audited(client):
    admin = UserFactory(roles=["admin"])
    target = UserFactory(username="riley")
    client.force_login(admin)
    url = reverse("admin:auth_user_change", args=[target.pk])
    response = client.post(
        url,
        {
            "username": "riley",
            "is_active": "on",
            "groups": [Group.objects.get(name="approver").pk],
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    entry = AuditEntry.objects.get(action="user.roles")
    assert entry.actor_name == admin.username and entry.object_name == "riley"
    assert entry.detail["before"]["groups"] == [] and entry.detail["after"]["groups"] == [
        "approver"
    ]


def test_the_api_needs_a_role_to_read(anon_client, role_client, world):
    assert anon_client.get("/api/v1/flows/").status_code == 401
    nobody = role_client("")
    refused = nobody.get("/api/v1/flows/")
    assert refused.status_code == 403 and refused.json()["code"] == "Forbidden"
    assert role_client("viewer").get("/api/v1/flows/").status_code == 200
    # A viewer reads but cannot start; an approver cannot report a callback over the API.
    start = role_client("viewer").post("/api/v1/flows/p/executions/", {}, format="json")
    assert start.status_code == 403 and start.json()["required_role"] == "operator"
    assert not Execution.objects.filter(flow=world["pass"]).exists()


def test_the_audit_log_over_the_api_is_for_admins(anon_client, role_client, world):
    operator = actor("operator")
    execution, _ = services.execution_start(flow=world["wait"], name="api1", actor=operator)
    services.execution_stop(execution=execution, cause="enough", actor=operator)
    assert anon_client.get("/api/v1/audit/").status_code == 401
    for role in ("viewer", "operator", "approver", ""):
        refused = role_client(role).get("/api/v1/audit/")
        assert refused.status_code == 403, role
    admin = role_client("admin")
    body = admin.get("/api/v1/audit/", {"action": "execution.stop"}).json()
    assert [(e["action"], e["object"]["name"], e["actor"]) for e in body["results"]] == [
        ("execution.stop", "w/api1", operator.name)
    ]
    assert body["results"][0]["detail"]["reason"] == "enough"
    assert body["results"][0]["ip"] == "203.0.113.7"
    by_user = admin.get("/api/v1/audit/", {"user": operator.name}).json()["results"]
    assert [e["action"] for e in by_user] == ["execution.stop", "execution.start"]
    assert admin.get("/api/v1/audit/", {"since": "not a time"}).status_code == 400
    assert admin.get("/api/v1/audit/", {"action": "<script>"}).status_code == 400
    future = admin.get("/api/v1/audit/", {"since": "2999-01-01T00:00:00Z"}).json()
    assert future["results"] == []


@pytest.mark.django_db(transaction=True)
def test_the_role_groups_come_back_after_a_flush():
    # A flush empties every table, the groups the roles migration made included; without them
    # no role could be granted. Django re-emits post_migrate after a flush and they come back.
    from django.core.management import call_command

    call_command("flush", interactive=False, verbosity=0)
    assert {g.name for g in Group.objects.all()} >= set(ROLES)
    assert {r.value for r in roles_of(UserFactory(roles=["viewer"]))} == {"viewer"}
