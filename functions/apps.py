from django.apps import AppConfig


class FunctionsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "functions"
    verbose_name = "Functions"

    def ready(self) -> None:
        from . import checks  # noqa: F401, PLC0415 - registers the system checks
