"""Open Inference Protocol infer route vs its floor and a naive endpoint, side by side in one run.

    .venv/bin/python -m bench.oip_bench --seconds 8

Systems, same small CNN (uint8 [1,32,32,3] -> 10 probabilities), same machine, same load generator (hey):
- floor: session.run in-process, no HTTP (threads = concurrency)
- naive: FastAPI + pydantic, session.run per request, JSON (bench/naive_server.py)
- neuroserve: /v2/models/{m}/infer, JSON and binary tensors, dynamic batching
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bench.common import ROOT, cpu_name, markdown_table, neuroserve, run_hey, run_in_process, uvicorn_app
from tests.onnx_models import CIFAR_LABELS, small_cnn, write_model

MODEL = "bench-cnn"


def bodies(image: np.ndarray) -> tuple[bytes, bytes, dict]:
    json_body = json.dumps({"inputs": [{"name": "images", "shape": list(image.shape), "datatype": "UINT8",
                                        "data": image.reshape(-1).tolist()}]}).encode()
    header = json.dumps({"inputs": [{"name": "images", "shape": list(image.shape), "datatype": "UINT8",
                                     "parameters": {"binary_data_size": image.nbytes}}],
                         "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]}).encode()
    return json_body, header + image.tobytes(), {"Inference-Header-Content-Length": str(len(header))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each load run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "oip_bench.json")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="neuroserve-bench-"))
    # labels: image models are checked at load (one probability per label), so the fixture needs them
    write_model(workdir, MODEL, small_cnn(), task="image-classification", labels=CIFAR_LABELS,
                batching={"max_batch_size": 32, "max_queue_delay_ms": 0})
    model_path = workdir / MODEL / "1" / "model.onnx"
    image = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    json_body, binary_body, binary_headers = bodies(image)

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
    results = []
    for c in args.concurrency:
        results.append(run_in_process("floor (session.run)", lambda: session.run(None, {"images": image}), c, args.seconds))

    naive = uvicorn_app("bench.naive_server:app", env={"NAIVE_MODEL": str(model_path)})
    try:
        for c in args.concurrency:
            results.append(run_hey("naive FastAPI", "json", naive.url + "/infer", json_body, c, args.seconds))
    finally:
        naive.stop()

    server = neuroserve(workdir)
    url = f"{server.url}/v2/models/{MODEL}/infer"
    try:
        for c in args.concurrency:
            results.append(run_hey("neuroserve", "json", url, json_body, c, args.seconds))
            results.append(run_hey("neuroserve", "binary", url, binary_body, c, args.seconds, binary_headers,
                                   content_type="application/octet-stream"))
    finally:
        server.stop()

    naive_by_c = {r.concurrency: r for r in results if r.system == "naive FastAPI"}
    floor_by_c = {r.concurrency: r for r in results if r.system.startswith("floor")}
    print(f"\n{cpu_name()}, {os.cpu_count()} cores, "
          f"onnxruntime {ort.__version__}, {args.seconds:g} s per run, {time.strftime('%Y-%m-%d')}\n")
    print(markdown_table(results, naive_by_c, "naive"))
    print("\nAgainst the floor (session.run in-process):\n")
    print(markdown_table([r for r in results if r.system == "neuroserve"], floor_by_c, "floor"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps([r.row() for r in results], indent=2))


if __name__ == "__main__":
    main()
