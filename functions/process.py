"""Which kind of process this is, so that handler code never runs in a web process.

``flowsite/wsgi.py`` calls :func:`mark_web_process` before Django loads, so every process that
serves HTTP (gunicorn, ``runserver``) carries the mark. :func:`refuse_in_web_process` is called
by everything that would run a handler's code (``services.invoke`` and ``loader.load``): a view
that called them, or a Celery task run eagerly inside a request, fails loudly with a coded
error instead of running user code next to the web server's sessions and secrets, where the
SIGALRM time limit cannot work either (gunicorn's threads are not the main thread).

The mark is process-wide on purpose: a per-thread or per-request exemption would be one line
away from the regression this guards against. Nothing here imports Django, so ``wsgi.py`` can
import it first.
"""

from __future__ import annotations

from flowsite.errors import ServiceError

_web_process = False


class HandlerInWebProcess(ServiceError):
    """A bug in flowsite, not in the request: a handler was about to run in a web process."""

    code = "HandlerInWebProcess"
    message = "function handlers run on workers only, never in a web process"
    status = 500


def mark_web_process() -> None:
    """Mark this process as one that serves HTTP; it can never run handler code afterwards."""
    global _web_process
    _web_process = True


def is_web_process() -> bool:
    return _web_process


def refuse_in_web_process() -> None:
    """Raise :class:`HandlerInWebProcess` in a process marked as a web process."""
    if _web_process:
        raise HandlerInWebProcess()
