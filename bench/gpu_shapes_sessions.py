"""One CUDA session for every batch bucket, or one session per bucket? (issue 14, measured on an H200)

    python -m bench.gpu_shapes_sessions models/cifar10-resnet/1/model.onnx     # on a GPU host (onnxruntime-gpu)

200 runs of random batch sizes 1-64 (seed 0), each padded to the smallest power-of-two bucket {1, 2, ..., 64}
that holds it, every bucket shape warmed twice first, in-process (no server). Five set-ups: one session with
cudnn_conv_algo_search HEURISTIC and arena_extend_strategy kSameAsRequested, HEURISTIC + kNextPowerOfTwo,
DEFAULT + kNextPowerOfTwo, then one session per bucket with HEURISTIC + kSameAsRequested and + kNextPowerOfTwo.
Prints images/s and ms per run for each. The CUDA provider keeps its convolution state per session and re-plans
when a session's input shape changes (it logs "OP Conv(...) running in Fallback mode" on each switch), so one
session switching between warmed buckets stays slow; a session per bucket meets one shape only. This is the
script behind the figures in docs/benchmarks.md ("On a GPU"), .devx/shapes.py of the 2026-12-04 run made
runnable from the checkout (same sizes, buckets, options and order).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import onnxruntime as ort

BUCKETS = [1, 2, 4, 8, 16, 32, 64]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="an image model whose first input is (batch, H, W, C) uint8, e.g. cifar10-resnet")
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, BUCKETS[-1] + 1, args.runs)
    padded = [next(b for b in BUCKETS if b >= s) for s in sizes]

    def session(options: dict) -> ort.InferenceSession:
        return ort.InferenceSession(args.model, ort.SessionOptions(),
                                    providers=[("CUDAExecutionProvider", options), "CPUExecutionProvider"])

    probe = None

    def bench(label: str, pick) -> None:
        nonlocal probe
        if probe is None:
            probe = pick(1).get_inputs()[0]
            print(f"{args.model} on {pick(1).get_providers()[0]}: {len(padded)} runs, {int(sum(sizes))} images, "
                  f"{int(sum(padded) - sum(sizes))} padding rows", flush=True)
        shape = [d if isinstance(d, int) else 1 for d in probe.shape[1:]]
        for b in BUCKETS:  # every shape warmed before the clock starts
            for _ in range(2):
                pick(b).run(None, {probe.name: np.zeros((b, *shape), np.uint8)})
        started, images = time.perf_counter(), 0
        for b in padded:
            pick(b).run(None, {probe.name: rng.integers(0, 255, (b, *shape), dtype=np.uint8)})
            images += b
        took = time.perf_counter() - started
        print(f"{label}: {images / took:,.0f} images/s, {took / len(padded) * 1000:.2f} ms/run", flush=True)

    heuristic = {"cudnn_conv_algo_search": "HEURISTIC"}
    for label, options in [
        ("one session HEURISTIC kSameAsRequested", {**heuristic, "arena_extend_strategy": "kSameAsRequested"}),
        ("one session HEURISTIC kNextPowerOfTwo", {**heuristic, "arena_extend_strategy": "kNextPowerOfTwo"}),
        ("one session DEFAULT kNextPowerOfTwo", {"cudnn_conv_algo_search": "DEFAULT",
                                                 "arena_extend_strategy": "kNextPowerOfTwo"}),
    ]:
        shared = session(options)
        bench(label, lambda b, s=shared: s)
    for arena in ("kSameAsRequested", "kNextPowerOfTwo"):
        per_bucket = {b: session({**heuristic, "arena_extend_strategy": arena}) for b in BUCKETS}
        bench(f"session per bucket HEURISTIC {arena}", lambda b, s=per_bucket: s[b])


if __name__ == "__main__":
    main()
