"""CIFAR-10 as ``train.npz``: x uint8 [N,32,32,3] (HWC, RGB), y uint8 [N].

``prepare_from_tarball`` converts the canonical ``cifar-10-python.tar.gz`` (pickled
``data_batch_1..5`` with ``b'data'`` [N,3072] CHW-flat and ``b'labels'``) into that form.
"""

from __future__ import annotations

import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


@dataclass
class Split:
    x: np.ndarray  # uint8 [N,32,32,3]
    y: np.ndarray  # int64 [N]
    index: np.ndarray  # row numbers in the source file


def load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as data:
        x, y = data["x"], data["y"]
    if x.ndim != 4 or x.shape[1:] != (32, 32, 3) or x.dtype != np.uint8:
        raise ValueError(f"{path}: expected x uint8 [N,32,32,3], got {x.dtype} {x.shape}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"{path}: y has shape {y.shape}, expected ({x.shape[0]},)")
    return x, y.astype(np.int64)


def stratified_split(y: np.ndarray, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified hold-out: returns (train_index, val_index), both sorted."""
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    per_class = val_size // len(classes)
    val = []
    for c in classes:
        rows = np.flatnonzero(y == c)
        val.append(rng.choice(rows, size=min(per_class, len(rows)), replace=False))
    val_index = np.sort(np.concatenate(val)) if val else np.zeros(0, dtype=np.int64)
    train_index = np.setdiff1d(np.arange(len(y)), val_index)
    return train_index, val_index


def load_splits(data_dir: Path, val_size: int = 5000, split_seed: int = 0, limit: int | None = None) -> tuple[Split, Split]:
    x, y = load_npz(Path(data_dir) / "cifar10" / "train.npz")
    val_size = min(val_size, len(y) // 10)  # 5,000 of the real 50k; a tenth of small test files
    train_index, val_index = stratified_split(y, val_size, split_seed)
    if limit:
        train_index, val_index = train_index[:limit], val_index[: max(limit // 4, 10)]
    return (Split(x[train_index], y[train_index], train_index), Split(x[val_index], y[val_index], val_index))


def prepare_from_tarball(source: Path, out: Path) -> Path:
    """Read data_batch_1..5 from the CIFAR-10 python tarball; write train.npz (x HWC uint8, y uint8)."""
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    with tarfile.open(source, "r:*") as tar:
        members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
        names = sorted(n for n in members if n.startswith("data_batch_"))
        if not names:
            raise ValueError(f"{source}: no data_batch_* files found")
        for name in names:
            fh = tar.extractfile(members[name])
            assert fh is not None
            batch = pickle.load(fh, encoding="bytes")  # the canonical format is a pickle
            data = np.asarray(batch[b"data"], dtype=np.uint8)
            xs.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            ys.append(np.asarray(batch[b"labels"], dtype=np.uint8))
    x = np.ascontiguousarray(np.concatenate(xs))
    y = np.concatenate(ys)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, x=x, y=y)
    return out
