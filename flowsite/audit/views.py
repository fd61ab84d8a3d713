"""The audit log page (stub until built)."""

from django.http import HttpResponse


def audit_log(request):
    return HttpResponse("not built yet", status=501)
