"""Check tumor-cnn through the real HTTP API: start a server with only tumor-cnn loaded, send every image of the
official validation set and of tumor_external_val as a PNG to POST /v1/tumor/detect, and compare the served answers
with the card's figures (the same images scored by the exporter through onnxruntime).

    .venv/bin/python scripts/tumor_http_check.py [--data-dir ../shared/data] [--models models] [--out result.json]
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img[:, :, 0], mode="L").save(buf, format="PNG")
    return buf.getvalue()


def served(client: httpx.Client, x: np.ndarray, batch: int = 32) -> tuple[np.ndarray, np.ndarray, float]:
    probs, calls = [], []
    threshold = float("nan")
    for i in range(0, len(x), batch):
        files = [("images", (f"{j}.png", png(x[j]), "image/png")) for j in range(i, min(i + batch, len(x)))]
        r = client.post("/v1/tumor/detect", files=files)
        r.raise_for_status()
        for res in r.json()["results"]:
            probs.append(res["probability"])
            calls.append(res["tumor"])
            threshold = res["threshold"]
    return np.array(probs), np.array(calls), threshold


def main() -> int:
    from bench.common import neuroserve
    from scripts.http_check_cli import http_check_parser
    from training import metrics
    from training.data import tumor as data
    from training.onnx_export import ort_session

    ap = http_check_parser()
    args = ap.parse_args()
    _, val = data.load_splits(args.data_dir)
    ext = data.load_external(args.data_dir)
    sets = {"validation": val, **({"external": ext} if ext is not None else {})}
    card = json.loads((args.models / "tumor-cnn" / "card.json").read_text())
    sess = ort_session(args.models / "tumor-cnn" / "1" / "model.onnx")

    server = neuroserve(args.models, {"NEUROSERVE_LOAD_MODELS": "tumor-cnn"})  # started and ready
    result: dict = {"port": server.port}
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            listing = client.get("/v1/models").json()
            rows = listing.get("models", listing.get("data", [])) if isinstance(listing, dict) else listing
            result["models"] = [m.get("name", m.get("id")) if isinstance(m, dict) else m for m in rows]
            for name, s in sets.items():
                p_http, calls, thr = served(client, s.x)
                p_ort = np.concatenate([sess.run(None, {"images": s.x[i:i + 256]})[0] for i in range(0, len(s.x), 256)])
                rep = metrics.binary_report(s.y, p_http, thr)
                result[name] = {"n": int(len(s.y)), "threshold": thr, "auroc": metrics.auroc(s.y, p_http),
                                "sensitivity": rep["sensitivity"], "specificity": rep["specificity"],
                                "calls_agree_with_threshold": bool(np.all(calls == (p_http >= thr))),
                                "max_abs_diff_vs_onnxruntime": float(np.max(np.abs(p_http - p_ort)))}
    finally:
        server.stop()
    m = card["metrics"]
    card_fig = {"validation": (m["auroc"], m["at_threshold"])}
    if m.get("external"):
        card_fig["external"] = (m["external"]["auroc"], m["external"]["at_threshold"])
    for name, (auc, at) in card_fig.items():
        got = result[name]
        got["equals_card"] = bool(got["sensitivity"]["k"] == at["sensitivity"]["k"]
                                  and got["specificity"]["k"] == at["specificity"]["k"]
                                  and abs(got["auroc"] - auc) < 1e-4 and got["threshold"] == card["threshold"])
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0 if all(result[n]["equals_card"] for n in card_fig) else 1


if __name__ == "__main__":
    sys.exit(main())
