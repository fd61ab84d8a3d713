"""The API's single error shape: {"code", "message"[, "errors"]} with the right status."""

from __future__ import annotations

import pytest
from django.core.exceptions import RequestDataTooBig
from django.urls import include, path
from rest_framework import serializers
from rest_framework.decorators import api_view, permission_classes
from rest_framework.exceptions import Throttled
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.response import Response

from flowsite.errors import Conflict, ServiceError


class ItemSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=5)
    tags = serializers.ListField(child=serializers.IntegerField(), required=False)


class OrderSerializer(serializers.Serializer):
    items = ItemSerializer(many=True)


@api_view(["POST"])
@permission_classes([AllowAny])
def validate(request):
    serializer = OrderSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    return Response(serializer.validated_data)


@api_view(["GET"])
@permission_classes([AllowAny])
def service_error(request):
    raise ServiceError(
        "Bad flow",
        code="InvalidDefinition",
        errors=[{"path": "States.A", "line": 3, "message": "unknown state"}],
        extra={"flow": "demo"},
    )


@api_view(["GET"])
@permission_classes([AllowAny])
def conflict(request):
    raise Conflict("Execution already finished")


@api_view(["POST"])
@permission_classes([AllowAny])
def too_big(request):
    raise RequestDataTooBig("too big")


@api_view(["GET"])
@permission_classes([AllowAny])
def throttled(request):
    raise Throttled(wait=7)


@api_view(["GET"])
@permission_classes([IsAdminUser])
def admin_only(request):
    return Response({"ok": True})


@api_view(["GET"])
def authenticated(request):
    return Response({"ok": True})


@api_view(["GET"])
@permission_classes([AllowAny])
def boom(request):
    raise RuntimeError("unexpected")


urlpatterns = [
    path(
        "api/v1/",
        include(
            [
                path("validate", validate),
                path("service-error", service_error),
                path("conflict", conflict),
                path("too-big", too_big),
                path("throttled", throttled),
                path("admin-only", admin_only),
                path("authenticated", authenticated),
                path("boom", boom),
            ]
        ),
    ),
]
handler404 = "flowsite.api_errors.handler404"
handler500 = "flowsite.api_errors.handler500"

pytestmark = [pytest.mark.urls(__name__), pytest.mark.django_db]


def test_validation_errors_are_flattened(client):
    response = client.post(
        "/api/v1/validate",
        {"items": [{"name": "ok"}, {"name": "far too long", "tags": [1, "x"]}]},
        content_type="application/json",
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "InvalidArgument"
    paths = {e["path"] for e in body["errors"]}
    assert paths == {"items[1].name", "items[1].tags[1]"}
    assert all(e["line"] is None and e["message"] for e in body["errors"])
    assert body["message"].startswith("items[1].")


def test_malformed_json(client):
    response = client.post("/api/v1/validate", "{nope", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "MalformedJSON"


def test_unsupported_media_type(client):
    response = client.post("/api/v1/validate", "a=b", content_type="text/plain")
    assert response.status_code == 415
    assert response.json()["code"] == "UnsupportedMediaType"


def test_method_not_allowed(client):
    response = client.get("/api/v1/validate")
    assert response.status_code == 405
    assert response.json()["code"] == "MethodNotAllowed"


def test_service_error_renders_code_errors_and_extra(client):
    response = client.get("/api/v1/service-error")
    assert response.status_code == 400
    assert response.json() == {
        "code": "InvalidDefinition",
        "message": "Bad flow",
        "errors": [{"path": "States.A", "line": 3, "message": "unknown state"}],
        "flow": "demo",
    }
    response = client.get("/api/v1/conflict")
    assert response.status_code == 409
    assert response.json() == {"code": "Conflict", "message": "Execution already finished"}


def test_oversized_body_is_413_before_the_view(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    response = client.post(
        "/api/v1/validate", '{"items": "' + "x" * 2000 + '"}', content_type="application/json"
    )
    assert response.status_code == 413
    assert response.json()["code"] == "EntityTooLarge"


def test_request_data_too_big_inside_a_view_is_413(client):
    response = client.post("/api/v1/too-big", {}, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["code"] == "EntityTooLarge"


def test_throttled_sets_retry_after(client):
    response = client.get("/api/v1/throttled")
    assert response.status_code == 429
    assert response["Retry-After"] == "7"
    assert response.json()["code"] == "Throttled"


def test_unauthenticated_is_401_and_forbidden_is_403(client, django_user_model):
    response = client.get("/api/v1/authenticated")
    assert response.status_code == 401
    assert response.json()["code"] == "Unauthenticated"
    assert "WWW-Authenticate" in response

    client.force_login(django_user_model.objects.create_user("u", password="pw-u-123456"))
    response = client.get("/api/v1/admin-only")
    assert response.status_code == 403
    assert response.json()["code"] == "Forbidden"


def test_unknown_api_url_is_json_404(client):
    response = client.get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response.json()["code"] == "NotFound"


def test_unexpected_error_is_json_500(client):
    client.raise_request_exception = False
    response = client.get("/api/v1/boom")
    assert response.status_code == 500
    assert response.json()["code"] == "InternalError"
