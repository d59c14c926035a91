"""PhysioNet 2012 set-a ICU stays (``shared/data/vitals/``): long-format time series + outcomes -> stays.

LIMITS is the physiological-limits table: values outside [low, high] are recording artifacts (a 0 blood
pressure, a 20 C temperature, a pH of 735) and are dropped. The recipe writes it into the model's manifest
(``parameters.variables``) with the train split's mean/std per variable, and the server cleans requests with that
manifest table (service/vitals.py): one source for both sides.
"""

from __future__ import annotations

import csv
import gzip
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from service.vitals import Variable

# (name, low, high): units as in the data's README (PhysioNet 2012). Chosen from clinical plausibility, checked
# against the train split's 0.1/99.9 percentiles so that no plausible extreme is cut.
LIMITS: tuple[tuple[str, float, float], ...] = (
    ("ALP", 1, 5000), ("ALT", 1, 20000), ("AST", 1, 20000), ("Albumin", 0.5, 7), ("BUN", 0.5, 300),
    ("Bilirubin", 0.05, 80), ("Cholesterol", 20, 800), ("Creatinine", 0.1, 30), ("DiasABP", 5, 250),
    ("FiO2", 0.21, 1), ("GCS", 3, 15), ("Glucose", 10, 2000), ("HCO3", 2, 70), ("HCT", 5, 75), ("HR", 20, 300),
    ("K", 1.0, 12), ("Lactate", 0.1, 40), ("MAP", 15, 300), ("MechVent", 0, 1), ("Mg", 0.2, 12),
    ("NIDiasABP", 5, 250), ("NIMAP", 15, 300), ("NISysABP", 30, 300), ("Na", 90, 200), ("PaCO2", 5, 200),
    ("PaO2", 15, 800), ("Platelets", 1, 2500), ("RespRate", 1, 100), ("SaO2", 20, 100), ("SysABP", 30, 300),
    ("Temp", 25, 45), ("TroponinI", 0, 100), ("TroponinT", 0, 50), ("Urine", 0, 10000), ("WBC", 0.05, 400),
    ("Weight", 20, 350), ("pH", 6.5, 8.0),
)
DESCRIPTORS = ("Age", "Gender", "Height", "ICUType")
# right-skewed (labs spanning orders of magnitude, urine volumes): read as log1p
LOGGED = {"ALP", "ALT", "AST", "Bilirubin", "BUN", "Creatinine", "Glucose", "Lactate", "Platelets", "TroponinI",
          "TroponinT", "Urine", "WBC"}


@dataclass
class Record:
    record_id: str
    measurements: list[tuple[int, str, float]]
    age: float
    gender: int | None
    height: float | None
    icu_type: int
    died: int
    saps_i: float
    sofa: float


def read_split(root: Path, split: str) -> list[Record]:
    """Records of ``<split>_timeseries.csv.gz`` joined with ``<split>_outcomes.csv``, in the outcomes' order."""
    series: dict[str, list[tuple[int, str, float]]] = defaultdict(list)
    desc: dict[str, dict[str, float]] = defaultdict(dict)
    with gzip.open(root / f"{split}_timeseries.csv.gz", "rt", newline="") as f:
        reader = csv.reader(f)
        next(reader)
        for rid, minute, name, value in reader:
            if name in DESCRIPTORS and minute == "0":
                desc[rid][name] = float(value)
            else:
                series[rid].append((int(minute), name, float(value)))
    records = []
    with open(root / f"{split}_outcomes.csv", newline="") as f:
        for row in csv.DictReader(f):
            rid = row["record_id"]
            d = desc[rid]
            gender = d.get("Gender", -1)
            height = d.get("Height", -1)
            records.append(Record(rid, series[rid], float(d["Age"]), None if gender < 0 else int(gender),
                                  None if height < 0 else height, int(d["ICUType"]), int(row["in_hospital_death"]),
                                  float(row["saps_i"]), float(row["sofa"])))
    return records


def variable_table(train: list[Record]) -> list[Variable]:
    """LIMITS with the train split's mean/std of the (logged where LOGGED) values inside the limits."""
    values: dict[str, list[float]] = defaultdict(list)
    raw = {name: Variable(name, float(low), float(high), log=name in LOGGED) for name, low, high in LIMITS}
    for record in train:
        for _, name, value in record.measurements:
            v = raw[name]
            if v.low <= value <= v.high:
                values[name].append(v.transform(value))
    table = []
    for name, v in raw.items():
        x = np.asarray(values[name] or [0.0], dtype=np.float64)
        table.append(Variable(name, v.low, v.high, float(x.mean()), float(max(x.std(), 1e-3)), v.log))
    return table


def truncated(record: Record, hours: int) -> list[tuple[int, str, float]]:
    """The measurements of the first ``hours`` hours (what a stay in progress would have sent)."""
    return list(record.measurements) if hours >= 48 else [m for m in record.measurements if m[0] < hours * 60]
