"""ULB card transactions (``shared/data/fraud/``): CSV ``Time,V1..V28,Amount,Class`` -> float arrays.

The column order of FEATURES is the fraud model's input contract (``transactions`` FP32 [batch, 30]); the
server builds the same rows from a request's named fields (service/tasks/risk.py).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FEATURES: tuple[str, ...] = ("Time", *(f"V{i}" for i in range(1, 29)), "Amount")
LABEL = "Class"


@dataclass
class FraudSplit:
    x: np.ndarray  # float64 [n, 30] in FEATURES order, raw (unscaled)
    y: np.ndarray  # int64 [n], 1 = fraud

    def __len__(self) -> int:
        return len(self.y)


def read_fraud(path: Path) -> FraudSplit:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in (*FEATURES, LABEL) if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing columns {missing}")
        rows = list(reader)
    x = np.array([[float(r[c]) for c in FEATURES] for r in rows], dtype=np.float64).reshape(-1, len(FEATURES))
    y = np.array([int(float(r[LABEL])) for r in rows], dtype=np.int64)
    return FraudSplit(x, y)


def load_splits(root: Path) -> tuple[FraudSplit, FraudSplit]:
    """(train, validation) from ``root`` (the folder holding train.csv and validation.csv)."""
    return read_fraud(root / "train.csv"), read_fraud(root / "validation.csv")
