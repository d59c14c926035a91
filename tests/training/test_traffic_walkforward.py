"""Walk-forward folds, gap-filled fit windows and the request-time calendar of the traffic recipe (tiny, no training)."""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pytest

from service.calendar import calendar_features, federal_holidays, low_traffic_day
from training.data import forecast as fdata


def _series(start="2017-01-01T00", hours=24 * 120, holes=()):
    t = np.arange(np.datetime64(start, "h"), np.datetime64(start, "h") + hours)
    keep = np.ones(len(t), bool)
    for a, n in holes:
        keep[a : a + n] = False
    return t[keep], np.arange(hours, dtype=np.float32)[keep]


def test_federal_holidays_2017_as_observed():
    assert list(federal_holidays(2017)) == [
        date(2017, 1, 2), date(2017, 1, 16), date(2017, 2, 20), date(2017, 5, 29), date(2017, 7, 4), date(2017, 9, 4),
        date(2017, 10, 9), date(2017, 11, 10), date(2017, 11, 23), date(2017, 12, 25)]


def test_saturday_new_year_is_observed_the_year_before_and_juneteenth_from_2021():
    h21, h22 = federal_holidays(2021), federal_holidays(2022)
    assert h21[date(2021, 12, 31)] == "New Year's Day" and date(2022, 1, 1) not in h22
    assert date(2021, 6, 18) in h21 and date(2022, 6, 20) in h22  # Juneteenth on Sat / Sun
    assert not any(d.month == 6 and d.day in (18, 19, 20) for d in federal_holidays(2019))


def test_low_days():
    assert low_traffic_day(date(2017, 11, 24)) and low_traffic_day(date(2017, 12, 24)) and low_traffic_day(date(2017, 12, 31))
    assert not low_traffic_day(date(2017, 11, 23)) and not low_traffic_day(date(2017, 7, 4))


def test_calendar_features_hour_by_hour():
    f = calendar_features(datetime(2017, 7, 3, 20), 30)  # 20:00 on the 3rd .. 01:00 on the 5th
    assert f.shape == (30, 4) and f.dtype == np.float32
    assert f[:4, 0].tolist() == [0] * 4 and f[4:28, 0].tolist() == [1] * 24 and f[28:, 0].tolist() == [0] * 2
    assert np.allclose(f[:, 2] ** 2 + f[:, 3] ** 2, 1.0)
    jan1 = calendar_features(datetime(2018, 1, 1, 0), 1)[0]
    assert jan1[2] == pytest.approx(0.0, abs=1e-6) and jan1[3] == pytest.approx(1.0)


def test_window_calendar_matches_the_service_function():
    t, v = _series("2017-06-20T05")
    w = fdata.traffic_windows(t, v, 168, 24, calendar=True)
    for i in (0, 37, len(w) - 1):
        start = w.origin[i] - 168 * fdata.HOUR
        np.testing.assert_array_equal(w.inputs["calendar"][i], calendar_features(start.item(), 192))


def test_filled_windows_interpolate_history_holes_only():
    t, v = _series(hours=24 * 30, holes=[(300, 3), (500, 20)])
    strict = fdata.traffic_windows(t, v, 168, 24)
    zero = fdata.filled_traffic_windows(t, v, 168, 24, max_gap=0)
    np.testing.assert_array_equal(strict.origin, zero.origin)
    filled = fdata.filled_traffic_windows(t, v, 168, 24, max_gap=5)
    assert len(filled) > len(strict)
    # v is the hour index, so a linear fill reproduces it exactly; targets never cover a hole
    hours = ((filled.origin - t[0]) // fdata.HOUR)[:, None]
    np.testing.assert_allclose(filled.inputs["history"], hours - 168 + np.arange(168)[None])
    np.testing.assert_array_equal(filled.y, hours + np.arange(24)[None])
    observed = set(((t - t[0]) // fdata.HOUR).tolist())
    assert all(int(h) in observed for h in (hours + np.arange(24)[None]).ravel())
    # the 20-hour hole is not filled: no history spans it
    span = hours - 168 + np.arange(168)[None]
    assert not np.any((span >= 500) & (span < 520))


def test_walk_forward_folds_never_fit_on_their_own_period():
    t, v = _series("2017-01-01T00", 24 * 200)
    w = fdata.traffic_windows(t, v, 168, 24)
    cuts = fdata.month_cutoffs("2017-03", "2017-06", 1)
    assert [str(c) for c in cuts] == ["2017-03-01T00", "2017-04-01T00", "2017-05-01T00", "2017-06-01T00"]
    folds = fdata.walk_forward(w, w, cuts, np.datetime64("2017-07-01T00", "h"))
    assert [str(f.until) for f in folds] == ["2017-04-01T00", "2017-05-01T00", "2017-06-01T00", "2017-07-01T00"]
    for f in folds:
        assert np.all(w.origin[f.fit] + 23 * fdata.HOUR < f.cut)
        assert np.all((w.origin[f.eval] >= f.cut) & (w.origin[f.eval] < f.until))
        assert len(f.fit) and len(f.eval)
    assert sum(len(f.eval) for f in folds) == np.sum((w.origin >= cuts[0]) & (w.origin < np.datetime64("2017-07-01T00")))
    assert all(len(a.fit) < len(b.fit) for a, b in zip(folds, folds[1:]))  # the fit set only grows
    with pytest.raises(ValueError):
        fdata.walk_forward(w, w, cuts[::-1], np.datetime64("2017-07-01T00", "h"))


def test_fold_summary_interval():
    from training.recipes.traffic import summarize, widened

    s = summarize([{"ratio": r, "mae": 1.0, "profile_mae": 1.0} for r in (0.8, 0.9, 0.85, 0.75)])
    assert s["ratio_mean"] == pytest.approx(0.825) and s["ratio_mean_ci95"][0] < 0.825 < s["ratio_mean_ci95"][1]
    q = np.array([[[90.0, 100.0, 120.0]]])
    np.testing.assert_allclose(widened(q, np.array([2.0])), [[[80.0, 100.0, 140.0]]])
