"""Typed dependency aliases so routes stay short, and the HTTP face of the data plane's inference helpers
(``run_model``, ``run_generation``: service/dataplane.py does the work; these add the request's metrics label
and its disconnect)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from service.dataplane import ClientClosedRequest, DataPlane  # noqa: F401  (ClientClosedRequest: its old home)
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


async def get_dataplane(request: Request) -> DataPlane:
    return request.app.state.dataplane


DataPlaneDep = Annotated[DataPlane, Depends(get_dataplane)]
# The pattern is documented (clients and fuzzers see what a name looks like) but checked by the
# repository, which answers 404 for an unknown name rather than a validation error.
ModelName = Annotated[str, Path(description="model name", json_schema_extra={"pattern": NAME_RE.pattern})]


def mark_model(request: Request, model: ModelVersion) -> None:
    """Label this request's metrics with the model that served it (only known models: bounded cardinality)."""
    request.scope.setdefault("state", {})["model"] = model.name


async def run_model(request: Request, model: ModelVersion, feeds) -> dict:
    """Infer through the model's batcher (bounded wait) and record per-model metrics (DataPlane.run)."""
    mark_model(request, model)
    return await request.app.state.dataplane.run(model, feeds)


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def run_generation(request: Request, model: ModelVersion, jobs, events) -> list:
    """Wait for submitted generation jobs (service.generation): each one's finish events. Bounded by the
    request timeout; a client that disconnects gets its jobs cancelled, which frees their decode rows."""
    return await request.app.state.dataplane.generate(model, jobs, events, _disconnected(request))
