"""CIFAR-10 as ``train.npz``: x uint8 [N,32,32,3] (HWC, RGB), y uint8 [N].

``prepare_from_tarball`` converts the canonical ``cifar-10-python.tar.gz`` (pickled
``data_batch_1..5`` with ``b'data'`` [N,3072] CHW-flat and ``b'labels'``) into that form.

``write_jpeg_pack`` stores the same images as a compact JPEG pack (for carrying the training set to a GPU
machine in one small file): each image re-encoded as JPEG (quality 75, 4:2:0, as the source JPEGs), the
header all images share stored once, plus the residual against the npz pixels (uint8, mod 256, zlib) so
that decoding gives the npz's exact pixels back; a sha256 of the pixels checks that. ``load_npz`` reads
either form.
"""

from __future__ import annotations

import hashlib
import io
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
    """x uint8 [N,32,32,3], y int64 [N] from a ``train.npz`` or a JPEG pack (see ``write_jpeg_pack``)."""
    with np.load(path) as data:
        if "jpeg" in data.files:
            x, y = decode_jpeg_pack({k: data[k] for k in data.files}, name=str(path))
        else:
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


def load_splits(data_dir: Path, val_size: int = 5000, split_seed: int = 0, limit: int | None = None,
                file: str = "train.npz") -> tuple[Split, Split]:
    """``file``: the npz under ``<data_dir>/cifar10/`` (``train.npz``, or a JPEG pack such as ``train_jpeg.npz``)."""
    x, y = load_npz(Path(data_dir) / "cifar10" / (file or "train.npz"))
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


# -- the JPEG pack ----------------------------------------------------------------------------------
def _jpeg_bytes(image: np.ndarray, quality: int, subsampling: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality, subsampling=subsampling)
    return buf.getvalue()


def _decode_jpegs(header: bytes, blob: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    from PIL import Image

    raw = blob.tobytes()
    out = np.empty((len(offsets) - 1, 32, 32, 3), dtype=np.uint8)
    for i in range(len(out)):
        with Image.open(io.BytesIO(header + raw[offsets[i]:offsets[i + 1]])) as im:
            out[i] = np.asarray(im.convert("RGB"))
    return out


def pixels_sha256(x: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()


def write_jpeg_pack(x: np.ndarray, y: np.ndarray, out: Path, quality: int = 75, subsampling: int = 2,
                    residual: bool = True) -> dict:
    """Write ``out`` (npz): ``header`` (the bytes every JPEG starts with), ``jpeg`` (the rest of each, concatenated),
    ``offsets`` [N+1], ``y``, ``sha256`` of x, and ``residual_zlib`` (x - decoded as int8, zlib) unless
    ``residual=False``. Returns the figures (sizes, mean absolute error of the JPEGs alone)."""
    import zlib

    blobs = [_jpeg_bytes(img, quality, subsampling) for img in x]
    prefix = blobs[0]
    for b in blobs[1:]:
        n = min(len(prefix), len(b))
        mismatch = np.flatnonzero(np.frombuffer(prefix[:n], np.uint8) != np.frombuffer(b[:n], np.uint8))
        prefix = prefix[: (int(mismatch[0]) if len(mismatch) else n)]
    tails = [b[len(prefix):] for b in blobs]
    offsets = np.zeros(len(tails) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(t) for t in tails])
    blob = np.frombuffer(b"".join(tails), dtype=np.uint8)
    decoded = _decode_jpegs(prefix, blob, offsets)
    diff = x.astype(np.int16) - decoded
    arrays = {"header": np.frombuffer(prefix, dtype=np.uint8), "jpeg": blob, "offsets": offsets,
              "y": np.asarray(y, dtype=np.uint8), "sha256": np.array(pixels_sha256(x)),
              "quality": np.array(quality), "subsampling": np.array(subsampling)}
    if residual:
        if np.abs(diff).max() > 127:
            raise ValueError("a JPEG pixel is off by more than 127: no int8 residual")
        arrays["residual_zlib"] = np.frombuffer(zlib.compress(diff.astype(np.int8).tobytes(), 9), dtype=np.uint8)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **arrays)
    return {"images": len(x), "bytes": out.stat().st_size, "header_bytes": len(prefix),
            "jpeg_bytes": int(blob.size), "residual_bytes": int(arrays["residual_zlib"].size) if residual else 0,
            "jpeg_mae": float(np.abs(diff).mean()), "jpeg_max_abs": int(np.abs(diff).max()),
            "jpeg_pixels_exact": float((diff == 0).mean())}


def decode_jpeg_pack(pack: dict, name: str = "pack") -> tuple[np.ndarray, np.ndarray]:
    """The pack's images (with the residual added back when the pack has one) and labels (int64).

    The residual restores the source pixels only if this Pillow decodes the JPEGs as the one that wrote the pack
    did; the sha256 says whether it did, and a mismatch is reported (the pixels are then within JPEG rounding)."""
    import sys
    import zlib

    x = _decode_jpegs(pack["header"].tobytes(), pack["jpeg"], pack["offsets"])
    if "residual_zlib" in pack:
        residual = np.frombuffer(zlib.decompress(pack["residual_zlib"].tobytes()), dtype=np.int8).reshape(x.shape)
        x = np.clip(x.astype(np.int16) + residual, 0, 255).astype(np.uint8)
        if pixels_sha256(x) != str(pack["sha256"]):
            print(f"{name}: WARNING: pixels differ from the source's (this Pillow decodes the JPEGs differently); "
                  "using them as they are", file=sys.stderr)
    return x, pack["y"].astype(np.int64)
