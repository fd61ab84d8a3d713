"""``GET /api/v1/audit/``: the audit log for admins (the same entries as the ``/audit/`` page),
newest first, cursor-paginated, filtered by ``user``, ``action``, ``since`` and ``until``."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from flowsite.access import Perm, can
from flowsite.api import ERR_400, ERR_401, error_response, parse

from .models import AuditEntry


class CanReadAudit(BasePermission):
    message = "this needs the admin role"

    def has_permission(self, request, view) -> bool:
        user = getattr(request, "user", None)
        if user is None or not getattr(user, "is_authenticated", False):
            return False
        return can(user, Perm.READ_AUDIT)


class AuditEntrySerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_name")
    object = serializers.SerializerMethodField()

    class Meta:
        model = AuditEntry
        fields = ["id", "at", "actor", "via", "ip", "user_agent", "action", "object", "detail"]

    def get_object(self, entry: AuditEntry) -> dict:
        return {"type": entry.object_type, "name": entry.object_name}


class AuditQuerySerializer(serializers.Serializer):
    user = serializers.CharField(required=False, max_length=150)
    action = serializers.RegexField(r"^[a-z_]{1,30}\.[a-z_]{1,30}$", required=False)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)


class AuditListView(GenericAPIView):
    permission_classes = [CanReadAudit]
    serializer_class = AuditEntrySerializer
    filter_backends: list = []

    @extend_schema(
        operation_id="audit_list",
        summary="The audit log (admins)",
        parameters=[
            OpenApiParameter("user", str, description="who made the change (user name)"),
            OpenApiParameter("action", str, description='e.g. "execution.stop"'),
            OpenApiParameter("since", str, description="ISO 8601; entries at or after it"),
            OpenApiParameter("until", str, description="ISO 8601; entries before it"),
        ],
        responses={
            200: AuditEntrySerializer(many=True),
            400: ERR_400,
            401: ERR_401,
            403: error_response("Forbidden: the admin role is needed."),
        },
    )
    def get(self, request: Request) -> Response:
        query = parse(AuditQuerySerializer, request.query_params)
        entries = AuditEntry.objects.all()
        if "user" in query:
            entries = entries.filter(actor_name=query["user"])
        if "action" in query:
            entries = entries.filter(action=query["action"])
        if "since" in query:
            entries = entries.filter(at__gte=query["since"])
        if "until" in query:
            entries = entries.filter(at__lt=query["until"])
        page = self.paginate_queryset(entries)
        return self.get_paginated_response(AuditEntrySerializer(page, many=True).data)
