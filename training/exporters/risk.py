"""Card pieces for binary risk models (fraud, deterioration): metrics with bootstrap CIs, baselines compared on
the same rows, the operating threshold, PR / reliability plots. numpy + matplotlib; no torch."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from training.metrics import (auroc, average_precision, binary_report, bootstrap_ci, brier,
                              expected_calibration_error, precision_recall_points, recall_at_precision)



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


def fmt(report: Mapping[str, Any], metric: str, digits: int = 3) -> str:
    lo, hi = report[f"{metric}_ci95"]
    return f"{report[metric]:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


def plot_pr(y: np.ndarray, curves: Mapping[str, np.ndarray], path: Path, title: str,
            point: tuple[float, float] | None = None) -> Path:
    from training.cards import _plt

    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    for label, p in curves.items():
        precision, recall, _ = precision_recall_points(y, p)
        ax.step(np.r_[0, recall], np.r_[1, precision], where="post",
                label=f"{label} (AUPRC {average_precision(y, p):.3f})")
    if point is not None:
        ax.plot([point[0]], [point[1]], "ro", label="served threshold")
    ax.set_ylim(0, 1.02)
    return _finish(plt, fig, ax, path, title, "recall", "precision", "lower left")


def plot_reliability(y: np.ndarray, p: np.ndarray, path: Path, title: str, bins: int = 10) -> Path:
    """Observed rate against mean predicted risk per decile of predicted risk, with Wilson intervals."""
    from training.cards import _plt
    from training.metrics import wilson

    plt = _plt()
    y, p = np.asarray(y), np.asarray(p)
    order = np.argsort(p, kind="mergesort")
    groups = np.array_split(order, bins)
    mean_p = [float(p[g].mean()) for g in groups]
    rate = [float(y[g].mean()) for g in groups]
    cis = [wilson(int(y[g].sum()), len(g)) for g in groups]
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8, label="perfect calibration")
    ax.errorbar(mean_p, rate, yerr=[[r - lo for r, (lo, _) in zip(rate, cis)], [hi - r for r, (_, hi) in zip(rate, cis)]],
                fmt="o-", ms=4, capsize=2, label=f"model (Brier {brier(y, p):.3f})")
    top = max(max(mean_p), max(hi for _, hi in cis)) * 1.05
    ax.set_xlim(0, min(1, top))
    ax.set_ylim(0, min(1, top))
    return _finish(plt, fig, ax, path, title, "mean predicted risk (decile of validation stays)",
                   "observed rate (95% Wilson CI)", "upper left")


def _finish(plt, fig, ax, path: Path, title: str, xlabel: str, ylabel: str, legend: str) -> Path:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc=legend)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
