"""Readers and window builders for the forecasting tasks (I-94 traffic, daily closes), numpy + csv only.

Windows are cut only where the series is contiguous (traffic has missing hours; nothing is filled).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HOUR = np.timedelta64(1, "h")


@dataclass
class Windows:
    """Model inputs by name, targets, and per-window bookkeeping (forecast origin, bootstrap group)."""

    inputs: dict[str, np.ndarray]
    y: np.ndarray  # [N,H] raw units
    origin: np.ndarray  # datetime64 of the first forecast step
    group: np.ndarray  # bootstrap cluster (e.g. the ISO week of the origin)
    label: list[str] = field(default_factory=list)  # e.g. ticker per window

    def __len__(self) -> int:
        return len(self.y)

    def take(self, idx: np.ndarray) -> "Windows":
        return Windows({k: v[idx] for k, v in self.inputs.items()}, self.y[idx], self.origin[idx], self.group[idx],
                       [self.label[i] for i in idx] if self.label else [])


def week_of(t: np.ndarray) -> np.ndarray:
    """Monday-based week number (1970-01-01 was a Thursday)."""
    days = t.astype("datetime64[D]").astype(np.int64)
    return (days + 3) // 7


# -- traffic --------------------------------------------------------------------------------------
def read_traffic(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """-> (hour stamps datetime64[h], traffic_volume float32), sorted, unique."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    t = np.array([r["timestamp"][:13].replace(" ", "T") for r in rows], dtype="datetime64[h]")
    v = np.array([float(r["traffic_volume"]) for r in rows], dtype=np.float32)
    if len(t) > 1 and not np.all(np.diff(t) > np.timedelta64(0, "h")):
        raise ValueError(f"{path}: timestamps not strictly increasing")
    return t, v


def hour_of_week(t: np.ndarray) -> np.ndarray:
    """Monday 00:00 = 0 ... Sunday 23:00 = 167 (local time as in the data)."""
    hours = t.astype("datetime64[h]").astype(np.int64)
    return ((hours // 24 + 3) % 7) * 24 + hours % 24


def contiguous_starts(t: np.ndarray, length: int) -> np.ndarray:
    """Indices i such that t[i : i + length] are consecutive hours (t strictly increasing)."""
    if len(t) < length:
        return np.zeros(0, dtype=np.int64)
    span = (t[length - 1 :] - t[: len(t) - length + 1]) // HOUR
    return np.flatnonzero(span == length - 1)


def hour_of_week_profile(t: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Mean volume per hour of week [168] (the 'hour-of-week mean' baseline)."""
    how = hour_of_week(t)
    sums = np.bincount(how, weights=v, minlength=168)
    counts = np.bincount(how, minlength=168)
    return (sums / np.maximum(counts, 1)).astype(np.float32)


def traffic_windows(t: np.ndarray, v: np.ndarray, history: int = 168, horizon: int = 24,
                    origin_from: np.datetime64 | None = None, origin_to: np.datetime64 | None = None,
                    target_before: np.datetime64 | None = None, stride: int = 1) -> Windows:
    """All contiguous (history + horizon) windows; optional bounds on the first forecast hour / last target hour."""
    starts = contiguous_starts(t, history + horizon)
    origin = t[starts + history] if len(starts) else np.zeros(0, dtype="datetime64[h]")
    keep = _window_mask(origin, origin + (horizon - 1) * HOUR, origin_from, origin_to, target_before)
    starts, origin = starts[keep][::stride], origin[keep][::stride]
    idx = starts[:, None] + np.arange(history + horizon)[None]
    seg = v[idx] if len(starts) else np.zeros((0, history + horizon), np.float32)
    return Windows({"history": seg[:, :history].astype(np.float32),
                    "hour_of_week": hour_of_week(t[starts]).astype(np.int64)},
                   seg[:, history:].astype(np.float32), origin, week_of(origin))


def _window_mask(origin: np.ndarray, last_target: np.ndarray, origin_from, origin_to, target_before) -> np.ndarray:
    """Keep windows whose first forecast step is in [origin_from, origin_to) and whose last target < target_before."""
    keep = np.ones(len(origin), dtype=bool)
    for bound, values, ok in ((origin_from, origin, np.greater_equal), (origin_to, origin, np.less),
                              (target_before, last_target, np.less)):
        if bound is not None:
            keep &= ok(values, bound)
    return keep


def seasonal_naive(history: np.ndarray, horizon: int = 24, season: int = 168) -> np.ndarray:
    """Same hour last week: forecast step h (1-based) = history[len - season + h - 1]."""
    start = history.shape[1] - season
    return history[:, start : start + horizon]


def profile_forecast(profile: np.ndarray, how0: np.ndarray, history: int = 168, horizon: int = 24) -> np.ndarray:
    """Hour-of-week mean for the forecast hours; how0 = hour of week of history[0]."""
    return profile[(how0[:, None] + history + np.arange(horizon)[None]) % len(profile)]


# -- prices ---------------------------------------------------------------------------------------
def read_prices(path: Path, column: str = "close") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """ticker -> (dates datetime64[D], prices float64), sorted by date."""
    out: dict[str, tuple[list, list]] = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            d, p = out.setdefault(r["ticker"], ([], []))
            d.append(r["date"])
            p.append(float(r[column]))
    res = {}
    for k, (d, p) in out.items():
        dates = np.array(d, dtype="datetime64[D]")
        order = np.argsort(dates, kind="stable")
        res[k] = (dates[order], np.asarray(p, dtype=np.float64)[order])
    return res


def concat_prices(*parts: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    keys = sorted(set().union(*parts))
    return {k: (np.concatenate([p[k][0] for p in parts if k in p]), np.concatenate([p[k][1] for p in parts if k in p]))
            for k in keys}


def price_windows(series: dict[str, tuple[np.ndarray, np.ndarray]], history: int = 60, horizon: int = 5,
                  origin_from: np.datetime64 | None = None, origin_to: np.datetime64 | None = None,
                  target_before: np.datetime64 | None = None, stride: int = 1) -> Windows:
    """Windows of consecutive trading days per ticker; origin = date of the first forecast day."""
    xs, ys, origins, labels = [], [], [], []
    for ticker, (dates, p) in sorted(series.items()):
        n = len(p) - history - horizon + 1
        if n <= 0:
            continue
        starts = np.arange(n)
        origin = dates[starts + history]
        keep = _window_mask(origin, dates[starts + history + horizon - 1], origin_from, origin_to, target_before)
        starts = starts[keep][::stride]
        idx = starts[:, None] + np.arange(history + horizon)[None]
        xs.append(p[idx][:, :history])
        ys.append(p[idx][:, history:])
        origins.append(dates[starts + history])
        labels += [ticker] * len(starts)
    origin = np.concatenate(origins) if origins else np.zeros(0, dtype="datetime64[D]")
    return Windows({"closes": np.concatenate(xs).astype(np.float32) if xs else np.zeros((0, history), np.float32)},
                   np.concatenate(ys).astype(np.float32) if ys else np.zeros((0, horizon), np.float32),
                   origin, week_of(origin), labels)
