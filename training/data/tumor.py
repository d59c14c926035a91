"""Brain-tumour MRI slices as npz: x uint8 [N,64,64,1], y uint8 (1 = tumour), subtype uint8
(0 none, 1 glioma, 2 meningioma, 3 pituitary), source_path str.

``prepare_from_folder`` builds that from a class-per-folder image tree
(e.g. ``Training/{glioma,meningioma,notumor,pituitary}/*.jpg``): Pillow decode, 8-bit grayscale,
pad to a centred square with black, Lanczos resize to 64x64 (as the shared data README describes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

LABELS = ["none", "glioma", "meningioma", "pituitary"]
SIZE = 64
FOLDER_SUBTYPE = {
    "notumor": 0, "no_tumor": 0, "no-tumor": 0, "none": 0, "no": 0, "normal": 0,
    "glioma": 1, "glioma_tumor": 1, "meningioma": 2, "meningioma_tumor": 2, "pituitary": 3, "pituitary_tumor": 3,
}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}


@dataclass
class TumorSet:
    x: np.ndarray  # uint8 [N,64,64,1]
    y: np.ndarray  # int64 [N]
    subtype: np.ndarray  # int64 [N]
    source_path: np.ndarray  # str [N]


def load_npz(path: Path) -> TumorSet:
    with np.load(path) as d:
        x, y, subtype, source = d["x"], d["y"], d["subtype"], d["source_path"]
    if x.ndim != 4 or x.shape[1:] != (SIZE, SIZE, 1) or x.dtype != np.uint8:
        raise ValueError(f"{path}: expected x uint8 [N,{SIZE},{SIZE},1], got {x.dtype} {x.shape}")
    if not (len(y) == len(subtype) == len(source) == len(x)):
        raise ValueError(f"{path}: x, y, subtype and source_path lengths differ")
    y, subtype = y.astype(np.int64), subtype.astype(np.int64)
    if np.any((subtype > 0) != (y == 1)):
        raise ValueError(f"{path}: y and subtype disagree")
    return TumorSet(x, y, subtype, source.astype(str))


def load_splits(data_dir: Path, limit: int | None = None) -> tuple[TumorSet, TumorSet]:
    root = Path(data_dir) / "tumor"
    train, val = load_npz(root / "train.npz"), load_npz(root / "val.npz")
    if limit:
        rng = np.random.default_rng(0)
        keep = lambda s, n: (lambda i: TumorSet(s.x[i], s.y[i], s.subtype[i], s.source_path[i]))(  # noqa: E731
            np.sort(rng.choice(len(s.y), size=min(n, len(s.y)), replace=False)))
        train, val = keep(train, limit), keep(val, max(limit // 4, 16))
    return train, val


EXTERNAL_SUBDIR = "tumor_external_val"


def load_external(data_dir: Path) -> TumorSet | None:
    """The out-of-source validation set (``<data_dir>/tumor_external_val/val.npz``: x, y, source_path; no subtypes,
    so ``subtype`` is -1), or None when absent. For validation and model selection only: never train on it."""
    path = Path(data_dir) / EXTERNAL_SUBDIR / "val.npz"
    if not path.exists():
        return None
    with np.load(path) as d:
        x, y, source = d["x"], d["y"].astype(np.int64), d["source_path"].astype(str)
    if x.ndim != 4 or x.shape[1:] != (SIZE, SIZE, 1) or x.dtype != np.uint8 or len(y) != len(x):
        raise ValueError(f"{path}: expected x uint8 [N,{SIZE},{SIZE},1] and one y per image")
    return TumorSet(x, y, np.full(len(y), -1, dtype=np.int64), source)


def load_image(path: Path, size: int = SIZE) -> np.ndarray:
    """Pillow decode -> 8-bit grayscale -> centred black pad to square -> Lanczos resize. uint8 [size,size,1]."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("L")
        w, h = im.size
        side = max(w, h)
        canvas = Image.new("L", (side, side), 0)
        canvas.paste(im, ((side - w) // 2, (side - h) // 2))
        out = canvas.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(out, dtype=np.uint8)[:, :, None]


def prepare_from_folder(source: Path, out: Path) -> Path:
    source = Path(source)
    rows: list[tuple[int, str, Path]] = []
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        key = folder.name.lower()
        if key not in FOLDER_SUBTYPE:
            raise ValueError(f"{folder}: unknown class folder; expected one of {sorted(set(FOLDER_SUBTYPE))}")
        for f in sorted(folder.rglob("*")):
            if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file():
                rel = f.relative_to(source.parent).as_posix()
                rows.append((FOLDER_SUBTYPE[key], rel, f))
    if not rows:
        raise ValueError(f"{source}: no images found")
    rows.sort(key=lambda r: (r[0] != 0, r[1]))  # no tumour first, then by path (as the shared files)
    x = np.stack([load_image(f) for _, _, f in rows])
    subtype = np.array([s for s, _, _ in rows], dtype=np.uint8)
    y = (subtype > 0).astype(np.uint8)
    paths = np.array([r for _, r, _ in rows])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, x=x, y=y, subtype=subtype, source_path=paths)
    return out
