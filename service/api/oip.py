"""Open Inference Protocol (KServe v2) REST: health, metadata, infer, repository, statistics.

The infer route reads the raw body itself: tritonclient sends no Content-Type, and the binary
tensor extension puts raw bytes after the JSON header.
"""

from __future__ import annotations

import zlib

import numpy as np
from fastapi import APIRouter, Depends, Request, Response

from service import __version__
from service.api.deps import ModelName, RepositoryDep, mark_model, run_model
from service.codecs import HEADER_LENGTH, encode_infer_response, parse_infer_request, parse_json_object
from service.errors import BadRequest, Conflict, NotFound, PayloadTooLarge, ServiceUnavailable
from service.repository import ModelRepository, ModelVersion
from service.responses import JSONBytes
from service.runtime import DATATYPE_TO_NUMPY
from service.security import require_admin_key, require_api_key

EXTENSIONS = ["binary_tensor_data", "model_repository", "statistics", "schedule_policy"]
ERROR_RESPONSES = {
    400: {"description": "Malformed request or tensors that do not fit the model"},
    401: {"description": "Missing or wrong API key"},
    404: {"description": "Unknown model or version"},
    413: {"description": "Body too large"},
    503: {"description": "Model not ready, queue full or server draining (Retry-After)"},
}

health = APIRouter(prefix="/v2/health", tags=["health"])
router = APIRouter(prefix="/v2", tags=["open-inference-protocol"], dependencies=[Depends(require_api_key)],
                   responses=ERROR_RESPONSES)
repository_router = APIRouter(prefix="/v2/repository", tags=["model-repository"],
                              dependencies=[Depends(require_admin_key)],
                              responses={**ERROR_RESPONSES, 409: {"description": "Load or unload while several workers serve"}})


@health.get("/live", summary="Liveness: the process answers (with several workers, the one that answered)")
async def live(request: Request) -> JSONBytes:
    workers = request.app.state.workers
    return JSONBytes({"live": True} if workers is None else {"live": True, "pid": workers.pid})


@health.get("/ready", summary="Readiness: every model loaded and warm (with several workers: in every worker)",
            responses={503: {"description": "Models still loading (or, with strict readiness, one failed)"}})
async def ready(repo: RepositoryDep, request: Request) -> JSONBytes:
    failed = {e.name: e.reason for e in repo.entries.values() if e.state.value == "UNAVAILABLE"}
    loading = sorted(e.name for e in repo.entries.values() if e.state.value == "LOADING")
    ok = repo.all_ready()
    body = {"ready": ok, "loading": loading, "failed": failed}
    workers = request.app.state.workers
    if workers is not None:  # lists this worker's models; ready only when all N workers have loaded theirs
        body["workers"] = workers.describe()
        ok = body["ready"] = ok and workers.all_ready()
    return JSONBytes(body, status_code=200 if ok else 503, headers=None if ok else {"Retry-After": "2"})


@router.get("", summary="Server metadata")
async def server_metadata() -> JSONBytes:
    return JSONBytes({"name": "neuroserve", "version": __version__, "extensions": EXTENSIONS})


def _tensors(specs) -> list[dict]:
    return [{"name": s.name, "datatype": s.datatype, "shape": s.shape} for s in specs]


def _metadata(model: ModelVersion, versions: list[str]) -> dict:
    return {
        "name": model.name,
        "versions": versions,
        "platform": "onnxruntime_onnx",
        "inputs": _tensors(model.session.inputs),
        "outputs": _tensors(model.session.outputs),
        "parameters": {"task": model.manifest.task, "provider": model.provider, "version": model.version,
                       "labels": model.manifest.labels, "max_batch_size": model.batcher.max_batch_size},
    }


def _config(model: ModelVersion) -> dict:
    def tensor(spec) -> dict:
        dims = spec.shape[1:] if model.batcher.batching else spec.shape
        return {"name": spec.name, "data_type": "TYPE_" + ("STRING" if spec.datatype == "BYTES" else spec.datatype), "dims": dims}

    config = {
        "name": model.name,
        "platform": "onnxruntime_onnx",
        "backend": "onnxruntime",
        "max_batch_size": model.batcher.max_batch_size,
        "input": [tensor(s) for s in model.session.inputs],
        "output": [tensor(s) for s in model.session.outputs],
    }
    if model.batcher.batching:
        config["dynamic_batching"] = {"max_queue_delay_microseconds": int(model.batcher.max_delay_s * 1e6),
                                      "default_queue_policy": {"max_queue_size": model.batcher.max_queue_size}}
    return config


def _lookup(repo: ModelRepository, request: Request, name: str, version: str | None = None) -> ModelVersion:
    model = repo.get(name, version)
    mark_model(request, model)
    return model


@router.get("/models/{model_name}", summary="Model metadata")
@router.get("/models/{model_name}/versions/{model_version}", summary="Model version metadata")
async def model_metadata(model_name: ModelName, repo: RepositoryDep, request: Request, model_version: str | None = None) -> JSONBytes:
    model = _lookup(repo, request, model_name, model_version)
    return JSONBytes(_metadata(model, sorted(repo.entries[model_name].versions, key=int)))


@router.get("/models/{model_name}/ready", summary="Model readiness")
@router.get("/models/{model_name}/versions/{model_version}/ready", summary="Model version readiness")
async def model_ready(model_name: ModelName, repo: RepositoryDep, request: Request, model_version: str | None = None) -> JSONBytes:
    try:
        _lookup(repo, request, model_name, model_version)
    except ServiceUnavailable as exc:
        return JSONBytes({"name": model_name, "ready": False, "error": exc.message}, status_code=503)
    return JSONBytes({"name": model_name, "ready": True})


@router.get("/models/{model_name}/config", summary="Model configuration (Triton shape)")
@router.get("/models/{model_name}/versions/{model_version}/config", summary="Model version configuration")
async def model_config(model_name: ModelName, repo: RepositoryDep, request: Request, model_version: str | None = None) -> JSONBytes:
    return JSONBytes(_config(_lookup(repo, request, model_name, model_version)))


@router.get("/models/{model_name}/stats", summary="Inference statistics")
@router.get("/models/{model_name}/versions/{model_version}/stats", summary="Inference statistics of a version")
async def model_stats(model_name: ModelName, repo: RepositoryDep, request: Request, model_version: str | None = None) -> JSONBytes:
    entry = repo.entries.get(model_name)
    if entry is None or not entry.versions:
        raise NotFound(f"unknown model {model_name!r}")
    versions = [_lookup(repo, request, model_name, model_version)] if model_version else list(entry.versions.values())
    stats = []
    for model in versions:
        s = model.stats
        stats.append({
            "name": model.name, "version": model.version, "last_inference": s.last_inference_ms,
            "inference_count": s.success_count, "execution_count": s.execution_count,
            "inference_stats": {
                "success": {"count": s.success_count, "ns": s.success_ns},
                "fail": {"count": s.fail_count, "ns": s.fail_ns},
                "queue": {"count": s.success_count, "ns": s.queue_ns},
                "compute_infer": {"count": s.success_count, "ns": s.compute_ns},
            },
            "batch_stats": [{"batch_size": size, "compute_infer": {"count": count}} for size, count in sorted(s.batch_counts.items())],
        })
    return JSONBytes({"model_stats": stats})


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


def _ort_strings(array: np.ndarray, name: str) -> np.ndarray:
    """ORT string tensors take Python str; BYTES elements must therefore be UTF-8."""
    out = np.empty(array.shape, dtype=object)
    try:
        out.reshape(-1)[:] = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in array.reshape(-1)]
    except UnicodeDecodeError:
        raise BadRequest(f"input {name!r}: BYTES elements must be UTF-8 for this model") from None
    return out


def _feeds(model: ModelVersion, inputs) -> dict[str, np.ndarray]:
    specs = {spec.name: spec for spec in model.session.inputs}
    feeds = {}
    for item in inputs:
        spec = specs.get(item.name)
        if spec is None:
            raise BadRequest(f"unexpected input {item.name!r} for model {model.name!r}; expected {sorted(specs)}")
        if item.datatype != spec.datatype:
            raise BadRequest(f"input {item.name!r}: datatype {item.datatype}, model expects {spec.datatype}")
        if not spec.fits(item.shape):
            raise BadRequest(f"input {item.name!r}: shape {item.shape} does not fit the model's {spec.shape}")
        array = item.array
        if spec.datatype == "BYTES":
            array = _ort_strings(array, item.name)
        elif not array.flags.c_contiguous or array.dtype != DATATYPE_TO_NUMPY[spec.datatype]:
            array = np.ascontiguousarray(array, dtype=DATATYPE_TO_NUMPY[spec.datatype])
        feeds[item.name] = array
    missing = sorted(set(specs) - set(feeds))
    if missing:
        raise BadRequest(f"missing inputs {missing} for model {model.name!r}")
    return feeds


@router.post("/models/{model_name}/infer", summary="Inference (JSON or binary tensors)",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": {"type": "object"}},
                 "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
@router.post("/models/{model_name}/versions/{model_version}/infer", summary="Inference on a version",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": {"type": "object"}},
                 "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
async def infer(model_name: ModelName, request: Request, repo: RepositoryDep, model_version: str | None = None) -> Response:
    # Under overload, answer 503 before reading and parsing the body.
    _lookup(repo, request, model_name, model_version).batcher.check_capacity()
    body = _decode_body(request, await request.body())
    parsed = parse_infer_request(body, request.headers.get(HEADER_LENGTH))
    # Resolve again after the awaits: a reload may have swapped versions meanwhile, and from here to
    # the queue there is no await, so the request lands on the version it was resolved to.
    model = _lookup(repo, request, model_name, model_version)
    feeds = _feeds(model, parsed.inputs)
    if parsed.outputs is None:
        wanted = [(name, parsed.binary_output_default) for name in model.session.output_names]
    else:
        known = set(model.session.output_names)
        unknown = [o.name for o in parsed.outputs if o.name not in known]
        if unknown:
            raise BadRequest(f"unknown outputs {unknown} for model {model.name!r}; it has {sorted(known)}")
        wanted = [(o.name, o.binary) for o in parsed.outputs]
    outputs = await run_model(request, model, feeds)
    payload, header_length = encode_infer_response(
        model.name, model.version, parsed.id, [(name, outputs[name], binary) for name, binary in wanted]
    )
    if header_length is None:
        return Response(payload, media_type="application/json")
    return Response(payload, media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(header_length)})


@repository_router.post("/index", summary="List the repository's models and their states")
async def repository_index(repo: RepositoryDep, request: Request) -> JSONBytes:
    await _optional_json(request)
    return JSONBytes(repo.index())


async def _optional_json(request: Request) -> dict:
    body = await request.body()
    return parse_json_object(body) if body.strip() else {}


def _one_process(request: Request, action: str) -> None:
    """Load and unload change one process's models; with several workers the others would not follow."""
    workers = request.app.state.workers
    if workers is not None:
        raise Conflict(f"cannot {action} models while {workers.size} worker processes serve (NEUROSERVE_WORKERS): "
                       "each holds its own copy of the models. Set NEUROSERVE_LOAD_MODELS and restart the server, "
                       "or run one worker to use the repository API.")


@repository_router.post("/models/{model_name}/load", summary="Load, or atomically reload, a model")
async def repository_load(model_name: ModelName, repo: RepositoryDep, request: Request) -> JSONBytes:
    await _optional_json(request)
    _one_process(request, "load")
    folder = repo.model_folder(model_name)
    if not folder.is_dir():
        raise NotFound(f"no model {model_name!r} in the repository")
    entry = await repo.load(model_name)
    if not entry.ready:
        raise BadRequest(f"failed to load {model_name!r}: {entry.reason}")
    body = {"name": model_name, "state": entry.state.value, "versions": sorted(entry.versions, key=int)}
    if entry.reason:  # a failed reload: the previous versions keep serving
        raise BadRequest(f"failed to reload {model_name!r}: {entry.reason}")
    return JSONBytes(body)


@repository_router.post("/models/{model_name}/unload", summary="Unload a model")
async def repository_unload(model_name: ModelName, repo: RepositoryDep, request: Request) -> JSONBytes:
    await _optional_json(request)
    _one_process(request, "unload")
    await repo.unload(model_name)
    return JSONBytes({"name": model_name, "state": "UNLOADED"})
