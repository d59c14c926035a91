"""Object detection geometry (numpy + Pillow, no torch): letterboxing, per-class non-maximum suppression and the
mapping of boxes back to the pixels of the image as sent.

The server (service/tasks/detection.py) and the detection recipe/exporter (training/) use these same functions,
so the model is trained, evaluated and served on identically letterboxed pictures.

Letterbox: the image is resized (bilinear) so that its longer side equals the model's input size, placed at the
top-left corner of a square canvas and the rest is filled with grey (PAD_VALUE). A box in canvas pixels maps back
to the image's pixels by dividing by the scale (no offset: top-left placement), then clipping to the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

PAD_VALUE = 114


def letterbox_scale(height: int, width: int, size: int) -> float:
    """The factor that brings the longer side of a height x width image to ``size`` pixels."""
    return size / max(height, width)


def letterbox(rgb: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """uint8 [H, W, 3] -> (uint8 [size, size, 3] canvas, scale). The picture sits at the top-left corner."""
    h, w = rgb.shape[:2]
    scale = letterbox_scale(h, w, size)
    nw, nh = max(1, min(size, round(w * scale))), max(1, min(size, round(h * scale)))
    canvas = np.full((size, size, 3), PAD_VALUE, dtype=np.uint8)
    if (nw, nh) != (w, h):
        rgb = np.asarray(Image.fromarray(rgb).resize((nw, nh), Image.BILINEAR))
    canvas[:nh, :nw] = rgb
    return canvas, scale


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of a [N, 4] with every box of b [M, 4] (x_min, y_min, x_max, y_max) -> [N, M]."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS: indices kept, by descending score; a box is dropped when its IoU with a kept one is >
    ``iou_threshold``."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        if order.size == 1:
            break
        rest = order[1:]
        order = rest[box_iou(boxes[i:i + 1], boxes[rest])[0] <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


@dataclass
class Detections:
    boxes: np.ndarray  # float32 [n, 4] in the pixels of the image as sent
    scores: np.ndarray  # float32 [n], descending
    labels: np.ndarray  # int64 [n], index into the model's labels


def postprocess(boxes: np.ndarray, scores: np.ndarray, *, scale: float, height: int, width: int,
                score_threshold: float, max_detections: int, iou_threshold: float,
                pre_nms: int = 1000) -> Detections:
    """One image's graph outputs -> its detections.

    boxes [L, 4] in canvas pixels, scores [L, C] (already peak-filtered by the graph). Every (location, class) pair
    at or above ``score_threshold`` is a candidate (the ``pre_nms`` best at most); NMS runs per class; the survivors,
    sorted by score, are cut to ``max_detections`` and mapped back to the image: divided by ``scale`` and clipped to
    [0, width] x [0, height].
    """
    scores = np.asarray(scores, np.float32)
    loc, cls = np.nonzero(scores >= score_threshold)
    s = scores[loc, cls]
    if s.size > pre_nms:
        top = np.argpartition(-s, pre_nms - 1)[:pre_nms]
        loc, cls, s = loc[top], cls[top], s[top]
    b = np.asarray(boxes, np.float32)[loc] / np.float32(scale)
    b[:, 0::2] = np.clip(b[:, 0::2], 0, width)
    b[:, 1::2] = np.clip(b[:, 1::2], 0, height)
    kept = [np.flatnonzero(cls == c)[nms(b[cls == c], s[cls == c], iou_threshold)] for c in np.unique(cls)]
    idx = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    idx = idx[np.argsort(-s[idx], kind="stable")][:max_detections]
    return Detections(b[idx].astype(np.float32), s[idx].astype(np.float32), cls[idx].astype(np.int64))
