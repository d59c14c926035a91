"""Operations: the OpenAI-shaped model list and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from service.api.deps import RepositoryDep
from service.errors import BadRequest
from service.repository import manifest_published
from service.responses import JSONBytes
from service.security import require_api_key

router = APIRouter(tags=["ops"])


def _published(repo, name: str) -> int:
    """OpenAI's `created`: when the model's manifest was written (unix seconds); 0 if unknown. A loaded model's was
    read at load time, so listing costs no filesystem call per model."""
    entry = repo.entries.get(name)
    if entry is not None and entry.published:
        return entry.published
    try:
        return manifest_published(repo.model_folder(name))
    except BadRequest:
        return 0


@router.get("/v1/models", summary="Every model (OpenAI list shape, plus task, versions, readiness, provider)",
            dependencies=[Depends(require_api_key)], responses={401: {"description": "Missing or wrong API key"}})
async def list_models(repo: RepositoryDep) -> JSONBytes:
    data = []
    for row_name in sorted(set(repo.discover()) | set(repo.entries)):
        entry = repo.entries.get(row_name)
        versions = sorted(entry.versions, key=int) if entry else []
        first = entry.versions[entry.default_version] if entry and entry.versions else None
        data.append({
            "id": row_name,
            "object": "model",
            "created": _published(repo, row_name),
            "owned_by": "neuroserve",
            "task": entry.task if entry else None,
            "versions": versions,
            "default_version": entry.default_version if entry else None,
            "ready": bool(entry and entry.ready),
            "state": entry.state.value if entry else "UNLOADED",
            "reason": entry.reason if entry else "",
            "providers": first.providers if first else [],  # the session's own list, CUDA first when it got it
            "provider_fallback": first.provider_fallback if first else False,  # asked for CUDA, runs on the CPU
            "provider": first.provider if first else None,
            "description": first.manifest.description if first else "",
            "priority": entry.priority if entry else None,  # the task's default model is its ready one with the highest
            "ood": bool(first and first.ood is not None),  # answers carry ood scores (service/ood.py)
        })
    return JSONBytes({"object": "list", "data": data})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    state = request.app.state
    state.metrics.models_ready.set(sum(1 for e in state.repository.entries.values() if e.ready))
    body, content_type = state.metrics.exposition()  # with several workers: all of theirs (service/metrics.py)
    return Response(body, media_type=content_type)
