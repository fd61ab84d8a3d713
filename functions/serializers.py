"""Input and output serializers for the functions API.

Input serializers only check JSON *types* (and simple bounds); the rules themselves (name
pattern, handler path, timeout range, uniqueness) belong to ``functions/services.py`` and the
model, so the API and the dashboard refuse the same things.
"""

from __future__ import annotations

from rest_framework import serializers

from flowsite.api import AnyJSONField, StrictCharField, StrictIntegerField

from .models import Function

# --------------------------------------------------------------------------------------------
# Functions
# --------------------------------------------------------------------------------------------


class FunctionCreateSerializer(serializers.Serializer):
    name = StrictCharField(max_length=128)
    handler = StrictCharField(
        max_length=255,
        help_text="module.function (or package.module.function): a function defined in a "
        "module file inside a FLOWSITE_FUNCTIONS_PATH folder.",
    )
    description = StrictCharField(required=False, allow_blank=True, max_length=4096, default="")
    timeout_seconds = StrictIntegerField(required=False, default=60, help_text="1-86400 seconds.")


class FunctionReplaceSerializer(serializers.Serializer):
    """PUT: the whole function; omitted optional fields go back to their defaults."""

    name = StrictCharField(
        required=False, max_length=128, help_text="If given, must be the name in the URL."
    )
    handler = StrictCharField(max_length=255)
    description = StrictCharField(required=False, allow_blank=True, max_length=4096, default="")
    timeout_seconds = StrictIntegerField(required=False, default=60)


class FunctionPatchSerializer(serializers.Serializer):
    """PATCH: only the fields given change."""

    name = StrictCharField(
        required=False, max_length=128, help_text="If given, must be the name in the URL."
    )
    handler = StrictCharField(required=False, max_length=255)
    description = StrictCharField(required=False, allow_blank=True, max_length=4096)
    timeout_seconds = StrictIntegerField(required=False)


class FunctionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Function
        fields = ["name", "handler", "description", "timeout_seconds", "created_at", "updated_at"]
        read_only_fields = fields


class InvocationResultSerializer(serializers.Serializer):
    request_id = serializers.CharField()
    result = AnyJSONField(
        help_text="The handler's return value (JSON text is parsed; other text stays a string)."
    )
    duration_ms = serializers.FloatField()


class FunctionErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="FunctionError (the handler failed) or FunctionTimeout.")
    message = serializers.CharField()
    error = serializers.CharField(
        help_text="The error name: the exception class, or FC.* for platform errors."
    )
    cause = serializers.CharField(
        help_text="The error message, and for a handler's own error its traceback frames in "
        "files of the functions folders (paths relative to the folder); never the server's."
    )
    request_id = serializers.CharField()
