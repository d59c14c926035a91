"""Open Inference Protocol (KServe v2) REST: health, metadata, infer, repository, statistics.

Thin: each route turns HTTP into a call on the data plane (service/dataplane.py), which holds the
protocol's logic for REST and gRPC alike. The infer route reads the raw body itself: tritonclient
sends no Content-Type, and the binary tensor extension puts raw bytes after the JSON header.
"""

from __future__ import annotations

import zlib

from fastapi import APIRouter, Depends, Request, Response

from service.api.deps import DataPlaneDep, ModelName, mark_model
from service.codecs import (HEADER_LENGTH, INFER_REQUEST_SCHEMA, encode_infer_response, parse_infer_request,
                            parse_json_object)
from service.dataplane import EXTENSIONS  # noqa: F401  (re-exported: its old home)
from service.errors import BadRequest, PayloadTooLarge, ServiceUnavailable
from service.repository import ModelVersion
from service.responses import JSONBytes
from service.security import require_admin_key, require_api_key

ERROR_RESPONSES = {
    400: {"description": "Malformed request or tensors that do not fit the model"},
    401: {"description": "Missing or wrong API key"},
    404: {"description": "Unknown model or version"},
    413: {"description": "Body too large"},
    503: {"description": "Model not ready, queue full or server draining (Retry-After)"},
}

INFER_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": INFER_REQUEST_SCHEMA},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary", "description": (
        "binary tensor data extension: the JSON header (this schema) and then the tensor bytes; "
        "Inference-Header-Content-Length gives the header's length")}}}}}

health = APIRouter(prefix="/v2/health", tags=["health"])
router = APIRouter(prefix="/v2", tags=["open-inference-protocol"], dependencies=[Depends(require_api_key)],
                   responses=ERROR_RESPONSES)
repository_router = APIRouter(prefix="/v2/repository", tags=["model-repository"],
                              dependencies=[Depends(require_admin_key)],
                              responses={**ERROR_RESPONSES, 409: {"description": "Load or unload while several workers serve"}})


@health.get("/live", summary="Liveness: the process answers (with several workers, the one that answered)")
async def live(plane: DataPlaneDep) -> JSONBytes:
    return JSONBytes(plane.live())


@health.get("/ready", summary="Readiness: every model loaded and warm (with several workers: in every worker)",
            responses={503: {"description": "Models still loading (or, with strict readiness, one failed)"}})
async def ready(plane: DataPlaneDep) -> JSONBytes:
    ok, body = plane.ready()
    return JSONBytes(body, status_code=200 if ok else 503, headers=None if ok else {"Retry-After": "2"})


@router.get("", summary="Server metadata")
async def server_metadata(plane: DataPlaneDep) -> JSONBytes:
    return JSONBytes(plane.server_metadata())


def _lookup(plane, request: Request, name: str, version: str | None = None) -> ModelVersion:
    model = plane.model(name, version)
    mark_model(request, model)
    return model


@router.get("/models/{model_name}", summary="Model metadata")
@router.get("/models/{model_name}/versions/{model_version}", summary="Model version metadata")
async def model_metadata(model_name: ModelName, plane: DataPlaneDep, request: Request, model_version: str | None = None) -> JSONBytes:
    return JSONBytes(plane.model_metadata(_lookup(plane, request, model_name, model_version)))


@router.get("/models/{model_name}/ready", summary="Model readiness")
@router.get("/models/{model_name}/versions/{model_version}/ready", summary="Model version readiness")
async def model_ready(model_name: ModelName, plane: DataPlaneDep, request: Request, model_version: str | None = None) -> JSONBytes:
    try:
        _lookup(plane, request, model_name, model_version)
    except ServiceUnavailable as exc:
        return JSONBytes({"name": model_name, "ready": False, "error": exc.message}, status_code=503)
    return JSONBytes({"name": model_name, "ready": True})


@router.get("/models/{model_name}/config", summary="Model configuration (Triton shape)")
@router.get("/models/{model_name}/versions/{model_version}/config", summary="Model version configuration")
async def model_config(model_name: ModelName, plane: DataPlaneDep, request: Request, model_version: str | None = None) -> JSONBytes:
    return JSONBytes(plane.model_config(_lookup(plane, request, model_name, model_version)))


@router.get("/models/{model_name}/stats", summary="Inference statistics")
@router.get("/models/{model_name}/versions/{model_version}/stats", summary="Inference statistics of a version")
async def model_stats(model_name: ModelName, plane: DataPlaneDep, request: Request, model_version: str | None = None) -> JSONBytes:
    body = plane.model_stats(model_name, model_version)
    request.scope.setdefault("state", {})["model"] = model_name  # known: model_stats raised otherwise
    return JSONBytes(body)


def _decode_body(request: Request, body: bytes) -> bytes:
    encoding = request.headers.get("content-encoding", "identity").lower()
    if encoding in ("identity", ""):
        return body
    if encoding not in ("gzip", "deflate"):
        raise BadRequest(f"unsupported Content-Encoding {encoding!r}")
    limit = request.app.state.settings.max_decompressed_bytes
    decompressor = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = decompressor.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"body is not valid {encoding}: {exc}") from None
    if len(out) > limit or decompressor.unconsumed_tail:
        raise PayloadTooLarge(f"decompressed body exceeds {limit} bytes")
    return out


@router.post("/models/{model_name}/infer", summary="Inference (JSON or binary tensors)", openapi_extra=INFER_BODY)
@router.post("/models/{model_name}/versions/{model_version}/infer", summary="Inference on a version",
             openapi_extra=INFER_BODY)
async def infer(model_name: ModelName, request: Request, plane: DataPlaneDep, model_version: str | None = None) -> Response:
    # Under overload, answer 503 before reading and parsing the body.
    mark_model(request, plane.check_capacity(model_name, model_version))
    body = _decode_body(request, await request.body())
    parsed = parse_infer_request(body, request.headers.get(HEADER_LENGTH))
    # The data plane resolves the version again after these awaits (a reload may have swapped it) and queues the
    # request without an await in between.
    model, outputs = await plane.infer(model_name, model_version, parsed)
    payload, header_length = encode_infer_response(model.name, model.version, parsed.id, outputs)
    if header_length is None:
        return Response(payload, media_type="application/json")
    return Response(payload, media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(header_length)})


@repository_router.post("/index", summary="List the repository's models and their states")
async def repository_index(plane: DataPlaneDep, request: Request) -> JSONBytes:
    await _optional_json(request)
    return JSONBytes(plane.index())


async def _optional_json(request: Request) -> dict:
    body = await request.body()
    return parse_json_object(body) if body.strip() else {}


@repository_router.post("/models/{model_name}/load", summary="Load, or atomically reload, a model")
async def repository_load(model_name: ModelName, plane: DataPlaneDep, request: Request) -> JSONBytes:
    await _optional_json(request)
    return JSONBytes(await plane.load(model_name))


@repository_router.post("/models/{model_name}/unload", summary="Unload a model")
async def repository_unload(model_name: ModelName, plane: DataPlaneDep, request: Request) -> JSONBytes:
    await _optional_json(request)
    return JSONBytes(await plane.unload(model_name))
