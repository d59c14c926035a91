"""One pure-ASGI middleware for every request: request id, body limit, drain, metrics, access log.

Pure ASGI (not BaseHTTPMiddleware) because it sits on the hot path of every inference.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time

import orjson

from service.errors import PayloadTooLarge, error_body
from service.logs import request_id_var
from service.metrics import Metrics

log = logging.getLogger("neuroserve.access")

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
# generated request ids: a random prefix per process and a counter, unique without a getrandom() call per request
# (uuid4 was 5% of the event loop's time under the soak)
_ID_PREFIX = os.urandom(8).hex()
_id_counter = itertools.count(1)


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter):016x}"  # 32 hex digits, as uuid4().hex was


UNMETERED = {"/metrics", "/v2/health/live", "/v2/health/ready"}
# Routes FastAPI adds itself (API reference); guarded here since they take no dependencies.
DOCS_PREFIXES = ("/docs", "/redoc", "/openapi.json", "/static-offline-docs")


class BodyTooLarge(PayloadTooLarge):
    """Raised from receive() past the limit: a route that reads the body itself lets it through (413); one whose
    body FastAPI parses turns it into a 400 whose cause is this (service.app renders the cause)."""


def _error(path: str, status: int, message: str, extra_headers: list[tuple[bytes, bytes]] = ()) -> tuple[dict, dict]:
    # the one renderer (service.errors.error_body): OpenAI's shape on OpenAI-compatible routes, {"error": ...} elsewhere
    body = orjson.dumps(error_body(path, status, message))
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra_headers]
    return {"type": "http.response.start", "status": status, "headers": headers}, {"type": "http.response.body", "body": body}


class ServingMiddleware:
    def __init__(self, app, *, metrics: Metrics, max_body_bytes: int, state, docs_allowed=None, worker_pid: int | None = None):
        self.app = app
        # several worker processes: every answer names its worker (X-Neuroserve-Worker: pid), for debugging and tests
        self.extra_headers = [(b"x-neuroserve-worker", str(worker_pid).encode())] if worker_pid is not None else []
        self.docs_allowed = docs_allowed  # callable(authorization header) -> bool
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.state = state  # app.state: draining flag lives there

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if REQUEST_ID_RE.fullmatch(incoming) else new_request_id()
        token = request_id_var.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status_holder = [500]
        response_started = [False]
        id_header = (b"x-request-id", request_id.encode())
        extra_headers = self.extra_headers

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                response_started[0] = True
                status_holder[0] = message["status"]
                message["headers"] = [*message.get("headers", []), id_header, *extra_headers]
            await send(message)

        async def respond(status: int, text: str, extra=()):
            start, body = _error(scope["path"], status, text, list(extra))
            await send_wrapper(start)
            await send_wrapper(body)

        self.metrics.in_flight.inc()
        try:
            if getattr(self.state, "draining", False) and scope["path"] not in UNMETERED:
                await respond(503, "server is shutting down", [(b"retry-after", b"5"), (b"connection", b"close")])
                return
            if self.docs_allowed is not None and scope["path"].startswith(DOCS_PREFIXES):
                if not self.docs_allowed(headers.get(b"authorization", b"").decode("latin-1")):
                    await respond(401, "missing or invalid API key", [(b"www-authenticate", b"Bearer")])
                    return
            declared = headers.get(b"content-length")
            if declared is not None:
                try:
                    too_big = int(declared) > self.max_body_bytes
                except ValueError:
                    await respond(400, "Content-Length is not an integer")
                    return
                if too_big:
                    await respond(413, f"request body exceeds {self.max_body_bytes} bytes")
                    return
            received = [0]

            async def receive_limited():
                message = await receive()
                if message["type"] == "http.request":
                    received[0] += len(message.get("body", b""))
                    if received[0] > self.max_body_bytes:
                        raise BodyTooLarge(f"request body exceeds {self.max_body_bytes} bytes")
                return message

            try:
                await self.app(scope, receive_limited, send_wrapper)
            except BodyTooLarge:
                if not response_started[0]:
                    await respond(413, f"request body exceeds {self.max_body_bytes} bytes")
        finally:
            self.metrics.in_flight.dec()
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            route_path = getattr(route, "path", None) or "unmatched"
            if route_path not in UNMETERED:
                model = scope["state"].get("model", "")
                self.metrics.requests.labels(model=model, route=route_path, status=str(status_holder[0])).inc()
                self.metrics.request_latency.labels(route=route_path).observe(elapsed)
                log.info(
                    "request",
                    extra={"method": scope["method"], "path": scope["path"], "status": status_holder[0],
                           "duration_ms": round(elapsed * 1000, 3), "model": model or None},
                )
            request_id_var.reset(token)
