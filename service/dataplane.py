"""The data plane: the Open Inference Protocol's logic, free of any transport.

Health, metadata, configuration, statistics, the repository calls and inference, on decoded requests
(service.codecs.InferRequest) and plain dicts; errors are service.errors exceptions carrying their status.
The REST routes (service/api/oip.py) and the gRPC servicer (service/grpc/) are thin adapters over it:
each turns its wire format into these calls and the answers back, and nothing else. Learnt from
MLServer's DataPlane (mlserver/handlers/dataplane.py).

It also holds the inference helpers the task adapters use through service/api/deps.py: ``run`` (one
tensor request through a model's batcher, bounded in time, counted in the metrics) and ``generate``
(waiting on generation jobs, cancelled when the caller goes away).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import numpy as np

from service import __version__
from service.codecs import InferInput, InferRequest
from service.errors import BadRequest, Conflict, NeuroserveError, NotFound, ServiceUnavailable
from service.generation.engine import cancel_unfinished
from service.generation.runtime import collect_with_stats
from service.metrics import Metrics
from service.repository import ModelRepository, ModelVersion
from service.runtime import DATATYPE_TO_NUMPY
from service.settings import Settings

SERVER_NAME = "neuroserve"
EXTENSIONS = ["binary_tensor_data", "model_repository", "statistics", "schedule_policy"]
PLATFORM = "onnxruntime_onnx"


class ClientClosedRequest(NeuroserveError):
    """The client went away before its answer was ready (nginx's 499; nobody reads it, the logs do)."""

    status_code = 499


async def await_or_cancel(pending: Awaitable, timeout_s: float | None, gone: Awaitable | None = None):
    """Await `pending`; if `gone` (the caller disconnecting) completes first, cancel it and raise
    ClientClosedRequest; past timeout_s, cancel it and answer 503."""
    task = asyncio.ensure_future(pending)
    watcher = asyncio.ensure_future(gone) if gone is not None else None
    try:
        done, _ = await asyncio.wait({task, watcher} - {None}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        raise
    finally:
        if watcher is not None:
            watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    if watcher is not None and watcher in done:
        raise ClientClosedRequest("the client closed the connection")
    raise ServiceUnavailable(f"no answer within {timeout_s:g} s", retry_after_s=5)


def ort_strings(array: np.ndarray, name: str) -> np.ndarray:
    """ORT string tensors take Python str; BYTES elements must therefore be UTF-8."""
    out = np.empty(array.shape, dtype=object)
    try:
        out.reshape(-1)[:] = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in array.reshape(-1)]
    except UnicodeDecodeError:
        raise BadRequest(f"input {name!r}: BYTES elements must be UTF-8 for this model") from None
    return out


def _tensors(specs) -> list[dict]:
    return [{"name": s.name, "datatype": s.datatype, "shape": s.shape} for s in specs]


class DataPlane:
    """One per server process: the repository, settings and metrics every transport shares."""

    def __init__(self, repository: ModelRepository, settings: Settings, metrics: Metrics, workers=None):
        self.repository, self.settings, self.metrics, self.workers = repository, settings, metrics, workers
        self.draining = False  # set by the lifespan's shutdown; the transports refuse new work then

    # ----- health and server -----
    def live(self) -> dict:
        return {"live": True} if self.workers is None else {"live": True, "pid": self.workers.pid}

    def ready(self) -> tuple[bool, dict]:
        """(ready, body): every model loaded and warm (with several workers: in every worker)."""
        repo = self.repository
        failed = {e.name: e.reason for e in repo.entries.values() if e.state.value == "UNAVAILABLE"}
        loading = sorted(e.name for e in repo.entries.values() if e.state.value == "LOADING")
        ok = repo.all_ready()
        body = {"ready": ok, "loading": loading, "failed": failed}
        if self.workers is not None:  # lists this worker's models; ready only when all N workers have loaded theirs
            body["workers"] = self.workers.describe()
            ok = body["ready"] = ok and self.workers.all_ready()
        return ok, body

    def server_metadata(self) -> dict:
        return {"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS}

    # ----- models -----
    def model(self, name: str, version: str | None = None) -> ModelVersion:
        return self.repository.get(name, version or None)

    def versions(self, name: str) -> list[str]:
        return sorted(self.repository.entries[name].versions, key=int)

    def model_metadata(self, model: ModelVersion) -> dict:
        return {
            "name": model.name,
            "versions": self.versions(model.name),
            "platform": PLATFORM,
            "inputs": _tensors(model.session.inputs),
            "outputs": _tensors(model.session.outputs),
            "parameters": {"task": model.manifest.task, "provider": model.provider, "version": model.version,
                           "labels": model.manifest.labels, "max_batch_size": model.batcher.max_batch_size},
        }

    def model_ready(self, name: str, version: str | None = None) -> tuple[bool, str | None]:
        """(ready, why not). An unknown model or version is still an error (NotFound)."""
        try:
            self.model(name, version)
        except ServiceUnavailable as exc:
            return False, exc.message
        return True, None

    @staticmethod
    def model_config(model: ModelVersion) -> dict:
        """Triton's model configuration shape (tritonclient's get_model_config reads it)."""
        def tensor(spec) -> dict:
            dims = spec.shape[1:] if model.batcher.batching else spec.shape
            return {"name": spec.name, "data_type": "TYPE_" + ("STRING" if spec.datatype == "BYTES" else spec.datatype),
                    "dims": dims}

        config = {
            "name": model.name,
            "platform": PLATFORM,
            "backend": "onnxruntime",
            "max_batch_size": model.batcher.max_batch_size,
            "input": [tensor(s) for s in model.session.inputs],
            "output": [tensor(s) for s in model.session.outputs],
        }
        if model.batcher.batching:
            config["dynamic_batching"] = {"max_queue_delay_microseconds": int(model.batcher.max_delay_s * 1e6),
                                          "default_queue_policy": {"max_queue_size": model.batcher.max_queue_size}}
        return config

    def model_stats(self, name: str, version: str | None = None) -> dict:
        """Triton's statistics extension shape, for one version or every version of the model."""
        entry = self.repository.entries.get(name)
        if entry is None or not entry.versions:
            raise NotFound(f"unknown model {name!r}")
        versions = [self.model(name, version)] if version else list(entry.versions.values())
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
                "batch_stats": [{"batch_size": size, "compute_infer": {"count": count}}
                                for size, count in sorted(s.batch_counts.items())],
            })
        return {"model_stats": stats}

    # ----- inference -----
    def check_capacity(self, name: str, version: str | None = None) -> ModelVersion:
        """Under overload, a 503 before the request's tensors are read and decoded."""
        model = self.model(name, version)
        model.batcher.check_capacity()
        return model

    @staticmethod
    def feeds(model: ModelVersion, inputs: list[InferInput]) -> dict[str, np.ndarray]:
        """Decoded inputs checked against the model's (names, datatypes, shapes) and made ready for ONNX Runtime."""
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
                array = ort_strings(array, item.name)
            elif not array.flags.c_contiguous or array.dtype != DATATYPE_TO_NUMPY[spec.datatype]:
                array = np.ascontiguousarray(array, dtype=DATATYPE_TO_NUMPY[spec.datatype])
            feeds[item.name] = array
        missing = sorted(set(specs) - set(feeds))
        if missing:
            raise BadRequest(f"missing inputs {missing} for model {model.name!r}")
        return feeds

    @staticmethod
    def wanted_outputs(model: ModelVersion, request: InferRequest) -> list[tuple[str, bool]]:
        """(name, binary) of each output to answer: the requested ones (all known), else every output."""
        if request.outputs is None:
            return [(name, request.binary_output_default) for name in model.session.output_names]
        known = set(model.session.output_names)
        unknown = [o.name for o in request.outputs if o.name not in known]
        if unknown:
            raise BadRequest(f"unknown outputs {unknown} for model {model.name!r}; it has {sorted(known)}")
        return [(o.name, o.binary) for o in request.outputs]

    async def infer(self, name: str, version: str | None,
                    request: InferRequest) -> tuple[ModelVersion, list[tuple[str, np.ndarray, bool]]]:
        """Resolve, check and queue in one synchronous stretch (a reload cannot slip in between: the request lands
        on the version it was resolved to), then wait: (model, [(output name, array, binary)])."""
        if request.parameters.get("explain"):  # not silently ignored: the client would think it had one
            raise BadRequest("explanations are a task-endpoint feature: POST /v1/<task> with \"explain\": true "
                             "(docs/explanations.md)")
        model = self.model(name, version)
        feeds = self.feeds(model, request.inputs)
        wanted = self.wanted_outputs(model, request)
        outputs = await self.run(model, feeds)
        return model, [(output, outputs[output], binary) for output, binary in wanted]

    async def run(self, model: ModelVersion, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Infer through the model's batcher (bounded wait) and record per-model metrics."""
        timeout_s = self.settings.request_timeout_s
        pending = model.infer(feeds)  # queued synchronously, before any await
        try:
            async with asyncio.timeout(timeout_s):  # unlike wait_for, no extra task per request
                outputs, stats = await pending
        except TimeoutError:
            raise ServiceUnavailable(f"model {model.name!r} did not answer within {timeout_s:g} s",
                                     retry_after_s=5) from None
        self.metrics.observe_inference(model.name, stats)
        return outputs

    async def generate(self, model: ModelVersion, jobs, events, gone: Awaitable | None = None) -> list:
        """Wait for submitted generation jobs (service.generation): each one's finish events. Bounded by the
        request timeout; a caller that goes away (`gone` completes) gets its jobs cancelled, freeing their rows."""
        try:
            finished, _ = await await_or_cancel(model.track(collect_with_stats(jobs, events)),
                                                self.settings.request_timeout_s, gone)
        finally:
            cancel_unfinished(jobs)
        return finished

    # ----- repository -----
    def index(self) -> list[dict]:
        return self.repository.index()

    def _one_process(self, action: str) -> None:
        """Load and unload change one process's models; with several workers the others would not follow."""
        if self.workers is not None:
            raise Conflict(f"cannot {action} models while {self.workers.size} worker processes serve "
                           "(NEUROSERVE_WORKERS): each holds its own copy of the models. Set NEUROSERVE_LOAD_MODELS "
                           "and restart the server, or run one worker to use the repository API.")

    async def load(self, name: str) -> dict:
        self._one_process("load")
        folder = self.repository.model_folder(name)
        if not folder.is_dir():
            raise NotFound(f"no model {name!r} in the repository")
        entry = await self.repository.load(name)
        if not entry.ready:
            raise BadRequest(f"failed to load {name!r}: {entry.reason}")
        if entry.reason:  # a failed reload: the previous versions keep serving
            raise BadRequest(f"failed to reload {name!r}: {entry.reason}")
        return {"name": name, "state": entry.state.value, "versions": sorted(entry.versions, key=int)}

    async def unload(self, name: str) -> dict:
        self._one_process("unload")
        await self.repository.unload(name)
        return {"name": name, "state": "UNLOADED"}
