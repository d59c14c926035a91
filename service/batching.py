"""Dynamic batching: one bounded queue and one worker per model version.

Concurrent requests are coalesced into one ``session.run`` while their inputs are compatible (same
trailing shapes, or padded along dim 1 for inputs the manifest lists in ``pad_inputs``). Each
request gets exactly its own rows back. The blocking run happens in a dedicated thread, so the
event loop never waits on ONNX Runtime.

A model may also have a *solo* runner: a session with every core's threads, used for a batch that
arrives while no other run is in flight anywhere in the server (``RunTracker``). A lone request then
gets all the cores, and concurrent ones keep the single-threaded instances that serve load best. (While
another process keeps a core busy, a two-thread run waits on its preempted thread: measured beside a
training run, 1.75x slower than one thread. NEUROSERVE_SOLO_SESSION=false for such a machine.)

Batch buckets (NEUROSERVE_BATCH_BUCKETS, on CUDA by default): each run is padded along dim 0 to the smallest
bucket that holds it, by copies of its last row (a real row: no graph can turn it into NaN or inf), and the
padding is dropped from every output before the rows go back. The CUDA provider re-plans its convolutions for
every new shape, and its convolution state is per session: one session switching between warmed shapes still
re-plans on each switch. So on CUDA each bucket has its own session (``bucket_runners``), warmed at its shape
before the model is ready (on an H200, cifar10-resnet, random batch sizes 1-64 padded to buckets: 1,680
images/s on one session, 21,317 with one session per bucket; docs/benchmarks.md, "On a GPU").
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from service.errors import BadRequest, InferenceFailed, ServiceUnavailable
from service.manifest import Batching
from service.settings import default_instances
from service.threads import RunThreads

log = logging.getLogger("neuroserve.batching")

Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass
class BatchStats:
    """What the batcher observed for one request (fed to metrics and /stats)."""

    queue_s: float = 0.0
    compute_s: float = 0.0
    batch_size: int = 0
    leader: bool = False  # the first request of its batch: count the batch once
    solo: bool = False  # ran on the model's solo session (nothing else was in flight)


@dataclass
class _Item:
    feeds: dict[str, np.ndarray]
    rows: int
    signature: tuple
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


def run_error(model: str, exc: Exception) -> Exception:
    """The error a request gets when its run raised. onnxruntime's InvalidArgument at run time is about the values
    fed (an index past a Gather's table, shapes the graph's ops refuse): the request's fault, a 400 that says so.
    Anything else is the model's: a 500 for that request only."""
    if isinstance(exc, (BadRequest, ServiceUnavailable)):
        return exc
    if type(exc).__name__ == "InvalidArgument":  # onnxruntime.capi.onnxruntime_pybind11_state.InvalidArgument
        return BadRequest(f"model {model!r} rejected the input values: {exc}")
    return InferenceFailed(f"model {model!r} failed at run time: {type(exc).__name__}: {exc}")


def _signature(feeds: dict[str, np.ndarray], pad_inputs: dict) -> tuple:
    """Requests with equal signatures can share one run."""
    parts = []
    for name in sorted(feeds):
        array = feeds[name]
        trailing = array.shape[2:] if name in pad_inputs else array.shape[1:]
        parts.append((name, array.dtype.str, array.ndim, trailing))
    return tuple(parts)


def _pad_to(array: np.ndarray, length: int, value) -> np.ndarray:
    if array.shape[1] == length:
        return array
    pad = [(0, 0)] * array.ndim
    pad[1] = (0, length - array.shape[1])
    return np.pad(array, pad, constant_values=value)


# Runs in flight per model on a GPU when neither the settings nor the manifest say. Runs of one CUDA session share
# its stream, so a second instance would mostly halve the batches (see Batcher._share) without overlapping GPU
# work. To be confirmed on the GPU host with scripts/gpu_check.py (NEUROSERVE_MODEL_INSTANCES=2 to compare).
GPU_INSTANCES = 1


def resolve_instances(override: int | None, policy: Batching, gpu: bool = False) -> int:
    """Runs of a model in flight at once: the setting's override, else the manifest's, else one per core (on a
    GPU: GPU_INSTANCES)."""
    return override or policy.instances or (GPU_INSTANCES if gpu else default_instances())


def _pad_rows(array: np.ndarray, rows: int) -> np.ndarray:
    """Grow dim 0 to `rows` with copies of the last row."""
    if array.ndim == 0 or array.shape[0] >= rows:
        return array
    return np.concatenate([array, np.repeat(array[-1:], rows - array.shape[0], axis=0)])


def _batch_rows(feeds: dict[str, np.ndarray]) -> int:
    return next((array.shape[0] for array in feeds.values() if array.ndim > 0), 0)


class BucketRunner:
    """Runs a merged batch at bucket sizes only: padded up to the smallest bucket that holds it, the padding dropped
    from every output whose dim 0 is the run's (others are left alone, like the batcher's split); a batch larger
    than the largest bucket (a request bigger than the manifest's largest bucket) runs in chunks of it.

    per_bucket: a runner for each bucket size (on CUDA, one session per bucket, each planned for its shape alone);
    a bucket it lacks runs on `runner`."""

    def __init__(self, runner: Runner, buckets: list[int], per_bucket: dict[int, Runner] | None = None):
        self.runner = runner
        self.buckets = list(buckets)
        self.per_bucket = dict(per_bucket or {})

    def runner_for(self, size: int) -> Runner:
        return self.per_bucket.get(size, self.runner)

    def bucket(self, rows: int) -> int:
        return self.buckets[bisect.bisect_left(self.buckets, rows)]

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = _batch_rows(feeds)
        largest = self.buckets[-1]
        if rows <= largest:
            return self._run(feeds, rows)
        chunks = [self._run({name: array[start:start + largest] if array.ndim > 0 else array
                             for name, array in feeds.items()}, min(largest, rows - start))
                  for start in range(0, rows, largest)]
        sizes = [min(largest, rows - start) for start in range(0, rows, largest)]
        return {name: np.concatenate([chunk[name] for chunk in chunks])
                if all(chunk[name].ndim > 0 and chunk[name].shape[0] == size for chunk, size in zip(chunks, sizes))
                else chunks[0][name]
                for name in chunks[0]}

    def _run(self, feeds: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        size = self.bucket(rows) if rows else rows
        runner = self.runner_for(size)
        if size == rows:
            return runner(feeds)
        outputs = runner({name: _pad_rows(array, size) for name, array in feeds.items()})
        return {name: value[:rows] if value.ndim > 0 and value.shape[0] == size else value
                for name, value in outputs.items()}


class RunTracker:
    """Session runs in flight across every batcher of one server, so a batcher can tell a lone request
    (nothing else running anywhere: it may have every core) from load (keep to its own instance)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0

    @property
    def running(self) -> int:
        return self._running

    def begin(self, solo_wanted: bool) -> bool:
        """Count one more run; True when it may run solo (wanted, and no other run is in flight)."""
        with self._lock:
            solo = solo_wanted and self._running == 0
            self._running += 1
            return solo

    def end(self) -> None:
        with self._lock:
            self._running -= 1


class Batcher:
    def __init__(self, name: str, runner: Runner, policy: Batching, *, max_queue_size: int | None = None,
                 instances: int | None = None, solo_runner: Runner | None = None, tracker: RunTracker | None = None,
                 buckets: list[int] | None = None, bucket_runners: dict[int, Runner] | None = None):
        self.name = name
        # buckets: the batch sizes runs are padded to (None: runs take the size of their batch); bucket_runners: a
        # runner per bucket size (CUDA: a session per bucket), else every bucket runs on `runner`
        self.buckets = list(buckets) if buckets and policy.max_batch_size > 0 else None
        if self.buckets:
            runner = BucketRunner(runner, self.buckets, bucket_runners)
            solo_runner = BucketRunner(solo_runner, self.buckets) if solo_runner else None
        self._runner = runner
        self._solo_runner = solo_runner  # all cores' threads, for a batch with nothing else in flight
        self._tracker = tracker or RunTracker()
        self.max_batch_size = policy.max_batch_size
        self.max_delay_s = policy.max_queue_delay_ms / 1000.0
        self.max_queue_size = max_queue_size or policy.max_queue_size
        self.pad_inputs = dict(policy.pad_inputs)
        self._pending: collections.deque[_Item] = collections.deque()
        self._wakeup: asyncio.Event | None = None
        # Like Triton's instance count: this many runs of the model may be in flight at once, each on
        # its own thread (small graphs use two cores better as two runs than as one run on two threads).
        self.instances = resolve_instances(instances, policy)
        self._workers: list[asyncio.Task] = []
        self._threads = RunThreads(self.instances, f"ort-{name}")
        self._closing = False
        self._in_flight_rows = 0  # rows in this batcher's runs now (for _share)

    @property
    def batching(self) -> bool:
        return self.max_batch_size > 0

    @property
    def depth(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        self._wakeup = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._workers = [loop.create_task(self._work(), name=f"batcher-{self.name}-{i}") for i in range(self.instances)]

    def check_capacity(self) -> None:
        """Refuse early (before a body is read and parsed) when the queue is already full."""
        if len(self._pending) >= self.max_queue_size:
            raise ServiceUnavailable(f"model {self.name!r} queue is full ({self.max_queue_size} requests); retry later")

    def submit(self, feeds: dict[str, np.ndarray], rows: int) -> asyncio.Future:
        """Enqueue synchronously (no await before the item is queued: a concurrent reload cannot
        slip in between resolving the model and queueing on it). Await the returned future."""
        if self._closing or not self._workers:
            raise ServiceUnavailable(f"model {self.name!r} is unloading")
        self.check_capacity()
        if self.batching and rows > self.max_batch_size:
            raise BadRequest(f"batch size {rows} exceeds the model's max_batch_size {self.max_batch_size}")
        future = asyncio.get_running_loop().create_future()
        self._pending.append(_Item(feeds, rows, _signature(feeds, self.pad_inputs), future))
        self._wakeup.set()
        return future

    async def infer(self, feeds: dict[str, np.ndarray], rows: int) -> tuple[dict[str, np.ndarray], BatchStats]:
        """Queue and wait (the batcher's own tests use this; the server goes through ModelVersion.infer)."""
        return await self.submit(feeds, rows)

    async def close(self, timeout_s: float = 30.0) -> None:
        """Stop taking requests, finish the queued ones, release the thread."""
        self._closing = True
        if self._workers:
            self._wakeup.set()
            done, pending = await asyncio.wait(self._workers, timeout=timeout_s)
            for worker in pending:
                worker.cancel()
            for item in self._pending:
                if not item.future.done():
                    item.future.set_exception(ServiceUnavailable(f"model {self.name!r} was unloaded"))
            self._pending.clear()
        self._threads.shutdown()

    async def _work(self) -> None:
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = await self._collect()
            batch = [item for item in batch if not item.future.cancelled()]
            if not batch:
                continue
            failure = await self._run(batch)
            if failure is not None and len(batch) > 1:
                # One request's values can fail a merged run (a token id past the vocabulary, say): run each
                # alone, so only the request that caused it gets the error and the others their answers.
                for item in batch:
                    if not item.future.done():
                        await self._run([item])
            elif failure is not None:
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(failure)

    async def _run(self, batch: list[_Item]) -> Exception | None:
        """Run one batch and hand every item its rows; on failure, the error to give them (a lone item gets it
        here and now)."""
        started = time.perf_counter()
        solo = False
        batch_rows = sum(item.rows for item in batch)
        try:
            feeds = self._merge(batch)
            # Solo: nothing in flight anywhere in the server and nobody else waiting here (queued requests
            # will want the other instance). Only then may the batch take every core.
            solo = self._tracker.begin(self._solo_runner is not None and not self._pending)
            self._in_flight_rows += batch_rows
            try:
                outputs = await self._threads.run(self._solo_runner if solo else self._runner, feeds)
            finally:
                self._tracker.end()
                self._in_flight_rows -= batch_rows
        except Exception as exc:  # the model raised: fail this batch only, keep serving
            log.error("inference failed: %s: %s", type(exc).__name__, exc, extra={"model": self.name})
            error = run_error(self.name, exc)
            if len(batch) == 1 and not batch[0].future.done():
                batch[0].future.set_exception(error)
            return error
        self._split(batch, outputs, started, time.perf_counter(), solo)
        return None

    def _share(self) -> int:
        """Rows one run may take: with several instances, an even share (rounded up) of the rows queued and
        running here, so one single-threaded instance does not take a whole crowd while another core idles
        (say, after a short solo run): the peers run had 31 requests on one thread behind one on the solo session.
        Not with a queue delay: that policy asks for full batches."""
        if self.instances < 2 or self.max_delay_s > 0:
            return self.max_batch_size
        queued = sum(item.rows for item in self._pending)
        return max(1, min(self.max_batch_size, -(-(queued + self._in_flight_rows) // self.instances)))

    async def _collect(self) -> list[_Item]:
        limit = self._share() if self.batching else 0
        if self.buckets:  # never merge past the largest warmed shape
            limit = min(limit, self.buckets[-1])
        first = self._pending.popleft()
        batch = [first]
        if not self.batching:
            return batch
        rows = first.rows
        deadline = first.enqueued + self.max_delay_s
        while rows < limit:
            taken = self._take_compatible(first.signature, limit - rows)
            for item in taken:
                batch.append(item)
                rows += item.rows
            remaining = deadline - time.perf_counter()
            if rows >= limit or remaining <= 0 or self._closing:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                # One last sweep: items may have arrived exactly at the deadline.
                for item in self._take_compatible(first.signature, limit - rows):
                    batch.append(item)
                    rows += item.rows
                break
        return batch

    def _take_compatible(self, signature: tuple, room: int) -> list[_Item]:
        taken, kept = [], collections.deque()
        while self._pending:
            item = self._pending.popleft()
            if item.signature == signature and item.rows <= room and not item.future.cancelled():
                taken.append(item)
                room -= item.rows
            elif not item.future.cancelled():
                kept.append(item)
        self._pending = kept
        return taken

    def _merge(self, batch: list[_Item]) -> dict[str, np.ndarray]:
        if len(batch) == 1:
            return batch[0].feeds
        merged = {}
        for name in batch[0].feeds:
            arrays = [item.feeds[name] for item in batch]
            if name in self.pad_inputs:
                length = max(array.shape[1] for array in arrays)
                arrays = [_pad_to(array, length, self.pad_inputs[name]) for array in arrays]
            merged[name] = np.concatenate(arrays, axis=0)
        return merged

    def _split(self, batch: list[_Item], outputs: dict[str, np.ndarray], started: float, finished: float,
               solo: bool = False) -> None:
        total_rows = sum(item.rows for item in batch)
        offset = 0
        for index, item in enumerate(batch):
            if len(batch) == 1:
                own = outputs
            else:
                own = {
                    name: value[offset : offset + item.rows]
                    if value.ndim > 0 and value.shape[0] == total_rows
                    else value
                    for name, value in outputs.items()
                }
            offset += item.rows
            stats = BatchStats(queue_s=started - item.enqueued, compute_s=finished - started, batch_size=total_rows,
                               leader=index == 0, solo=solo)
            if not item.future.done():
                item.future.set_result((own, stats))
