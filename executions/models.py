"""Flows, their versions, executions, history, and the runtime's durable bookkeeping.

The runtime tables (``WorkItem``, ``Timer``, ``TaskToken``) are what makes executions survive
worker, broker and web restarts: every piece of outstanding work is a row written in the same
transaction as the history event that created it (see ``executions/runtime/``).
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q

NAME_RE = r"^[A-Za-z_][A-Za-z0-9_-]{0,127}$"
name_validator = RegexValidator(
    NAME_RE, "letters, digits, _ and -, starting with a letter or _ (≤128)"
)


class ExecutionStatus(models.TextChoices):
    STARTING = "Starting"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    STOPPED = "Stopped"
    TIMED_OUT = "TimedOut"

    @classmethod
    def open(cls) -> tuple[str, ...]:
        return (cls.STARTING, cls.RUNNING)

    @classmethod
    def closed(cls) -> tuple[str, ...]:
        return (cls.SUCCEEDED, cls.FAILED, cls.STOPPED, cls.TIMED_OUT)


class Flow(models.Model):
    name = models.CharField(max_length=128, unique=True, validators=[name_validator])
    description = models.TextField(blank=True, max_length=4096)
    definition = models.TextField(help_text="The current version's YAML/JSON text.")
    dialect = models.CharField(max_length=16)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class FlowVersion(models.Model):
    """An immutable snapshot: an execution runs the version it started with."""

    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    definition = models.TextField()
    # SHA-256 of ``definition``: workers cache compiled graphs by (id, digest) and so never
    # reload a (up to 1 MiB) definition per transition, nor trust an id SQLite may reuse.
    digest = models.CharField(max_length=64)
    dialect = models.CharField(max_length=16)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["flow", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["flow", "version"], name="flowversion_unique_version")
        ]

    def __str__(self) -> str:
        return f"{self.flow.name} v{self.version}"

    def save(self, *args, **kwargs):
        self.digest = hashlib.sha256(self.definition.encode()).hexdigest()
        super().save(*args, **kwargs)


class Execution(models.Model):
    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="executions")
    flow_version = models.ForeignKey(
        FlowVersion, on_delete=models.CASCADE, related_name="executions"
    )
    name = models.CharField(max_length=128, validators=[name_validator])
    status = models.CharField(
        max_length=16, choices=ExecutionStatus.choices, default=ExecutionStatus.RUNNING
    )
    input = models.JSONField(default=dict)
    output = models.JSONField(null=True, blank=True)
    error_code = models.CharField(max_length=128, blank=True)
    error_message = models.TextField(blank=True)
    started_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The engine's state (executions/engine/machine.py): loaded and stored whole, under the
    # row lock, by every transition. ``revision`` counts transitions.
    state = models.JSONField(default=dict)
    # Random per execution; with SECRET_KEY it derives the execution's callback task tokens.
    token_salt = models.CharField(max_length=32, blank=True, editable=False)
    revision = models.PositiveIntegerField(default=0)
    event_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["flow", "name"], name="execution_unique_name_per_flow")
        ]
        indexes = [
            models.Index(fields=["flow", "status", "-id"], name="execution_flow_status"),
            models.Index(fields=["status", "-id"], name="execution_status"),
        ]

    def __str__(self) -> str:
        return f"{self.flow.name}/{self.name}"

    @property
    def is_open(self) -> bool:
        return self.status in ExecutionStatus.open()


class HistoryEvent(models.Model):
    """Append-only; ``event_id`` runs 1..N without gaps within an execution."""

    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="events")
    event_id = models.PositiveIntegerField()
    schedule_event_id = models.PositiveIntegerField(default=0)
    type = models.CharField(max_length=32)
    step_name = models.CharField(max_length=128, blank=True)
    time = models.DateTimeField()
    detail = models.JSONField(default=dict)

    class Meta:
        ordering = ["execution", "event_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["execution", "event_id"], name="history_unique_event_id"
            )
        ]
        indexes = [
            # The execution page's history filtered by event type, keyset-paged by event id.
            models.Index(fields=["execution", "type", "event_id"], name="history_type"),
        ]

    def __str__(self) -> str:
        return f"#{self.event_id} {self.type} {self.step_name}"


class WorkKind(models.TextChoices):
    INVOKE = "invoke"  # run a function for a Task attempt
    RESUME = "resume"  # continue inline work cut short by the engine's budget
    DETACHED = "detached"  # a function submitted with invocationType Async: nothing waits


class WorkStatus(models.TextChoices):
    PENDING = "pending"  # recorded; published (maybe more than once) but not claimed yet
    RUNNING = "running"  # claimed by a worker, lease_until set
    DONE = "done"
    CANCELLED = "cancelled"  # the engine no longer wants it; never started or result ignored
    LOST = "lost"  # the lease ran out with no result; the engine was told


class WorkItem(models.Model):
    """The outbox and the task-attempt table in one: a Celery message carries only ``id``."""

    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="work")
    kind = models.CharField(max_length=8, choices=WorkKind.choices)
    entry_id = models.PositiveIntegerField(default=0)
    attempt = models.PositiveIntegerField(default=0)
    state_name = models.CharField(max_length=128, blank=True)
    function_name = models.CharField(max_length=128, blank=True)
    payload = models.JSONField(null=True, blank=True)
    invocation = models.CharField(max_length=8, blank=True)
    mode = models.CharField(max_length=32, blank=True)
    timeout_seconds = models.FloatField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=WorkStatus.choices, default=WorkStatus.PENDING)
    created_at = models.DateTimeField()
    next_dispatch_at = models.DateTimeField()
    dispatch_count = models.PositiveIntegerField(default=1)
    started_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=255, blank=True)
    error = models.CharField(max_length=128, blank=True)
    # Handed to the handler as ``context.idempotency_key``: the same for every re-run of one
    # logical attempt (after a lost worker or a lost result write), different for a real retry.
    idempotency_key = models.CharField(max_length=128, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["execution", "kind", "entry_id", "attempt"], name="workitem_unique_attempt"
            )
        ]
        indexes = [
            models.Index(
                fields=["next_dispatch_at"],
                name="workitem_pending_due",
                condition=Q(status="pending"),
            ),
            models.Index(
                fields=["lease_until"], name="workitem_running_lease", condition=Q(status="running")
            ),
            models.Index(
                fields=["worker"], name="workitem_running_worker", condition=Q(status="running")
            ),
            # "Why is it waiting?": an execution's outstanding attempts, not all it ever made.
            models.Index(
                fields=["execution"],
                name="workitem_open_execution",
                condition=Q(status__in=["pending", "running"]),
            ),
            # A function's page: the latest attempts flows made of it.
            models.Index(
                fields=["function_name", "-id"],
                name="workitem_function_recent",
                condition=~Q(function_name=""),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.entry_id}.{self.attempt} ({self.status})"


class Timer(models.Model):
    """A deadline (Wait, retry back-off, task timeout, heartbeat) fired by the sweeper."""

    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="timers")
    key = models.CharField(max_length=64)
    entry_id = models.PositiveIntegerField()
    due_at = models.DateTimeField()
    fired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["due_at"]
        constraints = [
            models.UniqueConstraint(fields=["execution", "key"], name="timer_unique_key")
        ]
        indexes = [
            models.Index(
                fields=["due_at"], name="timer_open_due", condition=Q(fired_at__isnull=True)
            ),
            # "Why is it waiting?": an execution's unfired timers (a loop leaves fired ones).
            models.Index(
                fields=["execution", "due_at"],
                name="timer_open_execution",
                condition=Q(fired_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key} @ {self.due_at:%Y-%m-%d %H:%M:%S}"


class TaskToken(models.Model):
    """A callback task waiting for a report. The token itself is stored nowhere: only its
    SHA-256 (to find the row from a report) and its short ``fingerprint`` (what the engine,
    the history, the API and the pages know the task by). The worker that runs the task's
    function derives the real token again (``runtime.transition.task_token``)."""

    token_hash = models.CharField(max_length=64, unique=True)
    fingerprint = models.CharField(max_length=32, blank=True, db_index=True)
    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="tokens")
    entry_id = models.PositiveIntegerField()
    attempt = models.PositiveIntegerField(default=1)
    state_name = models.CharField(max_length=128)
    is_open = models.BooleanField(default=True)
    created_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # The approvals inbox: open tasks, newest first.
            models.Index(fields=["-created_at"], name="tasktoken_open", condition=Q(is_open=True))
        ]

    def __str__(self) -> str:
        return f"token {self.token_hash[:8]}… ({'open' if self.is_open else 'closed'})"


class QueueMessage(models.Model):
    """A message on one of flowsite's pull queues (legacy MNS task targets)."""

    queue = models.CharField(max_length=128, db_index=True)
    body = models.JSONField()
    execution = models.ForeignKey(
        Execution, null=True, blank=True, on_delete=models.CASCADE, related_name="queue_messages"
    )
    entry_id = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()
    visible_at = models.DateTimeField()
    receive_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["queue", "visible_at"], name="queuemessage_visible")]

    def __str__(self) -> str:
        return f"{self.queue} #{self.pk}"


class ExecutionValue(models.Model):
    """A value the engine keeps beside its state rather than in it (``PutValue`` commands): Map
    items, branch and iteration results, a container's input. Written once per value, read back
    only when needed, so a transition's cost does not grow with the results already collected.
    Deleted when the container is done with them (``DropValues``) or the execution ends."""

    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="values")
    key = models.CharField(max_length=64)
    value = models.JSONField(null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["execution", "key"], name="executionvalue_unique_key")
        ]

    def __str__(self) -> str:
        return f"{self.execution_id}:{self.key}"


class HeartbeatKind(models.TextChoices):
    WORKER = "worker"  # one row per process that runs work items (a prefork child)
    SWEEPER = "sweeper"


class Heartbeat(models.Model):
    """Liveness of the processes the runtime depends on, stamped with the database's clock.

    Workers stamp their row every ``FLOWSITE_WORKER_HEARTBEAT`` seconds from a thread, so the
    sweeper can reclaim a killed worker's attempts within seconds instead of after the
    function's whole timeout. The sweeper stamps its own row every round; ``/healthz`` reads it.
    """

    name = models.CharField(max_length=255, unique=True)  # "<host>:<pid>" or "sweeper:<host>:<pid>"
    kind = models.CharField(max_length=8, choices=HeartbeatKind.choices)
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["kind", "last_seen"], name="heartbeat_kind_seen")]

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


# --- the execution page's read model (kept by the runtime, see executions/detail.py) ------------


class StepStatus(models.TextChoices):
    """Where one visit of a state (one entry into it) stands."""

    RUNNING = "running"
    WAITING_CALLBACK = "waiting_callback"
    WAITING_TIMER = "waiting_timer"  # a Wait state
    RETRYING = "retrying"  # failed, a Retry rule's back-off timer runs
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CAUGHT = "caught"  # failed, and a Catch rule took over
    CANCELLED = "cancelled"  # a failing sibling, a stop, or the execution's end closed it

    @classmethod
    def open(cls) -> tuple[str, ...]:
        return (cls.RUNNING, cls.WAITING_CALLBACK, cls.WAITING_TIMER, cls.RETRYING)


class StepVisit(models.Model):
    """One entry into a state (its ``StepEntered`` event): status, times and attempts, written by
    the transition that changes it, so the execution page reads visits without replaying the
    history. ``node`` names the state in its flow version's graph (``detail.node_key``)."""

    # (No index of its own: the unique constraint's index starts with it.)
    execution = models.ForeignKey(
        Execution, on_delete=models.CASCADE, related_name="step_visits", db_index=False
    )
    entry_id = models.PositiveIntegerField()  # the StepEntered event id
    node = models.CharField(max_length=200)
    state_name = models.CharField(max_length=128)
    where = models.CharField(max_length=40, blank=True)  # "iteration 3", "branch 1"
    status = models.CharField(max_length=16, choices=StepStatus.choices)
    entered_at = models.DateTimeField()
    exited_at = models.DateTimeField(null=True, blank=True)
    exit_event_id = models.PositiveIntegerField(default=0)  # StepExited/StepFailed
    attempts = models.PositiveIntegerField(default=0)  # TaskScheduled events
    retries = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=128, blank=True)
    # The latest attempts (at most ``detail.MAX_TRIES``): event ids and times of each.
    tries = models.JSONField(default=list)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["execution", "entry_id"], name="stepvisit_unique_entry")
        ]
        indexes = [
            models.Index(fields=["execution", "node", "entry_id"], name="stepvisit_node"),
            models.Index(
                fields=["execution"], name="stepvisit_open", condition=Q(exited_at__isnull=True)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.state_name} #{self.entry_id} ({self.status})"


class StepSummary(models.Model):
    """Per execution and state: how many visits, how many are in each status now, and the
    latest one. One row per state reached, so the step graph costs O(states) to colour. The
    runtime adds to the counters in one statement (``INSERT … ON CONFLICT DO UPDATE``)."""

    execution = models.ForeignKey(
        Execution, on_delete=models.CASCADE, related_name="step_summaries", db_index=False
    )
    node = models.CharField(max_length=200)
    visits = models.PositiveIntegerField(default=0)
    # How many of the visits are in each StepStatus now.
    running = models.IntegerField(default=0)
    waiting_callback = models.IntegerField(default=0)
    waiting_timer = models.IntegerField(default=0)
    retrying = models.IntegerField(default=0)
    succeeded = models.IntegerField(default=0)
    failed = models.IntegerField(default=0)
    caught = models.IntegerField(default=0)
    cancelled = models.IntegerField(default=0)
    last_entry_id = models.PositiveIntegerField(default=0)
    last_status = models.CharField(max_length=16, choices=StepStatus.choices)
    last_entered_at = models.DateTimeField(null=True, blank=True)
    last_exited_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["execution", "node"], name="stepsummary_unique_node")
        ]

    def __str__(self) -> str:
        return f"{self.node}: {self.visits} visits ({self.last_status})"

    @property
    def counts(self) -> dict[str, int]:
        return {s: getattr(self, s) for s in StepStatus.values if getattr(self, s)}


class FlowVersionGraph(models.Model):
    """A flow version's step graph as laid out by Graphviz (sanitised SVG with slots for the
    statuses): drawn once, since a version never changes. ``renderer`` is the drawing code's
    version; a row drawn by another is drawn again. ``error`` says why there is no drawing."""

    flow_version = models.OneToOneField(
        FlowVersion, on_delete=models.CASCADE, primary_key=True, related_name="graph_layout"
    )
    digest = models.CharField(max_length=64)
    renderer = models.PositiveSmallIntegerField(default=0)
    svg = models.TextField(blank=True)
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"graph of version {self.flow_version_id}"
