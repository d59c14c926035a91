"""Validation metrics with confidence intervals (numpy only)."""

from __future__ import annotations

import math
import os
from typing import Any, Callable

import numpy as np

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k/n."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def proportion(k: int, n: int) -> dict[str, float]:
    lo, hi = wilson(int(k), int(n))
    return {"value": k / n if n else float("nan"), "ci95": [lo, hi], "k": int(k), "n": int(n)}


def accuracy_with_ci(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    pred, y = np.asarray(pred), np.asarray(y)
    return proportion(int((pred == y).sum()), len(y))


def confusion_matrix(y: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y, dtype=np.int64), np.asarray(pred, dtype=np.int64)), 1)
    return cm


def roc_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), thresholds descending; predicted positive when score >= threshold."""
    y = np.asarray(y).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    order = np.argsort(-score, kind="mergesort")
    s, yy = score[order], y[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(yy)[distinct]
    fps = (distinct + 1) - tps
    P, N = max(yy.sum(), 1), max((~yy).sum(), 1)
    tpr = np.r_[0.0, tps / P]
    fpr = np.r_[0.0, fps / N]
    thr = np.r_[np.inf, s[distinct]]
    return fpr, tpr, thr


def auroc(y: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney AUROC (ties count one half)."""
    y = np.asarray(y).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    pos, neg = score[y], score[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    avg_rank = ends - (counts - 1) / 2  # 1-based average rank of each distinct value (ties share it)
    ranks = avg_rank[inverse]
    return float((ranks[y].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def bootstrap_ci(fn, *arrays: np.ndarray, n_boot: int = 2000, seed: int = 0, stratify: np.ndarray | None = None) -> list[float]:
    """Percentile bootstrap 95% interval of fn(*arrays) (resampling rows, within strata if given)."""
    rng = np.random.default_rng(seed)
    n = len(arrays[0])
    values = []
    groups = [np.flatnonzero(stratify == g) for g in np.unique(stratify)] if stratify is not None else [np.arange(n)]
    for _ in range(n_boot):
        idx = np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])
        v = fn(*(a[idx] for a in arrays))
        if not (isinstance(v, float) and math.isnan(v)):
            values.append(v)
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def binary_report(y: np.ndarray, prob: np.ndarray, threshold: float) -> dict[str, object]:
    y = np.asarray(y).astype(bool)
    pred = np.asarray(prob) >= threshold
    tp, fn = int((pred & y).sum()), int((~pred & y).sum())
    tn, fp = int((~pred & ~y).sum()), int((pred & ~y).sum())
    sens, spec = proportion(tp, tp + fn), proportion(tn, tn + fp)
    return {
        "threshold": float(threshold),
        "sensitivity": sens,
        "specificity": spec,
        "balanced_accuracy": (sens["value"] + spec["value"]) / 2,
        "accuracy": proportion(tp + tn, len(y)),
        "ppv": proportion(tp, tp + fp),
        "npv": proportion(tn, tn + fn),
        "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
    }


def threshold_for_sensitivity(y: np.ndarray, prob: np.ndarray, min_sensitivity: float) -> float:
    """The highest threshold whose sensitivity is >= min_sensitivity (hence the best specificity)."""
    y = np.asarray(y).astype(bool)
    pos = np.sort(np.asarray(prob, dtype=np.float64)[y])
    # predicted positive when prob >= t; keep at least ceil(min_sens * P) positives above t
    need = math.ceil(min_sensitivity * len(pos) - 1e-9)
    return float(pos[len(pos) - need]) if need > 0 else float(pos[-1]) + 1e-6


def threshold_for_sensitivity_bound(y: np.ndarray, prob: np.ndarray, min_sensitivity: float, z: float = Z95) -> float:
    """The highest threshold at which the Wilson lower bound of the sensitivity is >= min_sensitivity: the goal holds
    with confidence (one-sided ~97.5% at z 1.96), not only at the point estimate. Where no threshold can show that
    (too few positives), the threshold that keeps every positive."""
    y = np.asarray(y).astype(bool)
    pos = np.sort(np.asarray(prob, dtype=np.float64)[y])
    n = len(pos)
    if n == 0:
        raise ValueError("no positives: sensitivity is undefined")
    for need in range(max(1, math.ceil(min_sensitivity * n - 1e-9)), n + 1):
        if wilson(need, n, z)[0] >= min_sensitivity:
            return float(pos[n - need])
    return float(pos[0])


def expected_calibration_error(y: np.ndarray, prob: np.ndarray, bins: int = 10) -> float:
    y = np.asarray(y, dtype=np.float64)
    prob = np.asarray(prob, dtype=np.float64)
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (prob >= lo) & (prob < hi) if hi < 1 else (prob >= lo) & (prob <= hi)
        if m.any():
            ece += m.mean() * abs(prob[m].mean() - y[m].mean())
    return float(ece)


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """AUPRC as average precision (sum over positives of precision at their rank; ties handled per distinct score)."""
    y = np.asarray(y).astype(bool)
    if not y.any():
        return float("nan")
    fpr, tpr, _ = roc_curve(y, score)
    P, N = y.sum(), (~y).sum()
    tp, fp = tpr * P, fpr * N
    precision = np.divide(tp, tp + fp, out=np.ones_like(tp), where=(tp + fp) > 0)
    return float(np.sum(np.diff(tpr) * precision[1:]))


def precision_recall_points(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds) at every distinct score, thresholds descending (positive when >=)."""
    y = np.asarray(y).astype(bool)
    fpr, tpr, thr = roc_curve(y, score)
    tp, fp = tpr[1:] * y.sum(), fpr[1:] * (~y).sum()
    return tp / np.maximum(tp + fp, 1), tpr[1:], thr[1:]


def recall_at_precision(y: np.ndarray, score: np.ndarray, min_precision: float = 0.95) -> float:
    """The highest recall among thresholds whose precision is >= min_precision (0 when none reaches it)."""
    precision, recall, _ = precision_recall_points(y, score)
    ok = precision >= min_precision - 1e-12
    return float(recall[ok].max()) if ok.any() else 0.0


def threshold_for_precision(y: np.ndarray, score: np.ndarray, min_precision: float = 0.95) -> float:
    """The lowest threshold (most recall) whose precision is >= min_precision; the top score when none is."""
    precision, _, thr = precision_recall_points(y, score)
    ok = np.flatnonzero(precision >= min_precision - 1e-12)
    return float(thr[ok[-1]]) if len(ok) else float(thr[0])


def brier(y: np.ndarray, prob: np.ndarray) -> float:
    return float(np.mean((np.asarray(prob, dtype=np.float64) - np.asarray(y, dtype=np.float64)) ** 2))


# -- binary risk models (fraud, deterioration): the card's figures with bootstrap CIs -------------------
def n_boot() -> int:
    """Bootstrap resamples for the card's CIs: 1,000; NEUROSERVE_BOOTSTRAP lowers it (tests)."""
    return int(os.environ.get("NEUROSERVE_BOOTSTRAP", 1000))


def _r95(y: np.ndarray, p: np.ndarray) -> float:
    return recall_at_precision(y, p, 0.95)


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "auroc": auroc, "auprc": average_precision, "recall_at_95_precision": _r95, "brier": brier,
}


def score_report(y: np.ndarray, p: np.ndarray, metrics: tuple[str, ...] = tuple(METRICS)) -> dict:
    """{metric: value, metric_ci95: [lo, hi]}: percentile bootstrap over rows, stratified by label (seed 0)."""
    y = np.asarray(y)
    out: dict[str, Any] = {"n": int(len(y)), "positives": int(np.sum(y)), "bootstrap_resamples": n_boot()}
    for name in metrics:
        fn = METRICS[name]
        out[name] = fn(y, p)
        out[f"{name}_ci95"] = bootstrap_ci(fn, y, p, n_boot=n_boot(), stratify=y)
    return out


def compare(y: np.ndarray, model: np.ndarray, baseline: np.ndarray, metric: str = "auprc") -> dict:
    """Paired bootstrap of model - baseline on the same resampled rows."""
    fn = METRICS[metric]
    diff = fn(y, model) - fn(y, baseline)
    ci = bootstrap_ci(lambda a, b, c: fn(a, b) - fn(a, c), np.asarray(y), model, baseline, n_boot=n_boot(),
                      stratify=np.asarray(y))
    return {f"{metric}_diff": float(diff), f"{metric}_diff_ci95": ci}


def operating_point(y: np.ndarray, p: np.ndarray, threshold: float) -> dict:
    report = binary_report(y, p, threshold)
    return {"threshold": float(threshold), "sensitivity": report["sensitivity"], "specificity": report["specificity"],
            "ppv": report["ppv"], "confusion": report["confusion"]}


def calibration_summary(y: np.ndarray, p: np.ndarray, bins: int = 10) -> dict:
    return {"brier": brier(y, p), "ece_10_bins": expected_calibration_error(y, p, bins),
            "mean_predicted": float(np.mean(p)), "observed_rate": float(np.mean(y))}
