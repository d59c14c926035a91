"""Prometheus collectors, one registry per app (so tests can build several apps).

With several worker processes (`neuroserve serve --workers N`, service/workers.py) prometheus_client runs in
its multiprocess mode: PROMETHEUS_MULTIPROC_DIR is set before this module is imported, every process writes
its values to files there, and /metrics sums them (`exposition`). A Gauge then needs a `multiprocess_mode`
saying how the workers' values combine: "livesum" for amounts (requests in flight, rows decoding), "livemin" or
"livemax" for states; without one, /metrics shows each worker's value with a `pid` label. One process: the
modes change nothing.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "neuroserve_requests", "HTTP requests by model, route and status", ["model", "route", "status"], registry=r
        )
        self.request_latency = Histogram(
            "neuroserve_request_duration_seconds", "Whole request time by route", ["route"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.queue_latency = Histogram(
            "neuroserve_queue_duration_seconds", "Time a request waited in its model's batch queue", ["model"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.compute_latency = Histogram(
            "neuroserve_compute_duration_seconds", "session.run time of the batch a request rode in", ["model"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.batch_size = Histogram(
            "neuroserve_batch_size", "Rows per session.run", ["model"], buckets=BATCH_BUCKETS, registry=r
        )
        self.in_flight = Gauge("neuroserve_in_flight_requests", "Requests being handled now", registry=r,
                               multiprocess_mode="livesum")
        self.load_failures = Counter(
            "neuroserve_model_load_failures", "Model loads that failed", ["model"], registry=r
        )
        self.gc_pause = Histogram(
            "neuroserve_gc_pause_seconds", "Python garbage-collector passes (every thread waits), by generation",
            ["generation"], buckets=LATENCY_BUCKETS, registry=r,
        )
        # several workers: the fewest any live worker has ready
        self.models_ready = Gauge("neuroserve_models_ready", "Models in READY state", registry=r, multiprocess_mode="livemin")
        # provider truth (service/runtime.py): what each loaded version's session really runs on
        self.model_provider = Gauge("neuroserve_model_provider", "1 for the execution provider a loaded model version runs on",
                                    ["model", "version", "provider"], registry=r, multiprocess_mode="livemax")
        self.model_provider_fallback = Gauge(
            "neuroserve_model_provider_fallback", "1 when a model version asked for CUDA (providers=auto) and runs on the CPU",
            ["model", "version"], registry=r, multiprocess_mode="livemax")
        # generation (translation, chat): the decode-step scheduler of each model
        self.generation_rows = Gauge("neuroserve_generation_rows", "Rows being decoded now (beams and choices count one each)",
                                     ["model"], registry=r, multiprocess_mode="livesum")
        self.generation_waiting = Gauge("neuroserve_generation_waiting", "Generation requests waiting for room in the decode batch",
                                        ["model"], registry=r, multiprocess_mode="livesum")
        self.generated_tokens = Counter("neuroserve_generated_tokens", "Tokens generated (every row of every step)",
                                        ["model"], registry=r)
        self.generation_step_rows = Histogram("neuroserve_generation_step_rows", "Rows per decode step (steps batched across requests)",
                                              ["model"], buckets=BATCH_BUCKETS, registry=r)
        self.generation_finished = Counter("neuroserve_generation_finished", "Generation requests ended, by how (done, cancelled, error)",
                                           ["model", "reason"], registry=r)
        # out-of-distribution flags (service/ood.py): the rolling share is the drift signal; the counters let
        # Prometheus rate them (and sum them across workers, where each worker keeps its own window)
        self.ood_unusual_share = Gauge("neuroserve_ood_unusual_share",
                                       "Share of unusual inputs among the model's last scored ones (the manifest's ood.window)",
                                       ["model"], registry=r, multiprocess_mode="livemax")
        self.ood_inputs = Counter("neuroserve_ood_inputs", "Inputs given an OOD score", ["model"], registry=r)
        self.ood_unusual = Counter("neuroserve_ood_unusual", "Inputs flagged unusual (OOD score >= threshold)",
                                   ["model"], registry=r)

    def observe_ood(self, model: str, share: float, unusual: int, scored: int) -> None:
        self.ood_unusual_share.labels(model=model).set(share)
        self.ood_inputs.labels(model=model).inc(scored)
        if unusual:
            self.ood_unusual.labels(model=model).inc(unusual)

    def exposition(self) -> tuple[bytes, str]:
        """The /metrics body and its content type: this registry, or with several workers every worker's values."""
        shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not shared:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=shared)
        return generate_latest(registry), CONTENT_TYPE_LATEST

    def observe_inference(self, model: str, stats) -> None:
        """Queue and compute time per request; batch size once per batch (its leader reports it)."""
        self.queue_latency.labels(model=model).observe(stats.queue_s)
        self.compute_latency.labels(model=model).observe(stats.compute_s)
        if stats.leader:
            self.batch_size.labels(model=model).observe(stats.batch_size)
