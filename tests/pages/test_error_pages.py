"""The dashboard's own 404 and 500 pages (the API keeps answering JSON)."""

from __future__ import annotations

import pytest
from django.test import Client, RequestFactory
from django.urls import reverse

from flowsite import api_errors

from .lists_support import client_for

pytestmark = pytest.mark.django_db


def test_a_missing_page_is_the_dashboards_404_with_ways_on():
    viewer = client_for("viewer")
    for path in ("/no/such/page/", reverse("flow", args=["nope"]), "/<script>alert(1)</script>/"):
        response = viewer.get(path)
        assert response.status_code == 404, path
        body = response.content.decode()
        assert "Nothing here" in body and reverse("overview") in body
        assert "<script>alert" not in body
        assert response.headers["Content-Security-Policy"]


def test_a_missing_page_for_someone_logged_out_offers_the_login():
    body = Client().get("/no/such/page/").content.decode()
    assert "Nothing here" in body and reverse("login") in body and "Log out" not in body


def test_the_api_still_answers_json_for_a_missing_route():
    response = client_for("viewer").get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert response.json()["code"] == "NotFound"


def test_a_server_error_page_needs_nothing_but_static_files():
    request = RequestFactory().get("/flows/")
    response = api_errors.handler500(request)
    assert response.status_code == 500
    body = response.content.decode()
    assert "Something went wrong on our side" in body and "Traceback" not in body
