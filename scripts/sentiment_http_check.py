"""Check sentiment models through the real HTTP API: start a server with only the named models loaded, send every
SST-2 validation sentence (GLUE dev, 872) in batches of 32 to POST /v1/text/sentiment, and compare the served
accuracy with each card's figure.

    .venv/bin/python scripts/sentiment_http_check.py sentiment-lstm sentiment-gru [--data-dir ../shared/data]
        [--models models] [--out result.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def served(client: httpx.Client, model: str, texts: list[str], batch: int = 32) -> tuple[np.ndarray, float]:
    """P(positive) per text as served, and the share of texts flagged unusual by the OOD flag."""
    scores, unusual = [], []
    for i in range(0, len(texts), batch):
        r = client.post("/v1/text/sentiment", json={"texts": texts[i:i + batch], "model": model})
        r.raise_for_status()
        for res in r.json()["results"]:
            scores.append(res["score"])
            unusual.append(bool((res.get("ood") or {}).get("unusual")))
    return np.array(scores), float(np.mean(unusual))


def main() -> int:
    from bench.common import neuroserve
    from scripts.http_check_cli import http_check_parser
    from training.data import sentiment as data

    ap = http_check_parser()
    ap.add_argument("models_to_check", nargs="+", metavar="MODEL")
    args = ap.parse_args()
    _, val = data.load_splits(args.data_dir)

    server = neuroserve(args.models, {"NEUROSERVE_LOAD_MODELS": ",".join(args.models_to_check)})  # started, ready
    result: dict = {"n": len(val.texts)}
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            for name in args.models_to_check:
                p, unusual = served(client, name, val.texts)
                correct = int(((p >= 0.5).astype(np.int64) == val.y).sum())
                card = json.loads((args.models / name / "card.json").read_text())["metrics"]["accuracy"]
                result[name] = {"accuracy": correct / len(val.y), "correct": correct,
                                "card_accuracy": card["value"], "card_correct": card.get("k"),
                                "equal_to_card": correct == card.get("k"), "flagged_unusual": unusual}
    finally:
        server.stop()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if all(result[name]["equal_to_card"] for name in args.models_to_check) else 1


if __name__ == "__main__":
    raise SystemExit(main())
