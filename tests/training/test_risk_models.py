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


def _vitals_split(root, split, n, rng):
    """A tiny PhysioNet-2012-shaped split: deaths have a faster HR and a lower GCS; a few artifacts (HR 0)."""
    import gzip

    died = (np.arange(n) % 4 == 0).astype(int)
    with gzip.open(root / f"{split}_timeseries.csv.gz", "wt", newline="") as f:
        w = csv.writer(f)
        w.writerow(["record_id", "minute", "parameter", "value"])
        for i in range(n):
            rid = f"{split}{i}"
            for name, value in (("Age", 50 + i % 40), ("Gender", i % 2), ("Height", -1), ("ICUType", 1 + i % 4),
                                ("Weight", -1)):
                w.writerow([rid, 0, name, value])
            for hour in range(0, 48, 3):
                w.writerow([rid, hour * 60 + 7, "HR", round(80 + 30 * died[i] + rng.normal(0, 8), 1)])
                w.writerow([rid, hour * 60 + 9, "GCS", int(np.clip(14 - 5 * died[i] + rng.integers(-1, 2), 3, 15))])
            w.writerow([rid, 100, "HR", 0])  # an artifact: below the limit, dropped
            w.writerow([rid, 2880, "Lactate", round(1.5 + 3 * died[i], 1)])
    with open(root / f"{split}_outcomes.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["record_id", "saps_i", "sofa", "length_of_stay", "survival", "in_hospital_death", "n_timeseries_obs"])
        for i in range(n):
            w.writerow([f"{split}{i}", 10 + 8 * died[i] + i % 5, -1 if i == 3 else 2 + 3 * died[i], 5, -1, died[i], 34])


def test_deterioration_train_export_contract(tmp_path, monkeypatch):
    """Train 3 epochs on 80 tiny stays, export; the manifest's limits table is the recipe's, and the graph scores a
    stay built by the server's own service/vitals.py at 12 h and at 48 h."""
    from service.vitals import batch_inputs, stay_inputs, Variable
    from training.data.vitals import LIMITS

    monkeypatch.setenv("NEUROSERVE_BOOTSTRAP", "50")
    root = tmp_path / "data"
    (root / "vitals").mkdir(parents=True)
    rng = np.random.default_rng(0)
    _vitals_split(root / "vitals", "train", 80, rng)
    _vitals_split(root / "vitals", "validation", 40, rng)
    common = ["--data-dir", str(root), "--checkpoint-dir", str(tmp_path / "ck"), "--quiet"]
    assert main(["train", "deterioration", "--epochs", "3", "--set", "lr=0.01", *common]) == 0
    models = tmp_path / "models"
    assert main(["export", "deterioration", "--out", str(models), *common]) == 0
    folder = models / "icu-grud"
    manifest = read_manifest(folder)
    table = [Variable.from_dict(v) for v in manifest.parameters["variables"]]
    assert [(v.name, v.low, v.high) for v in table] == [(n, float(lo), float(hi)) for n, lo, hi in LIMITS]
    card = json.loads((folder / "card.json").read_text())
    assert [row["hours"] for row in card["by_hours"]] == [6, 12, 24, 36, 48]
    assert set(card["metrics"]["baselines"]) == {"saps_i", "sofa", "logistic_regression"}
    assert card["metrics"]["baselines"]["saps_i"]["auroc"] > 0.9  # the fixture's SAPS-I separates by construction
    assert (folder / "reliability.png").stat().st_size > 1000 and "Not a medical device" in (folder / "README.md").read_text()
    assert (folder / "1" / "model.onnx").stat().st_size < 500_000
    import onnxruntime as ort

    sess = ort.InferenceSession(str(folder / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    rows = [(h * 60, "HR", 120.0) for h in range(48)] + [(30, "Temp", 20.0)]
    stays = [stay_inputs(rows[:12], table, age=70, gender=1, height=None, icu_type=3),
             stay_inputs(rows, table, age=70, gender=1, height=None, icu_type=3)]
    assert [s.hours for s in stays] == [12, 48] and stays[1].ignored[0]["parameter"] == "Temp"
    risk = sess.run(None, batch_inputs(stays))[0]
    assert risk.shape == (2,) and np.all((risk > 0) & (risk < 1))
