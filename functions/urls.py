"""The dashboard's pages for functions."""

from django.urls import path

from flowsite.api_urls import NameConverter  # noqa: F401 - registered by executions.urls

from . import views

urlpatterns = [
    path("functions/", views.function_list, name="functions"),
    path("functions/<fname:name>/", views.function_detail, name="function"),
    path("functions/<fname:name>/invoke/", views.function_invoke, name="function-invoke"),
]
