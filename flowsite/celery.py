"""The Celery app: ``celery -A flowsite worker`` / ``celery -A flowsite beat``."""

import os

from celery import Celery

from flowsite import broker

# Register the embedded broker's alias before anything resolves the broker URL, so that
# ``flowsitefs://`` works in web, worker and beat processes alike.
broker.register()

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flowsite.settings")

app = Celery("flowsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
