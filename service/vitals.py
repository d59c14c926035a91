"""ICU stays as model inputs: cleaning with physiological limits, hourly bins, masks and time since last value.

numpy + standard library only: the server builds a request's inputs with these functions and the deterioration
recipe (training/recipes/deterioration.py) builds its training inputs with the same ones, from the same table
(the manifest's ``parameters.variables``, written by the recipe), so both sides clean and bin alike by construction.

Inputs of the graph, per stay (T = 48 hourly bins, P variables in the table's order):
- ``values`` [T, P]: the variable's mean in the hour, standardised ((x - mean) / std from the train split),
  carried forward over empty hours; 0 (the mean) before the first observation;
- ``masks`` [T, P]: 1 where the hour holds an observation;
- ``deltas`` [T, P]: hours since the last observation (since admission when none yet), divided by T;
- ``statics`` [S]: age, sex, height and ICU type (STATICS);
- ``hours``: the hours observed so far (bins 1..T): the model reads bins [0, hours).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

# The time-series parameters of the PhysioNet 2012 data (its README); a model uses those its manifest lists.
PARAMETERS = ("ALP", "ALT", "AST", "Albumin", "BUN", "Bilirubin", "Cholesterol", "Creatinine", "DiasABP", "FiO2", "GCS",
              "Glucose", "HCO3", "HCT", "HR", "K", "Lactate", "MAP", "MechVent", "Mg", "NIDiasABP", "NIMAP", "NISysABP",
              "Na", "PaCO2", "PaO2", "Platelets", "RespRate", "SaO2", "SysABP", "Temp", "TroponinI", "TroponinT",
              "Urine", "WBC", "Weight", "pH")
HOURS = 48
MAX_MINUTE = HOURS * 60
ICU_TYPES = (1, 2, 3, 4)  # 1 CCU, 2 CSRU (cardiac surgery recovery), 3 MICU, 4 SICU
# statics columns: standardised age, male, female (both 0: unknown), standardised height, height known, ICU type one-hot
STATICS = ("age", "male", "female", "height", "height_known", "icu_ccu", "icu_csru", "icu_micu", "icu_sicu")
AGE_MEAN, AGE_STD = 64.0, 17.0
HEIGHT_MEAN, HEIGHT_STD = 170.0, 12.0
HEIGHT_LIMITS = (100.0, 250.0)


@dataclass(frozen=True)
class Variable:
    """One time-series variable: its physiological limits (values outside are artifacts, ignored), whether it is
    read as log1p (right-skewed labs, urine) and the train split's mean/std of its cleaned (logged) values."""

    name: str
    low: float
    high: float
    mean: float = 0.0
    std: float = 1.0
    log: bool = False

    @classmethod
    def from_dict(cls, row: Mapping) -> "Variable":
        return cls(str(row["name"]), float(row["low"]), float(row["high"]), float(row.get("mean", 0.0)),
                   float(row.get("std", 1.0)), bool(row.get("log", False)))

    def to_dict(self) -> dict:
        return {"name": self.name, "low": self.low, "high": self.high, "log": self.log, "mean": round(self.mean, 6),
                "std": round(self.std, 6)}

    def transform(self, value: float) -> float:
        """A cleaned raw value on the scale mean/std refer to."""
        return math.log1p(value) if self.log else value


@dataclass
class Stay:
    """One stay's inputs, and the measurements cleaning left out."""

    values: np.ndarray
    masks: np.ndarray
    deltas: np.ndarray
    statics: np.ndarray
    hours: int
    ignored: list[dict] = field(default_factory=list)


def limit_reason(value: float, low: float, high: float) -> str | None:
    if value < low:
        return f"below the physiological limit {low:g}"
    if value > high:
        return f"above the physiological limit {high:g}"
    return None


def statics_row(age: float, gender: int | None, height: float | None, icu_type: int) -> tuple[np.ndarray, list[dict]]:
    """The statics vector; a height outside HEIGHT_LIMITS (the data's -1 = unknown, 400 cm) counts as unknown and is
    reported as ignored."""
    ignored = []
    known = height is not None and height >= 0
    if known:
        reason = limit_reason(height, *HEIGHT_LIMITS)
        if reason:
            ignored.append({"minute": 0, "parameter": "Height", "value": height, "reason": reason})
            known = False
    row = np.zeros(len(STATICS), np.float32)
    row[0] = (age - AGE_MEAN) / AGE_STD
    row[1], row[2] = float(gender == 1), float(gender == 0)
    if known:
        row[3], row[4] = (height - HEIGHT_MEAN) / HEIGHT_STD, 1.0
    row[5 + ICU_TYPES.index(icu_type)] = 1.0
    return row, ignored


def stay_inputs(measurements: Iterable[tuple[int, str, float]], variables: Sequence[Variable], *, age: float,
                gender: int | None, height: float | None, icu_type: int) -> Stay:
    """Clean, bin and carry forward one stay's measurements ((minute, parameter, value), any order; parameters
    must be names in ``variables``). Minute m falls in hour bin min(m // 60, T - 1); the stay has been observed
    for as many hours as its last measurement's bin (at least 1)."""
    index = {v.name: i for i, v in enumerate(variables)}
    P = len(variables)
    sums = np.zeros((HOURS, P), np.float64)
    counts = np.zeros((HOURS, P), np.int32)
    ignored: list[dict] = []
    last_bin = 0
    for minute, name, value in measurements:
        if name not in index:
            ignored.append({"minute": int(minute), "parameter": name, "value": value, "reason": "not used by this model"})
            continue
        var = variables[index[name]]
        hour = min(int(minute) // 60, HOURS - 1)
        last_bin = max(last_bin, hour)
        reason = limit_reason(value, var.low, var.high)
        if reason:
            ignored.append({"minute": int(minute), "parameter": name, "value": value, "reason": reason})
            continue
        sums[hour, index[name]] += var.transform(value)
        counts[hour, index[name]] += 1
    masks = (counts > 0).astype(np.float32)
    means = np.array([v.mean for v in variables]), np.array([v.std for v in variables])
    observed = np.where(counts > 0, (sums / np.maximum(counts, 1) - means[0]) / means[1], np.nan)
    values = np.zeros((HOURS, P), np.float32)
    deltas = np.zeros((HOURS, P), np.float32)
    last_value = np.zeros(P, np.float64)
    last_seen = np.full(P, -1.0)
    for t in range(HOURS):
        seen = masks[t] > 0
        last_value = np.where(seen, observed[t], last_value)
        # hours since the last observation before this hour (GRU-D's delta); since admission when none yet
        deltas[t] = np.where(last_seen >= 0, t - last_seen, t + 1) / HOURS
        last_seen = np.where(seen, t, last_seen)
        values[t] = last_value
    statics, static_ignored = statics_row(age, gender, height, icu_type)
    ignored.sort(key=lambda row: row["minute"])
    return Stay(values, masks, deltas, statics, last_bin + 1, static_ignored + ignored)


def batch_inputs(stays: Sequence[Stay]) -> dict[str, np.ndarray]:
    """The graph's feeds for several stays."""
    return {"values": np.stack([s.values for s in stays]), "masks": np.stack([s.masks for s in stays]),
            "deltas": np.stack([s.deltas for s in stays]), "statics": np.stack([s.statics for s in stays]),
            "hours": np.array([s.hours for s in stays], dtype=np.int64)}
