"""The audit log: every change a person or an API key made, append-only.

Rows are written by :func:`flowsite.audit.record` in the same transaction as the change they
describe (a refused or failed change leaves no row). Nothing updates or deletes them: the
model and its queryset refuse, and on PostgreSQL a trigger refuses too (migration 0002), so
even raw SQL from the application's role cannot rewrite history. Retention does not touch them.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Now


class AppendOnly(Exception):
    """An attempt to change or delete an audit entry."""


class AuditQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnly("audit entries cannot be changed")

    def delete(self):
        raise AppendOnly("audit entries cannot be deleted")

    _raw_delete = delete


class AuditEntry(models.Model):
    at = models.DateTimeField(db_default=Now(), db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,  # a deleted user's entries stay, with their name
    )
    actor_name = models.CharField(max_length=150)
    via = models.CharField(max_length=16)  # api | web | admin | system
    ip = models.CharField(max_length=64, blank=True)
    user_agent = models.CharField(max_length=256, blank=True)
    action = models.CharField(max_length=64)  # e.g. "execution.stop"
    object_type = models.CharField(max_length=32)  # flow | execution | function | task | user
    object_name = models.CharField(max_length=300)
    detail = models.JSONField(default=dict, blank=True)

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["actor_name", "-id"], name="audit_actor"),
            models.Index(fields=["action", "-id"], name="audit_action"),
        ]
        verbose_name = "audit entry"
        verbose_name_plural = "audit log"

    def __str__(self) -> str:
        return f"{self.actor_name} {self.action} {self.object_name}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not self._state.adding:
            raise AppendOnly("audit entries cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnly("audit entries cannot be deleted")
