"""Backends: what serves one loaded model version. One small interface, one module per kind.

A backend opens its graphs and warms them (``load``), says what it takes and gives (``inputs``, ``outputs``),
queues requests (``submit``), reports (``provider``, ``stats``) and shuts down (``close``). The repository
picks the backend from the manifest in one place (``backend_for``) and never looks inside; the data plane
(service/dataplane.py) and the task adapters see only this interface, plus the backend's own ``session``
(its tensor face and, for generation, the tokenizer and engine) where a task needs it.

A third kind of backend is a new class here (or a module) and one line in BACKENDS.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np

from service.batching import Batcher, RunTracker, resolve_instances
from service.errors import ModelLoadError
from service.generation.contract import GRAPHS
from service.generation.engine import GenerationMetrics
from service.generation.runtime import EngineBatcher, GenerationRuntime, load_generation
from service.manifest import MODEL_FILE, Manifest, TensorSpec
from service.metrics import Metrics
from service.runtime import OnnxRuntimeSession
from service.settings import Settings, cpu_cores


class Backend(Protocol):
    """The interface every backend implements (structural: no base class to inherit)."""

    kind: ClassVar[str]
    session: object  # the tensor face: .inputs, .outputs, .output_names, .provider (+ what the kind's tasks use)
    batcher: object  # the queue: .batching, .max_batch_size, .max_delay_s, .max_queue_size, .depth, check_capacity()
    bucket_sessions: dict[int, OnnxRuntimeSession]  # CUDA batch buckets' own sessions; empty where none

    @classmethod
    def load(cls, name: str, manifest: Manifest, version_dir: Path, settings: Settings, *, metrics: Metrics,
             tracker: RunTracker) -> "Backend": ...  # blocking: open, check, warm up

    @property
    def inputs(self) -> list[TensorSpec]: ...

    @property
    def outputs(self) -> list[TensorSpec]: ...

    @property
    def provider(self) -> str: ...

    @property
    def graphs(self) -> list[OnnxRuntimeSession]: ...  # every ONNX Runtime session (provider truth, metrics)

    def start(self) -> None: ...  # on the event loop, once the version is swapped in

    def submit(self, feeds: dict[str, np.ndarray], rows: int) -> asyncio.Future: ...  # -> (outputs, BatchStats)

    async def close(self, timeout_s: float) -> None: ...  # drain what is queued, then free

    def stats(self) -> dict: ...


class _Common:
    """What both kinds answer the same way from their session and batcher."""

    session: OnnxRuntimeSession | GenerationRuntime
    batcher: Batcher | EngineBatcher

    @property
    def inputs(self) -> list[TensorSpec]:
        return self.session.inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self.session.outputs

    @property
    def provider(self) -> str:
        return self.session.provider

    def start(self) -> None:
        self.batcher.start()

    def submit(self, feeds: dict[str, np.ndarray], rows: int) -> asyncio.Future:
        return self.batcher.submit(feeds, rows)

    async def close(self, timeout_s: float) -> None:
        await self.batcher.close(timeout_s)

    def stats(self) -> dict:
        return {"kind": self.kind, "provider": self.provider, "queue_depth": self.batcher.depth,
                "max_batch_size": self.batcher.max_batch_size}


class OnnxBackend(_Common):
    """One ONNX graph (models/<name>/<version>/model.onnx) behind the dynamic batcher (service/batching.py)."""

    kind = "onnx"

    def __init__(self, session: OnnxRuntimeSession, batcher: Batcher,
                 bucket_sessions: dict[int, OnnxRuntimeSession] | None = None):
        self.session, self.batcher = session, batcher
        # On CUDA with batch buckets: one session per bucket size (the smallest bucket's is `session`); empty otherwise
        self.bucket_sessions = bucket_sessions or {}

    @property
    def graphs(self) -> list[OnnxRuntimeSession]:
        return [self.session, *(s for s in self.bucket_sessions.values() if s is not self.session)]

    @classmethod
    def load(cls, name: str, manifest: Manifest, version_dir: Path, settings: Settings, *, metrics: Metrics,
             tracker: RunTracker) -> "OnnxBackend":
        """The graph's session(s), warmed, and its batcher; on CUDA with buckets also one session per bucket."""
        model_file = version_dir / MODEL_FILE
        if not model_file.is_file():
            raise ModelLoadError(f"{model_file} is missing")
        session = OnnxRuntimeSession.load(model_file, manifest, settings)
        policy = manifest.batching
        if any(spec.shape[:1] != [-1] for spec in session.inputs):
            policy = policy.model_copy(update={"max_batch_size": 0})  # no batch axis: run requests one by one
        gpu = session.provider != "CPUExecutionProvider"
        instances = resolve_instances(settings.model_instances, policy, gpu=gpu)
        buckets = _buckets(settings, policy, gpu)
        solo = _open_solo(model_file, manifest, settings, session, instances)
        per_bucket = _open_bucket_sessions(model_file, manifest, settings, session, buckets) if gpu else {}
        # Warm-up, the one place: each bucket session at its own shape; else the session (and the solo one) at every
        # bucket (one shared session: the CPU, where nothing is planned per shape) or at batch 1 without buckets.
        warm_ups = [(s, [size]) for size, s in per_bucket.items()] or [(s, buckets) for s in (session, solo) if s]
        for warm, shapes in warm_ups:
            _warm_up(warm, settings.warmup_runs, shapes)
        batcher = Batcher(f"{name}:{version_dir.name}", session.run, policy, max_queue_size=settings.max_queue_size,
                          instances=instances, solo_runner=solo.run if solo else None, tracker=tracker,
                          buckets=buckets, bucket_runners={size: s.run for size, s in per_bucket.items()})
        return cls(session, batcher, per_bucket)


def _open_bucket_sessions(model_file: Path, manifest: Manifest, settings: Settings, session: OnnxRuntimeSession,
                          buckets: list[int] | None) -> dict[int, OnnxRuntimeSession]:
    """On CUDA, one session per bucket, all with the same options: the CUDA provider keeps its convolution plans
    per session and re-plans on every change of shape, so one session switching between warmed buckets still
    re-plans (on an H200, cifar10-resnet, random batches 1-64 padded to 7 buckets: 1,680 images/s on one session,
    21,317 with one per bucket). `session` serves the smallest bucket. Each session holds its own copy of the
    weights and its own arena on the GPU: as many sessions as the model has buckets (7 for a max_batch_size of
    64; fewer with the manifest's batching.buckets). Empty without buckets."""
    if not buckets:
        return {}
    return {size: session if i == 0 else OnnxRuntimeSession.load(model_file, manifest, settings)
            for i, size in enumerate(buckets)}


def _buckets(settings: Settings, policy, gpu: bool) -> list[int] | None:
    """The batch sizes this model's runs are padded to, or None (NEUROSERVE_BATCH_BUCKETS: auto = on a GPU only)."""
    wanted = settings.batch_buckets == "on" or (settings.batch_buckets == "auto" and gpu)
    return policy.bucket_sizes() if wanted and policy.max_batch_size > 0 else None


def _open_solo(model_file: Path, manifest: Manifest, settings: Settings, session: OnnxRuntimeSession,
               instances: int) -> OnnxRuntimeSession | None:
    """The solo session (settings.solo_session): the instances' whole thread budget in one session, for a
    request that arrives while nothing else runs. None where it would not have more threads (one
    instance, one core) or threads do not matter (a GPU provider). On 2 idle cores a lone request ran
    2.0x faster on it for the CIFAR CNN, 1.6x for its INT8 variant, 1.2x for the sentiment LSTM
    (docs/benchmarks.md)."""
    threads = min(cpu_cores(), instances * settings.intra_op_threads)  # this worker's share of the cores
    if (not settings.solo_session or threads <= settings.intra_op_threads
            or session.provider != "CPUExecutionProvider"):
        return None
    return OnnxRuntimeSession.load(model_file, manifest, settings, intra_op_threads=threads)


def _warm_up(session: OnnxRuntimeSession, runs: int, buckets: list[int] | None = None) -> None:
    """`runs` runs at batch 1, or at each of `buckets`: each shape the batcher will run on this session is
    planned before the model is ready (on CUDA, with the provider options it serves with)."""
    try:
        for batch in buckets or [1]:
            feeds = session.dummy_feeds(batch=batch)
            for _ in range(runs):
                session.run(feeds)
    except Exception as exc:
        raise ModelLoadError(f"{session.path}: warm-up run failed: {exc}") from exc


class GenerationBackend(_Common):
    """A translation or chat model: several graphs, a tokenizer and one decode engine (service.generation). Its
    tensor face is one BYTES input and output "text"; its tasks use `session` (Translator, ChatModel) directly."""

    kind = "generation"

    def __init__(self, runtime: GenerationRuntime, batcher: EngineBatcher):
        self.session, self.batcher = runtime, batcher
        self.bucket_sessions: dict[int, OnnxRuntimeSession] = {}  # batch buckets are an ONNX-backend matter

    @property
    def graphs(self) -> list[OnnxRuntimeSession]:
        return list(self.session.graphs.values())

    @classmethod
    def load(cls, name: str, manifest: Manifest, version_dir: Path, settings: Settings, *, metrics: Metrics,
             tracker: RunTracker) -> "GenerationBackend":
        runtime = load_generation(version_dir, manifest, settings, GenerationMetrics(metrics, name), tracker=tracker)
        return cls(runtime, EngineBatcher(f"{name}:{version_dir.name}", runtime, manifest.batching))


BACKENDS: dict[str, type[Backend]] = {OnnxBackend.kind: OnnxBackend, GenerationBackend.kind: GenerationBackend}


def backend_for(manifest: Manifest) -> type[Backend]:
    """The one place a manifest picks its backend: `graphs` (several named graphs) is a generation model, one
    model.onnx a plain graph. A generation task without graphs is refused here, with what the manifest must say."""
    if manifest.graphs:
        return GenerationBackend
    if manifest.task in GRAPHS:
        roles = ", ".join(f'"{role}": ...' for role in GRAPHS[manifest.task])
        raise ModelLoadError(f"a {manifest.task} model names its graphs in the manifest: {{{roles}}}")
    return OnnxBackend
