"""URLs under /api/v1/ (included from flowsite.urls).

Names in paths (flows, executions, functions) use the ``name`` converter: the same pattern the
models enforce, so a path segment that cannot be a name is a plain 404 before any view runs.
"""

from django.urls import path, register_converter

from executions import api as executions_api
from flowsite.audit import api as audit_api
from functions import api as functions_api


class NameConverter:
    regex = r"[A-Za-z_][A-Za-z0-9_-]{0,127}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(NameConverter, "name")

urlpatterns = [
    # Functions
    path("functions/", functions_api.FunctionListView.as_view(), name="api-functions"),
    path(
        "functions/<name:name>/",
        functions_api.FunctionDetailView.as_view(),
        name="api-function",
    ),
    path(
        "functions/<name:name>/invocations/",
        functions_api.FunctionInvokeView.as_view(),
        name="api-function-invocations",
    ),
    # Flows
    path("flows/", executions_api.FlowListView.as_view(), name="api-flows"),
    path("flows/<name:name>/", executions_api.FlowDetailView.as_view(), name="api-flow"),
    # Executions
    path(
        "flows/<name:flow>/executions/",
        executions_api.ExecutionListView.as_view(),
        name="api-executions",
    ),
    path(
        "flows/<name:flow>/executions/<name:name>/",
        executions_api.ExecutionDetailView.as_view(),
        name="api-execution",
    ),
    path(
        "flows/<name:flow>/executions/<name:name>/stop/",
        executions_api.ExecutionStopView.as_view(),
        name="api-execution-stop",
    ),
    path(
        "flows/<name:flow>/executions/<name:name>/history/",
        executions_api.ExecutionHistoryView.as_view(),
        name="api-execution-history",
    ),
    # Task callbacks
    path(
        "tasks/report-succeeded/",
        executions_api.TaskSucceededView.as_view(),
        name="api-task-report-succeeded",
    ),
    path(
        "tasks/report-failed/",
        executions_api.TaskFailedView.as_view(),
        name="api-task-report-failed",
    ),
    path("tasks/heartbeat/", executions_api.TaskHeartbeatView.as_view(), name="api-task-heartbeat"),
    # The audit log (admins)
    path("audit/", audit_api.AuditListView.as_view(), name="api-audit"),
]
