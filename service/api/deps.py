"""Typed dependency aliases so routes stay short."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, Path, Request

from service.errors import NeuroserveError, ServiceUnavailable
from service.generation.engine import cancel_unfinished
from service.generation.runtime import collect_with_stats
from service.manifest import NAME_RE
from service.repository import ModelRepository, ModelVersion


TASK_ERRORS = {
    400: "Malformed JSON, or a model of another task",
    401: "Missing or wrong API key",
    404: "Unknown model or version",
    413: "Body too large",
    503: "No ready model, or the queue is full (Retry-After)",
}


def error_responses(**overrides: str) -> dict:
    """OpenAPI `responses` for a task route: the statuses every task route answers, plus or replacing
    the route's own (`error_responses(s422="...")`)."""
    texts = {**TASK_ERRORS, **{int(key[1:]): text for key, text in overrides.items()}}
    return {status: {"description": text} for status, text in sorted(texts.items())}


async def get_repository(request: Request) -> ModelRepository:  # async: sync deps cost a threadpool hop
    return request.app.state.repository


RepositoryDep = Annotated[ModelRepository, Depends(get_repository)]
# The pattern is documented (clients and fuzzers see what a name looks like) but checked by the
# repository, which answers 404 for an unknown name rather than a validation error.
ModelName = Annotated[str, Path(description="model name", json_schema_extra={"pattern": NAME_RE.pattern})]


def mark_model(request: Request, model: ModelVersion) -> None:
    """Label this request's metrics with the model that served it (only known models: bounded cardinality)."""
    request.scope.setdefault("state", {})["model"] = model.name


async def run_model(request: Request, model: ModelVersion, feeds) -> dict:
    """Infer through the model's batcher (bounded wait) and record per-model metrics."""
    mark_model(request, model)
    timeout_s = request.app.state.settings.request_timeout_s
    pending = model.infer(feeds)  # queued synchronously, before any await
    try:
        async with asyncio.timeout(timeout_s):  # unlike wait_for, no extra task per request
            outputs, stats = await pending
    except TimeoutError:
        raise ServiceUnavailable(f"model {model.name!r} did not answer within {timeout_s:g} s", retry_after_s=5) from None
    request.app.state.metrics.observe_inference(model.name, stats)
    return outputs


class ClientClosedRequest(NeuroserveError):
    """The client went away before its answer was ready (nginx's 499; nobody reads it, the logs do)."""

    status_code = 499


async def unless_disconnected(request: Request, pending, timeout_s: float | None = None):
    """Await `pending` (a coroutine); if the client disconnects first, cancel it (generation frees its rows)
    and raise ClientClosedRequest; past timeout_s, cancel it and answer 503."""
    task = asyncio.ensure_future(pending)

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        done, _ = await asyncio.wait({task, watcher}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    if watcher in done:
        raise ClientClosedRequest("the client closed the connection")
    raise ServiceUnavailable(f"no answer within {timeout_s:g} s", retry_after_s=5)


async def run_generation(request: Request, model: ModelVersion, jobs, events) -> list:
    """Wait for submitted generation jobs (service.generation): each one's finish events. Bounded by the
    request timeout; a client that disconnects gets its jobs cancelled, which frees their decode rows."""
    try:
        finished, _ = await unless_disconnected(request, model.track(collect_with_stats(jobs, events)),
                                                request.app.state.settings.request_timeout_s)
    finally:
        cancel_unfinished(jobs)
    return finished
