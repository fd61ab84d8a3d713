from django.apps import AppConfig
from django.db.models.signals import post_migrate


def ensure_role_groups(sender, using="default", **kwargs):
    """The four role groups exist after every ``migrate`` and every ``flush``.

    A migration creates them once; a flush (``manage.py flush``, or a test that truncates the
    database) removes them with everything else, and Django re-emits ``post_migrate`` after it,
    so they come back here instead of every role check failing closed with no way to grant one.
    """
    from django.contrib.auth.models import Group

    from flowsite.access import Role

    for role in Role:
        Group.objects.using(using).get_or_create(name=role.value)


class AuditConfig(AppConfig):
    name = "flowsite.audit"
    label = "audit"
    verbose_name = "Roles and audit log"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        post_migrate.connect(ensure_role_groups, sender=self, dispatch_uid="flowsite-role-groups")
