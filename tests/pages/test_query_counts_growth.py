"""The dashboard benchmark (``bench/dashboard.py``) on a small scale: its pages cost the same
number of queries at two data sizes, on data loaded the way the benchmark loads it; and what
its loader writes is what the runtime writes (the read model equals a rebuild from the history,
histories are gapless, a copied waiting step is approved with its own task token, the input
condition finds the copies' customer ids)."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from django.db import connection
from django.db.models import Count, Max, Min
from django.test.utils import CaptureQueriesContext

from bench import dashboard
from executions import services
from executions.models import Execution, HistoryEvent, StepVisit, TaskToken
from executions.runtime.transition import token_hash, token_of
from flowsite.access import Actor

from .test_execution_readmodel import PLAIN_STATIC, rebuilt, snapshot

pytestmark = pytest.mark.django_db

# A flow of each kind: a polling loop (the long execution), callbacks (waiting approvals,
# timeouts), a Map and a Parallel, plain chains, a legacy flow.
FLOWS = [
    "demo-polling",
    "demo-approval-v2",
    "demo-fanout",
    "expense-approval",
    "webhook-relay",
    "orders-checkout",
    "legacy-billing",
]


@pytest.fixture(autouse=True)
def plain_static(settings):
    settings.STORAGES = PLAIN_STATIC


def load(executions: int, events: int, big_events: int, seed: int, kept=None) -> dashboard.Loaded:
    return dashboard.load(
        executions=executions,
        events=events,
        big_events=big_events,
        variants=1,
        audit_entries=40,
        invocations=20,
        flows=FLOWS,
        seed=seed,
        log=lambda message: None,
        kept=kept,
    )


KINDS = ("ended", "callback", "timer", "pending", "claimed", "pending+callback",
         "claimed+callback")  # fmt: skip


def pages(info: dashboard.Loaded) -> list[dashboard.Page]:
    """The benchmark's pages; the page of a small execution once per kind: ended, and running
    while waiting for a person, a timer, a queued or a running attempt (each reads what it
    waits for, and one with a waiting callback step shows its forms)."""
    out = []
    for page in dashboard.page_plan(info):
        if page.label.startswith("~10-event"):
            for kind in KINDS:
                only = [s for s in info.samples if s[2] == kind]
                if not only:
                    continue
                sub = replace(info, samples=only)
                label = f"{page.label} ({kind})"
                out.append(replace(page, label=label, make=dashboard.page_plan(sub)[-1].make))
        else:
            out.append(page)
    return out


def query_counts(info: dashboard.Loaded) -> dict[str, set[int]]:
    """Each page's query counts over several of the URLs the benchmark asks for (each asked
    once before it is counted: the first view of a flow version draws its step graph)."""
    client = dashboard.admin_client()
    rng = random.Random(1)
    found: dict[str, set[int]] = {}
    for page in pages(info):
        counts = set()
        for _ in range(3):
            url, headers = page.make(rng)
            if page.before:
                page.before()
            else:
                client.get(url, **headers)
            with CaptureQueriesContext(connection) as ctx:
                response = client.get(url, **headers)
            assert response.status_code in (200, 286), (page.label, url, response.status_code)
            counts.add(len(ctx.captured_queries))
        found[page.label] = counts
    return found


def test_every_benchmark_page_costs_the_same_queries_at_two_data_sizes():
    kept: dict = {}
    small = load(60, 700, 300, seed=1, kept=kept)
    before = query_counts(small)
    large = load(400, 6_000, 1_500, seed=2, kept=kept)  # added: 460 executions in all
    assert Execution.objects.count() == 460
    assert large.big_events > 4 * small.big_events
    after = query_counts(large)
    # (the small execution's page is counted per kind of execution both loads happen to have)
    common = before.keys() & after.keys()
    assert {f"~10-event execution: page ({kind})" for kind in KINDS[:3]} <= common
    assert {k: after[k] for k in common} == {k: before[k] for k in common}
    # and the same whatever URL of a page was asked for (cursor, filter, object)
    assert not {k: v for k, v in after.items() if len(v) != 1}


def test_the_loaded_data_is_what_the_runtime_writes():
    info = load(150, 1_800, 400, seed=3)
    assert info.executions == 150
    assert info.statuses["Succeeded"] > 100 and info.statuses["Running"] >= 1
    assert {"Failed", "Stopped", "TimedOut"} <= set(info.statuses)
    # Every history runs 1..N without gaps, N the execution's event_count.
    per = (
        HistoryEvent.objects.values("execution_id")
        .annotate(n=Count("id"), low=Min("event_id"), high=Max("event_id"))
        .order_by()
    )
    counted = dict(Execution.objects.values_list("pk", "event_count"))
    assert len(per) == 150
    for row in per:
        assert row["low"] == 1 and row["high"] == row["n"] == counted[row["execution_id"]], row
    # The read model of each kind of execution is what a rebuild from its history writes.
    picked = {}
    for execution in Execution.objects.select_related("flow").order_by("pk"):
        picked.setdefault((execution.flow.name, execution.status), execution)
    assert len(picked) >= 12
    for execution in picked.values():
        assert StepVisit.objects.filter(execution=execution).exists()
        assert snapshot(execution) == rebuilt(execution), execution


def test_a_copied_waiting_step_is_approved_with_its_own_token():
    info = load(120, 1_400, 0, seed=4)
    assert info.token_ids
    task = TaskToken.objects.select_related("execution").get(pk=info.token_ids[0])
    # The stored hash is the hash of the token this execution's salt derives.
    assert token_hash(token_of(task)) == task.token_hash
    assert task.fingerprint in str(task.execution.state)
    approver = dashboard._users()["carol"]
    events = task.execution.event_count
    services.task_approve(
        task_id=task.pk,
        output={"decision": "approve", "comment": "ok"},
        actor=Actor(user=approver, via="web"),
    )
    task.refresh_from_db()
    assert not task.is_open
    execution = Execution.objects.get(pk=task.execution_id)
    assert execution.event_count > events
    assert execution.status in ("Running", "Succeeded")


def test_the_input_condition_finds_the_copies_customers():
    info = load(200, 2_400, 0, seed=5)
    client = dashboard.admin_client()
    wanted = next(
        c
        for c in dashboard.TOP_CUSTOMERS
        if Execution.objects.filter(input__order__customer_id=c).exists()
    )
    response = client.get("/executions/", {"q": f"order.customer_id = {wanted}"})
    assert response.status_code == 200
    names = set(
        Execution.objects.filter(input__order__customer_id=wanted).values_list("name", flat=True)
    )
    shown = [n for n in names if n in response.content.decode()]
    assert shown and len(shown) == min(len(names), 25)
    assert info.executions == 200
