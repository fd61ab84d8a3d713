"""Input and output serializers for the flows, executions and task-callback APIs.

Input serializers check JSON types and simple bounds only; every rule about the values
themselves (names, definitions, sizes, states) lives in ``executions/services.py``.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from flowsite.api import (
    AnyJSONField,
    ErrorDetailSerializer,
    JSONObjectField,
    StrictCharField,
)

from .models import Execution, ExecutionStatus, Flow, HistoryEvent

# --------------------------------------------------------------------------------------------
# Flows
# --------------------------------------------------------------------------------------------


class FlowCreateSerializer(serializers.Serializer):
    name = StrictCharField(max_length=128)
    definition = StrictCharField(help_text="The flow definition: YAML (or JSON) text.")
    description = StrictCharField(required=False, allow_blank=True, max_length=4096, default="")


class FlowReplaceSerializer(serializers.Serializer):
    """PUT: the definition is required; an omitted description becomes empty."""

    name = StrictCharField(
        required=False, max_length=128, help_text="If given, must be the name in the URL."
    )
    definition = StrictCharField()
    description = StrictCharField(required=False, allow_blank=True, max_length=4096, default="")


class FlowPatchSerializer(serializers.Serializer):
    """PATCH: only the fields given change. A changed definition makes a new version."""

    name = StrictCharField(
        required=False, max_length=128, help_text="If given, must be the name in the URL."
    )
    definition = StrictCharField(required=False)
    description = StrictCharField(required=False, allow_blank=True, max_length=4096)


class FlowSerializer(serializers.ModelSerializer):
    warnings = serializers.SerializerMethodField(
        help_text="Non-fatal findings about the definition just saved (empty otherwise)."
    )

    class Meta:
        model = Flow
        fields = [
            "name",
            "definition",
            "description",
            "version",
            "dialect",
            "created_at",
            "updated_at",
            "warnings",
        ]
        read_only_fields = fields

    @extend_schema_field(ErrorDetailSerializer(many=True))
    def get_warnings(self, flow: Flow) -> list[dict]:
        return list(getattr(flow, "warnings", None) or [])


# --------------------------------------------------------------------------------------------
# Executions
# --------------------------------------------------------------------------------------------


class ExecutionStartSerializer(serializers.Serializer):
    name = StrictCharField(
        required=False,
        allow_blank=True,
        allow_null=True,
        max_length=128,
        help_text="Unique within the flow; generated when omitted. Starting a name that is "
        "still running returns that execution (200).",
    )
    input = JSONObjectField(
        required=False, allow_null=True, help_text="The execution's input (a JSON object)."
    )


class ExecutionListQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=ExecutionStatus.choices, required=False)
    name_prefix = serializers.CharField(required=False, max_length=128, trim_whitespace=False)


class ExecutionWaitQuerySerializer(serializers.Serializer):
    wait_seconds = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=60,
        default=0,
        help_text="Hold the request up to this many seconds until the execution has ended.",
    )


class ExecutionStopSerializer(serializers.Serializer):
    error = StrictCharField(required=False, allow_blank=True, max_length=128, default="")
    cause = StrictCharField(required=False, allow_blank=True, max_length=4096, default="")


class ExecutionSerializer(serializers.ModelSerializer):
    flow = serializers.CharField(source="flow.name", read_only=True)
    flow_version = serializers.IntegerField(source="flow_version.version", read_only=True)
    input = AnyJSONField(read_only=True)
    output = AnyJSONField(read_only=True)

    class Meta:
        model = Execution
        fields = [
            "name",
            "flow",
            "flow_version",
            "status",
            "input",
            "output",
            "error_code",
            "error_message",
            "started_at",
            "stopped_at",
        ]
        read_only_fields = fields


class ExecutionSummarySerializer(ExecutionSerializer):
    """A list row: the execution without its (possibly large) input and output."""

    class Meta(ExecutionSerializer.Meta):
        fields = [f for f in ExecutionSerializer.Meta.fields if f not in ("input", "output")]
        read_only_fields = fields


# --------------------------------------------------------------------------------------------
# History
# --------------------------------------------------------------------------------------------


class HistoryQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000, default=100)
    next = serializers.RegexField(
        r"^[0-9]{1,10}$",
        required=False,
        error_messages={"invalid": "Not a valid page token."},
        help_text="The `next` token of the previous page.",
    )


class HistoryEventSerializer(serializers.ModelSerializer):
    detail = AnyJSONField(read_only=True)

    class Meta:
        model = HistoryEvent
        fields = ["event_id", "schedule_event_id", "type", "step_name", "time", "detail"]
        read_only_fields = fields


class HistoryPageSerializer(serializers.Serializer):
    events = HistoryEventSerializer(many=True)
    next = serializers.CharField(
        allow_null=True,
        help_text="Token for the next page (pass as ?next=), or null when there are no more "
        "events yet.",
    )


# --------------------------------------------------------------------------------------------
# Task callbacks
# --------------------------------------------------------------------------------------------


class TaskSucceededSerializer(serializers.Serializer):
    task_token = StrictCharField(max_length=512)
    output = AnyJSONField(help_text="The task's result: any JSON value, or its JSON text.")


class TaskFailedSerializer(serializers.Serializer):
    task_token = StrictCharField(max_length=512)
    error = StrictCharField(max_length=128)
    cause = StrictCharField(required=False, allow_blank=True, max_length=4096, default="")


class TaskHeartbeatSerializer(serializers.Serializer):
    task_token = StrictCharField(max_length=512)


class TaskReportResultSerializer(serializers.Serializer):
    event_id = serializers.IntegerField(help_text="Id of the history event the report created.")
