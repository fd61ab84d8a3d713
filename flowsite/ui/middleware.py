"""Security headers for the dashboard's pages.

A strict Content-Security-Policy: scripts and styles only from our own static files (no inline
script or style, no ``eval``: htmx runs with ``allowEval`` off), no frames around us, forms and
htmx requests only to ourselves. The Django admin and the Swagger UI page carry inline code of
their own and get no policy here (they keep ``X-Frame-Options: DENY`` and the other headers).
"""

from __future__ import annotations

from django.conf import settings

POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

EXEMPT = ("/admin/", "/api/v1/docs/")


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.path.startswith(EXEMPT) or "Content-Security-Policy" in response:
            return response
        if response.get("Content-Type", "").startswith("text/html"):
            response["Content-Security-Policy"] = getattr(settings, "FLOWSITE_CSP", POLICY)
        return response
