"""The decode-step scheduler: continuous batching of every running request's steps, on its own thread.

One engine per model version. Requests (``Job``) wait in a bounded queue; each scheduling round the
engine thread

1. drops the rows of requests whose client went away (``Job.cancel``),
2. admits waiting requests while the decode batch has room for their rows (beams and choices count
   one row each) and within a prompt-token budget, so a burst of long prompts cannot stall the
   requests already decoding: translation runs the encoder once over every admitted source; chat
   prefills every admitted prompt in one left-padded run,
3. runs ONE decoder step for every row of every running request together (``Rows``: left-padded
   key/value caches with an attention mask), and lets each request's strategy pick its next tokens,
   reorder its beams or finish.

So a long answer never holds the others back: requests join and leave the batch between steps. The
blocking ONNX Runtime calls happen here, never on the event loop; results go back through each job's
sink (``AsyncEvents`` hands them to asyncio, ``BlockingEvents`` to a thread).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from service.errors import BadRequest, InferenceFailed, ServiceUnavailable
from service.generation.batch import Rows, positions_from_mask
from service.generation.decoding import Event, Sink, Strategy
from service.generation.device import CrossPool, DeviceCache, to_host
from service.threads import mailbox_for

log = logging.getLogger("neuroserve.generation")

Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass
class Job:
    """One request's work: the source (translation) or the prompt (chat), and how to decode it."""

    strategy: Strategy
    sink: Sink
    tokens: list[int]  # translation: source ids; chat: the whole prompt (bos ... assistant role)
    start_id: int | None = None  # translation: the decoder's first token (bos); chat: None
    cancelled: bool = False
    enqueued: float = field(default_factory=time.perf_counter)
    admitted: float | None = None
    ended: float | None = None

    def cancel(self) -> None:
        """Free this job's rows at the next round (safe from any thread)."""
        self.cancelled = True

    @property
    def rows(self) -> int:
        return self.strategy.rows


@dataclass
class _Running:
    job: Job
    rows: int
    cross: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # this source's K, V [L,1,H,S,dh] and mask [1,S]


class GenerationMetrics:
    """Prometheus series of one model (optional: tests and the benchmark run engines without)."""

    def __init__(self, metrics, model: str):
        self.rows = metrics.generation_rows.labels(model=model)
        self.waiting = metrics.generation_waiting.labels(model=model)
        self.tokens = metrics.generated_tokens.labels(model=model)
        self.step_rows = metrics.generation_step_rows.labels(model=model)
        self._finished = metrics.generation_finished
        self.model = model

    def finished(self, reason: str) -> None:
        self._finished.labels(model=self.model, reason=reason).inc()


class Engine:
    def __init__(self, name: str, decoder: Runner, *, cache_shape: tuple[int, int, int], pad_id: int = 0,
                 encoder: Runner | None = None, max_rows: int = 64, max_waiting: int = 256,
                 prefill_tokens: int = 2048, metrics: GenerationMetrics | None = None, tracker=None,
                 device: DeviceCache | None = None):
        self.name = name
        self.decoder, self.encoder = decoder, encoder
        # the KV caches on the device between steps (IO binding; service.generation.device)
        self.device = device
        self._host_decoder = decoder
        self._pool: CrossPool | None = None  # translation with the caches on the device: the encoder outputs there
        if self.device is not None:
            self.decoder = self.device.decode
            self._pool = CrossPool(self.device) if encoder is not None else None
        self.cache_shape = cache_shape  # (layers, heads, head_dim)
        self.pad_id = pad_id
        self.max_rows, self.max_waiting = max_rows, max_waiting
        self.prefill_tokens = prefill_tokens
        self.metrics = metrics
        # the server's RunTracker (service.batching): one run in flight while any row decodes, so that a lone request
        # of another model does not take the solo session (every core) while this thread keeps a core busy
        self._tracker = tracker
        self._tracked = False
        self._cond = threading.Condition()
        self._waiting: collections.deque[Job] = collections.deque()
        self._running: list[_Running] = []
        self._rows: Rows | None = None
        self._cross: dict[str, np.ndarray] = {}
        self._cross_layout: tuple = ()
        self._closing = False
        self._abort = False
        self._thread = threading.Thread(target=self._loop, name=f"decode-{name}", daemon=True)
        self.steps = 0  # decode steps run (tests, benchmark)

    # ----- the public side (any thread) -----
    def start(self) -> "Engine":
        self._thread.start()
        return self

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def active_rows(self) -> int:
        return sum(run.rows for run in self._running)

    def check_capacity(self) -> None:
        if self._closing:
            raise ServiceUnavailable(f"model {self.name!r} is unloading")
        if len(self._waiting) >= self.max_waiting:
            raise ServiceUnavailable(f"model {self.name!r} has {self.max_waiting} generation requests waiting; retry later")

    def submit(self, *jobs: Job) -> None:
        """Queue jobs (all or none); their events arrive through their sinks."""
        for job in jobs:
            if job.rows > self.max_rows:
                raise BadRequest(f"{job.rows} rows (beams or choices) exceed the decode batch of {self.max_rows}")
        with self._cond:
            self.check_capacity()
            if len(self._waiting) + len(jobs) > self.max_waiting:
                raise ServiceUnavailable(f"model {self.name!r} generation queue is full; retry later")
            self._waiting.extend(jobs)
            self._gauges()
            self._cond.notify()

    def close(self, timeout_s: float = 30.0) -> None:
        """Blocking: take no new jobs, let the queued and running ones finish within timeout_s, fail the rest."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        if self._thread.is_alive():
            with self._cond:
                self._abort = True
                self._cond.notify()
            self._thread.join()
        leftovers = list(self._waiting) + [run.job for run in self._running]
        self._waiting.clear()
        self._running.clear()
        for job in leftovers:
            self._fail(job, ServiceUnavailable(f"model {self.name!r} was unloaded"))

    # ----- the engine thread -----
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not (self._waiting or self._running or self._closing):
                    self._cond.wait()
                if self._abort or (self._closing and not self._waiting and not self._running):
                    self._track(False)
                    return
                for job in [j for j in self._waiting if j.cancelled]:
                    self._waiting.remove(job)
                    self._end(job, "cancelled")
                new = self._admissible()
            self._drop_cancelled()
            self._track(bool(new or self._running))
            if new:
                try:
                    self._admit(new)
                except Exception as exc:  # a model that fails at run time: these requests only
                    log.error("admission failed: %s: %s", type(exc).__name__, exc, extra={"model": self.name})
                    self._leave_device()
                    for job in new:
                        self._fail(job, InferenceFailed(f"model {self.name!r} failed at run time: {type(exc).__name__}: {exc}"))
            if self._running:
                try:
                    self._step()
                except Exception as exc:
                    log.error("decode step failed: %s: %s", type(exc).__name__, exc, extra={"model": self.name})
                    failed, self._running, self._rows = self._running, [], None
                    self._leave_device()
                    for run in failed:
                        self._fail(run.job, InferenceFailed(f"model {self.name!r} failed at run time: {type(exc).__name__}: {exc}"))
            self._gauges()
            self._track(bool(self._running or self._waiting))

    def _leave_device(self) -> None:
        """After a failure with the caches on the device: decode on the host path from now on (rows still running
        keep going, their caches brought to the host once)."""
        if self.device is None:
            return
        log.warning("decoding with the KV cache on the device failed: the host path serves from now on",
                    extra={"model": self.name})
        self.device, self.decoder, self._cross_layout, self._pool = None, self._host_decoder, (), None
        if self._rows is not None:
            rows = self._rows
            try:
                rows.past_key, rows.past_value, rows.device = to_host(rows.past_key), to_host(rows.past_value), None
            except Exception as exc:  # the device cannot even hand its caches back: those requests end here
                failed, self._running, self._rows = self._running, [], None
                for run in failed:
                    self._fail(run.job, InferenceFailed(f"model {self.name!r} failed at run time: {type(exc).__name__}: {exc}"))

    def _track(self, busy: bool) -> None:
        if self._tracker is None or busy == self._tracked:
            return
        if busy:
            self._tracker.begin(False)
        else:
            self._tracker.end()
        self._tracked = busy

    def _gauges(self) -> None:
        if self.metrics:
            self.metrics.rows.set(self.active_rows)
            self.metrics.waiting.set(len(self._waiting))

    def _end(self, job: Job, reason: str) -> None:
        job.ended = time.perf_counter()
        if self.metrics:
            self.metrics.finished(reason)

    def _fail(self, job: Job, error: BaseException) -> None:
        self._end(job, "error")
        job.sink(Event("error", error=error))

    def _drop_cancelled(self) -> None:
        if not any(run.job.cancelled for run in self._running):
            return
        keep, offset, still = [], 0, []
        for run in self._running:
            if run.job.cancelled:
                self._end(run.job, "cancelled")
            else:
                keep.append(np.arange(offset, offset + run.rows))
                still.append(run)
            offset += run.rows
        self._running = still
        self._rows = self._rows.take(np.concatenate(keep)) if still else None

    def _admissible(self) -> list[Job]:
        room = self.max_rows - self.active_rows
        budget = self.prefill_tokens
        taken: list[Job] = []
        while self._waiting:
            job = self._waiting[0]
            cost = len(job.tokens)
            if job.rows > room or (taken and cost > budget):
                break
            taken.append(self._waiting.popleft())
            room -= job.rows
            budget -= cost
        return taken

    def _admit(self, jobs: list[Job]) -> None:
        now = time.perf_counter()
        if self.encoder is not None:
            runs, rows = self._encode(jobs), self._fresh(jobs)
        else:
            runs, rows = [_Running(job, job.rows) for job in jobs], self._prefill(jobs)
        merged = rows if self._rows is None else Rows.concat([self._rows, rows])  # first: should it fail, nothing changed
        for job in jobs:
            job.admitted = now
        self._running.extend(runs)
        self._rows = merged

    def _encode(self, jobs: list[Job]) -> list[_Running]:
        lengths = [len(job.tokens) for job in jobs]
        src = np.full((len(jobs), max(lengths)), self.pad_id, np.int64)
        for i, job in enumerate(jobs):
            src[i, : lengths[i]] = job.tokens
        out = self.encoder({"src_ids": src})
        key, value, mask = out["cross_key"], out["cross_value"], out["encoder_attention_mask"]
        if self._pool is not None:
            self._pool.add(jobs, key, value, lengths)
        return [_Running(job, job.rows, (key[:, i:i + 1, :, :n], value[:, i:i + 1, :, :n], mask[i:i + 1, :n]))
                for i, (job, n) in enumerate(zip(jobs, lengths))]

    def _fresh(self, jobs: list[Job]) -> Rows:
        starts = np.concatenate([np.full(job.rows, job.start_id, np.int64) for job in jobs])
        return Rows.fresh(starts, self.cache_shape, self.device)

    def _prefill(self, jobs: list[Job]) -> Rows:
        """Every prompt but its last token goes in at once (left-padded); the last is the first step's input."""
        contexts = [job.tokens[:-1] for job in jobs]
        width = max(len(c) for c in contexts)
        ids = np.full((len(jobs), width), self.pad_id, np.int64)
        mask = np.zeros((len(jobs), width), np.int64)
        for i, context in enumerate(contexts):
            if context:
                ids[i, width - len(context):] = context
                mask[i, width - len(context):] = 1
        last = np.array([job.tokens[-1] for job in jobs], np.int64)
        positions = np.array([len(c) for c in contexts], np.int64)
        key = value = np.zeros((self.cache_shape[0], len(jobs), self.cache_shape[1], 0, self.cache_shape[2]), np.float32)
        if width:
            out = self.decoder({"input_ids": ids, "position_ids": positions_from_mask(mask), "attention_mask": mask,
                                "past_key": key, "past_value": value})
            key, value = out["present_key"], out["present_value"]
        rows = Rows(ids, mask, key, value, last, positions, self.device)
        return rows.take(np.repeat(np.arange(len(jobs)), [job.rows for job in jobs]))

    def _cross_feeds(self) -> dict[str, np.ndarray]:
        layout = tuple((id(run.job), run.rows) for run in self._running)
        if layout != self._cross_layout and self._pool is not None:
            # on the device: gathered from the encoder outputs kept there; only the mask (int64 per column) is built here
            length = max(run.cross[2].shape[1] for run in self._running)
            mask = np.zeros((sum(run.rows for run in self._running), length), self._running[0].cross[2].dtype)
            row = 0
            for run in self._running:
                run_mask = run.cross[2]
                mask[row:row + run.rows, :run_mask.shape[1]] = run_mask
                row += run.rows
            key, value = self._pool.batch(self._running)
            self._cross = {"cross_key": key, "cross_value": value, "encoder_attention_mask": self.device.upload(mask)}
            self._cross_layout = layout
        elif layout != self._cross_layout:
            # Rebuilt whenever a request joins or leaves: each source's K, V and mask written once per row of
            # its job into arrays padded to the longest source (one allocation each, no pad/repeat/concat copies)
            length = max(run.cross[0].shape[3] for run in self._running)
            total = sum(run.rows for run in self._running)
            key0, _, mask0 = self._running[0].cross
            layers, _, heads, _, head_dim = key0.shape
            key = np.zeros((layers, total, heads, length, head_dim), key0.dtype)
            value = np.zeros_like(key)
            mask = np.zeros((total, length), mask0.dtype)
            row = 0
            for run in self._running:
                run_key, run_value, run_mask = run.cross
                source, end = run_key.shape[3], row + run.rows
                key[:, row:end, :, :source] = run_key
                value[:, row:end, :, :source] = run_value
                mask[row:end, :source] = run_mask
                row = end
            self._cross = {"cross_key": key, "cross_value": value, "encoder_attention_mask": mask}
            self._cross_layout = layout
        return self._cross

    def _step(self) -> None:
        rows = self._rows
        feeds = rows.feeds()
        if self.encoder is not None:
            feeds.update(self._cross_feeds())
        out = self.decoder(feeds)
        self.steps += 1
        if self.metrics:
            self.metrics.tokens.inc(rows.size)
            self.metrics.step_rows.observe(rows.size)
        logits = out["logits"]
        grown = rows.advanced(out["present_key"], out["present_value"])
        keep, next_ids, still, offset = [], [], [], 0
        for run in self._running:
            block = logits[offset:offset + run.rows]
            # read once: a client may cancel from another thread during this step, and a run kept for the
            # next round must not also be counted as ended here (it is dropped, and counted, next round)
            cancelled = run.job.cancelled
            try:
                kept, tokens = (np.zeros(0, np.int64),) * 2 if cancelled else run.job.strategy.advance(block)
            except Exception as exc:  # a bug in one request's decoding must not take the others down
                log.exception("decoding failed", extra={"model": self.name})
                self._fail(run.job, InferenceFailed(f"decoding failed: {type(exc).__name__}: {exc}"))
                kept, tokens = np.zeros(0, np.int64), np.zeros(0, np.int64)
            else:
                if cancelled:
                    self._end(run.job, "cancelled")
                elif not kept.size:
                    self._end(run.job, "done")
                    run.job.sink(Event("done"))
            keep.append(kept + offset)
            next_ids.append(tokens)
            offset += run.rows
            if kept.size:
                run.rows = int(kept.size)
                still.append(run)
        self._running = still
        if not still:
            self._rows = None
            return
        index = np.concatenate(keep)
        if index.size != rows.size or (index != np.arange(rows.size)).any():
            grown = grown.take(index)
        grown.next_ids = np.concatenate(next_ids).astype(np.int64)
        self._rows = grown


# ----- consumers -----

class AsyncEvents:
    """Events of one or more jobs, delivered on the event loop; each item is (tag, Event)."""

    def __init__(self) -> None:
        self._mailbox = mailbox_for(asyncio.get_running_loop())
        self._queue: asyncio.Queue = asyncio.Queue()

    def sink(self, tag: Any = 0) -> Sink:
        def put(event: Event) -> None:
            self._mailbox.post(self._queue.put_nowait, (tag, event))
        return put

    async def get(self) -> tuple[Any, Event]:
        return await self._queue.get()


class BlockingEvents:
    """The same for a thread (warm-up, the benchmark, tests)."""

    def __init__(self) -> None:
        self._queue: queue.Queue = queue.Queue()

    def sink(self, tag: Any = 0) -> Sink:
        return lambda event: self._queue.put((tag, event))

    def get(self, timeout_s: float | None = None) -> tuple[Any, Event]:
        return self._queue.get(timeout=timeout_s)


class Collected:
    """Finish events of jobs tagged 0..n-1, until each one is done; a job's error is raised."""

    def __init__(self, jobs: list[Job]):
        self.jobs = jobs
        self.finished: list[list[Event]] = [[] for _ in jobs]
        self.pending = set(range(len(jobs)))

    def add(self, tag: int, event: Event) -> None:
        if event.kind == "finish":
            self.finished[tag].append(event)
        elif event.kind == "done":
            self.pending.discard(tag)
        elif event.kind == "error":
            raise event.error

    def abandon(self) -> None:
        cancel_unfinished(self.jobs)


def cancel_unfinished(jobs: list[Job]) -> None:
    """Free the rows of jobs still running (a wait that ended early: an error, a timeout, a client gone)."""
    for job in jobs:
        if job.ended is None:
            job.cancel()


def collect_blocking(engine: Engine, events: BlockingEvents, jobs: list[Job], timeout_s: float = 60.0) -> list[list[Event]]:
    """Submit jobs whose sinks feed `events` (tagged 0..n-1) and wait until every one is done: each
    job's finish events, in job order."""
    engine.submit(*jobs)
    collected = Collected(jobs)
    deadline = time.monotonic() + timeout_s
    try:
        while collected.pending:
            collected.add(*events.get(max(0.0, deadline - time.monotonic())))
    except queue.Empty:
        raise ServiceUnavailable(f"generation did not finish within {timeout_s:g} s") from None
    finally:
        collected.abandon()
    return collected.finished


async def collect(jobs: list[Job], events: AsyncEvents) -> list[list[Event]]:
    """The same for already submitted jobs, on the event loop; cancelling the wait cancels the jobs."""
    collected = Collected(jobs)
    try:
        while collected.pending:
            collected.add(*await events.get())
    finally:
        collected.abandon()
    return collected.finished
