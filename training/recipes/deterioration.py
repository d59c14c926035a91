"""ICU in-hospital mortality from the first 48 h of irregular measurements (PhysioNet 2012 set-a).

    neuroserve-train train deterioration --seed 0
    neuroserve-train export deterioration     # models/icu-grud

A GRU-D-style recurrent net over hourly bins (values carried forward with a learnt decay, masks, hours since the
last value) plus age, sex, height and ICU type. Cleaning (physiological limits), binning and standardisation are
service/vitals.py's, with the limits table of training/data/vitals.py, written into the manifest so the server
cleans requests the same way. Trained with random truncation (a share of each batch scored after 6-48 h), so that
a stay in progress is answered from what it has so far.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from service.vitals import HOURS, STATICS, Variable, batch_inputs, stay_inputs
from training.data import vitals as data
from training.metrics import threshold_for_sensitivity
from training.nets.grud import DecayGRU
from training.recipes.risk import BinaryRiskRecipe, RiskConfig, Rows

MIN_SENSITIVITY = 0.8
HOURS_SHOWN = (6, 12, 24, 36, 48)
SUMMARY_STATS = ("count", "mean", "min", "max", "last")


def stays_to_rows(records: list[data.Record], table: list[Variable], hours: int = HOURS) -> Rows:
    stays = [stay_inputs(data.truncated(r, hours), table, age=r.age, gender=r.gender, height=r.height,
                         icu_type=r.icu_type) for r in records]
    return Rows(batch_inputs(stays), np.array([r.died for r in records], dtype=np.int64))


def summaries(records: list[data.Record], table: list[Variable]) -> np.ndarray:
    """Per-variable count/mean/min/max/last of the cleaned values over 48 h (NaN where never measured) + statics:
    the logistic-regression baseline's features."""
    index = {v.name: i for i, v in enumerate(table)}
    out = np.full((len(records), len(table) * len(SUMMARY_STATS) + len(STATICS)), np.nan)
    for row, r in enumerate(records):
        stay = stay_inputs([], table, age=r.age, gender=r.gender, height=r.height, icu_type=r.icu_type)
        by_var: dict[int, list[tuple[int, float]]] = {}
        for minute, name, value in r.measurements:
            v = table[index[name]]
            if v.low <= value <= v.high:
                by_var.setdefault(index[name], []).append((minute, value))
        for i in range(len(table)):
            base = i * len(SUMMARY_STATS)
            seen = sorted(by_var.get(i, []))
            out[row, base] = len(seen)
            if seen:
                vals = np.array([v for _, v in seen])
                out[row, base + 1: base + 5] = vals.mean(), vals.min(), vals.max(), vals[-1]
        out[row, len(table) * len(SUMMARY_STATS):] = stay.statics
    return out


@dataclass
class DeteriorationConfig(RiskConfig):
    truncate: float = 0.3  # share of each batch scored after a random 6-48 h instead of its whole stay


class DeteriorationRecipe(BinaryRiskRecipe):
    task = "deterioration"
    task_family = "icu-deterioration"
    data_subdir = "vitals"
    output_name = "risk"
    default = DeteriorationConfig(model_name="icu-grud", epochs=10, batch_size=64, lr=2e-3, weight_decay=1e-2,
                                  hidden=32, dropout=0.3, truncate=0.3)

    def records(self, args: argparse.Namespace) -> tuple[list[data.Record], list[data.Record]]:
        cache = getattr(self, "_records", None)
        if cache is None:
            root = self.data_dir(args) / self.data_subdir
            cache = self._records = (data.read_split(root, "train"), data.read_split(root, "validation"))
        return cache

    def load(self, args: argparse.Namespace) -> tuple[Rows, Rows, dict[str, Any]]:
        train, val = self.records(args)
        table = data.variable_table(train)
        info = {"variables": [v.to_dict() for v in table]}
        table = [Variable.from_dict(v) for v in info["variables"]]  # exactly what the manifest will hold
        return stays_to_rows(train, table), stays_to_rows(val, table), info

    def build(self, cfg: RiskConfig, info: dict[str, Any]) -> nn.Module:
        return DecayGRU(len(info["variables"]), len(STATICS), cfg.hidden, cfg.dropout)

    def augment(self, inputs: dict[str, torch.Tensor], gen: torch.Generator, cfg: DeteriorationConfig) -> dict[str, torch.Tensor]:
        """A share (cfg.truncate) of the batch is scored after a random 6-48 h (what an in-progress stay sends), the
        rest after its whole stay."""
        hours = inputs["hours"]
        cut = torch.randint(6, HOURS + 1, hours.shape, generator=gen)
        pick = torch.rand(hours.shape, generator=gen) < cfg.truncate
        return {**inputs, "hours": torch.where(pick, torch.minimum(hours, cut), hours)}

    def contract(self):
        p = len(data.LIMITS)
        inputs = [{"name": "values", "datatype": "FP32", "shape": [-1, HOURS, p]},
                  {"name": "masks", "datatype": "FP32", "shape": [-1, HOURS, p]},
                  {"name": "deltas", "datatype": "FP32", "shape": [-1, HOURS, p]},
                  {"name": "statics", "datatype": "FP32", "shape": [-1, len(STATICS)]},
                  {"name": "hours", "datatype": "INT64", "shape": [-1]}]
        outputs = [{"name": "risk", "datatype": "FP32", "shape": [-1]}]
        return inputs, outputs, {**{i["name"]: {0: "batch"} for i in inputs}, "risk": {0: "batch"}}

    def baselines(self, args, train: Rows, val: Rows, info):
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from threadpoolctl import threadpool_limits

        train_r, val_r = self.records(args)
        table = [Variable.from_dict(v) for v in info["variables"]]
        out = {}
        for key, label in (("saps_i", "SAPS-I"), ("sofa", "SOFA")):
            score = np.array([getattr(r, key) for r in val_r])
            known = score >= 0
            out[key] = {"scores": np.where(known, score, np.median(score[known])), "metrics": ("auroc",),
                        "compare": "auroc",
                        "note": f"{label} score of the outcomes file as the risk score ({int((~known).sum())} of "
                                f"{len(score)} missing, set to the median)"}
        with threadpool_limits(1):
            lr = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(),
                               LogisticRegression(C=0.1, max_iter=5000))
            lr.fit(summaries(train_r, table), train.y)
        out["logistic_regression"] = {
            "scores": lr.predict_proba(summaries(val_r, table))[:, 1], "metrics": ("auroc", "auprc", "brier"),
            "compare": "auroc",
            "note": "scikit-learn LogisticRegression (L2, C=0.1) on count/mean/min/max/last of each cleaned variable "
                    "over 48 h + the statics (median-imputed, standardised)"}
        return out

    def choose_threshold(self, y, p):
        t = threshold_for_sensitivity(y, p, MIN_SENSITIVITY)
        return t, f"the highest threshold with validation sensitivity >= {MIN_SENSITIVITY}"

    def manifest_extra(self, cfg, info):
        return {"description": "In-hospital mortality risk of an ICU stay from its first 48 h of vital signs and labs "
                               "(GRU-D-style recurrent net over hourly bins; PhysioNet 2012). Not a medical device",
                "labels": ["survived", "died"],
                "preprocessing": {"values/masks/deltas/statics/hours": "service/vitals.py: measurements outside "
                                  "parameters.variables' [low, high] are ignored; hourly bins (minute // 60, last bin 47), "
                                  "per-hour mean standardised with the table's mean/std and carried forward, masks, hours "
                                  "since the last value / 48; statics = " + ", ".join(STATICS)},
                "batching": {"max_batch_size": 64, "max_queue_delay_ms": 0},
                "parameters": {"hours": HOURS, "variables": info["variables"], "statics": list(STATICS)}}

