"""Functions: Python handlers ``handler(event, context)`` that flows (and users) invoke."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

NAME_RE = r"^[A-Za-z_][A-Za-z0-9_-]{0,127}$"
HANDLER_RE = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$"


class Function(models.Model):
    name = models.CharField(
        max_length=128,
        unique=True,
        validators=[
            RegexValidator(NAME_RE, "letters, digits, _ and -, starting with a letter or _")
        ],
    )
    handler = models.CharField(
        max_length=255,
        validators=[RegexValidator(HANDLER_RE, "a dotted path such as module.function")],
        help_text="Dotted path module.function, importable from FLOWSITE_FUNCTIONS_PATH.",
    )
    description = models.TextField(blank=True, max_length=4096)
    timeout_seconds = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(1), MaxValueValidator(86400)]
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
