"""Indexes for the dashboard's list pages (the overview, the flows list, the executions filters).

Written as SQL rather than ``Meta.indexes`` so that they need no change to the models (which
another part of the dashboard edits at the same time); the autodetector does not see RunSQL
and so never proposes to drop them.

* ``started_at``: the overview's last-24-hours chart and the "started from/to" filter;
  ``stopped_at``: retention (``flowsite_prune``) and ended-between reads.
* ``(flow_id, id DESC)``: a flow's newest executions (the flows list's "last execution", the
  flow page, the executions list filtered by flow alone).
* ``name``: the "name starts with" filter (on PostgreSQL with ``varchar_pattern_ops`` so that
  ``LIKE 'prefix%'`` can use it whatever the database's collation).
* PostgreSQL only: a GIN index over ``input`` (``jsonb_path_ops``) that serves the input
  condition ``path = value`` (written as JSON containment, ``input @> {...}``).
"""

from django.db import migrations

from executions.dbops import sql_indexes

TABLE = "executions_execution"

PORTABLE = [
    ("execution_started_at", f"CREATE INDEX execution_started_at ON {TABLE} (started_at)"),
    ("execution_stopped_at", f"CREATE INDEX execution_stopped_at ON {TABLE} (stopped_at)"),
    ("execution_flow_recent", f"CREATE INDEX execution_flow_recent ON {TABLE} (flow_id, id DESC)"),
]

POSTGRESQL = [
    (
        "execution_name_prefix",
        f"CREATE INDEX execution_name_prefix ON {TABLE} (name varchar_pattern_ops)",
    ),
    (
        "execution_input_gin",
        f"CREATE INDEX execution_input_gin ON {TABLE} USING gin (input jsonb_path_ops)",
    ),
]

OTHERS = [("execution_name_prefix", f"CREATE INDEX execution_name_prefix ON {TABLE} (name)")]


def _indexes(vendor):
    return PORTABLE + (POSTGRESQL if vendor == "postgresql" else OTHERS)


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("executions", "0004_secret_task_tokens"),
    ]

    operations = [sql_indexes(_indexes)]
