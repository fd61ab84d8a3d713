"""Input and output serializers for the functions API, and the strict JSON fields the whole API
uses.

Input serializers only check JSON *types* (and simple bounds); the rules themselves (name
pattern, handler path, timeout range, uniqueness) belong to ``functions/services.py`` and the
model, so the API and the dashboard refuse the same things.

DRF's stock fields coerce: ``CharField`` turns ``123`` into ``"123"`` and ``IntegerField``
accepts ``"5"`` and ``5.0``. A JSON API should say "wrong type" instead, so the strict fields
below refuse anything that is not already the right JSON type.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from .models import Function

# --------------------------------------------------------------------------------------------
# Strict JSON fields (shared with executions/serializers.py)
# --------------------------------------------------------------------------------------------


class StrictCharField(serializers.CharField):
    """A JSON string; numbers, booleans, lists and objects are refused."""

    default_error_messages = {"invalid": "Must be a string."}

    def __init__(self, **kwargs):
        # Text is kept exactly as sent (a YAML definition's whitespace is significant).
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer; strings, booleans and non-integral numbers are refused."""

    default_error_messages = {"invalid": "Must be an integer."}

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool):
            self.fail("invalid")
        if isinstance(data, float) and data.is_integer():
            data = int(data)
        if not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class JSONObjectField(serializers.DictField):
    """A JSON object, kept as it is (values are not validated)."""

    default_error_messages = {"not_a_dict": "Must be a JSON object, not {input_type}."}

    def to_internal_value(self, data: Any) -> dict:
        if not isinstance(data, dict):
            self.fail("not_a_dict", input_type=type(data).__name__)
        return data


class AnyJSONField(serializers.JSONField):
    """Any JSON value (object, array, string, number, boolean or null)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("allow_null", True)
        super().__init__(**kwargs)


# --------------------------------------------------------------------------------------------
# Errors (documentation only: the exception handler renders them)
# --------------------------------------------------------------------------------------------


class ErrorDetailSerializer(serializers.Serializer):
    path = serializers.CharField(
        help_text='Where: a field name, or a definition path such as "States[1].Next".'
    )
    line = serializers.IntegerField(
        allow_null=True, help_text="Line in the definition, when known."
    )
    message = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField(
        help_text="Stable machine-readable code, e.g. InvalidArgument, FlowNotFound."
    )
    message = serializers.CharField()
    errors = ErrorDetailSerializer(
        many=True, required=False, help_text="Every problem found (validation errors)."
    )


# --------------------------------------------------------------------------------------------
# Functions
# --------------------------------------------------------------------------------------------


class FunctionCreateSerializer(serializers.Serializer):
    name = StrictCharField(max_length=128)
    handler = StrictCharField(max_length=255, help_text="Dotted path module.function.")
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
    cause = serializers.CharField(help_text="The error message and traceback.")
    request_id = serializers.CharField()
