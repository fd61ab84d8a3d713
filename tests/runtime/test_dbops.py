"""Indexes on big tables are built without blocking writes on PostgreSQL."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import pytest
from django.db import NotSupportedError, models
from django.db.migrations.state import ProjectState

from executions.dbops import AddIndexWithoutLock


class Editor:
    def __init__(self, vendor: str, in_atomic_block: bool = False):
        self.connection = SimpleNamespace(
            vendor=vendor, in_atomic_block=in_atomic_block, alias="default"
        )
        self.calls: list[tuple] = []

    def add_index(self, model, index, concurrently=False):
        self.calls.append(("add", index.name, concurrently))

    def remove_index(self, model, index, concurrently=False):
        self.calls.append(("remove", index.name, concurrently))


def states():
    from django.apps import apps

    before = ProjectState.from_apps(apps)
    operation = AddIndexWithoutLock(
        model_name="historyevent",
        index=models.Index(fields=["execution", "type"], name="probe_index"),
    )
    after = before.clone()
    operation.state_forwards("executions", after)
    return operation, before, after


def test_on_postgresql_the_index_is_built_and_dropped_concurrently():
    operation, before, after = states()
    editor = Editor("postgresql")
    operation.database_forwards("executions", editor, before, after)
    operation.database_backwards("executions", editor, after, before)
    assert editor.calls == [("add", "probe_index", True), ("remove", "probe_index", True)]


def test_inside_a_transaction_on_postgresql_it_refuses_instead_of_failing_half_way():
    operation, before, after = states()
    with pytest.raises(NotSupportedError, match="atomic = False"):
        operation.database_forwards("executions", Editor("postgresql", True), before, after)


def test_elsewhere_it_is_a_plain_index():
    operation, before, after = states()
    editor = Editor("sqlite")
    operation.database_forwards("executions", editor, before, after)
    assert editor.calls == [("add", "probe_index", False)]


@pytest.mark.parametrize(
    "name",
    ["0005_dashboard_list_indexes", "0007_dashboard_bench_indexes", "0008_indexes_without_lock"],
)
def test_the_index_migrations_run_outside_a_transaction(name):
    migration = importlib.import_module(f"executions.migrations.{name}").Migration
    assert migration.atomic is False
