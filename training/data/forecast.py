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
                    target_before: np.datetime64 | None = None, stride: int = 1, calendar: bool = False) -> Windows:
    """All contiguous (history + horizon) windows; optional bounds on the first forecast hour / last target hour.

    ``calendar``: also the input ``calendar`` [N, history + horizon, 4] (service/calendar.py, what the server computes
    from a request's timestamps)."""
    starts = contiguous_starts(t, history + horizon)
    origin = t[starts + history] if len(starts) else np.zeros(0, dtype="datetime64[h]")
    keep = _window_mask(origin, origin + (horizon - 1) * HOUR, origin_from, origin_to, target_before)
    starts, origin = starts[keep][::stride], origin[keep][::stride]
    idx = starts[:, None] + np.arange(history + horizon)[None]
    seg = v[idx] if len(starts) else np.zeros((0, history + horizon), np.float32)
    inputs = {"history": seg[:, :history].astype(np.float32), "hour_of_week": hour_of_week(t[starts]).astype(np.int64)}
    if calendar:
        inputs["calendar"] = hourly_calendar(t[starts], history + horizon)
    return Windows(inputs, seg[:, history:].astype(np.float32), origin, week_of(origin))


def fill_short_gaps(t: np.ndarray, v: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (hourly grid t[0]..t[-1], values with holes of <= max_gap hours linearly interpolated and NaN in longer
    ones, observed mask). For training inputs only: targets stay real observations."""
    pos = ((t - t[0]) // HOUR).astype(np.int64)
    grid = t[0] + np.arange(pos[-1] + 1) * HOUR
    val = np.full(len(grid), np.nan, np.float32)
    val[pos] = v
    observed = ~np.isnan(val)
    for j in np.flatnonzero((np.diff(pos) > 1) & (np.diff(pos) <= max_gap + 1)):
        a, b = pos[j], pos[j + 1]
        val[a + 1 : b] = np.interp(np.arange(a + 1, b), [a, b], [v[j], v[j + 1]])
    return grid, val, observed


def filled_traffic_windows(t: np.ndarray, v: np.ndarray, history: int = 168, horizon: int = 24, max_gap: int = 0,
                           origin_from: np.datetime64 | None = None, origin_to: np.datetime64 | None = None,
                           target_before: np.datetime64 | None = None, calendar: bool = False) -> Windows:
    """Like traffic_windows, but the history may hold interpolated holes of <= max_gap hours (targets all observed).

    max_gap = 0 gives exactly traffic_windows' windows."""
    grid, val, observed = fill_short_gaps(t, v, max_gap)
    n = len(grid) - history - horizon + 1
    if n <= 0:
        return traffic_windows(t[:0], v[:0], history, horizon, calendar=calendar)
    ok_hist = np.concatenate([[0], np.cumsum(~np.isnan(val))])
    ok_obs = np.concatenate([[0], np.cumsum(observed)])
    s = np.arange(n)
    keep = (ok_hist[s + history] - ok_hist[s] == history) & (ok_obs[s + history + horizon] - ok_obs[s + history] == horizon)
    starts = s[keep]
    origin = grid[starts + history]
    keep = _window_mask(origin, origin + (horizon - 1) * HOUR, origin_from, origin_to, target_before)
    starts, origin = starts[keep], origin[keep]
    seg = val[starts[:, None] + np.arange(history + horizon)[None]]
    inputs = {"history": seg[:, :history].astype(np.float32), "hour_of_week": hour_of_week(grid[starts]).astype(np.int64)}
    if calendar:
        inputs["calendar"] = hourly_calendar(grid[starts], history + horizon)
    return Windows(inputs, seg[:, history:].astype(np.float32), origin, week_of(origin))


def hourly_calendar(first: np.ndarray, length: int) -> np.ndarray:
    """[N, length, 4] calendar features of the hours first[i], first[i] + 1 h, ... (one table, then indexed)."""
    from service.calendar import CALENDAR_FEATURES, calendar_features

    if not len(first):
        return np.zeros((0, length, len(CALENDAR_FEATURES)), np.float32)
    t0 = first.min().astype("datetime64[h]")
    span = int((first.max() - t0) // HOUR) + length
    table = calendar_features(t0.astype("datetime64[s]").item(), span)
    return table[((first - t0) // HOUR).astype(np.int64)[:, None] + np.arange(length)[None]]


@dataclass
class Fold:
    """One walk-forward fold: fit on windows whose last target is before ``cut``, evaluate on windows whose first
    forecast hour is in [cut, until)."""

    cut: np.datetime64
    until: np.datetime64
    fit: np.ndarray  # indices into the fit windows
    eval: np.ndarray  # indices into the evaluation windows


def month_cutoffs(first: str, last: str, step: int = 1) -> list[np.datetime64]:
    """First hours of the months first, first + step, ... up to and including last ('YYYY-MM')."""
    months = np.arange(np.datetime64(first, "M"), np.datetime64(last, "M") + 1, step)
    return [m.astype("datetime64[h]") for m in months]


def walk_forward(fit: Windows, evaluate: Windows, cutoffs: list[np.datetime64], end: np.datetime64,
                 horizon: int = 24) -> list[Fold]:
    """Rolling-origin folds: for cut-off k, fit on ``fit`` windows whose targets all precede cutoffs[k] and evaluate on
    ``evaluate`` windows whose forecasts start in [cutoffs[k], cutoffs[k + 1]) (the last up to ``end``).

    Evaluation periods are disjoint and in time order; a window's targets may run up to horizon - 1 hours past its
    period (never into its own fit data: the next fold's fit set may include them, as it would in production)."""
    bounds = [*cutoffs, end]
    last_target = fit.origin + (horizon - 1) * HOUR
    folds = []
    for cut, until in zip(bounds[:-1], bounds[1:]):
        if until <= cut:
            raise ValueError(f"cut-offs must increase: {cut} then {until}")
        folds.append(Fold(cut, until, np.flatnonzero(last_target < cut),
                          np.flatnonzero((evaluate.origin >= cut) & (evaluate.origin < until))))
    return folds


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
