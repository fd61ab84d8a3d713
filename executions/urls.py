"""The dashboard's pages for flows, executions and approvals (HTML + HTMX partials).

Views parse, call a service or a selector, and render; who may do what is decided in the
services (``flowsite/access.py``) and only mirrored in the templates.
"""

from django.urls import path, register_converter

from flowsite.api_urls import NameConverter

from . import views, views_execution

register_converter(NameConverter, "fname")

urlpatterns = [
    path("", views.overview, name="overview"),
    # flows
    path("flows/", views.flow_list, name="flows"),
    path("flows/<fname:flow>/", views.flow_detail, name="flow"),
    path("flows/<fname:flow>/start/", views.flow_start, name="flow-start"),
    # executions
    path("executions/", views.execution_list, name="executions"),
    path("executions/stop/", views.executions_stop, name="executions-stop"),
    path(
        "flows/<fname:flow>/executions/<fname:name>/",
        views_execution.detail,
        name="execution",
    ),
    path(
        "flows/<fname:flow>/executions/<fname:name>/live/",
        views_execution.live,
        name="execution-live",
    ),
    path(
        "flows/<fname:flow>/executions/<fname:name>/history/",
        views_execution.history,
        name="execution-history",
    ),
    path(
        "flows/<fname:flow>/executions/<fname:name>/timeline/",
        views_execution.timeline,
        name="execution-timeline",
    ),
    path(
        "flows/<fname:flow>/executions/<fname:name>/states/<str:path>/",
        views_execution.state_visits,
        name="execution-state",
    ),
    path(
        "flows/<fname:flow>/executions/<fname:name>/stop/",
        views_execution.stop,
        name="execution-stop",
    ),
    path(
        "flows/<fname:flow>/executions/<fname:name>/run-again/",
        views_execution.run_again,
        name="execution-run-again",
    ),
    # approvals: the inbox, and the two decisions (also posted from the execution page)
    path("approvals/", views.approvals, name="approvals"),
    path("tasks/<int:task_id>/approve/", views.task_approve, name="task-approve"),
    path("tasks/<int:task_id>/reject/", views.task_reject, name="task-reject"),
]
