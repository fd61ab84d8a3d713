"""Helpers for the hostile-input suite: every request is timed in CPU seconds (the web process's
own work: parsing, validating, running the first inline states) and must stay under 1 s.

The clock is the calling thread's (the test client runs the request in it), not the process's:
threads other tests left running in the same worker process must not count against a request."""

from __future__ import annotations

import json
import time
from typing import Any

CPU_LIMIT = 1.0  # seconds of CPU per request, whatever the input

FLOWS = "/api/v1/flows/"


class Timed:
    """A client whose every request is timed; ``cpu`` is the last request's CPU seconds."""

    def __init__(self, client) -> None:
        self.client = client
        self.cpu = 0.0

    def _timed(self, method: str, url: str, data: Any, **kwargs):
        started = time.thread_time()
        response = getattr(self.client, method)(url, data, **kwargs)
        self.cpu = time.thread_time() - started
        assert self.cpu < CPU_LIMIT, f"{method.upper()} {url} used {self.cpu:.2f} s of CPU"
        assert response.status_code < 500, response.content[:500]
        return response

    def post(self, url: str, data: Any):
        """``data`` as JSON; a ``bytes`` body is sent as it is (for text JSON cannot encode)."""
        if isinstance(data, bytes):
            return self._timed("post", url, data, content_type="application/json")
        return self._timed("post", url, data, format="json")

    def create_flow(self, definition: str | bytes, name: str = "hostile"):
        if isinstance(definition, bytes):
            body = b'{"name": "' + name.encode() + b'", "definition": ' + definition + b"}"
            return self.post(FLOWS, body)
        return self.post(FLOWS, {"name": name, "definition": definition})

    def start(self, flow: str, input: Any, name: str = "e1"):
        url = f"{FLOWS}{flow}/executions/"
        if isinstance(input, bytes):
            return self.post(url, b'{"name": "' + name.encode() + b'", "input": ' + input + b"}")
        return self.post(url, {"name": name, "input": input})


def refused(response, code: str = "InvalidDefinition", status: int = 400) -> dict:
    """The body of a coded refusal."""
    body = response.json()
    assert (response.status_code, body.get("code")) == (status, code), body
    assert body["message"]
    return body


def failed_with(response, error: str = "FnF.RuntimeError") -> dict:
    """The body of an execution that ran inline during its start and failed with ``error``."""
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["status"], body["error_code"]) == ("Failed", error), body
    return body


def cloudflow(*states: dict, start: str = "A") -> str:
    """A CloudFlow definition as JSON text (JSON is YAML)."""
    return json.dumps(
        {
            "Type": "StateMachine",
            "Name": "hostile",
            "SpecVersion": "v1",
            "StartAt": start,
            "States": list(states),
        }  # fmt: skip
    )


def pass_state(name: str = "A", **fields) -> dict:
    return {"Name": name, "Type": "Pass", "End": True, **fields}
