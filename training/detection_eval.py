"""Detection metrics (numpy): COCO-style average precision per class at IoU thresholds .50:.05:.95 (101-point
interpolated precision envelope, greedy matching per image in score order), mAP@0.5, mAP@[.5:.95], and a bootstrap
over images.

Matching depends only on one image's own detections and boxes, so each detection's true/false-positive flag at
every threshold is computed once; a bootstrap resample then only re-weights images by how often they were drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from service.detection import box_iou

IOU_THRESHOLDS = np.round(np.arange(0.5, 0.96, 0.05), 2)
RECALL_POINTS = np.linspace(0, 1, 101)


@dataclass
class Matched:
    """Per class: detection scores, the image of each, TP flags [D, T]; ground truths per image [num_images]."""

    scores: list[np.ndarray]
    images: list[np.ndarray]
    tp: list[np.ndarray]
    positives: list[np.ndarray]


def match(preds: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], truths: Sequence[tuple[np.ndarray, np.ndarray]],
          num_classes: int, thresholds: np.ndarray = IOU_THRESHOLDS) -> Matched:
    """preds[i] = (boxes [n, 4], scores [n], labels [n]); truths[i] = (boxes [m, 4], labels [m]), same pixels."""
    out = Matched([], [], [], [])
    for c in range(num_classes):
        sc, im, tp = [], [], []
        pos = np.zeros(len(truths), np.int64)
        for i, ((pb, ps, pl), (tb, tl)) in enumerate(zip(preds, truths)):
            gt = np.asarray(tb, np.float64).reshape(-1, 4)[np.asarray(tl) == c]
            pos[i] = len(gt)
            sel = np.flatnonzero(np.asarray(pl) == c)
            if not len(sel):
                continue
            sel = sel[np.argsort(-np.asarray(ps)[sel], kind="stable")]
            flags = np.zeros((len(sel), len(thresholds)), bool)
            if len(gt):
                iou = box_iou(np.asarray(pb)[sel], gt)
                for t, thr in enumerate(thresholds):
                    used = np.zeros(len(gt), bool)
                    for d in range(len(sel)):
                        cand = np.where(used, -1.0, iou[d])
                        j = int(np.argmax(cand))
                        if cand[j] >= thr:
                            used[j] = True
                            flags[d, t] = True
            sc.append(np.asarray(ps, np.float64)[sel])
            im.append(np.full(len(sel), i))
            tp.append(flags)
        out.scores.append(np.concatenate(sc) if sc else np.zeros(0))
        out.images.append(np.concatenate(im) if im else np.zeros(0, np.int64))
        out.tp.append(np.concatenate(tp) if tp else np.zeros((0, len(thresholds)), bool))
        out.positives.append(pos)
    return out


def pr_curve(scores: np.ndarray, tp: np.ndarray, positives: float, weights: np.ndarray | None = None):
    """(recall, precision) along descending scores for one class at one threshold."""
    order = np.argsort(-scores, kind="stable")
    w = np.ones(len(scores)) if weights is None else weights[order]
    t = tp[order].astype(np.float64) * w
    ctp, cfp = np.cumsum(t), np.cumsum(w - t)
    recall = ctp / max(positives, 1e-12)
    precision = ctp / np.maximum(ctp + cfp, 1e-12)
    return recall, precision


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """COCO's 101-point interpolated AP (precision made monotone, read at recall 0, 0.01, ..., 1)."""
    if not len(recall):
        return 0.0
    env = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, RECALL_POINTS, side="left")
    return float(np.where(idx < len(env), env[np.minimum(idx, len(env) - 1)], 0.0).mean())


def ap_table(m: Matched, image_weights: np.ndarray | None = None) -> np.ndarray:
    """AP [C, T]; ``image_weights`` (counts per image, for the bootstrap) default 1. A class with no ground truth
    in the (re)sample is NaN."""
    C, T = len(m.scores), m.tp[0].shape[1] if m.tp else len(IOU_THRESHOLDS)
    out = np.full((C, T), np.nan)
    for c in range(C):
        wi = np.ones(len(m.positives[c])) if image_weights is None else image_weights
        npos = float((m.positives[c] * wi).sum())
        if npos <= 0:
            continue
        w = wi[m.images[c]] if len(m.images[c]) else np.zeros(0)
        for t in range(T):
            r, p = pr_curve(m.scores[c], m.tp[c][:, t], npos, w)
            out[c, t] = average_precision(r, p)
    return out


def summary(m: Matched, classes: Sequence[str], n_boot: int = 1000, seed: int = 0) -> dict:
    """mAP@0.5, mAP@[.5:.95] (means over classes), AP per class, with 95% percentile bootstrap intervals
    resampling validation images."""
    table = ap_table(m)
    n = len(m.positives[0])
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        counts = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
        boots.append(ap_table(m, counts))
    boots = np.stack(boots)  # [B, C, T]
    ci = lambda v: [float(x) for x in np.nanpercentile(v, [2.5, 97.5])]  # noqa: E731
    return {
        "map50": float(np.nanmean(table[:, 0])), "map50_ci95": ci(np.nanmean(boots[:, :, 0], 1)),
        "map": float(np.nanmean(table)), "map_ci95": ci(np.nanmean(boots, (1, 2))),
        "per_class": {name: {"ap50": float(table[c, 0]), "ap50_ci95": ci(boots[:, c, 0]),
                             "ap": float(np.nanmean(table[c])), "boxes": int(m.positives[c].sum())}
                      for c, name in enumerate(classes)},
        "bootstrap_resamples": n_boot, "iou_thresholds": [float(t) for t in IOU_THRESHOLDS],
    }
