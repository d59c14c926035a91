"""Calendar facts known at request time, for the traffic forecaster: US federal holidays and per-hour features.

Standard library + numpy only: the server computes these from the request's timestamps, and the traffic recipe
imports the same functions to build its training windows, so both sides agree by construction.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache

import numpy as np

# columns of calendar_features(); the order is part of the traffic model's input contract
CALENDAR_FEATURES = ("federal_holiday", "low_day", "year_sin", "year_cos")


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """The n-th (1-based) weekday (Monday = 0) of a month; n = -1 for the last one."""
    if n > 0:
        first = date(year, month, 1)
        return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
    last = (date(year + month // 12, month % 12 + 1, 1)) - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _observed(day: date) -> date:
    """Federal rule (5 U.S.C. 6103): a Saturday holiday is observed on Friday, a Sunday one on Monday."""
    if day.weekday() == 5:
        return day - timedelta(days=1)
    if day.weekday() == 6:
        return day + timedelta(days=1)
    return day


def _actual(year: int) -> dict[date, str]:
    days = {date(year, 1, 1): "New Year's Day",
            _nth_weekday(year, 2, 0, 3): "Washington's Birthday",
            _nth_weekday(year, 5, 0, -1): "Memorial Day",
            date(year, 7, 4): "Independence Day",
            _nth_weekday(year, 9, 0, 1): "Labor Day",
            _nth_weekday(year, 10, 0, 2): "Columbus Day",
            date(year, 11, 11): "Veterans Day",
            _nth_weekday(year, 11, 3, 4): "Thanksgiving Day",
            date(year, 12, 25): "Christmas Day"}
    if year >= 1986:
        days[_nth_weekday(year, 1, 0, 3)] = "Martin Luther King Jr. Day"
    if year >= 2021:
        days[date(year, 6, 19)] = "Juneteenth"
    return days


@lru_cache(maxsize=64)
def federal_holidays(year: int) -> dict[date, str]:
    """Observed US federal holidays (the days federal offices close) falling in ``year``, by date.

    New Year's Day on a Saturday is observed on Friday 31 December of the year before.
    """
    out = {}
    for y in (year - 1, year, year + 1):
        for day, name in _actual(y).items():
            seen = _observed(day)
            if seen.year == year:
                out[seen] = name
    return dict(sorted(out.items()))


def low_traffic_day(day: date) -> bool:
    """Known low-commute days that are not federal holidays: Christmas Eve, New Year's Eve, the day after
    Thanksgiving."""
    return (day.month, day.day) in ((12, 24), (12, 31)) or day == _nth_weekday(day.year, 11, 3, 4) + timedelta(days=1)


def calendar_features(start: datetime, hours: int) -> np.ndarray:
    """[hours, 4] float32 for the hours start, start + 1 h, ...: federal holiday (observed) on that date, low
    day, and the time of year as sin/cos of 2*pi*(day of year - 1)/365.25 (wall-clock local time, as given)."""
    out = np.zeros((hours, len(CALENDAR_FEATURES)), np.float32)
    first = start.date()
    n_days = (start.hour + hours - 1) // 24 + 1
    for k in range(n_days):
        day = first + timedelta(days=k)
        lo, hi = max(0, 24 * k - start.hour), min(hours, 24 * (k + 1) - start.hour)
        phase = 2 * np.pi * (day.timetuple().tm_yday - 1) / 365.25
        out[lo:hi] = (float(day in federal_holidays(day.year)), float(low_traffic_day(day)), np.sin(phase),
                      np.cos(phase))
    return out
