"""WSGI entry point: ``gunicorn flowsite.wsgi`` (``runserver`` loads it too)."""

import gc
import os

from django.core.wsgi import get_wsgi_application

from functions.process import mark_web_process

# Before anything else: a process that serves HTTP never runs handler code (functions/process.py).
mark_web_process()

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flowsite.settings")

application = get_wsgi_application()

# Everything loaded so far (Django, the apps, their modules) lives as long as the process: keep
# it out of the garbage collector's full passes, which otherwise walk it all again and again
# (tens of milliseconds each, the largest part of a page's slowest answers).
gc.freeze()
