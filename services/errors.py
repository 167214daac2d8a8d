"""Errors services raise; the API maps each to a status code and the `{type, code, detail, attr}` body."""

from __future__ import annotations


class ServiceError(Exception):
    status_code = 400
    type = "validation_error"
    code = "invalid_input"

    def __init__(self, detail: str, *, attr: str | None = None, code: str | None = None):
        super().__init__(detail)
        self.detail = detail
        self.attr = attr
        if code:
            self.code = code


class ValidationError(ServiceError):
    pass


class NotFoundError(ServiceError):
    status_code = 404
    type = "invalid_request"
    code = "not_found"


class PermissionDeniedError(ServiceError):
    status_code = 403
    type = "authentication_error"
    code = "permission_denied"


class ConflictError(ServiceError):
    status_code = 409
    type = "invalid_request"
    code = "conflict"


class UnprocessableError(ServiceError):
    status_code = 422
    type = "invalid_request"
    code = "unprocessable"
