"""Re-create the files in examples/ from the training data (../shared/data) and a fixed seed.

    .venv/bin/python examples/make_examples.py [--data ../shared/data]

Which rows were taken, and why, is in examples/README.md; the choice is fixed here so a rerun writes the same files.
"""

from __future__ import annotations

import argparse
import csv
import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
# CIFAR-10 train.npz rows (official training order) and tumor train.npz rows, picked by class (see README.md)
CIFAR_ROWS = {"cat": 9, "ship": 8, "horse": 11, "frog": 19}
TUMOR_SOURCES = {"scan-tumor": "Training/tumor/Tr-glTr_0000.jpg", "scan-no-tumor": "Training/notumor/Tr-no_0016.jpg"}
TRAFFIC_START = datetime(2017, 10, 16, 0, 0)  # a Monday in validation.csv; a week of contiguous hours
TRAFFIC_HOURS = 168


def write_png(pixels: np.ndarray, path: Path) -> None:
    mode = "L" if pixels.ndim == 2 or pixels.shape[-1] == 1 else "RGB"
    Image.fromarray(pixels.squeeze(-1) if mode == "L" and pixels.ndim == 3 else pixels, mode).save(path, optimize=True)


def cifar(data: Path) -> None:
    with np.load(data / "cifar10" / "train.npz") as npz:
        x, y = npz["x"], npz["y"]
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    for name, row in CIFAR_ROWS.items():
        assert classes[int(y[row])] == name, (name, row, classes[int(y[row])])
        write_png(x[row], HERE / f"{name}.png")


def tumor(data: Path) -> None:
    with np.load(data / "tumor" / "train.npz") as npz:
        x, y, paths = npz["x"], npz["y"], npz["source_path"]
    for name, source in TUMOR_SOURCES.items():
        row = int(np.flatnonzero(paths == source)[0])
        assert int(y[row]) == (name == "scan-tumor"), (name, source)
        write_png(x[row], HERE / f"{name}.png")


def traffic(data: Path) -> None:
    wanted = [TRAFFIC_START + timedelta(hours=h) for h in range(TRAFFIC_HOURS)]
    volumes = {}
    with open(data / "traffic" / "validation.csv", newline="") as f:
        for row in csv.DictReader(f):
            volumes[datetime.fromisoformat(row["timestamp"])] = int(row["traffic_volume"])
    missing = [t for t in wanted if t not in volumes]
    assert not missing, f"not contiguous: {missing[:3]}"
    body = {"history": [volumes[t] for t in wanted], "start": TRAFFIC_START.isoformat(), "horizon": 24}
    (HERE / "traffic.json").write_text(json.dumps(body) + "\n")


def prices() -> None:
    """A synthetic series: the price data's terms forbid republishing it (shared/data/prices/README.md)."""
    rng = np.random.default_rng(7)
    closes = 100.0 * np.exp(np.cumsum(rng.normal(0.0003, 0.015, 90)))
    body = {"history": [round(float(c), 2) for c in closes], "horizon": 5}
    (HERE / "prices.json").write_text(json.dumps(body) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data")
    args = parser.parse_args()
    cifar(args.data)
    tumor(args.data)
    traffic(args.data)
    prices()


if __name__ == "__main__":
    main()
