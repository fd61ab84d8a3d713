"""flowsite.pagination.CursorPagination: {"results", "next"}, ?limit=, newest first."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import path
from rest_framework import generics, serializers
from rest_framework.permissions import AllowAny


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = get_user_model()
        fields = ["id", "username"]


class UserList(generics.ListAPIView):
    permission_classes = [AllowAny]
    serializer_class = UserSerializer
    queryset = get_user_model().objects.all()


urlpatterns = [path("api/v1/users", UserList.as_view())]

pytestmark = [pytest.mark.urls(__name__), pytest.mark.django_db]


def test_pages_follow_next_until_null(client, django_user_model):
    ids = [django_user_model.objects.create_user(f"u{i}").id for i in range(5)]
    response = client.get("/api/v1/users?limit=2")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"results", "next"}
    seen = [u["id"] for u in body["results"]]
    assert len(seen) == 2
    while body["next"]:
        body = client.get(body["next"]).json()
        seen += [u["id"] for u in body["results"]]
    assert seen == sorted(ids, reverse=True)


def test_default_page_size_and_bad_cursor(client, django_user_model):
    django_user_model.objects.create_user("only")
    body = client.get("/api/v1/users").json()
    assert len(body["results"]) == 1 and body["next"] is None
    response = client.get("/api/v1/users?cursor=garbage")
    assert response.status_code == 400
    assert response.json()["code"] == "InvalidArgument"
