"""Explanations on real validation inputs: the pictures in docs/explanations.md and the measured cost.

    python -m scripts.explanation_examples pictures [--out docs/img]   # the docs' example pictures (matplotlib)
    python -m scripts.explanation_examples cost [--rounds 30]          # explain vs plain at batch 1, real server

Both ask the committed models (models/) through the server's own endpoints: `pictures` in process, `cost` a real
server process on a loopback port. The data is ../shared/data beside the clone (or NEUROSERVE_DATA_DIR); the
readers here are numpy and csv only, and tests/test_explain_faithfulness.py uses them too.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import statistics
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"


def data_dir() -> Path | None:
    """NEUROSERVE_DATA_DIR, else ../shared/data beside the clone; None when neither exists."""
    env = os.environ.get("NEUROSERVE_DATA_DIR")
    for candidate in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "data"]:
        if candidate.is_dir():
            return candidate
    return None


# --- real validation inputs -------------------------------------------------------------------------------------

def cifar_validation(root: Path, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` images of the CIFAR-10 validation split the models were scored on (training.data.cifar10:
    5,000 stratified with seed 0), reading only the start of the 150 MB array."""
    from training.data.cifar10 import load_splits, stratified_split

    path = root / "cifar10" / "train.npz"
    with zipfile.ZipFile(path) as archive:
        if "x.npy" not in archive.namelist():  # a JPEG pack: decode it all
            _, val = load_splits(root)
            return val.x[:count], val.y[:count]
        with archive.open("y.npy") as f:
            y = np.load(f)
        _, val_index = stratified_split(y, 5000, 0)
        rows = val_index[:count]
        with archive.open("x.npy") as f:
            major, _ = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(f)
            per_row = int(np.prod(shape[1:]))
            x = np.frombuffer(f.read((int(rows.max()) + 1) * per_row), dtype).reshape(-1, *shape[1:])
    return x[rows], y[rows].astype(np.int64)


def tumor_validation(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """The official tumour validation slices (64x64 grayscale, as the model takes them) and their labels."""
    with np.load(root / "tumor" / "val.npz") as data:
        return data["x"], data["y"].astype(np.int64)


def sentiment_validation(root: Path) -> tuple[list[str], np.ndarray]:
    from training.data.sentiment import read_tsv

    split = read_tsv(root / "sentiment" / "validation.tsv")
    return split.texts, split.y


def traffic_validation(root: Path, count: int, seed: int = 0) -> list[tuple[str, list[float]]]:
    """`count` validation windows of 168 contiguous hours (seeded choice): (ISO time of the first hour, volumes)."""
    from training.data.forecast import contiguous_starts, read_traffic

    times, volumes = read_traffic(root / "traffic" / "validation.csv")
    starts = contiguous_starts(times, 168)
    chosen = np.sort(np.random.default_rng(seed).choice(starts, size=count, replace=False))
    return [(str(times[s].astype("datetime64[s]")), volumes[s:s + 168].astype(float).tolist()) for s in chosen]


def price_validation(root: Path, count: int, seed: int = 0) -> list[tuple[str, list[float]]]:
    """`count` windows of 60 consecutive validation closes, one ticker each (seeded): (ticker, closes)."""
    from training.data.forecast import read_prices

    series = read_prices(root / "prices" / "validation.csv")
    rng = np.random.default_rng(seed)
    tickers = rng.choice(sorted(series), size=count, replace=False)
    windows = []
    for ticker in tickers:
        closes = series[ticker][1]
        start = int(rng.integers(0, len(closes) - 60))
        windows.append((str(ticker), closes[start:start + 60].tolist()))
    return windows


def fraud_validation(root: Path) -> tuple[list[dict], np.ndarray]:
    """The fraud validation transactions as request rows ({"Time", "V1".., "Amount"}) and their labels."""
    from training.data.fraud import FEATURES, read_fraud

    split = read_fraud(root / "fraud" / "validation.csv")
    return [dict(zip(FEATURES, row.tolist())) for row in split.x], split.y


def vitals_validation(root: Path, count: int, seed: int = 0) -> list[tuple[dict, int]]:
    """`count` validation ICU stays (seeded choice) as request stays, with their outcome (1 = died in hospital)."""
    from training.data.vitals import read_split

    records = read_split(root / "vitals", "validation")
    chosen = np.sort(np.random.default_rng(seed).choice(len(records), size=count, replace=False))
    return [({"measurements": [{"minute": m, "parameter": p, "value": v} for m, p, v in records[i].measurements],
              "age": records[i].age, "gender": records[i].gender, "height": records[i].height,
              "icu_type": records[i].icu_type}, records[i].died) for i in chosen]


def png_b64(pixels: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@contextlib.contextmanager
def real_client(models: list[str]):
    """An in-process app over models/ serving only `models` (fastapi's TestClient: the real endpoints)."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    settings = Settings(models_dir=MODELS, load_models=models, warmup_runs=1, log_json=False, log_level="warning")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 120
        while client.get("/v2/health/ready").status_code != 200:
            if time.monotonic() > deadline:
                raise TimeoutError("the models never became ready")
            time.sleep(0.05)
        yield client


# --- the cost of an explanation ---------------------------------------------------------------------------------

def cost_requests(root: Path) -> dict[str, tuple[str, dict]]:
    """One real batch-1 request per task: name -> (path, body without `explain`)."""
    x, _ = cifar_validation(root, 1)
    tumor, _ = tumor_validation(root)
    texts, _ = sentiment_validation(root)
    typical = sorted(texts, key=len)[len(texts) // 2]  # the median-length validation sentence
    start, hours = traffic_validation(root, 1)[0]
    _, closes = price_validation(root, 1)[0]
    transactions, _ = fraud_validation(root)
    stays = {"icu-grud": ("/v1/clinical/deterioration", {"stays": [vitals_validation(root, 1)[0][0]], "model": "icu-grud"})
             } if (MODELS / "icu-grud" / "manifest.json").exists() else {}
    return {
        "cifar10-resnet": ("/v1/images/classify", {"images": [png_b64(x[0])], "model": "cifar10-resnet"}),
        "cifar10-small": ("/v1/images/classify", {"images": [png_b64(x[0])], "model": "cifar10-small"}),
        "tumor-cnn": ("/v1/tumor/detect", {"images": [png_b64(tumor[0])], "model": "tumor-cnn"}),
        "sentiment-lstm": ("/v1/text/sentiment", {"texts": [typical], "model": "sentiment-lstm"}),
        "traffic-lstm": ("/v1/forecast/traffic", {"history": hours, "start": start, "model": "traffic-lstm"}),
        "prices-lstm": ("/v1/forecast/price", {"history": closes, "model": "prices-lstm"}),
        "fraud-mlp": ("/v1/fraud/score", {"transactions": transactions[:1], "model": "fraud-mlp"}),
        **stays,
    }


def measure_cost(url: str, requests: dict[str, tuple[str, dict]], rounds: int) -> list[dict]:
    """Per model: median latency of plain and explain requests at batch 1, one client, interleaved."""
    import httpx

    rows = []
    with httpx.Client(base_url=url, timeout=60) as http:
        for name, (path, body) in requests.items():
            times: dict[bool, list[float]] = {False: [], True: []}
            for round_ in range(rounds + 3):  # 3 warm-up rounds, not counted
                for explain in (False, True):
                    started = time.perf_counter()
                    response = http.post(path, json={**body, "explain": explain})
                    elapsed = time.perf_counter() - started
                    response.raise_for_status()
                    if round_ >= 3:
                        times[explain].append(elapsed * 1000)
            plain, explained = statistics.median(times[False]), statistics.median(times[True])
            rows.append({"model": name, "path": path, "plain_ms": round(plain, 2), "explain_ms": round(explained, 2),
                         "ratio": round(explained / plain, 1), "rounds": rounds})
    return rows


def cost(args: argparse.Namespace) -> None:
    from bench.common import cpu_name, neuroserve

    root = data_dir()
    if root is None:
        sys.exit("no data: set NEUROSERVE_DATA_DIR or put it at ../shared/data")
    requests = cost_requests(root)
    server = neuroserve(MODELS, {"NEUROSERVE_LOAD_MODELS": ",".join(requests)})
    try:
        rows = measure_cost(server.url, requests, args.rounds)
    finally:
        server.stop()
    load = os.getloadavg()[0]
    print(json.dumps({"machine": f"{cpu_name()}, {os.cpu_count()} CPUs, load {load:.1f}", "rows": rows}, indent=1))


# --- the docs' pictures -----------------------------------------------------------------------------------------

def pictures(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    root = data_dir()
    if root is None:
        sys.exit("no data: set NEUROSERVE_DATA_DIR or put it at ../shared/data")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tabular = [name for name in ("fraud-mlp", "icu-grud") if (MODELS / name / "manifest.json").exists()]
    with real_client(["cifar10-resnet", "tumor-cnn", "sentiment-lstm", "traffic-lstm", "prices-lstm", *tabular]) as client:
        draw_images(client, root, out)
        draw_sentiment(client, root, out)
        draw_forecasts(client, root, out)
        draw_tabular(client, root, out, tabular)


def _decode_png(data: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))


def draw_images(client, root: Path, out: Path) -> None:
    import matplotlib.pyplot as plt

    x, y = cifar_validation(root, 6)
    body = client.post("/v1/images/classify", json={"images": [png_b64(i) for i in x], "explain": True}).json()
    tumor, labels = tumor_validation(root)
    picks = [int(np.flatnonzero(labels == 1)[0]), int(np.flatnonzero(labels == 1)[7]), int(np.flatnonzero(labels == 0)[3])]
    scans = client.post("/v1/tumor/detect", json={"images": [png_b64(tumor[i]) for i in picks], "explain": True}).json()
    figure, axes = plt.subplots(2, 9, figsize=(13.5, 3.6))
    from training.data.cifar10 import LABELS

    for column, (image, result, truth) in enumerate(zip(x, body["results"], y)):
        _pair(axes[:, column], image, result["explanation"]["overlay_png"],
              f"{result['label']} {result['score']:.2f}\n(true: {LABELS[truth]})")
    for column, (index, result) in enumerate(zip(picks, scans["results"]), start=6):
        answer = "tumour" if result["tumor"] else "no tumour"
        _pair(axes[:, column], tumor[index], result["explanation"]["overlay_png"],
              f"{answer} p={result['probability']:.2f}\n(true: {'tumour' if labels[index] else 'none'})")
    figure.suptitle(f"Occlusion relevance for the answer given (red supports, blue opposes): "
                    f"{body['model']} on CIFAR-10 validation, {scans['model']} on tumour validation", fontsize=9)
    figure.tight_layout()
    figure.savefig(out / "explain_images.png", dpi=110)
    plt.close(figure)


def _pair(axes, image: np.ndarray, overlay: str, title: str) -> None:
    axes[0].imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", interpolation="nearest")
    axes[0].set_title(title, fontsize=7)
    axes[1].imshow(_decode_png(overlay), interpolation="nearest")
    for axis in axes:
        axis.axis("off")


def draw_sentiment(client, root: Path, out: Path) -> None:
    import matplotlib.pyplot as plt

    texts, labels = sentiment_validation(root)
    chosen = [t for t in texts if 8 <= len(t.split()) <= 16][:6]
    body = client.post("/v1/text/sentiment", json={"texts": chosen, "explain": True}).json()
    figure, axis = plt.subplots(figsize=(11, 0.55 * len(chosen) + 0.6))
    axis.axis("off")
    for row, result in enumerate(body["results"]):
        peak = max(abs(w) for w in result["explanation"]["weights"]) or 1.0  # per sentence: confident ones move little
        y = 1 - (row + 0.5) / len(chosen)
        axis.text(0.0, y, f"{result['label']} (P+ {result['score']:.2f})", fontsize=9, va="center", family="monospace",
                  transform=axis.transAxes)
        x = 0.16
        for word, weight in zip(result["explanation"]["tokens"], result["explanation"]["weights"]):
            strength = min(1.0, abs(weight) / peak)
            colour = (1, 1 - strength, 1 - strength) if weight > 0 else (1 - strength, 1 - 0.6 * strength, 1)
            text = axis.text(x, y, word, fontsize=10, va="center", transform=axis.transAxes,
                             bbox={"facecolor": colour, "edgecolor": "none", "pad": 1.5})
            figure.canvas.draw()
            box = text.get_window_extent().transformed(axis.transAxes.inverted())
            x = box.x1 + 0.008
    axis.set_title(f"{body['model']} on SST-2 validation sentences (word deletion): red pushes towards the predicted "
                   "label, blue against; colour scaled to each sentence's largest weight", fontsize=9)
    figure.savefig(out / "explain_sentiment.png", dpi=110, bbox_inches="tight")
    plt.close(figure)


def draw_forecasts(client, root: Path, out: Path) -> None:
    import matplotlib.pyplot as plt

    start, hours = traffic_validation(root, 1, seed=3)[0]
    traffic = client.post("/v1/forecast/traffic", json={"history": hours, "start": start, "explain": True}).json()
    ticker, closes = price_validation(root, 1, seed=1)[0]
    price = client.post("/v1/forecast/price", json={"history": closes, "explain": True}).json()
    figure, axes = plt.subplots(2, 2, figsize=(12, 5.2), sharex="col", gridspec_kw={"height_ratios": [2, 1]})
    for column, (history, answer, title, unit) in enumerate([
            (hours, traffic, f"{traffic['model']}: I-94 traffic from {start} (validation)", "vehicles/hour"),
            (closes, price, f"{price['model']}: {ticker} daily closes (validation)", "close")]):
        n = len(history)
        steps = np.arange(n, n + len(answer["forecast"]))
        axes[0, column].plot(np.arange(n), history, color="black", linewidth=1, label="history")
        axes[0, column].plot(steps, answer["forecast"], color="tab:orange", label="median forecast")
        axes[0, column].fill_between(steps, answer["lower"], answer["upper"], color="tab:orange", alpha=0.25,
                                     label=f"{answer['interval']:.0%} interval")
        axes[0, column].set_title(title, fontsize=9)
        axes[0, column].set_ylabel(unit)
        axes[0, column].legend(fontsize=7, loc="upper left")
        weights = np.array(answer["explanation"]["history_weights"])
        axes[1, column].bar(np.arange(n), weights, color=np.where(weights >= 0, "tab:red", "tab:blue"), width=1.0)
        magnitudes = np.sort(np.abs(weights))
        if magnitudes[-1] > 10 * magnitudes[-2] > 0:  # one value dominates (the last close): clip it, say its value
            limit = 1.5 * magnitudes[-2]
            axes[1, column].set_ylim(-limit, limit)
            top = int(np.argmax(np.abs(weights)))
            axes[1, column].annotate(f"{weights[top]:+.2f} (clipped)", (top, np.sign(weights[top]) * limit * 0.9),
                                     ha="right", va="center", fontsize=8)
        axes[1, column].set_ylabel("history weight")
        axes[1, column].set_xlabel("step (history, then forecast)")
    figure.suptitle("How much each history value moved the mean median forecast (value replaced by the window mean)",
                    fontsize=9)
    figure.tight_layout()
    figure.savefig(out / "explain_forecasts.png", dpi=110)
    plt.close(figure)


def draw_tabular(client, root: Path, out: Path, models: list[str]) -> None:
    """The ten largest Shapley weights of real validation records: a fraud and a legitimate transaction, and a
    stay that died and one that did not (each when its model is present)."""
    import matplotlib.pyplot as plt

    panels = []
    if "fraud-mlp" in models:
        transactions, labels = fraud_validation(root)
        picks = [int(np.flatnonzero(labels == 1)[0]), int(np.flatnonzero(labels == 0)[0])]
        body = client.post("/v1/fraud/score", json={"transactions": [transactions[i] for i in picks],
                                                     "explain": True}).json()
        for index, result in zip(picks, body["results"]):
            panels.append((f"{body['model']}: a {'fraud' if labels[index] else 'legitimate'} validation transaction\n"
                           f"P(fraud) {result['probability']:.3f}", result["explanation"]["features"], "P(fraud)"))
    if "icu-grud" in models:
        stays = vitals_validation(root, 40, seed=2)
        picks = [next(i for i, (_, died) in enumerate(stays) if died), next(i for i, (_, died) in enumerate(stays) if not died)]
        body = client.post("/v1/clinical/deterioration", json={"stays": [stays[i][0] for i in picks],
                                                                "explain": True}).json()
        for index, result in zip(picks, body["results"]):
            panels.append((f"{body['model']}: a validation stay ({'died' if stays[index][1] else 'survived'})\n"
                           f"risk {result['risk']:.3f}, {result['hours_observed']} h observed",
                           result["explanation"]["features"], "risk"))
    if not panels:
        return
    figure, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.6), squeeze=False)
    for axis, (title, features, unit) in zip(axes[0], panels):
        top = features[:10][::-1]
        weights = [f["weight"] for f in top]
        axis.barh([f["name"] for f in top], weights, color=["tab:red" if w >= 0 else "tab:blue" for w in weights])
        axis.axvline(0, color="black", linewidth=0.6)
        axis.set_title(title, fontsize=8)
        axis.set_xlabel(f"Shapley weight ({unit})", fontsize=8)
        axis.tick_params(labelsize=7)
    figure.suptitle("The ten largest Shapley weights (red raises the score, blue lowers it)", fontsize=9)
    figure.tight_layout()
    figure.savefig(out / "explain_tabular.png", dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    draw = commands.add_parser("pictures", help="docs/img/explain_*.png")
    draw.add_argument("--out", default=str(ROOT / "docs" / "img"))
    draw.set_defaults(handler=pictures)
    measure = commands.add_parser("cost", help="explain vs plain latency at batch 1 (a real server)")
    measure.add_argument("--rounds", type=int, default=30)
    measure.set_defaults(handler=cost)
    args = parser.parse_args(argv)
    args.handler(args)


if __name__ == "__main__":
    main()
