"""Road-sign detection (``shared/data/detection/``): ``<split>/annotations.jsonl`` + ``<split>/images/*.jpg`` ->
decoded pictures with their boxes; the training augmentation and the heatmap/box targets of the detector.

Augmentation (numpy + Pillow, per picture, drawn from a seeded numpy generator): scale jitter of the letterboxed
size, a crop (or padded placement) of ``crop`` x ``crop`` pixels that keeps every box whole when it can (else one
randomly chosen box whole; boxes cut to under ``min_visible`` of their area are dropped), a horizontal flip only
when every box of the picture is of a mirror-safe class (crosswalk pictograms and traffic lights; speed-limit digits
and the STOP text are not), and colour jitter (brightness, contrast, saturation) applied on the batch by the recipe.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from service.detection import PAD_VALUE, letterbox, letterbox_scale

CLASSES: tuple[str, ...] = ("crosswalk", "speedlimit", "stop", "trafficlight")
MIRROR_SAFE: frozenset[str] = frozenset({"crosswalk", "trafficlight"})


@dataclass
class Picture:
    name: str
    image: np.ndarray  # uint8 [H, W, 3] as stored
    boxes: np.ndarray  # float32 [n, 4] pixels of the stored image (x_min, y_min, x_max, y_max)
    labels: np.ndarray  # int64 [n] index into CLASSES


def read_split(root: Path, split: str, limit: int | None = None) -> list[Picture]:
    """``root/<split>``: every annotated picture, decoded to RGB (the first ``limit`` when given)."""
    folder = Path(root) / split
    out = []
    with open(folder / "annotations.jsonl") as f:
        for line in f:
            if limit is not None and len(out) >= limit:
                break
            rec = json.loads(line)
            with Image.open(folder / "images" / rec["file"]) as im:
                rgb = np.asarray(im.convert("RGB"))
            boxes = np.asarray(rec["boxes"], np.float32).reshape(-1, 4)
            labels = np.asarray([CLASSES.index(c) for c in rec["labels"]], np.int64)
            out.append(Picture(rec["file"], rgb, boxes, labels))
    return out


def letterboxed(pic: Picture, size: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The served preprocessing: (canvas uint8 [size, size, 3], boxes in canvas pixels, scale)."""
    canvas, scale = letterbox(pic.image, size)
    return canvas, pic.boxes * scale, scale


def _offset(lo: float, hi: float, need_lo: float, need_hi: float, rng: np.random.Generator) -> int:
    """An integer offset in [lo, hi], inside [need_lo, need_hi] when the two ranges meet."""
    a, b = max(lo, need_lo), min(hi, need_hi)
    if a > b:
        a, b = lo, hi
    return int(np.floor(rng.uniform(a, b + 1e-6)))


def augment(pic: Picture, size: int, crop: int, rng: np.random.Generator, *, scale_min: float, scale_max: float,
            flip: bool, min_visible: float = 0.4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One training sample: (uint8 [crop, crop, 3], boxes [n, 4] in sample pixels, labels [n])."""
    h, w = pic.image.shape[:2]
    s = letterbox_scale(h, w, size) * rng.uniform(scale_min, scale_max)
    sw, sh = max(1, round(w * s)), max(1, round(h * s))
    img = Image.fromarray(pic.image).resize((sw, sh), Image.BILINEAR)
    boxes = pic.boxes * np.float32(s)
    # the canvas origin (dx, dy) in scaled-image pixels: negative = padding on that side
    if len(boxes):
        keep_all = (boxes[:, 2].max() - crop, boxes[:, 0].min(), boxes[:, 3].max() - crop, boxes[:, 1].min())
        one = boxes[rng.integers(len(boxes))]
        keep_one = (one[2] - crop, one[0], one[3] - crop, one[1])
        fits = keep_all[1] - keep_all[0] >= 0 and keep_all[3] - keep_all[2] >= 0
        need = keep_all if fits else keep_one
    else:
        need = (-1e9, 1e9, -1e9, 1e9)
    dx = _offset(min(0, sw - crop), max(0, sw - crop), need[0], need[1], rng)
    dy = _offset(min(0, sh - crop), max(0, sh - crop), need[2], need[3], rng)
    canvas = Image.new("RGB", (crop, crop), (PAD_VALUE,) * 3)
    canvas.paste(img, (-dx, -dy))
    out = np.asarray(canvas).copy()
    b = boxes - np.array([dx, dy, dx, dy], np.float32)
    clipped = np.clip(b, 0, crop)
    area = lambda x: (x[:, 2] - x[:, 0]).clip(0) * (x[:, 3] - x[:, 1]).clip(0)  # noqa: E731
    ok = area(clipped) >= min_visible * np.maximum(area(b), 1e-6)
    ok &= ((clipped[:, 2] - clipped[:, 0]) >= 2) & ((clipped[:, 3] - clipped[:, 1]) >= 2)
    clipped, labels = clipped[ok], pic.labels[ok]
    if flip and all(CLASSES[k] in MIRROR_SAFE for k in pic.labels) and rng.random() < 0.5:
        out = out[:, ::-1].copy()
        clipped = np.stack([crop - clipped[:, 2], clipped[:, 1], crop - clipped[:, 0], clipped[:, 3]], 1)
    return out, clipped.astype(np.float32).reshape(-1, 4), labels


def targets(boxes: np.ndarray, labels: np.ndarray, size: int, stride: int, num_classes: int,
            alpha: float = 0.54) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TTFNet-style targets on the stride grid of a size x size input.

    heatmap [C, G, G]: per box an elliptic Gaussian (sigma = alpha * side / 6) peaking at 1 in the cell that holds
    the box centre; boxes [4, G, G]: the box each cell regresses (input pixels); weight [G, G]: the Gaussian of that
    box at the cells whose centre lies inside it (smaller boxes win overlaps), each box's weights summing to
    log(area), as in TTFNet.
    """
    g = size // stride
    hm = np.zeros((num_classes, g, g), np.float32)
    reg = np.zeros((4, g, g), np.float32)
    wt = np.zeros((g, g), np.float32)
    centres = (np.arange(g, dtype=np.float32) + 0.5) * stride
    order = np.argsort(-((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])), kind="stable")
    for i in order:
        x0, y0, x1, y1 = boxes[i]
        cx, cy = min(int((x0 + x1) / 2 / stride), g - 1), min(int((y0 + y1) / 2 / stride), g - 1)
        sx, sy = max(alpha * (x1 - x0) / stride / 6, 0.3), max(alpha * (y1 - y0) / stride / 6, 0.3)
        gx = np.exp(-((np.arange(g) - cx) ** 2) / (2 * sx * sx))
        gy = np.exp(-((np.arange(g) - cy) ** 2) / (2 * sy * sy))
        gauss = (gy[:, None] * gx[None, :]).astype(np.float32)
        hm[labels[i]] = np.maximum(hm[labels[i]], gauss)
        inside = ((centres[None, :] > x0) & (centres[None, :] < x1)) & ((centres[:, None] > y0) & (centres[:, None] < y1))
        region = inside & (gauss > 0.01)
        region[cy, cx] = True
        wgt = gauss * region
        wgt *= np.log(max((x1 - x0) * (y1 - y0), 2.0)) / max(float(wgt.sum()), 1e-6)
        reg[:, region] = np.array([x0, y0, x1, y1], np.float32)[:, None]
        wt[region] = wgt[region]
    return hm, reg, wt
