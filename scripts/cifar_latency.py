"""CPU latency of candidate CIFAR graphs at one image, as the export would serve them (random weights).

    python scripts/cifar_latency.py [--runs 200] [--rounds 4] [--out table.json]

Each candidate (architecture x ensemble size x test-time augmentation) is exported the way
``neuroserve-train export cifar10 --fp16-weights --tta N [--ensemble ...]`` writes it (uint8 NHWC in,
normalisation, TTA and softmax in the graph, weights stored as fp16), then timed with onnxruntime on the CPU,
2 intra-op threads, batch 1. The committed models/cifar10-resnet graph is timed in the same rounds as the
reference: the machine is shared and noisy, so each candidate is reported as the median over ``rounds`` rounds
(each the median of ``runs`` runs), round-robin across candidates, and as a ratio to the reference in the
same round.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.exporters.cifar10 import LogitEnsemble, TTAClassifier  # noqa: E402
from training.nets import count_parameters  # noqa: E402
from training.nets.airbench import AirbenchNet  # noqa: E402
from training.onnx_export import export_onnx, ort_session, random_images, round_weights_to_fp16, store_weights_fp16  # noqa: E402

CANDIDATES = [  # name, widths, depth, members, tta
    ("94x1-tta1", (64, 256, 256), 2, 1, 1),
    ("94x2-tta1 (served today)", (64, 256, 256), 2, 2, 1),
    ("95x1-tta0", (128, 384, 384), 2, 1, 0),
    ("95x1-tta1", (128, 384, 384), 2, 1, 1),
    ("95x1-tta2", (128, 384, 384), 2, 1, 2),
    ("95x2-tta1", (128, 384, 384), 2, 2, 1),
    ("95d3x1-tta1", (128, 384, 384), 3, 1, 1),
    ("96nx1-tta0", (96, 288, 384), 3, 1, 0),
    ("96nx1-tta1", (96, 288, 384), 3, 1, 1),
    ("96nx2-tta1", (96, 288, 384), 3, 2, 1),
    ("96x1-tta0", (128, 384, 512), 3, 1, 0),
    ("96x1-tta1", (128, 384, 512), 3, 1, 1),
    ("96x2-tta0", (128, 384, 512), 3, 2, 0),
    ("96x2-tta1", (128, 384, 512), 3, 2, 1),
]
REFERENCE = Path(__file__).resolve().parent.parent / "models" / "cifar10-resnet" / "1" / "model.onnx"


def build(widths, depth, members, tta, path: Path) -> int:
    torch.manual_seed(0)
    nets = [AirbenchNet(widths, depth=depth).eval() for _ in range(members)]
    net = nets[0] if members == 1 else LogitEnsemble(nets).eval()
    round_weights_to_fp16(net)
    export_onnx(TTAClassifier(net, tta).eval(), torch.from_numpy(random_images((32, 32, 3))(2)), path, "images",
                ["probabilities"])
    store_weights_fp16(path)
    return count_parameters(net)


def time_once(sess, x: np.ndarray, runs: int) -> float:
    for _ in range(10):
        sess.run(None, {"images": x})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {"images": x})
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out")
    ap.add_argument("--only", nargs="*", help="candidate names (prefixes) to time")
    args = ap.parse_args()
    torch.set_num_threads(2)
    tmp = Path(tempfile.mkdtemp())
    graphs = {"reference: models/cifar10-resnet": (REFERENCE, None)}
    for name, widths, depth, members, tta in CANDIDATES:
        if args.only and not any(name.startswith(o) for o in args.only):
            continue
        path = tmp / f"{name.split()[0]}.onnx"
        params = build(widths, depth, members, tta, path)
        graphs[name] = (path, params)
    sessions = {name: ort_session(path, threads=2) for name, (path, _) in graphs.items()}
    x = random_images((32, 32, 3))(1)
    rounds: dict[str, list[float]] = {name: [] for name in graphs}
    ratios: dict[str, list[float]] = {name: [] for name in graphs}
    for _ in range(args.rounds):
        ref = time_once(sessions["reference: models/cifar10-resnet"], x, args.runs)
        for name, sess in sessions.items():
            ms = ref if name.startswith("reference") else time_once(sess, x, args.runs)
            rounds[name].append(ms)
            ratios[name].append(ms / ref)
    table = []
    for name, (path, params) in graphs.items():
        row = {"candidate": name, "params": params, "onnx_mb": round(path.stat().st_size / 1e6, 2),
               "batch1_ms_median": round(statistics.median(rounds[name]), 2),
               "ratio_to_reference": round(statistics.median(ratios[name]), 2),
               "rounds_ms": [round(v, 2) for v in rounds[name]]}
        table.append(row)
        print(f"{name:<34} params {params or '-':>10} onnx {row['onnx_mb']:>6} MB  "
              f"{row['batch1_ms_median']:>7.2f} ms  x{row['ratio_to_reference']:.2f}  rounds {row['rounds_ms']}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(table, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
