from django.apps import AppConfig


class UiConfig(AppConfig):
    """The dashboard's shared pieces: template tags, the layout's context, security headers."""

    name = "flowsite.ui"
    label = "ui"
    verbose_name = "Dashboard"
