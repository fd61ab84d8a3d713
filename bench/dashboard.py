#!/usr/bin/env python
"""The dashboard on a big database: server-side time and SQL queries per page, on PostgreSQL
with 100,000 executions and 1,000,000 history events.

    .venv/bin/python bench/dashboard.py [--executions 100000] [--events 1000000]
                                        [--requests 200] [--rounds 3] [--keep]

What it does (bench/README.md, "Benchmark: the dashboard…", has the method and the figures):

1. creates a fresh database ``flowsite_dash_<random>`` on ``postgres://postgres@127.0.0.1:5432``
   (dropped at the end, also on failure or Ctrl-C), migrates it, loads the demo flows and
   functions, adds generated flows (23 in all) and a few users;
2. loads the data. Nothing is invented row by row: each *template* execution is driven by the
   real runtime (``runtime.transition`` with a fake clock, fake function results, callbacks
   answered or left waiting, timers fired, stops), inside a transaction that is rolled back
   after its rows (execution, history, step visits and summaries, work items, timers, task
   tokens, values) have been read back. Those rows are then copied (``COPY``) once per
   execution of the data set with its own id, name, input fields, start time, token salt and
   the task tokens' fingerprints and hashes derived from them, so the history, the read model
   and the runtime's bookkeeping of every execution are what the runtime itself would have
   written. The 25,000-event execution is one such template (a polling loop), copied once so
   that it is running now. Then audit entries and function invocations, then ``VACUUM ANALYZE``;
3. measures each page with Django's test ``Client`` in this process, logged in as an admin:
   every timed request asks for another object, cursor or filter value, pages interleaved,
   ``--requests`` per page and round, after a warm-up; p50, p99 and max per page, the SQL
   queries of one request, and, for a page whose p99 misses the target, ``EXPLAIN ANALYZE``
   of its slowest query. The table printed last is the median of the rounds with their range.

``load()`` and ``page_plan()`` are also used by ``tests/pages/test_query_counts_growth.py``
(on SQLite, at two small sizes), so the test asserts the query counts of exactly these pages.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import json
import math
import os
import platform
import random
import re
import secrets
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_SERVER = "postgres://postgres@127.0.0.1:5432"
TARGET_MS = 100.0

# The templates' clock starts here. Every moment a template wrote (columns, and ISO strings or
# epoch seconds inside JSON) is found again by its year and moved to the copy's start; copies
# start on whole seconds, so the fractions written stay right as they are.
BASE = datetime(2001, 1, 1, tzinfo=UTC)
BASE_EPOCH = int(BASE.timestamp())
WORKER = "bench-worker@dash:4242"

# Values in a template's input that every copy replaces with its own.
SENTINELS = {
    "zzbnamezz": "name",
    "987650001": "customer",
    "987650002": "order",
    "zzassetzz": "asset",
    "zzreqzz": "request",
    "zzmailzz": "approver",
}
_PARTS = re.compile(
    r"(?P<ts>2001-\d\d-\d\d[T ]\d\d:\d\d:\d\d)"
    r"|(?<![\d.])(?P<ep>9783\d{6})(?![\d])"
    r"|(?P<fp>tt:[0-9a-f]{12})"
    r"|(?P<s>zzbnamezz|987650001|987650002|zzassetzz|zzreqzz|zzmailzz)"
)

USERS = {  # username: roles
    "bench-admin": ["admin"],
    "alice": ["operator"],
    "bob": ["operator", "approver"],
    "carol": ["approver"],
    "ci-bot": ["operator"],
}
STARTERS = [("ci-bot", 0.55), ("alice", 0.15), ("bob", 0.1), (None, 0.2)]


# =============================================================================================
# Flows: the demo flows and generated ones in the same styles
# =============================================================================================


def _task(name: str, fn: str, nxt: str | None, *, retry: bool = True, indent: str = "  ") -> str:
    lines = [
        "- Type: Task",
        f"  Name: {name}",
        "  Action: FC:InvokeFunction",
        "  TaskMode: RequestComplete",
        "  Parameters:",
        "    invocationType: Sync",
        f"    resourceArn: acs:fc:::functions/{fn}/LATEST",
    ]
    if retry:
        lines += [
            "  Retry:",
            "    - Errors: [FC.ResourceThrottled, FC.InternalServerError]",
            "      MaxAttempts: 3",
            "      IntervalSeconds: 2",
            "      BackoffRate: 2",
        ]
    lines += ["  OutputConstructor:", "    $: jsonMerge($Input, $Output.Body)"]
    lines.append(f"  Next: {nxt}" if nxt else "  End: true")
    return "".join(f"{indent}{line}\n" for line in lines)


def _head(name: str, description: str, start: str) -> str:
    return (
        f"Type: StateMachine\nName: {name}\nSpecVersion: v1\nDescription: {description}\n"
        f"StartAt: {start}\nStates:\n"
    )


def chain_flow(name: str, description: str, steps: list[tuple[str, str]], check: str = "") -> str:
    """Tasks one after the other (each with a Retry on throttling); ``check``: a Choice on the
    last output's ``approved`` before the last task."""
    text = _head(name, description, steps[0][0])
    for i, (state, fn) in enumerate(steps):
        following = steps[i + 1][0] if i + 1 < len(steps) else None
        if check and i == len(steps) - 2:
            following = check
        text += _task(state, fn, following)
    if check:
        last = steps[-1][0]
        text += (
            f"  - Type: Choice\n    Name: {check}\n    Branches:\n"
            f"      - Condition: $Input.approved == true\n        Next: {last}\n"
            f"    Default: Declined\n"
            f"  - Type: Fail\n    Name: Declined\n    Code: PaymentDeclined\n"
            f"    Detail: the card was declined\n"
        )
    return text


def map_flow(name: str, description: str, prefix: str, concurrency: int) -> str:
    text = _head(name, description, "ListItems")
    text += _task("ListItems", f"bench_{prefix}_list", "ProcessItems")
    text += (
        "  - Type: Map\n    Name: ProcessItems\n    ItemsPath: $Input.items\n"
        f"    MaxConcurrency: {concurrency}\n    Processor:\n      StartAt: ProcessItem\n"
        "      States:\n"
    )
    text += _task("ProcessItem", f"bench_{prefix}_item", None, indent="        ").replace(
        "jsonMerge($Input, $Output.Body)", "$Output.Body"
    )
    text += "    Next: Finish\n"
    text += _task("Finish", f"bench_{prefix}_finish", None)
    return text


def approval_flow(name: str, description: str, act: str, *, timeout: int, catch: bool) -> str:
    text = _head(name, description, "AskApprover")
    text += (
        "  - Type: Task\n    Name: AskApprover\n    Action: FC:InvokeFunction\n"
        f'    TaskMode: WaitForCustomCallback\n    Timeout: "{timeout}"\n'
        "    Parameters:\n      invocationType: Sync\n"
        "      resourceArn: acs:fc:::functions/demo_notify_approver/LATEST\n"
        "      body:\n        task_token.$: $Context.Current.TaskToken\n"
        "        request_id.$: $Input.request_id\n        approver.$: $Input.approver\n"
        "        summary.$: $Input.summary\n"
        "    OutputConstructor:\n      request_id.$: $Input.request_id\n"
        "      order.$: $Input.order\n      decision.$: $Output.decision\n"
        "      comment.$: $Output.comment\n"
    )
    if catch:
        text += "    Catch:\n      - Errors: [FnF.Timeout]\n        Next: NoAnswer\n"
    text += (
        "    Next: Route\n  - Type: Choice\n    Name: Route\n    Branches:\n"
        '      - Condition: $Input.decision == "approve"\n        Next: Act\n'
        "    Default: Rejected\n"
    )
    text += _task("Act", act, None)
    text += (
        "  - Type: Fail\n    Name: Rejected\n    Code: Rejected\n    Detail: the approver said no\n"
    )
    if catch:
        text += (
            "  - Type: Fail\n    Name: NoAnswer\n    Code: NoAnswer\n"
            "    Detail: nobody answered in time\n"
        )
    return text


def poll_flow(name: str, description: str, prefix: str, wait: int) -> str:
    text = _head(name, description, "Submit")
    text += _task("Submit", f"bench_{prefix}_submit", "WaitBeforeCheck")
    text += f"  - Type: Wait\n    Name: WaitBeforeCheck\n    Seconds: {wait}\n    Next: Check\n"
    text += _task("Check", f"bench_{prefix}_check", "IsDone")
    text += (
        "  - Type: Choice\n    Name: IsDone\n    Branches:\n"
        '      - Condition: $Input.status == "done"\n        Next: Done\n'
        "      - Condition: $Input.polls > $Input.max_polls\n        Next: GaveUp\n"
        '      - Condition: $Input.status == "running"\n        Next: WaitBeforeCheck\n'
        "    Default: JobFailed\n"
        "  - Type: Succeed\n    Name: Done\n"
        "  - Type: Fail\n    Name: GaveUp\n    Code: GaveUp\n    Detail: still running\n"
        "  - Type: Fail\n    Name: JobFailed\n    Code: JobFailed\n    Detail: the job failed\n"
    )
    return text


def parallel_flow(name: str, description: str, prefix: str, branches: list[str]) -> str:
    text = _head(name, description, "Fetch")
    text += _task("Fetch", f"bench_{prefix}_fetch", "Analyze")
    text += "  - Type: Parallel\n    Name: Analyze\n    Branches:\n"
    for branch in branches:
        text += f"      - StartAt: {branch}\n        States:\n"
        text += _task(branch, f"bench_{prefix}_{branch.lower()}", None, indent="          ")
    text += "    OutputConstructor:\n      branches.$: $Output\n    Next: Merge\n"
    text += _task("Merge", f"bench_{prefix}_merge", None)
    return text


def router_flow(name: str, description: str) -> str:
    """A Choice and two Pass states: runs inline, to its end, in the request that starts it."""
    return _head(name, description, "Classify") + (
        "  - Type: Choice\n    Name: Classify\n    Branches:\n"
        '      - Condition: $Input.priority == "high"\n        Next: Urgent\n'
        "    Default: Normal\n"
        "  - Type: Pass\n    Name: Urgent\n    OutputConstructor:\n      route: urgent\n"
        "    End: true\n"
        "  - Type: Pass\n    Name: Normal\n    OutputConstructor:\n      route: normal\n"
        "    End: true\n"
    )


def legacy_flow(name: str, description: str, fn: str, ok_state: str) -> str:
    return (
        f"version: v1\ntype: flow\ndescription: {description}\nsteps:\n"
        f"  - type: task\n    name: {ok_state}\n"
        f"    resourceArn: acs:fc:::services/legacy/functions/{fn}\n"
        "    retry:\n      - errors: [FC.ResourceThrottled]\n        intervalSeconds: 2\n"
        "        maxAttempts: 3\n        multiplier: 2\n"
        "    outputMappings:\n      - target: status\n        source: $local.status\n"
        "      - target: ref\n        source: $local.ref\n"
        "  - type: choice\n    name: Route\n    choices:\n"
        '      - condition: $.status == "sent"\n        goto: Done\n'
        "    default:\n      goto: NotSent\n"
        "  - type: succeed\n    name: Done\n"
        "  - type: fail\n    name: NotSent\n    error: NotSent\n    cause: the recipient refused\n"
    )


@dataclass
class FlowSpec:
    name: str
    pattern: str  # chain | map | approval | poll | parallel | legacy | fanout
    weight: float  # share of the executions
    prefix: str  # execution names: "<prefix>-<yyyymmdd>-<id>"
    definition: str = ""  # "" for a demo flow (loaded by flowsite_demo)
    versions: int = 1  # a later version changes the description only
    timeout_error: bool = False  # an unanswered approval fails with FnF.Timeout (TimedOut)
    errors: tuple[str, ...] = ("FC.InternalServerError",)
    wait: int = 3  # poll flows: seconds between checks


def flow_specs() -> list[FlowSpec]:
    chain = chain_flow
    return [
        FlowSpec("demo-polling", "poll", 2.0, "render"),
        FlowSpec("demo-approval", "approval", 1.2, "po", timeout_error=True),
        FlowSpec("demo-approval-v2", "approval", 1.2, "po2"),
        FlowSpec("demo-fanout", "fanout", 1.5, "upload"),
        FlowSpec("demo-fanout-legacy", "legacy-foreach", 1.0, "targets"),
        FlowSpec(
            "webhook-relay",
            "chain",
            22.0,
            "wh",
            chain("webhook-relay", "Deliver one webhook", [("Deliver", "bench_deliver_webhook")]),
            versions=3,
            errors=("FC.ResourceThrottled", "RemoteRefused"),
        ),
        FlowSpec(
            "cache-purge",
            "chain",
            12.0,
            "purge",
            chain("cache-purge", "Purge a CDN path", [("Purge", "bench_purge_cdn")]),
            errors=("FC.ResourceThrottled",),
        ),
        FlowSpec(
            "sms-notify",
            "chain",
            10.0,
            "sms",
            chain("sms-notify", "Send a text message", [("Send", "bench_send_sms")]),
            errors=("InvalidNumber",),
        ),
        FlowSpec(
            "event-router",
            "router",
            12.0,
            "event",
            router_flow("event-router", "Route an incoming event by its priority"),
        ),
        FlowSpec(
            "email-digest",
            "chain",
            9.0,
            "digest",
            chain(
                "email-digest",
                "Collect a user's news and mail the digest",
                [("Collect", "bench_collect_news"), ("Send", "bench_send_email")],
            ),
            errors=("MailboxFull",),
        ),
        FlowSpec(
            "orders-checkout",
            "chain",
            9.0,
            "order",
            chain(
                "orders-checkout",
                "Validate, reserve, charge and ship an order",
                [
                    ("Validate", "bench_validate_order"),
                    ("Reserve", "bench_reserve_stock"),
                    ("Charge", "bench_charge_card"),
                    ("Ship", "bench_ship_order"),
                ],
                check="Charged",
            ),
            versions=2,
            errors=("OutOfStock", "FC.InternalServerError"),
        ),
        FlowSpec(
            "orders-refund",
            "chain",
            7.0,
            "refund",
            chain(
                "orders-refund",
                "Refund a payment",
                [("Lookup", "bench_lookup_payment"), ("Refund", "bench_refund_card")],
            ),
            errors=("AlreadyRefunded",),
        ),
        FlowSpec(
            "invoices-monthly",
            "map",
            3.0,
            "invoices",
            map_flow("invoices-monthly", "Send a customer's invoices", "invoice", 3),
        ),
        FlowSpec(
            "inventory-sync",
            "map",
            3.0,
            "sync",
            map_flow("inventory-sync", "Sync stock levels item by item", "stock", 5),
            versions=2,
        ),
        FlowSpec(
            "expense-approval",
            "approval",
            2.0,
            "expense",
            approval_flow(
                "expense-approval",
                "A manager approves an expense, then it is paid",
                "bench_pay_expense",
                timeout=86400,
                catch=False,
            ),
            timeout_error=True,
        ),
        FlowSpec(
            "access-request",
            "approval",
            1.5,
            "access",
            approval_flow(
                "access-request",
                "Grant access once the owner approves",
                "bench_grant_access",
                timeout=172800,
                catch=True,
            ),
        ),
        FlowSpec(
            "media-transcode",
            "poll",
            3.0,
            "transcode",
            poll_flow("media-transcode", "Transcode a video and wait for it", "transcode", 300),
            wait=300,
        ),
        FlowSpec(
            "backup-verify",
            "poll",
            1.5,
            "backup",
            poll_flow("backup-verify", "Start a restore test and poll it", "restore", 1800),
            wait=1800,
        ),
        FlowSpec(
            "thumbnails",
            "parallel",
            4.0,
            "thumbs",
            parallel_flow(
                "thumbnails", "Three thumbnail sizes at once", "thumb", ["Small", "Medium", "Large"]
            ),  # fmt: skip
        ),
        FlowSpec(
            "fraud-screen",
            "parallel",
            4.0,
            "screen",
            parallel_flow("fraud-screen", "Score a payment two ways", "fraud", ["Rules", "Model"]),
            errors=("ModelUnavailable",),
        ),
        FlowSpec(
            "legacy-billing",
            "legacy",
            4.0,
            "bill",
            legacy_flow("legacy-billing", "Send an invoice (FnF)", "bench_send_invoice", "Send"),
        ),
        FlowSpec(
            "legacy-notify",
            "legacy",
            3.0,
            "notify",
            legacy_flow("legacy-notify", "Push a notification (FnF)", "bench_push", "Push"),
        ),
        FlowSpec(
            "report-weekly",
            "chain",
            3.0,
            "report",
            chain(
                "report-weekly",
                "Build and publish the weekly report",
                [
                    ("Extract", "bench_extract"),
                    ("Aggregate", "bench_aggregate"),
                    ("Render", "bench_render_report"),
                    ("Publish", "bench_publish"),
                ],
            ),
        ),
    ]


def functions_of(definition: str) -> set[str]:
    found = set(re.findall(r"functions/([A-Za-z0-9_]+)", definition))
    return {f for f in found if f.startswith("bench_")}


def input_for(spec: FlowSpec, variant: dict) -> dict:
    """The template's input; sentinel values are replaced per execution."""
    order = {"customer_id": int("987650001"), "id": int("987650002")}
    if spec.pattern == "poll":
        return {
            "asset": "zzassetzz.mov",
            "duration": variant["polls"] * spec.wait,
            "max_polls": variant.get("max_polls", 20),
            "order": order,
        }
    if spec.pattern == "approval":
        return {
            "request_id": "zzreqzz",
            "approver": "zzmailzz",
            "summary": "new laptop, 1,899 EUR",
            "order": order,
        }
    if spec.pattern == "fanout":
        parts = [
            {"id": f"p{i}", "data": f"part {i} of the upload"} for i in range(variant["items"])
        ]
        return {"parts": parts, "order": order, "asset": "zzassetzz.tar"}
    if spec.pattern == "legacy-foreach":
        return {"payload": {"targets": [f"t{i}" for i in range(variant["items"])]}, "order": order}
    priority = "high" if variant.get("items", 0) % 2 else "normal"
    return {"order": order, "asset": "zzassetzz", "priority": priority}


# =============================================================================================
# Driving a template with the real runtime and a fake clock
# =============================================================================================


@dataclass
class Plan:
    """How a template execution goes."""

    kind: str  # ok | fail | stop | timeout | reject | run
    leave: str = ""  # run: callback | timer | pending | claimed
    leave_after: int = 0  # run: how many of those to pass first
    polls: int = 2  # poll flows: checks until the job is done (or fails)
    max_polls: int = 20
    items: int = 3  # map flows
    fail_at: int = 0  # the invocation (in call order) whose state fails
    stop_after: int = 3  # stop: driver actions before the stop
    throttle: float = 0.05  # chance that an attempt is throttled (then retried)
    declined: bool = False


@dataclass
class Driven:
    execution_id: int
    salt: str
    status: str
    leave: str


class Driver:
    """Runs one execution the way the workers, the sweeper and people would, through
    ``runtime.transition`` with the fake clock ``now``."""

    def __init__(self, spec: FlowSpec, version, plan: Plan, rng: random.Random, user=None):
        self.spec = spec
        self.version = version
        self.plan = plan
        self.rng = rng
        self.user = user
        self.now = BASE
        self.calls = 0
        self.actions = 0
        self.passed: Counter = Counter()
        self.failing: set[int] = set()
        self.max_events: int | None = None  # leave it at its next timer before this many
        self.events = 0  # history events written so far
        self.running = True

    # -- clock

    def later(self, seconds: float) -> None:
        self.now += timedelta(milliseconds=max(1, round(seconds * 1000)))

    def _lognormal(self, median: float, sigma: float, low: float, high: float) -> float:
        return min(max(self.rng.lognormvariate(math.log(median), sigma), low), high)

    # -- the fake functions

    def handle(self, fn: str, payload, entry: int) -> tuple:
        p = self.plan
        self.calls += 1
        call = self.calls
        if entry in self.failing or (p.kind == "fail" and call == p.fail_at and not p.declined):
            self.failing.add(entry)
            error = self.rng.choice(self.spec.errors)
            return ("fail", error, f"{fn}: {error.split('.')[-1]} (request {call})")
        if self.spec.definition and self.rng.random() < p.throttle:
            return ("fail", "FC.ResourceThrottled", "rate exceeded, try again later")
        body = payload if isinstance(payload, dict) else {}
        stamp = self.now.timestamp()
        if fn in ("demo_submit_render",) or fn.endswith("_submit"):
            return ("ok", {
                "job_id": f"job-{self.rng.getrandbits(48):012x}",
                "asset": body.get("asset", "untitled.mov"),
                "submitted_at": round(stamp, 3),
                "ready_at": round(stamp + p.polls * self.spec.wait, 3),
                "max_polls": body.get("max_polls", p.max_polls),
            })  # fmt: skip
        if fn == "demo_render_status" or fn.endswith("_check"):
            polls = (body.get("polls") or 0) + 1
            status = "running"
            if polls >= p.polls:
                status = "failed" if p.kind == "fail" else "done"
            out = {"job_id": body.get("job_id", ""), "status": status, "polls": polls,
                   "progress": min(100, round(100 * polls / max(p.polls, 1))),
                   "checked_at": round(stamp, 3)}  # fmt: skip
            if status == "done":
                out["artifact"] = f"s3://renders/{body.get('job_id', 'job')}.mp4"
            return ("ok", out)
        if fn == "demo_notify_approver":
            return ("ok", {"notified": True, "approver": body.get("approver", ""),
                           "request_id": body.get("request_id", "")})  # fmt: skip
        if fn == "demo_process_part":
            data = str(body.get("data", ""))
            digest = hashlib.sha256(data.encode()).hexdigest()
            return ("ok", {"id": body.get("id"), "checksum": digest, "bytes": len(data)})
        if fn.endswith("_list"):
            items = [{"sku": f"SKU-{self.rng.randrange(10_000):04d}", "qty": self.rng.randint(1, 9)}
                     for _ in range(p.items)]  # fmt: skip
            return ("ok", {"items": items, "listed": len(items)})
        if fn == "bench_charge_card":
            return ("ok", {"approved": not p.declined,
                           "charge_id": f"ch_{self.rng.getrandbits(64):016x}"})  # fmt: skip
        if self.spec.pattern == "legacy":
            refused = p.kind == "fail" and call == p.fail_at
            return ("ok", {"status": "refused" if refused else "sent",
                           "ref": f"{fn[6:]}-{self.rng.getrandbits(32):08x}"})  # fmt: skip
        return ("ok", {"ok": True, "ref": f"{fn[6:] or fn}-{self.rng.getrandbits(32):08x}",
                       "took_ms": self.rng.randint(3, 900)})  # fmt: skip

    def run_seconds(self, fn: str) -> float:
        slow = 0.6 if fn.endswith(("_charge_card", "_submit", "_render_report", "_item")) else 0.12
        return self._lognormal(slow, 0.6, 0.004, 20.0)

    # -- the loop

    def start(self, name: str, input: dict):
        from django.db import transaction  # noqa: PLC0415

        from executions.engine import events as ev  # noqa: PLC0415
        from executions.engine import machine  # noqa: PLC0415
        from executions.models import Execution, ExecutionStatus  # noqa: PLC0415
        from executions.runtime import transition as rt  # noqa: PLC0415

        with transaction.atomic():
            execution = Execution.objects.create(
                flow_id=self.version.flow_id,
                flow_version=self.version,
                name=name,
                status=ExecutionStatus.STARTING,
                input=input,
                started_at=self.now,
                started_by=self.user,
                token_salt=rt.new_salt(),
                state=machine.new_state(
                    execution_name=name, flow_name=self.spec.name, input=input, now=self.now
                ),
            )
            self._saw(rt.apply(execution, ev.Start(input), now=self.now))
        return execution

    def _saw(self, decision) -> None:
        """Keep count of what the transitions wrote (instead of asking the database)."""
        if decision is None or decision.ignored:
            raise RuntimeError(f"a transition was refused: {decision and decision.ignored}")
        self.events += len(decision.events)
        self.running = decision.state.get("status") == "Running"

    def _step(self, pk: int, event, claim=None) -> None:
        from executions.runtime import transition as rt  # noqa: PLC0415

        self._saw(rt.transition(pk, event, claim=claim, now=self.now))

    def drive(self, execution, max_actions: int = 100_000) -> str:
        """Returns how it was left: "" (ended), or the kind of thing it waits for."""
        from executions.engine import events as ev  # noqa: PLC0415
        from executions.models import (  # noqa: PLC0415
            TaskToken,
            Timer,
            WorkItem,
            WorkKind,
            WorkStatus,
        )

        p = self.plan
        pk = execution.pk
        for _ in range(max_actions):
            if not self.running:
                return ""
            if p.kind == "stop" and self.actions >= p.stop_after:
                self.later(self._lognormal(60, 1.5, 1, 7200))
                self._step(pk, ev.Stop(error="Stopped", cause=self.rng.choice(STOP_REASONS)))
                continue
            self.actions += 1
            item = (
                WorkItem.objects.filter(execution_id=pk, status=WorkStatus.PENDING)
                .order_by("id")
                .first()
            )
            if item is not None:
                if self._leave("pending"):
                    return "pending"
                self.later(self._lognormal(0.03, 0.8, 0.002, 5.0))
                if item.kind == WorkKind.RESUME:
                    self._step(pk, ev.Resume(), claim=_claim_resume(item.pk))
                    continue
                if item.kind == WorkKind.DETACHED:
                    WorkItem.objects.filter(pk=item.pk).update(
                        status=WorkStatus.DONE, started_at=self.now, finished_at=self.now
                    )
                    continue
                self._step(
                    pk,
                    ev.TaskStarted(item.entry_id, item.attempt),
                    claim=_claim_invoke(item.pk, item.timeout_seconds),
                )
                if self._leave("claimed"):
                    return "claimed"
                self.later(self.run_seconds(item.function_name))
                outcome = self.handle(item.function_name, item.payload, item.entry_id)
                if outcome[0] == "ok":
                    envelope = {
                        "Body": outcome[1],
                        "StatusCode": 200,
                        "Headers": {"x-fc-request-id": f"{item.entry_id}-{item.attempt}"},
                    }
                    event = ev.TaskSucceeded(item.entry_id, item.attempt, envelope)
                    error = ""
                else:
                    event = ev.TaskFailed(item.entry_id, item.attempt, outcome[1], outcome[2])
                    error = outcome[1]
                self._step(pk, event, claim=_finish(item.pk, error))
                continue
            token = TaskToken.objects.filter(execution_id=pk, is_open=True).order_by("id").first()
            if token is not None and p.kind not in ("timeout",):
                if p.kind == "run" and p.leave == "callback":
                    return "callback"
                self.later(self._lognormal(900, 1.2, 20, 3000))
                if p.kind == "reject" and self.rng.random() < 0.5:
                    event = ev.CallbackFailed(token.fingerprint, "Rejected", "not in the budget")
                elif p.kind == "reject":
                    event = ev.CallbackSucceeded(
                        token.fingerprint, {"decision": "reject", "comment": "not now"}
                    )
                else:
                    event = ev.CallbackSucceeded(
                        token.fingerprint, {"decision": "approve", "comment": "fine"}
                    )
                self._step(pk, event)
                continue
            timer = (
                Timer.objects.filter(execution_id=pk, fired_at__isnull=True)
                .order_by("due_at", "id")
                .first()
            )
            if timer is None:
                return "stuck"
            if self._leave("timer") or self._full(pk):
                return "timer"
            self.now = max(self.now, timer.due_at)
            self.later(self._lognormal(0.4, 0.5, 0.01, 2.0))
            self._step(pk, ev.TimerFired(timer.key), claim=_fire(timer.pk))
        return "stuck"

    def _full(self, pk: int) -> bool:
        return self.max_events is not None and self.events + 12 > self.max_events

    def _leave(self, kind: str) -> bool:
        if self.plan.kind != "run" or self.plan.leave != kind:
            return False
        self.passed[kind] += 1
        return self.passed[kind] > self.plan.leave_after


STOP_REASONS = (
    "wrong input, started again",
    "customer cancelled",
    "duplicate of an earlier run",
    "stuck behind the payment outage",
)


def _claim_invoke(pk: int, timeout: float | None):
    def claim(execution, now) -> bool:
        from executions.models import WorkItem, WorkStatus  # noqa: PLC0415

        lease = now + timedelta(seconds=(timeout or 60) + 30)
        return bool(
            WorkItem.objects.filter(pk=pk, status=WorkStatus.PENDING).update(
                status=WorkStatus.RUNNING, started_at=now, lease_until=lease, worker=WORKER
            )
        )

    return claim


def _finish(pk: int, error: str):
    def claim(execution, now) -> bool:
        from executions.models import WorkItem, WorkStatus  # noqa: PLC0415

        return bool(
            WorkItem.objects.filter(pk=pk, status=WorkStatus.RUNNING).update(
                status=WorkStatus.DONE, finished_at=now, error=error[:128], payload=None
            )
        )

    return claim


def _claim_resume(pk: int):
    def claim(execution, now) -> bool:
        from executions.models import WorkItem, WorkStatus  # noqa: PLC0415

        return bool(
            WorkItem.objects.filter(pk=pk, status=WorkStatus.PENDING).update(
                status=WorkStatus.DONE, started_at=now, finished_at=now, worker=WORKER
            )
        )

    return claim


def _fire(pk: int):
    def claim(execution, now) -> bool:
        from executions.models import Timer  # noqa: PLC0415

        return bool(
            Timer.objects.filter(pk=pk, fired_at__isnull=True, due_at__lte=now).update(fired_at=now)
        )

    return claim


# =============================================================================================
# Templates: a driven execution's rows, with what each copy changes marked
# =============================================================================================

# cell kinds
C, ID, EXEC, DT, TEXT, SALT, HASH, VERSION, USER = range(9)


def cloned_models():
    from executions.models import (  # noqa: PLC0415
        Execution,
        ExecutionValue,
        HistoryEvent,
        QueueMessage,
        StepSummary,
        StepVisit,
        TaskToken,
        Timer,
        WorkItem,
    )

    return [Execution, HistoryEvent, StepVisit, StepSummary, WorkItem, Timer, TaskToken,
            ExecutionValue, QueueMessage]  # fmt: skip


@dataclass
class Template:
    flow: str
    status: str
    leave: str
    events: int
    span: float  # seconds from the start to the last moment written
    due: float | None  # seconds from the start to the earliest open timer
    open_tokens: int
    rows: dict  # model label -> list of compiled rows
    callbacks: list[float] = field(default_factory=list)  # when a person answered (seconds)


def _compile_text(text: str, fps: dict[str, tuple[int, int]]) -> list | str:
    parts: list = []
    pos = 0
    for m in _PARTS.finditer(text):
        if m.start() > pos:
            parts.append(text[pos : m.start()])
        kind = m.lastgroup
        value = m.group(kind)
        if kind == "ts":
            offset = datetime.fromisoformat(value.replace(" ", "T") + "+00:00") - BASE
            parts.append(("ts", int(offset.total_seconds()), value[10]))
        elif kind == "ep":
            parts.append(("ep", int(value) - BASE_EPOCH))
        elif kind == "fp":
            if value not in fps:
                raise RuntimeError(f"a fingerprint the template did not issue: {value}")
            parts.append(("fp", *fps[value]))
        else:
            parts.append(("s", SENTINELS[value]))
        pos = m.end()
    if not parts:
        return text
    if pos < len(text):
        parts.append(text[pos:])
    return parts


def capture(driven: Driven, spec: FlowSpec, leave: str) -> Template:
    """Read a driven execution's rows back and mark what each copy changes."""
    from django.db import models as djm  # noqa: PLC0415

    from executions.models import Execution, HistoryEvent, TaskToken  # noqa: PLC0415
    from executions.runtime import transition as rt  # noqa: PLC0415

    pk = driven.execution_id
    # Every fingerprint the engine may have written: each attempt of each Task entry.
    scheduled = Counter(
        HistoryEvent.objects.filter(execution_id=pk, type="TaskScheduled").values_list(
            "schedule_event_id", flat=True
        )
    )
    fps: dict[str, tuple[int, int]] = {}
    for entry, n in scheduled.items():
        for attempt in range(1, n + 4):
            fps[rt.fingerprint(rt.task_token(pk, driven.salt, entry, attempt))] = (entry, attempt)
    hashes = {
        row[0]: (row[1], row[2])
        for row in TaskToken.objects.filter(execution_id=pk).values_list(
            "token_hash", "entry_id", "attempt"
        )
    }
    rows: dict[str, list] = {}
    latest = BASE
    due = None
    status = driven.status
    execution = Execution.objects.get(pk=pk)
    if status == "Failed" and execution.error_code == "FnF.Timeout":
        # The engine ends an execution whose step timed out (uncaught) as Failed with
        # FnF.Timeout; these are the bench's TimedOut executions (see the README).
        status = "TimedOut"
    for model in cloned_models():
        fields = model._meta.concrete_fields
        names = [f.attname for f in fields]
        qs = (
            model.objects.filter(pk=pk)
            if model is Execution
            else model.objects.filter(execution_id=pk)
        )
        compiled = []
        for values in qs.order_by("pk").values_list(*names):
            row = []
            for f, value in zip(fields, values, strict=True):
                name = f.attname
                if f.primary_key:
                    row.append((EXEC,) if model is Execution else (ID,))
                elif name == "execution_id":
                    row.append((EXEC,))
                elif model is Execution and name == "flow_version_id":
                    row.append((VERSION,))
                elif model is Execution and name == "started_by_id":
                    row.append((USER,))
                elif model is Execution and name == "status":
                    row.append((C, status))
                elif name == "token_salt":
                    row.append((SALT,))
                elif name == "token_hash":
                    row.append((HASH, *hashes[value]))
                elif value is None:
                    row.append((C, None))
                elif isinstance(f, djm.DateTimeField):
                    offset = value - BASE
                    if model is HistoryEvent or (model is Execution and name == "stopped_at"):
                        latest = max(latest, value)
                    if model.__name__ == "Timer" and values[names.index("fired_at")] is None:
                        seconds = offset.total_seconds()
                        due = seconds if due is None else min(due, seconds)
                    row.append((DT, offset))
                elif isinstance(f, djm.JSONField):
                    text = json.dumps(value, ensure_ascii=False)
                    row.append((TEXT, _compile_text(text, fps)))
                elif isinstance(value, str):
                    row.append((TEXT, _compile_text(value, fps)))
                else:
                    row.append((C, value))
            compiled.append(row)
        rows[model._meta.label] = compiled
    events = len(rows["executions.HistoryEvent"])
    callbacks = [
        (t - BASE).total_seconds()
        for t in HistoryEvent.objects.filter(
            execution_id=pk, type__in=["TaskSucceeded", "TaskFailed"], step_name="AskApprover"
        ).values_list("time", flat=True)
    ]
    return Template(
        flow=spec.name,
        status=status,
        leave=leave,
        events=events,
        span=(latest - BASE).total_seconds(),
        due=due,
        open_tokens=TaskToken.objects.filter(execution_id=pk, is_open=True).count(),
        rows=rows,
        callbacks=callbacks,
    )


def plans_for(spec: FlowSpec, rng: random.Random, variants: int) -> list[Plan]:
    """The ways a flow's executions go: ended ones (ok, failed, stopped, timed out) and running
    ones (waiting for a person, a timer, a queued or a running function attempt)."""
    out: list[Plan] = []
    n = max(1, variants)
    for v in range(n + 1):
        out.append(Plan("ok", polls=1 + v % 4, items=2 + v % 3, throttle=0.02 + 0.04 * (v % 2)))
    for v in range(n):
        out.append(Plan("fail", fail_at=1 + v % 3, polls=2 + v % 2, items=2 + v % 2))
        out.append(Plan("stop", stop_after=1 + v % 4, polls=5, items=4))
        out.append(Plan("run", leave="pending", leave_after=v % 2, polls=6, items=3))
        out.append(Plan("run", leave="claimed", leave_after=v % 2, polls=6, items=3))
    if spec.name == "orders-checkout":
        out.append(Plan("fail", declined=True))
    if spec.pattern == "approval":
        for _ in range(n):
            out.append(Plan("reject"))
            out.append(Plan("run", leave="callback"))
            # Unanswered: FnF.Timeout (TimedOut), or caught by a Fail state (Failed).
            out.append(Plan("timeout"))
    if spec.pattern == "poll":
        for v in range(n):  # left after 1 to 6 checks: running for seconds to hours
            for after in (1, 3, 6)[: 1 + v % 3 + (v > 0)]:
                out.append(Plan("run", leave="timer", leave_after=after, polls=99, max_polls=60))
            out.append(Plan("fail", polls=99, max_polls=2, fail_at=999))  # gives up
            out.append(Plan("ok", polls=4 + v))
    return out


# =============================================================================================
# Copies
# =============================================================================================


@dataclass
class Copy:
    template: Template
    start: datetime
    execution_id: int = 0
    name: str = ""
    values: dict = field(default_factory=dict)
    salt: str = ""
    version_id: int = 0
    user_id: int | None = None


class Renderer:
    """Turns a template's rows into one copy's rows (Python values)."""

    def __init__(self, secret_tokens: Callable[[int, str, int, int], str]):
        self.secret = secret_tokens
        self.next_id: dict[str, int] = {}

    def rows(self, copy: Copy) -> dict[str, list[tuple]]:
        base = copy.start
        delta = int((copy.start - BASE).total_seconds())
        shifted: dict[int, datetime] = {}
        tokens: dict[tuple[int, int], tuple[str, str]] = {}

        def token(entry: int, attempt: int) -> tuple[str, str]:
            got = tokens.get((entry, attempt))
            if got is None:
                real = self.secret(copy.execution_id, copy.salt, entry, attempt)
                digest = hashlib.sha256(real.encode()).hexdigest()
                got = tokens[(entry, attempt)] = (f"tt:{digest[:12]}", digest)
            return got

        def text(parts) -> str:
            if isinstance(parts, str):
                return parts
            out = []
            for part in parts:
                if isinstance(part, str):
                    out.append(part)
                    continue
                kind = part[0]
                if kind == "ts":
                    moment = shifted.get(part[1])
                    if moment is None:
                        moment = shifted[part[1]] = base + timedelta(seconds=part[1])
                    out.append(moment.strftime(f"%Y-%m-%d{part[2]}%H:%M:%S"))
                elif kind == "ep":
                    out.append(str(BASE_EPOCH + part[1] + delta))
                elif kind == "fp":
                    out.append(token(part[1], part[2])[0])
                else:
                    out.append(str(copy.values[part[1]]))
            return "".join(out)

        result: dict[str, list[tuple]] = {}
        for label, rows in copy.template.rows.items():
            if not rows:
                continue
            made = []
            for row in rows:
                values = []
                for cell in row:
                    kind = cell[0]
                    if kind == C:
                        values.append(cell[1])
                    elif kind == DT:
                        values.append(base + cell[1])
                    elif kind == TEXT:
                        values.append(text(cell[1]))
                    elif kind == ID:
                        n = self.next_id[label]
                        self.next_id[label] = n + 1
                        values.append(n)
                    elif kind == EXEC:
                        values.append(copy.execution_id)
                    elif kind == SALT:
                        values.append(copy.salt)
                    elif kind == HASH:
                        values.append(token(cell[1], cell[2])[1])
                    elif kind == VERSION:
                        values.append(copy.version_id)
                    elif kind == USER:
                        values.append(copy.user_id)
                made.append(tuple(values))
            result[label] = made
        return result


class Sink:
    """Writes rows: ``COPY`` on PostgreSQL, plain ``INSERT`` elsewhere (the tests' SQLite)."""

    def __init__(self):
        from django.db import connection  # noqa: PLC0415

        self.connection = connection
        self.postgres = connection.vendor == "postgresql"
        self.rows = 0

    def write(self, model, rows: list[tuple]) -> None:
        if not rows:
            return
        from django.db import models as djm  # noqa: PLC0415

        fields = model._meta.concrete_fields
        q = self.connection.ops.quote_name
        table = q(model._meta.db_table)
        columns = ", ".join(q(f.column) for f in fields)
        self.rows += len(rows)
        with self.connection.cursor() as cursor:
            if self.postgres:
                with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                return
            ops = self.connection.ops
            adapt = []
            for f in fields:
                if isinstance(f, djm.DateTimeField):
                    adapt.append(lambda v: None if v is None else ops.adapt_datetimefield_value(v))
                elif isinstance(f, djm.JSONField):
                    adapt.append(lambda v: v)  # already JSON text
                else:
                    adapt.append(None)
            marks = ", ".join(["%s"] * len(fields))
            cursor.executemany(
                f"INSERT INTO {table} ({columns}) VALUES ({marks})",
                [
                    tuple(v if a is None else a(v) for a, v in zip(adapt, row, strict=True))
                    for row in rows
                ],
            )


# =============================================================================================
# The load
# =============================================================================================


@dataclass
class Loaded:
    """What the measurements need to know about the data."""

    executions: int = 0
    events: int = 0
    flows: list[str] = field(default_factory=list)
    # (flow, name, "ended" or what it waits for) of executions with at most 40 events; what it
    # waits for: callback | timer | pending | claimed, the last two with "+callback" when a
    # callback step's function attempt is what is queued or running
    samples: list[tuple[str, str, str]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # some execution names, for prefixes
    max_id: int = 0
    customers: int = 5000
    big: tuple[str, str] = ("", "")
    big_events: int = 0
    big_nodes: list[str] = field(default_factory=list)
    big_entries: int = 0  # the big execution's largest entry id
    token_ids: list[int] = field(default_factory=list)
    days: int = 30
    timings: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    flow_mix: dict[str, int] = field(default_factory=dict)


def say(message: str) -> None:
    print(f"[dashboard] {message}", flush=True)


def _users():
    from django.contrib.auth import get_user_model  # noqa: PLC0415
    from django.contrib.auth.models import Group  # noqa: PLC0415

    users = {}
    for name, roles in USERS.items():
        user, _ = get_user_model().objects.get_or_create(
            username=name, defaults={"email": f"{name}@example.com"}
        )
        for role in roles:
            user.groups.add(Group.objects.get(name=role))
        users[name] = user
    return users


def setup_flows(specs: list[FlowSpec]) -> dict[str, list]:
    """The demo flows and functions, the generated flows (some with later versions) and the
    functions they call. Returns each flow's versions, oldest first."""
    import io  # noqa: PLC0415

    from django.core.management import call_command  # noqa: PLC0415

    from executions import services  # noqa: PLC0415
    from executions.models import Flow, FlowVersion  # noqa: PLC0415
    from flowsite.access import SYSTEM  # noqa: PLC0415
    from functions.models import Function  # noqa: PLC0415

    call_command("flowsite_demo", "--quiet", stdout=io.StringIO(), stderr=io.StringIO())
    for spec in specs:
        for fn in sorted(functions_of(spec.definition)):
            Function.objects.get_or_create(
                name=fn,
                defaults={"handler": "bench_handlers.echo", "description": f"bench: {fn}"},
            )
        if spec.definition and not Flow.objects.filter(name=spec.name).exists():
            flow = services.flow_create(name=spec.name, definition=spec.definition, actor=SYSTEM)
            for v in range(2, spec.versions + 1):
                text = spec.definition.replace("Description: ", f"Description: (v{v}) ", 1).replace(
                    "description: ", f"description: (v{v}) ", 1
                )
                flow = services.flow_update(flow=flow, definition=text, actor=SYSTEM)
    return {
        spec.name: list(
            FlowVersion.objects.filter(flow__name=spec.name)
            .select_related("flow")
            .order_by("version")
        )
        for spec in specs
    }


def make_templates(
    specs: list[FlowSpec], versions: dict[str, list], rng: random.Random, variants: int
) -> list[Template]:
    from django.db import transaction  # noqa: PLC0415

    from executions.models import Execution  # noqa: PLC0415

    out = []
    for spec in specs:
        version = versions[spec.name][-1]
        for plan in plans_for(spec, rng, variants):
            driver = Driver(spec, version, plan, random.Random(rng.random()))
            with transaction.atomic():
                execution = driver.start("zzbnamezz", input_for(spec, plan.__dict__))
                leave = driver.drive(execution)
                row = Execution.objects.values_list("status", "token_salt").get(pk=execution.pk)
                driven = Driven(execution.pk, row[1], row[0], leave)
                if leave == "stuck":
                    raise RuntimeError(f"{spec.name} {plan}: the execution got stuck")
                out.append(capture(driven, spec, leave))
                transaction.set_rollback(True)  # the template's rows exist only as a pattern
    return out


def big_template(spec: FlowSpec, version, events: int) -> Template:
    """A polling loop run until its history holds about ``events`` events (the runtime's limit
    is 25,000), left waiting on its timer: a running execution with thousands of visits of
    the same states."""
    from django.db import transaction  # noqa: PLC0415

    from executions.models import Execution  # noqa: PLC0415

    plan = Plan("run", leave="timer", leave_after=10**9, polls=10**6, max_polls=10**6)
    driver = Driver(spec, version, plan, random.Random(25_000))
    driver.max_events = events
    variant = {"polls": 10**6, "max_polls": 10**6}
    with transaction.atomic():
        execution = driver.start("zzbnamezz", input_for(spec, variant))
        left = driver.drive(execution)
        row = Execution.objects.values_list("status", "token_salt").get(pk=execution.pk)
        template = capture(Driven(execution.pk, row[1], row[0], left), spec, left)
        transaction.set_rollback(True)
    if left != "timer" or template.status != "Running":
        raise RuntimeError(f"the long execution is {template.status} ({left})")
    return template


# How the executions end (shares of all; the rest succeed) and what the running ones wait for.
STATUS_SHARES = {"Failed": 0.065, "Stopped": 0.02, "TimedOut": 0.008}
# A running execution has been running for a while: a person has not answered for hours or days,
# a polling loop has been checking for up to hours; few attempts are queued or running at once.
RUNNING = {"callback": 700, "timer": 1600, "pending": 120, "claimed": 80}


def assign(
    templates: list[Template], specs: list[FlowSpec], n: int, events: int, rng: random.Random
) -> list[Template]:
    """A template for each of ``n`` executions: the status mix above, flows by weight (the
    flows longer than the mean wanted all scaled by one factor, so that the expected mean is
    ``events / n``), then variants swapped until the events add up to about ``events``."""
    by: dict[tuple[str, str], list[Template]] = defaultdict(list)
    for t in templates:
        key = t.leave if t.status == "Running" else t.status
        by[(t.flow, key)].append(t)
    weights = {s.name: s.weight for s in specs}
    mean = {
        f: statistics.mean(t.events for t in by[(f, "Succeeded")])
        for f in weights
        if by.get((f, "Succeeded"))
    }
    wanted_mean = events / max(n, 1)
    short = [f for f in mean if mean[f] <= wanted_mean]
    long = [f for f in mean if mean[f] > wanted_mean]
    below = sum(weights[f] * (wanted_mean - mean[f]) for f in short)
    above = sum(weights[f] * (mean[f] - wanted_mean) for f in long)
    if below > 0 and above > 0:
        factor = min(max(below / above, 0.05), 20.0)
        for f in long:
            weights[f] *= factor
    scale = n / 100_000
    wanted: list[str] = []
    for leave, count in RUNNING.items():
        wanted += [leave] * max(1, round(count * scale))
    for status, share in STATUS_SHARES.items():
        wanted += [status] * max(1, round(share * n))
    wanted += ["Succeeded"] * max(0, n - len(wanted))
    wanted = wanted[:n]
    out: list[Template] = []
    for key in wanted:
        flows = [s.name for s in specs if by.get((s.name, key))]
        flow = rng.choices(flows, weights=[weights[f] for f in flows])[0]
        out.append(rng.choice(by[(flow, key)]))
    # Towards the events wanted: swap succeeded copies for a longer or shorter variant of the
    # same flow (then of any flow) until the total is within half a percent.
    total = sum(t.events for t in out)
    succeeded = [i for i, t in enumerate(out) if t.status == "Succeeded"]
    pool = [t for t in templates if t.status == "Succeeded"]
    for _ in range(20 * n):
        if abs(total - events) <= events * 0.005 or not succeeded:
            break
        i = rng.choice(succeeded)
        longer = total < events
        same = [t for t in by[(out[i].flow, "Succeeded")]
                if (t.events > out[i].events if longer else t.events < out[i].events)]  # fmt: skip
        options = same or [t for t in pool if (t.events > out[i].events) == longer
                           and t.events != out[i].events]  # fmt: skip
        if not options:
            continue
        choice = rng.choice(options)
        total += choice.events - out[i].events
        out[i] = choice
    return out


def _start_time(t: Template, now: datetime, rng: random.Random, days: int) -> datetime:
    """When a copy starts: ended ones over the last ``days`` (a good share in the last 24 h,
    busier by day than by night), running ones so that what they wait for is still ahead."""
    if t.status == "Running":
        if t.due is not None:
            room = max(t.due - t.span - 1, 0.5)
        else:
            room = {"callback": 2 * 86400, "claimed": 20.0}.get(t.leave, 4.0)
        gap = room * rng.random() ** (1.5 if t.leave == "callback" else 1)
        moment = now - timedelta(seconds=t.span + gap)
        return moment.replace(microsecond=0)
    while True:
        recent = rng.random() < 0.18
        age = rng.uniform(0, 86400) if recent else rng.uniform(86400, days * 86400)
        moment = now - timedelta(seconds=age)
        hour = moment.hour + moment.minute / 60
        if rng.random() > 0.35 + 0.65 * math.sin(math.pi * max(0.0, min(1.0, (hour - 5) / 16))):
            continue
        if age > t.span + 1:
            return moment.replace(microsecond=0)


NAME_HEX = "0123456789abcdef"


def load(
    *,
    executions: int = 100_000,
    events: int = 1_000_000,
    big_events: int = 25_000,
    variants: int = 2,
    audit_entries: int = 10_000,
    invocations: int = 3_000,
    seed: int = 6,
    days: int = 30,
    batch: int = 2_000,
    flows: Iterable[str] | None = None,
    log: Callable[[str], None] = say,
    kept: dict | None = None,
) -> Loaded:
    """Load the data set into the current database (which has been migrated). Returns what the
    page plan needs. Small sizes work on SQLite too (the tests). ``kept``: a dict in which the
    templates are kept for another load into the same database (they name its flows)."""
    from django.db import connection, transaction  # noqa: PLC0415
    from django.db.models import Max  # noqa: PLC0415
    from django.utils import timezone  # noqa: PLC0415

    from executions.models import Execution, StepSummary, TaskToken  # noqa: PLC0415
    from executions.runtime import transition as rt  # noqa: PLC0415

    rng = random.Random(seed)
    info = Loaded(days=days)
    specs = flow_specs()
    if flows is not None:
        wanted = set(flows)
        specs = [s for s in specs if s.name in wanted]
    t0 = time.perf_counter()
    users = _users()
    versions = setup_flows(specs)
    info.timings["flows"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    kept = {} if kept is None else kept
    if "templates" not in kept:
        kept["templates"] = make_templates(specs, versions, rng, variants)
    templates = kept["templates"]
    poll = next(s for s in specs if s.pattern == "poll")
    big = None
    if big_events:
        if kept.get("big", (0,))[0] != big_events:
            kept["big"] = (big_events, big_template(poll, versions[poll.name][-1], big_events))
        big = kept["big"][1]
    info.timings["templates"] = time.perf_counter() - t1
    log(
        f"{len(templates)} templates from {len(specs)} flows"
        + (f" and the {big.events:,}-event loop" if big else "")
        + f" in {info.timings['templates']:.1f} s"
    )

    t2 = time.perf_counter()
    n = executions - (1 if big else 0)
    chosen = assign(templates, specs, n, events - (big.events if big else 0), rng)
    now = timezone.now().replace(microsecond=0)
    copies = [Copy(t, _start_time(t, now, rng, days)) for t in chosen]
    copies.sort(key=lambda c: c.start)
    if big:  # its last event a second ago
        copies.append(Copy(big, now - timedelta(seconds=math.ceil(big.span) + 1)))
    by_name = {s.name: s for s in specs}
    start_ids = {}
    for model in cloned_models():
        start_ids[model._meta.label] = (model.objects.aggregate(m=Max("pk"))["m"] or 0) + 1
    renderer = Renderer(rt.task_token)
    renderer.next_id = dict(start_ids)
    first_exec = start_ids["executions.Execution"]
    user_ids = {name: u.pk for name, u in users.items()}
    starters = [s for s, _ in STARTERS]
    starter_weights = [w for _, w in STARTERS]
    for i, copy in enumerate(copies):
        spec = by_name[copy.template.flow]
        copy.execution_id = first_exec + i
        crng = random.Random(seed * 1_000_003 + copy.execution_id)
        if crng.random() < 0.3:
            copy.name = "run-" + "".join(crng.choice(NAME_HEX) for _ in range(20))
        else:
            copy.name = f"{spec.prefix}-{copy.start:%Y%m%d}-{copy.execution_id}"
        top = crng.random() < 0.3
        customer = crng.choice(TOP_CUSTOMERS) if top else crng.randint(1, info.customers)
        copy.values = {
            "name": copy.name,
            "customer": customer,
            "order": 500_000 + copy.execution_id,
            "asset": f"clip-{crng.randrange(10**6):06d}",
            "request": f"PO-{crng.randrange(10**5):05d}",
            "approver": crng.choice(APPROVERS),
        }
        copy.salt = secrets.token_hex(16)
        flow_versions = versions[spec.name]
        # Executions older than 10 days ran the first version of a flow that has several.
        old = (now - copy.start).days >= 10
        copy.version_id = (flow_versions[0] if old else flow_versions[-1]).pk
        starter = crng.choices(starters, weights=starter_weights)[0]
        copy.user_id = user_ids[starter] if starter else None
    if big:
        copies[-1].name = f"{by_name[big.flow].prefix}-long-loop-{copies[-1].execution_id}"
        copies[-1].values["name"] = copies[-1].name
    models = {m._meta.label: m for m in cloned_models()}
    sink = Sink()
    written: Counter = Counter()
    last_report = time.perf_counter()
    for start in range(0, len(copies), batch):
        chunk: dict[str, list[tuple]] = defaultdict(list)
        for copy in copies[start : start + batch]:
            for label, rows in renderer.rows(copy).items():
                chunk[label].extend(rows)
        with transaction.atomic():
            for label, model in models.items():
                sink.write(model, chunk.get(label, []))
                written[label] += len(chunk.get(label, []))
        if time.perf_counter() - last_report > 15:
            last_report = time.perf_counter()
            log(f"  {start + len(chunk['executions.Execution']):,} executions written")
    info.timings["copies"] = time.perf_counter() - t2
    info.counts = {label.split(".")[1]: n for label, n in written.items()}
    log(
        f"{written['executions.Execution']:,} executions, "
        f"{written['executions.HistoryEvent']:,} events, {sink.rows:,} rows in "
        f"{info.timings['copies']:.1f} s"
    )

    t3 = time.perf_counter()
    _audit(copies, by_name, users, audit_entries, rng, sink)
    _invocations(users, invocations, now, days, rng, sink)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            for model in [*cloned_models(), *_other_models()]:
                table = model._meta.db_table
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT coalesce(max(id), 1) FROM {table}))"
                )
    info.timings["audit+invocations"] = time.perf_counter() - t3

    info.executions = len(copies)
    info.events = written["executions.HistoryEvent"]
    info.flows = [s.name for s in specs]
    info.statuses = dict(Counter(c.template.status for c in copies))
    info.flow_mix = dict(Counter(c.template.flow for c in copies).most_common())
    info.max_id = copies[-1].execution_id if copies else 0
    small = [c for c in copies if c.template.events <= 40 and c.template is not big]
    for c in rng.sample(small, min(400, len(small))):
        kind = c.template.leave or "ended"
        if c.template.open_tokens and kind != "callback":
            kind += "+callback"  # e.g. its callback step's function runs: the page has forms
        info.samples.append((c.template.flow, c.name, kind))
    info.names = [c.name for c in rng.sample(copies, min(2000, len(copies)))]
    if big:
        last = copies[-1]
        info.big = (last.template.flow, last.name)
        info.big_events = big.events
        info.big_nodes = list(
            StepSummary.objects.filter(execution_id=last.execution_id)
            .exclude(node="")
            .order_by("-visits")
            .values_list("node", flat=True)
        )
        info.big_entries = max(
            Execution.objects.values_list("event_count", flat=True).get(pk=last.execution_id), 1
        )
    info.token_ids = list(TaskToken.objects.filter(is_open=True).values_list("pk", flat=True))
    return info


TOP_CUSTOMERS = [42, 7, 1001, 2024, 31337, 77, 500, 4242, 12, 999]
APPROVERS = ["dana@example.com", "lee@example.com", "sam@example.com", "kim@example.com"]


def _other_models():
    from flowsite.audit.models import AuditEntry  # noqa: PLC0415
    from functions.models import Invocation  # noqa: PLC0415

    return [AuditEntry, Invocation]


def _audit(copies, by_name, users, total, rng, sink) -> None:
    """Who started, stopped, approved and rejected what, as the services record it."""
    from django.db.models import Max  # noqa: PLC0415

    from flowsite.audit.models import AuditEntry  # noqa: PLC0415

    fields = [f.attname for f in AuditEntry._meta.concrete_fields]
    next_id = (AuditEntry.objects.aggregate(m=Max("pk"))["m"] or 0) + 1
    by_id = {u.pk: name for name, u in users.items()}
    agents = {
        "api": "python-requests/2.32.3",
        "web": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
    }
    special, starts = [], []
    for copy in copies:
        flow = copy.template.flow
        target = f"{flow}/{copy.name}"
        who = by_id.get(copy.user_id)
        if who:
            via = "api" if who == "ci-bot" else "web"
            starts.append((copy.start, who, via, "execution.start", "execution", target, {}))
        if copy.template.status == "Stopped":
            end = copy.start + timedelta(seconds=copy.template.span)
            special.append((end, rng.choice(["alice", "bob"]), "web", "execution.stop",
                            "execution", target, {"error": "Stopped",
                                                  "reason": rng.choice(STOP_REASONS)}))  # fmt: skip
        for at in copy.template.callbacks:
            action = "task.reject" if copy.template.status == "Failed" else "task.approve"
            special.append((copy.start + timedelta(seconds=at), rng.choice(["bob", "carol"]),
                            "web", action, "task", f"{target}/AskApprover", {}))  # fmt: skip
    special = special[:total]
    starts = rng.sample(starts, min(len(starts), total - len(special)))
    entries = sorted(special + starts, key=lambda e: e[0])
    rows = []
    for i, (at, who, via, action, kind, target, detail) in enumerate(entries):
        values = {
            "id": next_id + i,
            "at": at,
            "actor_id": users[who].pk,
            "actor_name": who,
            "via": via,
            "ip": f"10.0.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            "user_agent": agents[via],
            "action": action,
            "object_type": kind,
            "object_name": target,
            "detail": json.dumps(detail),
        }
        rows.append(tuple(values[f] for f in fields))
    sink.write(AuditEntry, rows)


def _invocations(users, total, now, days, rng, sink) -> None:
    """Direct calls of functions (the functions page's recent invocations)."""
    from django.db.models import Max  # noqa: PLC0415

    from functions.models import Function, Invocation  # noqa: PLC0415

    fields = [f.attname for f in Invocation._meta.concrete_fields]
    next_id = (Invocation.objects.aggregate(m=Max("pk"))["m"] or 0) + 1
    functions = list(Function.objects.values_list("pk", "name"))
    rows = []
    for i in range(total):
        fn_id, fn = rng.choice(functions)
        created = now - timedelta(seconds=rng.uniform(60, days * 86400))
        started = created + timedelta(milliseconds=rng.randint(2, 400))
        took = rng.lognormvariate(math.log(40), 1.0)
        failed = rng.random() < 0.06
        values = {
            "id": next_id + i,
            "request_id": f"inv-{secrets.token_hex(12)}",
            "function_id": fn_id,
            "function_name": fn,
            "invocation_type": "Sync",
            "status": "Failed" if failed else "Succeeded",
            "payload": json.dumps({"probe": i}).encode(),
            "result_json": "" if failed else json.dumps({"ok": True, "n": i}),
            "error": "HandlerError" if failed else "",
            "cause": "ValueError: bad probe" if failed else "",
            "worker": WORKER,
            "invoked_by_id": users[rng.choice(["alice", "bob", "bench-admin"])].pk,
            "created_at": created,
            "expires_at": created + timedelta(seconds=10),
            "started_at": started,
            "finished_at": started + timedelta(milliseconds=took),
            "duration_ms": round(took, 3),
        }
        rows.append(tuple(values[f] for f in fields))
    sink.write(Invocation, rows)


# =============================================================================================
# The pages
# =============================================================================================

HTMX = {"HTTP_HX_REQUEST": "true"}


@dataclass
class Page:
    label: str
    make: Callable[[random.Random], tuple[str, dict]]
    before: Callable[[], None] | None = None  # run before each request, not timed


def _q(**params) -> str:
    from urllib.parse import urlencode  # noqa: PLC0415

    return urlencode(params, doseq=True)


def page_plan(info: Loaded, *, extra: bool = True) -> list[Page]:
    """The pages measured, each a maker of URLs that differ from request to request."""
    from django.utils import timezone  # noqa: PLC0415

    now = timezone.now()
    flow, name = info.big
    big = f"/flows/{flow}/executions/{name}/"
    statuses = ["Succeeded", "Failed", "Stopped", "TimedOut", "Running"]

    def cursor(rng) -> int:
        return rng.randint(2, max(info.max_id, 3))

    def executions(rng):
        if rng.random() < 0.5:
            return "/executions/", {}
        return f"/executions/?before={cursor(rng)}", {}

    def by_status(rng):
        chosen = rng.sample(statuses, rng.choice([1, 1, 2]))
        params = {"status": chosen}
        if rng.random() < 0.3:
            params["before"] = cursor(rng)
        return f"/executions/?{_q(**params)}", {}

    def by_flow_and_time(rng):
        start = now - timedelta(days=rng.uniform(0, info.days))
        length = timedelta(hours=rng.choice([1, 6, 24, 72]))
        params = {
            "flow": rng.choice(info.flows),
            "started_from": start.strftime("%Y-%m-%dT%H:%M"),
            "started_to": (start + length).strftime("%Y-%m-%dT%H:%M"),
        }
        return f"/executions/?{_q(**params)}", {}

    def by_prefix(rng):
        pick = rng.random()
        sample = rng.choice(info.names)
        if pick < 0.15:
            prefix = "nomatch-"
        elif pick < 0.35:
            prefix = "run-" + "".join(rng.choice(NAME_HEX) for _ in range(2))
        elif pick < 0.7:
            prefix = sample.rsplit("-", 1)[0] if sample.count("-") >= 2 else sample[:6]
        else:
            prefix = sample[: rng.randint(3, len(sample))]
        return f"/executions/?{_q(name=prefix)}", {}

    def by_input(rng):
        pick = rng.random()
        if pick < 0.3:
            customer = rng.choice(TOP_CUSTOMERS)
        elif pick < 0.9:
            customer = rng.randint(1, info.customers)
        else:
            customer = rng.randint(info.customers + 1, 10 * info.customers)  # none
        return f"/executions/?{_q(q=f'order.customer_id = {customer}')}", {}

    def history_first(rng):
        options = ["", "?order=oldest", "?type=TaskSucceeded", "?failures=1", "?type=StepEntered"]
        return f"{big}history/{rng.choice(options)}", HTMX

    def history_deep(rng):
        at = rng.randint(2, max(info.big_events, 3))
        order = rng.choice(["newest", "oldest"])
        return f"{big}history/?{_q(order=order, cursor=at)}", HTMX

    def timeline(rng):
        if rng.random() < 0.5:
            return f"{big}timeline/", HTMX
        return f"{big}timeline/?after={rng.randint(1, info.big_entries)}", HTMX

    def live(rng):
        since = max(1, info.big_events - rng.randint(0, 60))
        return f"{big}live/?{_q(since=since, history_live=1)}", HTMX

    older = sorted(info.token_ids)[1:]  # a cursor with steps before it: never an empty page

    def approvals(rng):
        if rng.random() < 0.5 or not older:
            return "/approvals/", {}
        return f"/approvals/?before={rng.choice(older)}", {}

    def small_page(rng):
        f, n, _ = rng.choice(info.samples)
        return f"/flows/{f}/executions/{n}/", {}

    def state_visits(rng):
        node = rng.choice(info.big_nodes[:2] or ["States-0"])
        return f"{big}states/{node}/", HTMX

    pages = [
        Page("overview", lambda rng: ("/", {})),
        Page("flows list", lambda rng: ("/flows/", {})),
        Page("executions", executions),
        Page("executions ?status", by_status),
        Page("executions ?flow + time range", by_flow_and_time),
        Page("executions ?name prefix", by_prefix),
        Page("executions ?q=order.customer_id = N", by_input),
        Page("25k execution: page", lambda rng: (big, {})),
        Page("25k execution: history, first page", history_first),
        Page("25k execution: timeline", timeline),
        Page("25k execution: live partial", live),
        Page("approvals inbox", approvals),
    ]
    if extra:
        pages += [
            Page(
                "25k execution: page, graph drawn first (Graphviz)",
                lambda rng: (big, {}),
                before=forget_drawing(info),
            ),  # fmt: skip
            Page("25k execution: history, deep page", history_deep),
            Page("25k execution: a state's visits", state_visits),
            Page("~10-event execution: page", small_page),
        ]
    return pages


def forget_drawing(info: Loaded) -> Callable[[], None]:
    """Make the next page view draw the step graph again, as the first view of a new version
    does: the kept drawing row deleted and the per-process cache emptied."""

    def forget() -> None:
        from executions import graph_svg  # noqa: PLC0415
        from executions.models import Execution, FlowVersionGraph  # noqa: PLC0415

        version = (
            Execution.objects.filter(flow__name=info.big[0], name=info.big[1])
            .values_list("flow_version_id", flat=True)
            .first()
        )
        FlowVersionGraph.objects.filter(pk=version).delete()
        graph_svg._kept.cache_clear()

    return forget


# =============================================================================================
# Measuring
# =============================================================================================


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def admin_client():
    from django.contrib.auth import get_user_model  # noqa: PLC0415
    from django.test import Client  # noqa: PLC0415

    client = Client()
    client.force_login(get_user_model().objects.get(username="bench-admin"))
    return client


@dataclass
class Cost:
    """One page's SQL: the most queries a request made, the median time the database took
    per request (as the client saw it), and the queries of the request with the most."""

    queries: int
    sql_ms: float
    captured: list


def sql_cost(client, page: Page, rng: random.Random, tries: int = 5) -> Cost:
    from django.db import connection  # noqa: PLC0415
    from django.test.utils import CaptureQueriesContext  # noqa: PLC0415

    most, worst, spent = -1, [], []
    for _ in range(tries):
        url, headers = page.make(rng)
        if page.before:
            page.before()
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(url, **headers)
        if response.status_code not in (200, 286):
            raise RuntimeError(f"{page.label}: {url} answered {response.status_code}")
        spent.append(sum(float(q["time"]) for q in ctx.captured_queries) * 1000)
        if len(ctx.captured_queries) > most:
            most, worst = len(ctx.captured_queries), list(ctx.captured_queries)
    return Cost(most, statistics.median(spent), worst)


def measure(client, pages: list[Page], requests: int, rng: random.Random) -> dict[str, dict]:
    """Per page: wall-clock and CPU milliseconds of this process per request, pages
    interleaved so that each sees the same machine."""
    times: dict[str, dict] = {p.label: {"wall": [], "cpu": []} for p in pages}
    for page in pages:  # warm-up: caches, connections, imports
        for _ in range(5):
            url, headers = page.make(rng)
            if page.before:
                page.before()
            client.get(url, **headers)
    # As flowsite/wsgi.py does in a web process once the application is loaded: what is alive
    # now (here also the loader's leftovers) moves out of the collector's full passes, which
    # would otherwise walk it a few times per 200 requests.
    gc.collect()
    gc.freeze()
    for _ in range(requests):
        for page in pages:
            url, headers = page.make(rng)
            if page.before:
                page.before()
            wall, cpu = time.perf_counter(), time.process_time()
            response = client.get(url, **headers)
            cpu = (time.process_time() - cpu) * 1000
            wall = (time.perf_counter() - wall) * 1000
            if response.status_code not in (200, 286):
                raise RuntimeError(f"{page.label}: {url} answered {response.status_code}")
            times[page.label]["wall"].append(wall)
            times[page.label]["cpu"].append(cpu)
    return times


def explain(queries: list[dict]) -> str:
    from django.db import connection  # noqa: PLC0415

    selects = [q for q in queries if q["sql"].lstrip().upper().startswith("SELECT")]
    if not selects:
        return "(no SELECT)"
    slowest = max(selects, key=lambda q: float(q["time"]))
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + slowest["sql"])
        plan = "\n".join(row[0] for row in cursor.fetchall())
    return f"slowest query ({float(slowest['time']) * 1000:.1f} ms):\n{slowest['sql']}\n{plan}"


def machine_line() -> str:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return (
        f"{os.cpu_count()} CPU ({cpu}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, load average {load}"
    )


def database_line() -> str:
    from django.db import connection  # noqa: PLC0415

    with connection.cursor() as cursor:
        cursor.execute("SELECT version(), pg_size_pretty(pg_database_size(current_database()))")
        version, size = cursor.fetchone()
        cursor.execute("SHOW shared_buffers")
        buffers = cursor.fetchone()[0]
        cursor.execute(
            "SELECT relname, pg_size_pretty(pg_total_relation_size(oid)) FROM pg_class "
            "WHERE relkind = 'r' AND relname LIKE 'executions_%' "
            "ORDER BY pg_total_relation_size(oid) DESC LIMIT 5"
        )
        tables = ", ".join(f"{name} {size_}" for name, size_ in cursor.fetchall())
    return f"{version.split(' on ')[0]}, shared_buffers {buffers}; database {size} ({tables})"


def report(rounds: list[dict], costs: dict[str, Cost], pages: list[Page]) -> str:
    lines = [
        "| page | p50 ms | p99 ms | max ms | CPU p50 / p99 ms | SQL ms | queries |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for page in pages:
        label = page.label
        cells = []
        for key in ("p50", "p99", "max"):
            values = [r[label][key] for r in rounds]
            mid = statistics.median(values)
            if len(values) > 1:
                cells.append(f"{mid:.1f} ({min(values):.1f}–{max(values):.1f})")
            else:
                cells.append(f"{mid:.1f}")
        cpu = [statistics.median(r[label][key] for r in rounds) for key in ("cpu50", "cpu99")]
        cells.append(f"{cpu[0]:.1f} / {cpu[1]:.1f}")
        cost = costs[label]
        lines.append(f"| {label} | {' | '.join(cells)} | {cost.sql_ms:.1f} | {cost.queries} |")
    return "\n".join(lines)


# =============================================================================================
# Main: a database of its own, the load, the rounds, the clean-up
# =============================================================================================


def pg_admin(sql: str) -> None:
    import psycopg  # noqa: PLC0415

    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(sql)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executions", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--big-events", type=int, default=25_000)
    parser.add_argument("--requests", type=int, default=200, help="per page and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", type=int, default=2, help="templates per flow and outcome")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--json", help="also write every figure to this file")
    parser.add_argument("--keep", action="store_true", help="keep the database (prints its URL)")
    args = parser.parse_args(argv)

    dbname = f"flowsite_dash_{secrets.token_hex(4)}"
    data_dir = Path(os.environ.get("FLOWSITE_DATA_DIR") or f"/tmp/{dbname}")
    os.environ.update(
        {
            "DATABASE_URL": f"{PG_SERVER}/{dbname}",
            "DJANGO_SETTINGS_MODULE": "flowsite.settings",
            "DJANGO_DEBUG": "0",  # as deployed: DEBUG keeps every query in memory
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
            "DJANGO_ALLOWED_HOSTS": "testserver",
            "FLOWSITE_DATA_DIR": str(data_dir),
            # The collected manifest may lag behind static files being edited in the checkout;
            # the plain storage resolves {% static %} the same way minus the hash.
            "FLOWSITE_STATICFILES_STORAGE": "django.contrib.staticfiles.storage.StaticFilesStorage",
        }
    )
    sys.path.insert(0, str(ROOT))
    created = False
    started = time.perf_counter()
    load_before = machine_line()
    try:
        pg_admin(f'CREATE DATABASE "{dbname}"')
        created = True
        import django  # noqa: PLC0415

        django.setup()
        from django.core.management import call_command  # noqa: PLC0415
        from django.db import connection  # noqa: PLC0415

        say(f"database {dbname}: migrate")
        call_command("migrate", interactive=False, verbosity=0)
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit = off")  # the load only
        t = time.perf_counter()
        info = load(
            executions=args.executions,
            events=args.events,
            big_events=args.big_events,
            variants=args.variants,
            seed=args.seed,
        )
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit = on")
            t_vacuum = time.perf_counter()
            # A live database has been vacuumed by autovacuum (visibility map set for
            # index-only scans) and analysed; a freshly copied one has not.
            cursor.execute("VACUUM ANALYZE")
            info.timings["vacuum analyze"] = time.perf_counter() - t_vacuum
        info.timings["load total"] = time.perf_counter() - t
        say(
            f"loaded {info.executions:,} executions, {info.events:,} events in "
            f"{info.timings['load total']:.0f} s ("
            + ", ".join(f"{k} {v:.1f} s" for k, v in info.timings.items() if k != "load total")
            + ")"
        )
        say("statuses: " + ", ".join(f"{k} {v:,}" for k, v in sorted(info.statuses.items())))
        say("rows: " + ", ".join(f"{k} {v:,}" for k, v in info.counts.items()))
        say(
            "flows: "
            + ", ".join(f"{k} {100 * v / info.executions:.1f}%" for k, v in info.flow_mix.items())
        )
        db_line = database_line()
        say(db_line)

        client = admin_client()
        pages = page_plan(info)
        rng = random.Random(args.seed)
        costs = {page.label: sql_cost(client, page, rng) for page in pages}
        rounds = []
        for r in range(args.rounds):
            say(f"round {r + 1}/{args.rounds}: {machine_line()}")
            times = measure(client, pages, args.requests, rng)
            rounds.append(
                {
                    label: {
                        "p50": pct(v["wall"], 50),
                        "p99": pct(v["wall"], 99),
                        "max": max(v["wall"]),
                        "cpu50": pct(v["cpu"], 50),
                        "cpu99": pct(v["cpu"], 99),
                        "n": len(v["wall"]),
                    }
                    for label, v in times.items()
                }
            )
            print(report([rounds[-1]], costs, pages), flush=True)
            say(f"after round {r + 1}: {machine_line()}")
        table = report(rounds, costs, pages)
        print()
        print(f"machine: {load_before} (before); {machine_line()} (after)")
        print(f"database: {db_line}")
        print(
            f"data: {info.executions:,} executions, {info.events:,} history events "
            f"(the long one {info.big_events:,}); loaded in {info.timings['load total']:.0f} s"
        )
        print(
            f"server-side ms per request (Django test Client, admin), median of "
            f"{args.rounds} rounds (min–max), {args.requests} requests per page and round; "
            "CPU: this process's CPU time per request (p99 near the wall-clock p99: the work "
            "itself; far below: waiting for the machine); SQL: the database's time per request "
            "as the client saw it (median of 5):"
        )
        print(table)
        missed = []
        for page in pages:
            p99 = statistics.median(r[page.label]["p99"] for r in rounds)
            if p99 > TARGET_MS:
                missed.append(page.label)
                print(f"\n{page.label}: p99 {p99:.1f} ms > {TARGET_MS:.0f} ms")
                print(explain(costs[page.label].captured))
        if args.json:
            Path(args.json).write_text(
                json.dumps(
                    {
                        "machine": load_before,
                        "database": db_line,
                        "load": info.timings,
                        "rows": info.counts,
                        "statuses": info.statuses,
                        "queries": {k: c.queries for k, c in costs.items()},
                        "sql_ms": {k: c.sql_ms for k, c in costs.items()},
                        "rounds": rounds,
                    },
                    indent=2,
                )
            )
        say(f"done in {time.perf_counter() - started:.0f} s; over target: {missed or 'none'}")
        return 1 if missed else 0
    finally:
        with contextlib.suppress(Exception):
            from django.db import connections  # noqa: PLC0415

            connections.close_all()
        if created and not args.keep:
            try:
                pg_admin(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            except Exception as exc:  # noqa: BLE001 - report, keep cleaning
                print(f"could not drop database {dbname}: {exc}", file=sys.stderr)
        elif created:
            print(f"kept database {PG_SERVER}/{dbname}")


if __name__ == "__main__":
    sys.exit(main())
