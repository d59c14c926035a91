"""One server process against `--workers N`, side by side: light routes under hey, on the committed models.

    .venv/bin/python -m bench.workers_bench --workers 1 2 --seconds 8 --concurrency 32 --rounds 2

Rounds alternate the worker counts (1, 2, 1, 2, ...) so a neighbour's load on a shared machine hits each
about equally; the table keeps every round. Loopback only; each run is bounded by --seconds.
Routes: /v1/text/sentiment (sentiment-gru, one short text) and binary OIP infer on cifar10-small (one image).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from bench.common import ROOT, cpu_name, markdown_table, neuroserve, run_hey

MODELS = "sentiment-gru,cifar10-small"


def routes() -> list[tuple[str, str, bytes, dict, str]]:
    """(name, path, body, headers, content type) of each light route."""
    image = np.random.default_rng(0).integers(0, 255, (1, 32, 32, 3), dtype=np.uint8)
    header = json.dumps({"inputs": [{"name": "images", "shape": list(image.shape), "datatype": "UINT8",
                                     "parameters": {"binary_data_size": image.nbytes}}],
                         "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]}).encode()
    return [
        ("sentiment", "/v1/text/sentiment", json.dumps({"texts": ["a warm, funny and moving film"]}).encode(), {},
         "application/json"),
        ("cifar10-small binary", "/v2/models/cifar10-small/infer", header + image.tobytes(),
         {"Inference-Header-Content-Length": str(len(header))}, "application/octet-stream"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each load run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[32])
    parser.add_argument("--rounds", type=int, default=2, help="passes over the worker counts, alternating")
    parser.add_argument("--models", type=Path, default=ROOT / "models", help="model repository (default: models/)")
    args = parser.parse_args()

    results = []
    for _ in range(args.rounds):
        for workers in args.workers:
            server = neuroserve(args.models, {"NEUROSERVE_WORKERS": str(workers), "NEUROSERVE_LOAD_MODELS": MODELS})
            try:
                for name, path, body, headers, content_type in routes():
                    for concurrency in args.concurrency:
                        result = run_hey(f"{workers} worker{'s' if workers > 1 else ''}", name, server.url + path, body,
                                         concurrency, args.seconds, headers, content_type)
                        results.append(result)
                        print(f"workers={workers} {name} c={concurrency}: {result.rps:.0f} req/s, "
                              f"p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, errors {result.errors}", flush=True)
            finally:
                server.stop()
    print(f"\n{cpu_name()}, {os.cpu_count()} cores, {args.seconds:g} s per run\n")
    print(markdown_table(results))


if __name__ == "__main__":
    main()
