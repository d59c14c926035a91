"""create_app(settings): routers, middleware, error rendering and the lifespan (load, warm, drain)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from fastapi import FastAPI, Request
from fastapi_offline import FastAPIOffline
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from starlette.exceptions import HTTPException as StarletteHTTPException

from service import __version__
from service.api import cards, oip, ops, playground
from service.dataplane import DataPlane
from service.errors import NeuroserveError, error_body
from service.heap import PauseTimer
from service.logs import configure_logging
from service.metrics import Metrics
from service.middleware import ServingMiddleware
from service.repository import ModelRepository
from service.responses import JSONBytes
from service.runtime import cuda_summary, runtime_summary
from service.security import api_key_valid
from service.settings import Settings
from service.tasks import task_preparers, task_routers
from service.workers import WorkerGroup

log = logging.getLogger("neuroserve")


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            return f"request body is not valid JSON: {error.get('ctx', {}).get('error', error.get('msg'))}"
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        message = error.get("msg")
        if error.get("type") == "string_pattern_mismatch" and error.get("ctx", {}).get("pattern") == r"\S":
            message = "is blank (empty or only whitespace)"
        parts.append(f"{where}: {message}")
    return "; ".join(parts) or "invalid request"


def _validation_param(exc: RequestValidationError) -> str | None:
    """The first offending field, dotted (OpenAI's error "param")."""
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        if where:
            return where
    return None


async def _flush_every(pause_timer: PauseTimer, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        pause_timer.flush()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.log_level, settings.log_json)
    # The server tokenizes a request's few short texts at a time, on the event loop: the tokenizers' own
    # thread pool made each call wait for pool threads to get a core, which under load stalled the loop
    # (py-spy: 11% of its busy time). A user who sets the variable keeps their choice.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    metrics = Metrics()
    repository = ModelRepository(settings, metrics, task_preparers())
    workers = WorkerGroup.from_environment(settings.workers)  # None: one process (service/workers.py)
    grpc_servers: list = []  # the Open Inference Protocol over gRPC (service/grpc_server.py), when on

    async def serve_grpc() -> None:
        from service.grpc_server import start_grpc

        # With several workers each one serves the port itself (SO_REUSEPORT: the kernel spreads connections),
        # from the moment its models are loaded, so a replacement worker takes no calls before it can answer them.
        grpc_servers.append(await start_grpc(app.state.dataplane, reuse_port=workers is not None))

    async def load_models() -> None:
        await repository.load_all()
        if workers is not None:  # tell the other workers (readiness) and /metrics, which another worker may serve
            metrics.models_ready.set(sum(1 for e in repository.entries.values() if e.ready))
            serving = True
            if settings.grpc_port:
                try:
                    await serve_grpc()
                except RuntimeError as exc:  # nobody awaits this task: say it, and let the readiness tell
                    log.error("%s", exc)
                    serving = False
            if repository.all_ready() and serving:
                workers.mark_ready()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        pause_timer = PauseTimer(metrics.gc_pause, deferred=workers is not None).install()
        flusher = asyncio.create_task(_flush_every(pause_timer, 1.0), name="gc-pauses") if workers is not None else None
        log.info(runtime_summary())
        if (cuda := cuda_summary()) is not None:
            log.info(cuda)
        if not settings.auth_enabled:
            log.warning("no API keys configured: every route is open (set NEUROSERVE_API_KEYS and NEUROSERVE_ADMIN_KEY)")
        loader = asyncio.create_task(load_models(), name="load-models")
        app.state.loader = loader
        if settings.grpc_port and workers is None:  # one process: gRPC listens from the start, like REST
            await serve_grpc()
        if workers is not None and workers.ready_pids():
            # A worker started while others serve (a replacement): load before accepting connections (uvicorn
            # listens after startup), so the port's traffic stays with the ready workers meanwhile, not 503s.
            await asyncio.shield(loader)
        try:
            yield
        finally:
            app.state.draining = True
            if workers is not None:
                workers.mark_not_ready()
            loader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await loader
            if flusher is not None:
                flusher.cancel()
            for grpc_server in grpc_servers:
                from service.grpc_server import stop_grpc

                await stop_grpc(grpc_server, app.state.dataplane)
            await repository.close()
            pause_timer.remove()
            log.info("shut down")

    app = FastAPIOffline(  # /docs and /redoc from packaged assets: no CDN, works air-gapped
        title="Neuroserve",
        version=__version__,
        description="ONNX Runtime model server: Open Inference Protocol v2, task endpoints, OpenAI-compatible chat.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.repository = repository
    app.state.draining = False
    app.state.workers = workers
    app.state.dataplane = DataPlane(repository, settings, metrics, workers)  # REST and gRPC both call it

    def error(request: Request, status: int, message: str, headers=None, param: str | None = None,
              code: str | None = None) -> JSONBytes:
        return JSONBytes(error_body(request.url.path, status, message, param, code), status_code=status, headers=headers)

    @app.exception_handler(NeuroserveError)
    async def _neuroserve_error(request: Request, exc: NeuroserveError):
        return error(request, exc.status_code, exc.message, exc.headers, exc.param, exc.code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        message = _validation_message(exc)
        status = 400 if message.startswith("request body is not valid JSON") else 422
        return error(request, status, message, param=_validation_param(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        if isinstance(exc.__cause__, NeuroserveError):  # FastAPI's "error parsing the body" over our own (a 413)
            return await _neuroserve_error(request, exc.__cause__)
        return error(request, exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error")
        return error(request, 500, f"internal error: {type(exc).__name__}")

    app.include_router(oip.health)
    app.include_router(oip.router)
    app.include_router(oip.repository_router)
    app.include_router(ops.router)
    app.include_router(cards.router)
    app.include_router(playground.router)  # the static page: loads without a key, asks for one (service/api/playground.py)
    for router in task_routers():
        app.include_router(router)

    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST", "OPTIONS"],
                           allow_headers=["*"], expose_headers=["Inference-Header-Content-Length", "X-Request-ID"])
    app.add_middleware(ServingMiddleware, metrics=metrics, max_body_bytes=settings.max_body_bytes, state=app.state,
                       worker_pid=workers.pid if workers is not None else None,
                       docs_allowed=(lambda authorization: api_key_valid(settings, authorization)) if settings.auth_enabled else None)
    return app
