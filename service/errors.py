"""Exceptions that carry their HTTP status; one handler (service.app) renders ``{"error": ...}``."""

from __future__ import annotations


class NeuroserveError(Exception):
    status_code = 500

    def __init__(self, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


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
