"""Fraud (and the shared binary-risk recipe) end to end on tiny synthetic data: train a few epochs, export
(parity is checked inside export), validate the manifest with the server's own model, check the graph's in-graph
scaling and the card's figures; plus the PR metrics against brute force."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from service.manifest import read_manifest
from training.cli import main
from training.data.fraud import FEATURES

from training.metrics import average_precision, recall_at_precision, threshold_for_precision


def _fraud_csv(path, n, rng):
    y = (rng.random(n) < 0.3).astype(int)
    x = rng.normal(size=(n, len(FEATURES)))
    x[:, 0] = np.sort(rng.uniform(0, 172_000, n))  # Time: large raw values, as in the data
    x[:, -1] = rng.lognormal(3, 1.5, n)  # Amount >= 0, heavy-tailed
    x[:, 14] -= 4.0 * y  # V14: the signal
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*FEATURES, "Class"])
        for row, label in zip(x, y):
            w.writerow([*(f"{v:.6f}" for v in row), label])


@pytest.fixture(scope="module")
def fraud_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("riskdata")
    (root / "fraud").mkdir()
    rng = np.random.default_rng(0)
    _fraud_csv(root / "fraud" / "train.csv", 300, rng)
    _fraud_csv(root / "fraud" / "validation.csv", 120, rng)
    return root


def test_fraud_train_export_contract(fraud_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROSERVE_BOOTSTRAP", "50")  # the card's CIs: enough to exercise them
    common = ["--data-dir", str(fraud_dir), "--checkpoint-dir", str(tmp_path / "ck"), "--quiet"]
    assert main(["train", "fraud", "--epochs", "8", "--set", "lr=0.03", *common]) == 0
    models = tmp_path / "models"
    assert main(["export", "fraud", "--out", str(models), *common]) == 0
    folder = models / "fraud-mlp"
    manifest = read_manifest(folder)
    assert manifest.task == "fraud-scoring" and manifest.parameters["features"] == list(FEATURES)
    assert 0 <= manifest.parameters["threshold"] <= 1 and manifest.batching.max_batch_size >= 1024
    card = json.loads((folder / "card.json").read_text())
    assert set(card["metrics"]["baselines"]) == {"logistic_regression", "gradient_boosted_trees"}
    assert card["metrics"]["auroc"] > 0.8  # the V14 signal is learnt in a few epochs
    assert "## Recreate" in (folder / "README.md").read_text()
    assert (folder / "precision_recall.png").stat().st_size > 1000
    assert (folder / "1" / "model.onnx").stat().st_size < 500_000
    # raw rows in, the scaling is in the graph: a huge Amount or Time still gives a finite probability
    import onnxruntime as ort

    sess = ort.InferenceSession(str(folder / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    rows = np.zeros((3, len(FEATURES)), np.float32)
    rows[1, -1], rows[2, 0] = 25_000.0, 172_792.0
    p = sess.run(None, {"transactions": rows})[0]
    assert p.shape == (3,) and np.all(np.isfinite(p)) and np.all((p >= 0) & (p <= 1))


def test_pr_metrics_against_brute_force():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    s = np.round(y * 0.7 + rng.normal(0, 0.5, 200), 1)  # ties
    best, ap = 0.0, 0.0
    for t in np.unique(s):
        pred = s >= t
        prec = (pred & (y == 1)).sum() / pred.sum()
        rec = (pred & (y == 1)).sum() / (y == 1).sum()
        if prec >= 0.9:
            best = max(best, rec)
    assert recall_at_precision(y, s, 0.9) == pytest.approx(best)
    t = threshold_for_precision(y, s, 0.9)
    pred = s >= t
    assert (pred & (y == 1)).sum() / pred.sum() >= 0.9
    # average precision: mean over positives of the precision at their score (ties: the whole tie group)
    pos = s[y == 1]
    ap = np.mean([((s >= v) & (y == 1)).sum() / (s >= v).sum() for v in pos])
    assert average_precision(y, s) == pytest.approx(ap)
