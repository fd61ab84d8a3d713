"""The execution page and its live partials (stubs until built)."""

from django.http import HttpResponse


def _todo(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)


detail = live = history = timeline = state_visits = stop = run_again = _todo
