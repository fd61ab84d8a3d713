"""Dashboard pages: overview, flows, the executions list, the approvals inbox (stubs until
built)."""

from django.http import HttpResponse


def _todo(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)


overview = flow_list = flow_detail = flow_start = execution_list = executions_stop = _todo
approvals = task_approve = task_reject = _todo
