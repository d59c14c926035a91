"""Fixtures for the training tests: tiny synthetic datasets, the real data when present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="training tests need the train extra (torch)")

REPO = Path(__file__).resolve().parents[2]


def real_data_dir() -> Path | None:
    env = os.environ.get("NEUROSERVE_DATA_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data")
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = real_data_dir()
    if d is None:
        pytest.skip("real data not found: set NEUROSERVE_DATA_DIR or put it at ../shared/data beside the repo")
    return d


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A synthetic data root: cifar10/train.npz (600 images) and tumor/{train,val}.npz, learnable patterns."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    n = 600
    y = np.repeat(np.arange(10), n // 10).astype(np.uint8)
    x = rng.integers(0, 60, size=(n, 32, 32, 3), dtype=np.uint8)
    for c in range(10):  # a class-specific bright stripe
        x[y == c, 3 * c : 3 * c + 3, :, c % 3] += 180
    (root / "cifar10").mkdir()
    np.savez_compressed(root / "cifar10" / "train.npz", x=x, y=y)
    (root / "tumor").mkdir()
    for split, m in (("train", 160), ("val", 64)):
        subtype = np.array([0] * (m // 4) + [1, 2, 3] * (m - m // 4), dtype=np.uint8)[:m]
        tx = rng.integers(0, 40, size=(m, 64, 64, 1), dtype=np.uint8)
        for i, s in enumerate(subtype):
            if s:
                tx[i, 16 * s : 16 * s + 12, 20:40, 0] += 200  # a bright blob; position = subtype
        paths = np.array([f"Training/{'notumor' if s == 0 else 'tumor'}/img_{i:04d}.jpg" for i, s in enumerate(subtype)])
        np.savez_compressed(root / "tumor" / f"{split}.npz", x=tx, y=(subtype > 0).astype(np.uint8),
                            subtype=subtype, source_path=paths)
    return root


@pytest.fixture(autouse=True)
def _fast_benchmarks(monkeypatch):
    """Exports measure latency; a handful of runs is enough in tests."""
    monkeypatch.setenv("NEUROSERVE_BENCH_REPEATS", "3")
