"""Check cifar10-resnet (or --model cifar10-int8) through the real HTTP API: start a server with only that model loaded, send the
validation images of the card's split (the seeded 5,000 of train.npz) as base64 PNG to POST /v1/images/classify,
64 per request, and compare the served labels with the card's accuracy and with onnxruntime on the same file.

    .venv/bin/python scripts/cifar_http_check.py [--model cifar10-int8] [--data-dir ../shared/data] [--models models] [--out result.json]
"""

from __future__ import annotations

import base64
import io
import json
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
MODEL = "cifar10-resnet"


def png_b64(img: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(img, mode="RGB").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def main() -> int:
    from bench.common import neuroserve
    from scripts.http_check_cli import http_check_parser
    from training import metrics
    from training.data import cifar10 as data
    from training.onnx_export import ort_session

    ap = http_check_parser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--model", default=MODEL, help="cifar10-resnet or a variant measured on its split (cifar10-int8)")
    args = ap.parse_args()
    card = json.loads((args.models / args.model / "card.json").read_text())
    # a variant's card (cifar10-int8) has no training config: the split is cifar10-resnet's
    cfg = card.get("config") or json.loads((args.models / MODEL / "card.json").read_text())["config"]
    _, val = data.load_splits(args.data_dir, cfg["val_size"], cfg["split_seed"], None)
    labels = list(data.LABELS)
    sess = ort_session(args.models / args.model / "1" / "model.onnx")
    p_ort = np.concatenate([sess.run(["probabilities"], {"images": val.x[i:i + 500]})[0] for i in range(0, len(val.x), 500)])

    server = neuroserve(args.models, {"NEUROSERVE_LOAD_MODELS": args.model})  # started and ready
    result: dict = {"port": server.port, "n": int(len(val.y))}
    pred, scores, unusual = [], [], []
    t0 = time.time()
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            for i in range(0, len(val.x), args.batch):
                body = {"images": [png_b64(img) for img in val.x[i:i + args.batch]], "top_k": 1, "model": args.model}
                r = client.post("/v1/images/classify", json=body)
                r.raise_for_status()
                out = r.json()
                assert out["model"] == args.model
                for res in out["results"]:
                    pred.append(labels.index(res["label"]))
                    scores.append(res["score"])
                    if res.get("ood") is not None:
                        unusual.append(bool(res["ood"]["unusual"]))
    finally:
        server.stop()
    pred = np.array(pred)
    acc = metrics.accuracy_with_ci(pred, val.y)
    card_acc = card["metrics"]["accuracy"]
    result.update({
        "http_seconds": round(time.time() - t0, 1),
        "accuracy_http": acc,
        "accuracy_card": card_acc,
        "equals_card": bool(acc["k"] == card_acc["k"] and acc["n"] == card_acc["n"]),
        "labels_agree_with_onnxruntime": float((pred == p_ort.argmax(1)).mean()),
        "max_abs_score_diff_vs_onnxruntime": float(np.max(np.abs(np.array(scores) - p_ort.max(1)))),
        "unusual_share": float(np.mean(unusual)) if unusual else None,
    })
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0 if result["equals_card"] else 1


if __name__ == "__main__":
    sys.exit(main())
