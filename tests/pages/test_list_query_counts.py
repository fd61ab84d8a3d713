"""Each list page costs the same number of queries whatever the data size: measured at a small
and at a larger size (more flows, executions than a page holds, waiting steps, invocations,
audit entries), and bounded."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from executions import views
from executions.models import (
    Execution,
    ExecutionStatus,
    FlowVersion,
    WorkItem,
    WorkKind,
    WorkStatus,
)
from flowsite import audit
from flowsite.access import SYSTEM
from functions import services as function_services
from functions.models import Invocation, InvocationStatus
from tests.factories import PASS_FLOW, FlowFactory

from . import lists_support
from .lists_support import client_for, waiting_approval

# Fixtures shared by the list pages' tests.
demo = lists_support.demo
plain_static = lists_support.plain_static

pytestmark = pytest.mark.django_db

# page: (URL, its queries). Each includes the session, the user and the user's roles (3), and the
# navigation's approvals count (1).
PAGES = {
    "overview": ("/", 9),
    "flows": ("/flows/", 7),
    "flow": ("/flows/demo-approval-v2/", 8),
    "flow, input from": ("/flows/demo-approval-v2/?input_from=e-1", 9),
    "executions": ("/executions/", 6),
    "executions, filtered": (
        "/executions/?status=Succeeded&status=Failed&flow=fa-1&name=e-&q=order.id+%3E%3D+2"
        "&started_from=2020-01-01T00:00",
        6,
    ),
    "executions, older page": ("/executions/?before=999999", 6),
    "executions, newer page": ("/executions/?after=1", 6),
    "approvals": ("/approvals/", 6),
    "functions": ("/functions/", 5),
    "function": ("/functions/demo_render_status/", 7),
    "audit": ("/audit/", 5),
    "audit, filtered": ("/audit/?action=execution.start&user=system&from=2020-01-01T00:00", 5),
}


def add_data(scale: int, tag: str) -> None:
    """``scale`` flows with ``3 * scale`` executions each, ``scale`` waiting steps, ``3 * scale``
    invocations of a function and ``10 * scale`` audit entries."""
    now = timezone.now()
    statuses = [ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.RUNNING]
    for i in range(scale):
        flow = FlowFactory(name=f"f{tag}-{i}", definition=PASS_FLOW)
        version = FlowVersion.objects.get(flow=flow)
        Execution.objects.bulk_create(
            Execution(
                flow=flow,
                flow_version=version,
                name=f"e-{j}",
                status=statuses[j % 3],
                input={"order": {"id": j}},
                started_at=now,
                stopped_at=now if j % 3 != 2 else None,
                error_code="Boom" if j % 3 == 1 else "",
            )
            for j in range(3 * scale)
        )
        WorkItem.objects.bulk_create(
            WorkItem(
                execution=execution,
                kind=WorkKind.INVOKE,
                entry_id=2,
                attempt=1,
                state_name="Render",
                function_name="demo_render_status",
                status=WorkStatus.DONE,
                error="Boom" if j % 2 else "",
                created_at=now,
                next_dispatch_at=now,
                started_at=now,
                finished_at=now,
                worker="w1",
            )
            for j, execution in enumerate(Execution.objects.filter(flow=flow))
        )
    for _ in range(scale):
        waiting_approval()
    function = function_services.function_get("demo_render_status")
    Invocation.objects.bulk_create(
        Invocation(
            request_id=f"r{tag}-{k}",
            function=function,
            function_name=function.name,
            payload=b"{}",
            status=InvocationStatus.SUCCEEDED,
            invoked_by=None,
        )
        for k in range(3 * scale)
    )
    for k in range(10 * scale):
        audit.record(SYSTEM, "execution.start", "execution", f"f-0/x{k}")


def counts(client) -> dict[str, int]:
    found = {}
    for name, (url, _) in PAGES.items():
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
        assert response.status_code == 200, (name, response.status_code)
        found[name] = len(queries.captured_queries)
    return found


@pytest.fixture
def no_diagram(monkeypatch):
    # The diagram belongs to the execution page's module (its own query budget and tests).
    monkeypatch.setattr(views, "flow_diagram", lambda version: None)


def test_query_counts_do_not_grow_with_the_data(demo, no_diagram, django_assert_max_num_queries):
    admin = client_for("admin")
    add_data(2, "a")
    small = counts(admin)
    add_data(12, "b")  # now more executions (and audit entries) than a page holds
    assert Execution.objects.count() > 3 * views.selectors.PAGE_SIZE
    large = counts(admin)
    assert large == small
    for name, (url, limit) in PAGES.items():
        with django_assert_max_num_queries(limit):
            admin.get(url)
        assert small[name] <= limit, (name, small[name])


def test_the_flow_page_with_its_diagram_costs_the_same_at_both_sizes(demo):
    admin = client_for("admin")
    url = "/flows/demo-approval-v2/"
    admin.get(url)  # the first view lays the graph out once for the version (then it is kept)
    add_data(1, "a")
    with CaptureQueriesContext(connection) as small:
        response = admin.get(url)
    assert 'class="diagram graph-wrap"><svg' in response.content.decode()
    add_data(8, "b")
    with CaptureQueriesContext(connection) as large:
        admin.get(url)
    assert len(large.captured_queries) == len(small.captured_queries) <= PAGES["flow"][1] + 1
