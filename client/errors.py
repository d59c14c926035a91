"""Typed exceptions: each carries the HTTP status and the server's ``{"error": ...}`` message."""

from __future__ import annotations

import httpx


class NeuroserveError(Exception):
    """Base of every error the client raises for a failed call."""

    def __init__(self, message: str, *, status: int | None = None, request_id: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.request_id = request_id  # the server's X-Request-ID, to find the call in its logs

    def __str__(self) -> str:
        return f"{self.status} {self.message}" if self.status else self.message


class BadRequestError(NeuroserveError):
    """400 or 422: the request was malformed or failed validation."""


class AuthenticationError(NeuroserveError):
    """401 or 403: missing, wrong or insufficient API key."""


class NotFoundError(NeuroserveError):
    """404: unknown model, version or route."""


class ConflictError(NeuroserveError):
    """409 (gRPC FAILED_PRECONDITION): the call conflicts with the server's state, e.g. loading or unloading a model
    while several workers serve."""


class PayloadTooLargeError(NeuroserveError):
    """413: too large a body, too many images or too many pixels."""


class UnsupportedMediaTypeError(NeuroserveError):
    """415: a content type or image format the server does not take."""


class ServiceUnavailableError(NeuroserveError):
    """503 or 429, still failing once the retries were spent (or the wait would exceed the bound)."""

    def __init__(self, message: str, *, status: int | None = None, request_id: str | None = None,
                 retry_after: float | None = None, attempts: int = 1):
        super().__init__(message, status=status, request_id=request_id)
        self.retry_after = retry_after
        self.attempts = attempts


class ServerError(NeuroserveError):
    """Any other 5xx: the server or the model failed on this request."""


class NeuroserveConnectionError(NeuroserveError, ConnectionError):
    """The server could not be reached (after the retries), or the connection broke."""


class NeuroserveTimeoutError(NeuroserveConnectionError, TimeoutError):
    """The server took longer than the client's timeout."""


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):  # the OpenAI shape: {"error": {"message": ...}}
            error = error.get("message")
        if isinstance(error, str) and error:
            return error
    text = response.text.strip()
    return text[:500] if text else response.reason_phrase or "HTTP error"


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Retry-After as seconds (fractions accepted); None when absent or not a number."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP-date: fall back to the client's own backoff
    return max(seconds, 0.0)


def error_for(response: httpx.Response, attempts: int = 1) -> NeuroserveError:
    """The typed exception for an error response (status >= 400)."""
    status = response.status_code
    details = {"status": status, "request_id": response.headers.get("x-request-id")}
    message = _message(response)
    if status in (429, 503):
        return ServiceUnavailableError(message, retry_after=retry_after_seconds(response), attempts=attempts, **details)
    kinds = {400: BadRequestError, 422: BadRequestError, 401: AuthenticationError, 403: AuthenticationError,
             404: NotFoundError, 409: ConflictError, 413: PayloadTooLargeError, 415: UnsupportedMediaTypeError}
    kind = kinds.get(status, ServerError if status >= 500 else NeuroserveError)
    return kind(message, **details)


def transport_error(exc: httpx.TransportError, url: str) -> NeuroserveConnectionError:
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        return NeuroserveTimeoutError(f"no answer from {url} within the timeout ({type(exc).__name__})")
    return NeuroserveConnectionError(f"cannot reach {url}: {exc or type(exc).__name__}")
