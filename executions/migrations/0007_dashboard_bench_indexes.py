"""Two indexes found missing by the dashboard benchmark (bench/dashboard.py, PostgreSQL, 100,000
executions). SQL rather than ``Meta.indexes``, as in 0005, so the models need no change.

* ``(started_at, status, id)``: the overview's chart (executions started in the last 24 hours,
  counted by hour and status) reads only these columns, so it is answered from the index alone
  instead of visiting ~20,000 table rows (34 ms -> 10 ms at that size).
* ``(flow_id, started_at, status)``: the executions list filtered by a flow and a time range
  (without it PostgreSQL walks the flow's executions from the newest back to the range), and the
  flows list's counts of each flow's executions of the last 24 hours by status, read from the
  index alone.
"""

from django.db import migrations

from executions.dbops import sql_indexes

TABLE = "executions_execution"

INDEXES = [
    (
        "execution_started_status",
        f"CREATE INDEX execution_started_status ON {TABLE} (started_at, status, id)",
    ),
    (
        "execution_flow_started",
        f"CREATE INDEX execution_flow_started ON {TABLE} (flow_id, started_at, status)",
    ),
]


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("executions", "0006_execution_page_read_model"),
    ]

    operations = [sql_indexes(lambda vendor: INDEXES)]
