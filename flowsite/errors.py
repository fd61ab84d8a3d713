"""Errors that services raise and the API renders as ``{"code": ..., "message": ...}``.

Services (``executions/services.py``, ``functions/services.py``) raise these; the DRF exception
handler (:func:`flowsite.api_errors.exception_handler`) and HTML views turn them into responses,
so the same rule gives the same error wherever it is called from.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """A refused operation, with a stable machine-readable ``code``.

    ``code``    stable identifier clients can switch on (``"InvalidArgument"``, ``"NotFound"``...)
    ``message`` human text
    ``status``  HTTP status the API answers with (default 400)
    ``errors``  optional list of ``{"path": str, "line": int | None, "message": str}``
    ``extra``   optional dict of additional top-level keys for the JSON body

    Subclasses may set ``code``, ``status`` and ``message`` as class attributes.
    """

    code: str = "InvalidArgument"
    message: str = "The request is invalid."
    status: int = 400

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        status: int | None = None,
        errors: list[dict[str, Any]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        if message is not None:
            self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.errors = list(errors) if errors else []
        self.extra = dict(extra) if extra else {}
        super().__init__(self.message)

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        body.update(self.extra)
        body["code"] = self.code
        body["message"] = self.message
        if self.errors:
            body["errors"] = self.errors
        return body

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status}, {self.message!r})"


class InvalidArgument(ServiceError):
    code = "InvalidArgument"
    status = 400


class NotFound(ServiceError):
    code = "NotFound"
    message = "Not found."
    status = 404


class Conflict(ServiceError):
    code = "Conflict"
    message = "The resource is in a state that does not allow this operation."
    status = 409


class Forbidden(ServiceError):
    code = "Forbidden"
    message = "You do not have permission to perform this action."
    status = 403
