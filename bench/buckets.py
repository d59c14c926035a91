"""Do batch buckets pay? One ONNX Runtime session, random batch sizes 1..64 run as they come and padded to the
power-of-two buckets (each warmed first, padding rows copied from the last row as service/batching.py does).

    .venv/bin/python -m bench.buckets models/cifar10-small/1/model.onnx [--runs 200] [--passes 3] [--providers cpu]
    python -m bench.buckets MODEL.onnx --providers cuda      # on a GPU host: one CUDA session, the server's options

Prints images/s for both (best of --passes) and how many rows were padding. On the CPU there is nothing to
re-plan, so padding only adds rows (docs/deployment.md, "Serving on a GPU", has the figures); on CUDA the
same session meets only warmed shapes.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import onnxruntime as ort

from service.batching import BucketRunner
from service.manifest import Batching
from service.runtime import resolve_providers
from service.settings import Settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--providers", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads (one server instance: 1)")
    args = ap.parse_args()
    settings = Settings(providers=args.providers)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
    session = ort.InferenceSession(args.model, options, providers=resolve_providers(settings))
    probe = session.get_inputs()[0]
    dtype = {"tensor(uint8)": np.uint8, "tensor(float)": np.float32}[probe.type]
    rng = np.random.default_rng(0)
    data = rng.integers(0, 255, (args.max_batch, *probe.shape[1:])).astype(dtype)
    sizes = [int(n) for n in rng.integers(1, args.max_batch + 1, args.runs)]
    run = lambda feeds: dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    buckets = Batching(max_batch_size=args.max_batch).bucket_sizes()
    bucketed = BucketRunner(run, buckets)
    for size in buckets:  # warm every shape both ways will meet at bucket sizes
        for _ in range(2):
            run({probe.name: data[:size]})

    def images_per_s(runner) -> int:
        best = 0.0
        for _ in range(args.passes):
            started = time.perf_counter()
            for n in sizes:
                runner({probe.name: data[:n]})
            best = max(best, sum(sizes) / (time.perf_counter() - started))
        return int(best)

    padding = sum(bucketed.bucket(n) - n for n in sizes)
    print(f"{args.model} on {session.get_providers()[0]}: {args.runs} runs, {sum(sizes)} images, {padding} padding rows")
    print(f"  as they come:      {images_per_s(run)} images/s")
    print(f"  padded to buckets: {images_per_s(bucketed)} images/s  {buckets}")


if __name__ == "__main__":
    main()
