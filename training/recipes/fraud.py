"""Card-fraud scoring on the ULB transactions: 30 raw columns (Time, V1..V28, Amount) -> P(fraud).

    neuroserve-train train fraud --seed 0
    neuroserve-train export fraud            # models/fraud-mlp

A one-hidden-layer MLP; log1p(Amount) and the standardisation of every column are inside the graph, so the
server sends the raw values. Baselines (scikit-learn, training extra only) are fitted on the same train split
and scored on the same validation rows in the card.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from torch import nn

from training.data import fraud as data
from training.metrics import threshold_for_precision
from training.nets.tabular import ScaledMLP
from training.recipes.risk import BinaryRiskRecipe, RiskConfig, Rows

AMOUNT = data.FEATURES.index("Amount")
MIN_PRECISION = 0.95


def scaling_stats(x: np.ndarray) -> tuple[list[float], list[float]]:
    """Train-split mean/std of each column after log1p(Amount): baked into the graph."""
    z = np.array(x, dtype=np.float64)
    z[:, AMOUNT] = np.log1p(np.maximum(z[:, AMOUNT], 0))
    return z.mean(0).tolist(), np.maximum(z.std(0), 1e-6).tolist()


class FraudRecipe(BinaryRiskRecipe):
    task = "fraud"
    task_family = "fraud-scoring"
    data_subdir = "fraud"
    output_name = "probability"
    default = RiskConfig(model_name="fraud-mlp", epochs=60, batch_size=64, lr=3e-3, weight_decay=1e-3, hidden=32,
                         dropout=0.1)

    def load(self, args: argparse.Namespace) -> tuple[Rows, Rows, dict[str, Any]]:
        train, val = data.load_splits(self.data_dir(args) / self.data_subdir)
        mean, std = scaling_stats(train.x)
        as_rows = lambda s: Rows({"transactions": s.x.astype(np.float32)}, s.y)  # noqa: E731
        # the reference transaction of explanations (service/explain.py): the train split's median of each column
        baseline = {name: round(float(v), 6) for name, v in zip(data.FEATURES, np.median(train.x, axis=0))}
        return as_rows(train), as_rows(val), {"mean": mean, "std": std, "explain_baseline": baseline}

    def build(self, cfg: RiskConfig, info: dict[str, Any]) -> nn.Module:
        return ScaledMLP(info["mean"], info["std"], [AMOUNT], (cfg.hidden,), cfg.dropout)

    def contract(self):
        inputs = [{"name": "transactions", "datatype": "FP32", "shape": [-1, len(data.FEATURES)]}]
        outputs = [{"name": "probability", "datatype": "FP32", "shape": [-1]}]
        return inputs, outputs, {"transactions": {0: "batch"}, "probability": {0: "batch"}}

    def baselines(self, args, train: Rows, val: Rows, info):
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from threadpoolctl import threadpool_limits

        def logged(x: np.ndarray) -> np.ndarray:
            z = x.astype(np.float64).copy()
            z[:, AMOUNT] = np.log1p(z[:, AMOUNT])
            return z

        xt, xv = logged(train.inputs["transactions"]), logged(val.inputs["transactions"])
        lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(xt, train.y)
        with threadpool_limits(1):  # OpenMP on 2 shared cores: 0.4 s with one thread, 5-18 s with all of them
            gbt = HistGradientBoostingClassifier(random_state=args.seed).fit(xt, train.y)
        return {
            "logistic_regression": {"scores": lr.predict_proba(xv)[:, 1],
                                    "note": "scikit-learn LogisticRegression (L2, C=1) on standardised columns, log1p(Amount)"},
            "gradient_boosted_trees": {"scores": gbt.predict_proba(xv)[:, 1],
                                       "note": f"scikit-learn HistGradientBoostingClassifier (defaults, random_state={args.seed})"},
        }

    def choose_threshold(self, y, p):
        t = threshold_for_precision(y, p, MIN_PRECISION)
        return t, f"the lowest threshold with validation precision >= {MIN_PRECISION} (the most recall at that precision)"

    def manifest_extra(self, cfg, info):
        return {"description": "Card-fraud probability of one transaction from the 30 ULB columns (Time, V1..V28, "
                               "Amount); MLP, scaling inside the graph",
                "preprocessing": {"transactions": "raw values in the order of parameters.features: Time (seconds since "
                                                  "the first transaction of the data), V1..V28 (ULB PCA components), "
                                                  "Amount (>= 0)",
                                  "in_graph": "log1p(Amount), then (x - train mean) / train std per column"},
                "labels": ["legitimate", "fraud"],
                "batching": {"max_batch_size": 1024, "max_queue_delay_ms": 0},
                "parameters": {"features": list(data.FEATURES),
                               **({"explain_baseline": info["explain_baseline"]} if "explain_baseline" in info else {})}}

