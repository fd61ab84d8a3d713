from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "flowsite.audit"
    label = "audit"
    verbose_name = "Roles and audit log"
    default_auto_field = "django.db.models.BigAutoField"
