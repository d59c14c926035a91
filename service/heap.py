"""Python's cyclic garbage collector while serving.

A full (generation 2) collection scans every tracked object in the process, the GIL held throughout,
stalling every request in flight. With the models, tokenizers and routes of a loaded server the longest
took 121 ms under the soak's load (``gc.callbacks``). After the models load, ``freeze_long_lived`` moves
everything alive to the permanent generation, so later passes scan only objects created while serving:
59 ms at most in the same soak. (Full passes are rare, a dozen in two minutes: they do not set a p99.)
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger("neuroserve.heap")


def freeze_long_lived() -> float:
    """Collect, then freeze every object alive now; returns the seconds it took.

    Objects an earlier call froze (a model since unloaded or replaced) are unfrozen first, so cyclic
    garbage among them is still collected: the pause is paid at load time, not per request."""
    started = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    seconds = time.perf_counter() - started
    log.info("froze %d long-lived objects in %.0f ms", gc.get_freeze_count(), seconds * 1000)
    return seconds


class PauseTimer:
    """Every collection's duration, by generation, into a histogram (``gc.callbacks``).

    deferred: keep the durations for `flush` instead of observing them in the callback. With several workers
    prometheus_client guards every metric of the process with one non-reentrant lock; a collection that starts
    while this thread holds it (any metric update allocates) would deadlock the worker in the callback."""

    def __init__(self, histogram, deferred: bool = False) -> None:
        self.histogram = histogram
        self.deferred = deferred
        self.pending: list[tuple[str, float]] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self.deferred:
            self.pending.append((str(info["generation"]), time.perf_counter() - self._started))
        else:
            self.histogram.labels(generation=str(info["generation"])).observe(time.perf_counter() - self._started)

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        for generation, seconds in pending:
            self.histogram.labels(generation=generation).observe(seconds)

    def install(self) -> "PauseTimer":
        gc.callbacks.append(self)
        return self

    def remove(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)
