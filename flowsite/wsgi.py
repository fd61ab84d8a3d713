"""WSGI entry point: ``gunicorn flowsite.wsgi`` (``runserver`` loads it too)."""

import os

from django.core.wsgi import get_wsgi_application

from functions.process import mark_web_process

# Before anything else: a process that serves HTTP never runs handler code (functions/process.py).
mark_web_process()

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flowsite.settings")

application = get_wsgi_application()
