"""The model repository: scans models/, loads, unloads and reloads versions, knows readiness.

A reload builds and warms the new version before swapping it in; requests already queued on the
old version finish there (its batcher drains before it closes).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

import numpy as np

from service.backends import Backend, backend_for
from service.batching import BatchStats, RunTracker
from service.errors import BadRequest, ModelLoadError, NotFound, ServiceUnavailable
from service.heap import freeze_long_lived
from service.manifest import MODEL_FILE, Manifest, read_manifest, resource_path, valid_name, valid_version
from service.metrics import Metrics
from service.ood import OodProfile, load_ood
from service.runtime import OnnxRuntimeSession
from service.settings import Settings

log = logging.getLogger("neuroserve.repository")


class ModelState(str, enum.Enum):
    LOADING = "LOADING"
    READY = "READY"
    UNAVAILABLE = "UNAVAILABLE"  # failed to load; `reason` says why
    UNLOADED = "UNLOADED"


@dataclass
class VersionStats:
    """Counters behind /v2/models/{m}/stats (Triton's statistics extension shape)."""

    success_count: int = 0
    success_ns: int = 0
    fail_count: int = 0
    fail_ns: int = 0
    queue_ns: int = 0
    compute_ns: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0
    batch_counts: dict[int, int] = field(default_factory=dict)


@dataclass
class ModelVersion:
    """One loaded version: its manifest and its backend (service/backends.py: the graphs, the queue)."""

    name: str
    version: str
    manifest: Manifest
    folder: Path
    backend: Backend
    stats: VersionStats = field(default_factory=VersionStats)
    extras: dict = field(default_factory=dict)  # what the task adapter prepared at load (a tokenizer, ...)
    ood: OodProfile | None = None  # manifest `ood`: scores answers' inputs (service/ood.py)

    @property
    def session(self):
        """The backend's tensor face (inputs, outputs, output_names; a generation model's tokenizer and engine)."""
        return self.backend.session

    @property
    def batcher(self):
        return self.backend.batcher

    @property
    def bucket_sessions(self) -> dict[int, OnnxRuntimeSession]:
        return self.backend.bucket_sessions

    @property
    def provider(self) -> str:
        return self.backend.provider

    @property
    def graphs(self) -> list[OnnxRuntimeSession]:
        """Every ONNX Runtime session of this version (a generation model has one per graph)."""
        return self.backend.graphs

    @property
    def providers(self) -> list[str]:
        """The session's own provider list (session.get_providers()), not the one asked for."""
        return list(self.graphs[0].providers)

    @property
    def provider_fallback(self) -> bool:
        """CUDA was offered and asked for (providers=auto) but a session of this version runs on the CPU."""
        return any(graph.fallback for graph in self.graphs)

    def resource(self, relative: str) -> Path:
        """A file beside the manifest (tokenizer, ...), refusing anything outside the model folder."""
        return resource_path(self.folder, relative)

    def infer(self, feeds: dict[str, np.ndarray]) -> Awaitable[tuple[dict[str, np.ndarray], BatchStats]]:
        """Queue the request now (synchronously: no reload can slip in between resolving this version
        and queueing on it) and return an awaitable of (outputs, stats)."""
        started = time.perf_counter_ns()
        try:
            future = self.backend.submit(feeds, self._rows(feeds))
        except Exception:
            self._count_failure(started)
            raise
        return self.track(future, started)

    async def track(self, pending: Awaitable, started: int | None = None) -> tuple[object, BatchStats]:
        """Await (answer, stats) and count it in this version's statistics (success or failure)."""
        started = time.perf_counter_ns() if started is None else started
        try:
            outputs, stats = await pending
        except BaseException:
            self._count_failure(started)
            raise
        s = self.stats
        s.success_count += 1
        s.success_ns += time.perf_counter_ns() - started
        s.queue_ns += int(stats.queue_s * 1e9)
        s.compute_ns += int(stats.compute_s * 1e9)
        s.execution_count += 1
        s.last_inference_ms = int(time.time() * 1000)
        s.batch_counts[stats.batch_size] = s.batch_counts.get(stats.batch_size, 0) + 1
        return outputs, stats

    def _count_failure(self, started: int) -> None:
        self.stats.fail_count += 1
        self.stats.fail_ns += time.perf_counter_ns() - started

    def _rows(self, feeds: dict[str, np.ndarray]) -> int:
        if not self.batcher.batching:
            return 1
        sizes = {array.shape[0] for array in feeds.values() if array.ndim > 0}
        if len(sizes) != 1:
            raise BadRequest(f"inputs disagree on the batch dimension: {sorted(sizes)}")
        return sizes.pop()


@dataclass
class ModelEntry:
    name: str
    state: ModelState = ModelState.UNLOADED
    reason: str = ""
    versions: dict[str, ModelVersion] = field(default_factory=dict)
    default_version: str | None = None
    task: str = ""
    priority: int = 0
    published: int = 0  # when the loaded manifest was written (unix seconds): /v1/models' `created`

    @property
    def ready(self) -> bool:
        return self.state == ModelState.READY


Preparer = Callable[[ModelVersion], dict]


def manifest_published(folder: Path) -> int:
    """When a model folder's manifest was written (unix seconds; 0 if it has none): /v1/models' `created`."""
    try:
        return int((folder / "manifest.json").stat().st_mtime)
    except OSError:
        return 0


class ModelRepository:
    """Loads models; `preparers` (task -> callable) let task adapters check and prepare a version at
    load time (a tokenizer file, a label count), so a model that cannot serve its task fails to load."""

    def __init__(self, settings: Settings, metrics: Metrics, preparers: dict[str, Preparer] | None = None):
        self.preparers = preparers or {}
        self.settings = settings
        self.root = settings.models_dir.resolve()
        self.metrics = metrics
        self.entries: dict[str, ModelEntry] = {}
        self.startup_complete = False
        self._locks: dict[str, asyncio.Lock] = {}
        self.runs = RunTracker()  # session runs in flight across every model: who may run solo

    # ----- discovery -----
    def model_folder(self, name: str) -> Path:
        if not valid_name(name):
            raise BadRequest(f"invalid model name {name!r}")
        folder = (self.root / name).resolve()
        if folder.parent != self.root:  # belt and braces: the name regex already forbids '/' and '..'
            raise BadRequest(f"invalid model name {name!r}")
        return folder

    def discover(self) -> list[str]:
        if not self.root.is_dir():
            log.warning("model repository %s does not exist", self.root)
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and valid_name(p.name) and (p / "manifest.json").exists())

    def index(self) -> list[dict]:
        names = sorted(set(self.discover()) | set(self.entries))
        rows = []
        for name in names:
            entry = self.entries.get(name)
            if entry is None or not entry.versions:
                rows.append({"name": name, "state": (entry.state if entry else ModelState.UNLOADED).value,
                             "reason": entry.reason if entry else ""})
                continue
            for version in sorted(entry.versions, key=int):
                rows.append({"name": name, "version": version, "state": entry.state.value, "reason": entry.reason})
        return rows

    # ----- lookup -----
    def get(self, name: str, version: str | None = None) -> ModelVersion:
        entry = self.entries.get(name) if valid_name(name) else None
        if entry is None or entry.state == ModelState.UNLOADED:
            raise NotFound(f"unknown model {name!r}")
        if entry.state == ModelState.LOADING and not entry.versions:
            raise ServiceUnavailable(f"model {name!r} is loading")
        if entry.state == ModelState.UNAVAILABLE and not entry.versions:
            raise ServiceUnavailable(f"model {name!r} is unavailable: {entry.reason}", retry_after_s=30)
        if version is None or version == "":
            version = entry.default_version
        elif not valid_version(version):
            raise BadRequest(f"invalid model version {version!r}")
        found = entry.versions.get(version)
        if found is None:
            raise NotFound(f"model {name!r} has no version {version!r} (versions: {sorted(entry.versions, key=int)})")
        return found

    def for_task(self, task: str, requested: str | None) -> ModelVersion:
        """Resolve "name" or "name:version" for a task endpoint; the first ready model of the task by default."""
        if requested:
            name, _, version = requested.partition(":")
            model = self.get(name, version or None)
            if model.manifest.task != task:
                raise BadRequest(f"model {name!r} serves task {model.manifest.task!r}, not {task!r}")
            return model
        candidates = [e for e in self.entries.values() if e.task == task and e.ready]
        if not candidates:
            raise ServiceUnavailable(f"no ready model serves task {task!r}", retry_after_s=10)
        # The manifest's priority picks the default model of a task; ties go to the name.
        best = min(candidates, key=lambda e: (-e.priority, e.name))
        return self.get(best.name)

    def all_ready(self) -> bool:
        if not self.startup_complete:
            return False
        states = [entry.state for entry in self.entries.values() if entry.state != ModelState.UNLOADED]
        if any(state == ModelState.LOADING for state in states):
            return False
        if self.settings.strict_readiness and any(state == ModelState.UNAVAILABLE for state in states):
            return False
        return True

    # ----- lifecycle -----
    async def load_all(self) -> None:
        names = self.settings.load_models or self.discover()
        for name in names:
            self.entries.setdefault(name, ModelEntry(name=name, state=ModelState.LOADING))
        for name in names:
            await self.load(name, settle=False)
        self.startup_complete = True
        self._settle()

    def _settle(self) -> None:
        """After the set of loaded models changed: freeze what is alive now (service/heap.py)."""
        if self.settings.gc_freeze:
            freeze_long_lived()

    async def load(self, name: str, settle: bool = True) -> ModelEntry:
        """Load (or atomically reload) every version of a model."""
        folder = self.model_folder(name)
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            entry = self.entries.setdefault(name, ModelEntry(name=name))
            if not entry.versions:
                entry.state = ModelState.LOADING
            try:
                manifest, versions = await asyncio.to_thread(self._build, name, folder)
            except ModelLoadError as exc:
                log.error("model %s failed to load: %s", name, exc, extra={"model": name})
                self.metrics.load_failures.labels(model=name).inc()
                if not entry.versions:
                    entry.state, entry.reason = ModelState.UNAVAILABLE, str(exc)
                else:  # a failed reload keeps the old versions serving
                    entry.reason = f"reload failed, still serving the previous load: {exc}"
                return entry
            for version in versions.values():
                version.backend.start()
            old = entry.versions
            entry.versions = versions
            entry.task, entry.priority = manifest.task, manifest.priority
            entry.published = manifest_published(folder)
            entry.default_version = manifest.default_version or max(versions, key=int)
            if entry.default_version not in versions:
                entry.default_version = max(versions, key=int)
            entry.state, entry.reason = ModelState.READY, ""
            log.info("model %s ready: versions %s on %s", name, sorted(versions, key=int),
                     next(iter(versions.values())).provider, extra={"model": name})
            self._publish_providers(name, old, versions)
        await self._retire(old)
        if settle:
            self._settle()
        return entry

    async def unload(self, name: str) -> None:
        if not valid_name(name) or name not in self.entries:
            raise NotFound(f"unknown model {name!r}")
        async with self._locks.setdefault(name, asyncio.Lock()):
            entry = self.entries[name]
            old, entry.versions = entry.versions, {}
            entry.state, entry.reason = ModelState.UNLOADED, ""
            self._publish_providers(name, old, {})
        await self._retire(old)
        self._settle()

    def _publish_providers(self, name: str, old: dict[str, ModelVersion], new: dict[str, ModelVersion]) -> None:
        """neuroserve_model_provider{model,version,provider} = 1 and neuroserve_model_provider_fallback for the
        versions loaded now (the previous load's series removed)."""
        for version in old.values():
            with contextlib.suppress(KeyError):
                self.metrics.model_provider.remove(name, version.version, version.provider)
            with contextlib.suppress(KeyError):
                self.metrics.model_provider_fallback.remove(name, version.version)
        for version in new.values():
            self.metrics.model_provider.labels(model=name, version=version.version, provider=version.provider).set(1)
            self.metrics.model_provider_fallback.labels(model=name, version=version.version).set(int(version.provider_fallback))

    async def close(self) -> None:
        for entry in self.entries.values():
            await self._retire(entry.versions)

    async def _retire(self, versions: dict[str, ModelVersion]) -> None:
        for version in versions.values():
            await version.backend.close(self.settings.drain_timeout_s)

    def _build(self, name: str, folder: Path) -> tuple[Manifest, dict[str, ModelVersion]]:
        """Blocking: read the manifest, open a session per version, warm each up."""
        if not folder.is_dir():
            raise ModelLoadError(f"no model folder {name!r} in the repository")
        manifest = read_manifest(folder)
        version_dirs = sorted((p for p in folder.iterdir() if p.is_dir() and valid_version(p.name)), key=lambda p: int(p.name))
        if not version_dirs:
            raise ModelLoadError(f"{folder} has no version folder (<positive integer>/{MODEL_FILE})")
        backend = backend_for(manifest)  # the one place a manifest picks its backend
        versions = {}
        for version_dir in version_dirs:
            version = ModelVersion(name, version_dir.name, manifest, folder,
                                   backend.load(name, manifest, version_dir, self.settings, metrics=self.metrics,
                                                tracker=self.runs))
            prepare = self.preparers.get(manifest.task)
            if prepare is not None:
                try:
                    version.extras = prepare(version)
                except ModelLoadError:
                    raise
                except Exception as exc:
                    raise ModelLoadError(f"{folder}: cannot serve task {manifest.task!r}: {exc}") from exc
            if manifest.ood is not None:
                version.ood = load_ood(version)  # the out-of-distribution profile, checked against this graph
            versions[version_dir.name] = version
        return manifest, versions
