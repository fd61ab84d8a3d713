"""Migration operations for tables that may already be large when a migration runs."""

from __future__ import annotations

from collections.abc import Callable

from django.db import NotSupportedError
from django.db.migrations.operations import AddIndex, RunPython


class AddIndexWithoutLock(AddIndex):
    """``AddIndex`` that on PostgreSQL builds the index ``CONCURRENTLY``, so that a live
    service keeps writing to the table while a large index builds (a plain ``CREATE INDEX``
    blocks every insert and update of the table until it is done, minutes on a big history).
    Elsewhere it is a plain ``AddIndex`` (SQLite holds the database for the migration anyway).

    The migration that uses it must set ``atomic = False``: PostgreSQL cannot build an index
    concurrently inside a transaction. If such a build fails (a lost connection, a deadlock),
    PostgreSQL leaves an INVALID index behind: drop it (``DROP INDEX CONCURRENTLY name``) and
    run ``migrate`` again.
    """

    atomic = False

    def _concurrently(self, schema_editor) -> bool:
        if schema_editor.connection.vendor != "postgresql":
            return False
        if schema_editor.connection.in_atomic_block:
            raise NotSupportedError(
                f"{type(self).__name__} needs a migration with atomic = False on PostgreSQL"
            )
        return True

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if not self._concurrently(schema_editor):
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.add_index(model, self.index, concurrently=True)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if not self._concurrently(schema_editor):
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        model = from_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.remove_index(model, self.index, concurrently=True)

    def describe(self) -> str:
        return super().describe() + " (concurrently on PostgreSQL)"


def sql_indexes(indexes: Callable[[str], list[tuple[str, str]]]) -> RunPython:
    """A ``RunPython`` that creates ``indexes(vendor)`` (pairs of name and ``CREATE INDEX``
    statement) and drops them on the way back; on PostgreSQL built ``CONCURRENTLY`` (the
    migration must set ``atomic = False``, as for :class:`AddIndexWithoutLock`)."""

    def create(apps, schema_editor):
        vendor = schema_editor.connection.vendor
        for _, sql in indexes(vendor):
            if vendor == "postgresql":
                sql = sql.replace("CREATE INDEX ", "CREATE INDEX CONCURRENTLY IF NOT EXISTS ", 1)
            schema_editor.execute(sql)

    def drop(apps, schema_editor):
        for name, _ in indexes(schema_editor.connection.vendor):
            schema_editor.execute(f"DROP INDEX IF EXISTS {name}")

    return RunPython(create, drop, elidable=False)
