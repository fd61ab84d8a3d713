from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from executions.selectors import runtime_health
from executions.views import page


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Health for load balancers, monitors and scripts/run; no login needed, so it names no
    internals. 503 when the database does not answer, or when no sweeper ran for three sweep
    intervals (timers would not fire, lost work would not be recovered)."""
    try:
        health = runtime_health()
    except DatabaseError:
        return JsonResponse({"status": "error", "database": "unavailable"}, status=503)
    ok = health.pop("ok")
    body = {"status": "ok" if ok else "error", "database": "ok", **health}
    return JsonResponse(body, status=200 if ok else 503)


urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Swagger UI from the sidecar's local static files; a person logs in first (the schema it
    # loads needs an authenticated user).
    path(
        "api/v1/docs/",
        page("docs")(SpectacularSwaggerView.as_view(url_name="schema")),
        name="api-docs",
    ),
    path("api/v1/", include("flowsite.api_urls")),
    path("healthz", healthz, name="healthz"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # The dashboard (executions.urls registers the name converter the others use).
    path("", include("executions.urls")),
    path("", include("functions.urls")),
    path("", include("flowsite.audit.urls")),
]

handler404 = "flowsite.api_errors.handler404"
handler500 = "flowsite.api_errors.handler500"
