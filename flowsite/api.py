"""What both apps' REST APIs share: strict JSON fields, the error body's schema, and the small
helpers views use to parse input (``parse``) and guard a resource's name (``check_same_name``).

DRF's stock fields coerce: ``CharField`` turns ``123`` into ``"123"`` and ``IntegerField``
accepts ``"5"`` and ``5.0``. A JSON API should say "wrong type" instead, so the strict fields
below refuse anything that is not already the right JSON type.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from flowsite.errors import ServiceError

# --------------------------------------------------------------------------------------------
# Strict JSON fields
# --------------------------------------------------------------------------------------------


class StrictCharField(serializers.CharField):
    """A JSON string; numbers, booleans, lists and objects are refused."""

    default_error_messages = {
        "invalid": "Must be a string.",
        "surrogate": "Must be valid Unicode (no lone surrogates such as \\ud800).",
        "nul": "Must not contain NUL characters (\\u0000).",
    }

    def __init__(self, **kwargs):
        # Text is kept exactly as sent (a YAML definition's whitespace is significant).
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)
        # DRF's own surrogate check walks the string in Python, character by character (0.3 s
        # per MiB of definition); to_internal_value does the same check in C.
        self.validators = [
            v for v in self.validators if not isinstance(v, ProhibitSurrogateCharactersValidator)
        ]

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        if not data.isascii():
            try:
                data.encode("utf-8")
            except UnicodeEncodeError:
                self.fail("surrogate")
        if "\x00" in data:
            self.fail("nul")
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
# Helpers for views
# --------------------------------------------------------------------------------------------


def error_response(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=description)


ERR_400 = error_response("InvalidArgument (wrong types or values) or MalformedJSON.")
ERR_401 = error_response("Unauthenticated.")


def parse(serializer_class: type[serializers.Serializer], data: Any, **kwargs) -> dict:
    """Validate ``data`` (a request body or query dict); 400 InvalidArgument naming the field."""
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def check_same_name(data: dict, name: str) -> None:
    """A body may repeat the resource's name (e.g. a GET body sent back) but not change it."""
    given = data.pop("name", None)
    if given is not None and given != name:
        raise ServiceError(
            "the name cannot be changed",
            code="InvalidArgument",
            errors=[{"path": "name", "line": None, "message": f"must be {name!r} (the URL's)"}],
        )
