"""Indexes on tables that are large on a live installation (history, timers, work items),
built ``CONCURRENTLY`` on PostgreSQL so that the service keeps running while they build
(``executions.dbops.AddIndexWithoutLock``; hence ``atomic = False``).

* ``history_type``: the execution page's history filtered by event type, and its failures.
* ``timer_open_execution``, ``workitem_open_execution``: "why is it waiting?" reads an
  execution's open timers and outstanding attempts, not all it ever had.
* ``workitem_function_recent``: a function's page lists the latest attempts flows made of it.
"""

from django.db import migrations, models

from executions.dbops import AddIndexWithoutLock


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("executions", "0007_dashboard_bench_indexes"),
    ]

    operations = [
        AddIndexWithoutLock(
            model_name="historyevent",
            index=models.Index(fields=["execution", "type", "event_id"], name="history_type"),
        ),
        AddIndexWithoutLock(
            model_name="timer",
            index=models.Index(
                condition=models.Q(("fired_at__isnull", True)),
                fields=["execution", "due_at"],
                name="timer_open_execution",
            ),
        ),
        AddIndexWithoutLock(
            model_name="workitem",
            index=models.Index(
                condition=models.Q(("status__in", ["pending", "running"])),
                fields=["execution"],
                name="workitem_open_execution",
            ),
        ),
        AddIndexWithoutLock(
            model_name="workitem",
            index=models.Index(
                condition=~models.Q(function_name=""),
                fields=["function_name", "-id"],
                name="workitem_function_recent",
            ),
        ),
    ]
