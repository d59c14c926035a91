"""Typed dependency aliases so routes stay short."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, Path, Request

from service.errors import ServiceUnavailable
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
        outputs, stats = await asyncio.wait_for(pending, timeout_s)
    except asyncio.TimeoutError:
        raise ServiceUnavailable(f"model {model.name!r} did not answer within {timeout_s:g} s", retry_after_s=5) from None
    request.app.state.metrics.observe_inference(model.name, stats)
    return outputs
