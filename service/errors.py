"""Exceptions that carry their HTTP status; one handler (service.app) renders ``{"error": ...}``."""

from __future__ import annotations


class NeuroserveError(Exception):
    status_code = 500

    def __init__(self, message: str, *, headers: dict[str, str] | None = None, param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        self.param = param  # the offending request field, where one is to blame
        self.code = code  # a machine-readable reason (OpenAI-compatible routes show it)


class BadRequest(NeuroserveError):
    status_code = 400


class Unauthorized(NeuroserveError):
    status_code = 401

    def __init__(self, message: str = "missing or invalid API key"):
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(NeuroserveError):
    status_code = 403


class NotFound(NeuroserveError):
    status_code = 404


class Conflict(NeuroserveError):
    """The request cannot be applied in the server's current configuration (409)."""

    status_code = 409


class PayloadTooLarge(NeuroserveError):
    status_code = 413


class UnsupportedMediaType(NeuroserveError):
    status_code = 415


class Unprocessable(NeuroserveError):
    status_code = 422


class ServiceUnavailable(NeuroserveError):
    """Overload, draining or a model that is not ready: the client may retry."""

    status_code = 503

    def __init__(self, message: str, *, retry_after_s: int = 1):
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class InferenceFailed(NeuroserveError):
    """The model itself raised at run time: a 500 for that request only."""

    status_code = 500


class ModelLoadError(Exception):
    """A model folder could not be turned into a serving session (not an HTTP error)."""


# Routes that answer errors in OpenAI's shape, so the openai SDK (and its users) read them natively.
OPENAI_PREFIXES = ("/v1/chat/",)
_OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                 404: "not_found_error", 413: "invalid_request_error", 422: "invalid_request_error",
                 429: "rate_limit_error", 499: "invalid_request_error", 503: "service_unavailable_error"}


def error_body(path: str, status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    """``{"error": message}``, or on an OpenAI-compatible route ``{"error": {message, type, param, code}}``."""
    if not path.startswith(OPENAI_PREFIXES):
        return {"error": message}
    kind = _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    if code is None and status == 404:
        code = "model_not_found"  # the only thing such a route can fail to find
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
