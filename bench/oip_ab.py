"""Two checkouts of Neuroserve side by side on the OIP infer route: is a change faster or slower?

    git worktree add /tmp/before <rev>
    .venv/bin/python -m bench.oip_ab --baseline /tmp/before --rounds 6 --seconds 4 --concurrency 1

Both servers run at once (this checkout and ``--baseline``, same venv, same fixture model as bench.oip_bench:
the small CNN, binary tensors, dynamic batching), and `hey` loads them in turn, alternating which goes first
each round, so slow drifts of the machine hit both. Prints each round's req/s ratio (this checkout / baseline)
and their median: the figure to quote. Needs `hey`.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.common import ROOT, free_port, run_hey, wait_ready
from bench.oip_bench import MODEL, bodies
from tests.onnx_models import CIFAR_LABELS, small_cnn, write_model


def start(tree: Path, models: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--models", str(models)],
                            cwd=tree, env={**os.environ, "PYTHONPATH": str(tree), "NEUROSERVE_LOG_LEVEL": "warning",
                                           "NEUROSERVE_GRPC_PORT": "0"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{port}/v2/health/ready", proc, 60, f"server from {tree}")
    except (RuntimeError, TimeoutError):
        proc.kill()
        raise
    return proc, f"http://127.0.0.1:{port}/v2/models/{MODEL}/infer"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True, help="another checkout (git worktree) to compare with")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()
    models = Path(tempfile.mkdtemp(prefix="neuroserve-ab-"))
    write_model(models, MODEL, small_cnn(), task="image-classification", labels=CIFAR_LABELS,
                batching={"max_batch_size": 32, "max_queue_delay_ms": 0})
    image = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    _, body, headers = bodies(image)
    servers = {"this": start(ROOT, models), "baseline": start(args.baseline.resolve(), models)}
    runs: dict[str, list] = {"this": [], "baseline": []}
    try:
        for round_index in range(args.rounds):
            for name in ("this", "baseline") if round_index % 2 == 0 else ("baseline", "this"):
                result = run_hey(name, "binary", servers[name][1], body, args.concurrency, args.seconds, headers,
                                 content_type="application/octet-stream")
                runs[name].append(result)
                print(f"round {round_index + 1} {name:8s} {result.rps:8.0f} req/s  p50 {result.p50_ms:.2f} ms  "
                      f"errors {result.errors}", flush=True)
    finally:
        for proc, _ in servers.values():
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    ratios = [t.rps / b.rps for t, b in zip(runs["this"], runs["baseline"]) if b.rps]
    print(f"this / baseline req/s by round: {', '.join(f'{r:.3f}' for r in ratios)}; "
          f"median {statistics.median(ratios):.3f}x")
    for name, results in runs.items():
        print(f"{name}: p50 ms median {statistics.median(r.p50_ms for r in results):.2f}")


if __name__ == "__main__":
    main()
