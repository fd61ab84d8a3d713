"""Dashboard pages for functions (stubs until built)."""

from django.http import HttpResponse


def _todo(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)


function_list = function_detail = function_invoke = _todo
