"""Forecast intervals (numpy): conformal widening of the 10-90% band, coverage / width / pinball figures, and
confidence intervals that resample whole groups of forecast origins."""

from __future__ import annotations

from typing import Callable

import numpy as np

QUANTILES = (0.1, 0.5, 0.9)


def widening_factors(q: np.ndarray, y: np.ndarray, target: float = 0.8, grid: np.ndarray | None = None) -> np.ndarray:
    """Per-horizon factor f >= 0 so that [q50 - f(q50-q10), q50 + f(q90-q50)] covers ``target`` of ``y``.

    q [N,H,3], y [N,H]. Fitted on a calibration slice (never the reported validation set).
    """
    grid = np.linspace(0.3, 4.0, 371) if grid is None else grid
    lo_d = np.maximum(q[..., 1] - q[..., 0], 1e-12)
    hi_d = np.maximum(q[..., 2] - q[..., 1], 1e-12)
    # the smallest factor that covers a point: below the median it needs (q50 - y)/lo_d, above (y - q50)/hi_d
    need = np.where(y < q[..., 1], (q[..., 1] - y) / lo_d, (y - q[..., 1]) / hi_d)  # [N,H]
    out = np.empty(q.shape[1])
    for h in range(q.shape[1]):
        cover = (need[:, h][None, :] <= grid[:, None]).mean(1)
        out[h] = grid[int(np.argmin(np.abs(cover - target)))]
    return out


def interval_report(q: np.ndarray, y: np.ndarray) -> dict[str, float]:
    inside = (y >= q[..., 0]) & (y <= q[..., 2])
    return {"coverage": float(inside.mean()), "mean_width": float((q[..., 2] - q[..., 0]).mean()),
            "pinball": float(np.mean([np.mean(np.maximum(a * (y - q[..., i]), (a - 1) * (y - q[..., i])))
                                      for i, a in enumerate(QUANTILES)]))}


def block_bootstrap_ci(fn: Callable[..., float], groups: np.ndarray, *arrays: np.ndarray, n_boot: int = 1000,
                       seed: int = 0) -> list[float]:
    """95% percentile interval of fn(*arrays) resampling whole groups (e.g. days or weeks of forecast origins),
    so that overlapping / cross-sectionally correlated windows are not counted as independent."""
    rng = np.random.default_rng(seed)
    uniq, inv = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inv == g) for g in range(len(uniq))]
    stats = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(uniq), size=len(uniq))
        idx = np.concatenate([members[g] for g in pick])
        stats.append(fn(*(a[idx] for a in arrays)))
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return [float(lo), float(hi)]
