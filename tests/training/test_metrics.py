import numpy as np
import pytest

from training import metrics


def test_wilson_known_value():
    lo, hi = metrics.wilson(90, 100)
    assert lo == pytest.approx(0.8256, abs=1e-3) and hi == pytest.approx(0.9448, abs=1e-3)
    assert metrics.wilson(0, 10)[0] == 0.0 and metrics.wilson(10, 10)[1] == pytest.approx(1.0)


def test_auroc_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.normal(size=200) + y, 1)  # with ties
    pos, neg = s[y == 1], s[y == 0]
    brute = ((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()) / (len(pos) * len(neg))
    assert metrics.auroc(y, s) == pytest.approx(brute)
    fpr, tpr, _ = metrics.roc_curve(y, s)
    assert np.trapezoid(tpr, fpr) == pytest.approx(brute)


def test_threshold_for_sensitivity_is_highest_that_meets_it():
    rng = np.random.default_rng(1)
    y = np.r_[np.ones(100), np.zeros(30)].astype(int)
    p = np.r_[rng.uniform(0.3, 1, 100), rng.uniform(0, 0.6, 30)]
    t = metrics.threshold_for_sensitivity(y, p, 0.97)
    assert (p[y == 1] >= t).mean() >= 0.97
    above = np.sort(p[y == 1])[np.sort(p[y == 1]) > t]
    if len(above):
        assert (p[y == 1] >= above[0]).mean() < 0.97
    rep = metrics.binary_report(y, p, t)
    assert rep["confusion"]["tp"] + rep["confusion"]["fn"] == 100


def test_threshold_for_sensitivity_bound_meets_the_goal_at_the_lower_ci_bound():
    rng = np.random.default_rng(2)
    y = np.r_[np.ones(600), np.zeros(300)].astype(int)
    p = np.r_[rng.uniform(0.2, 1, 600), rng.uniform(0, 0.7, 300)]
    point = metrics.threshold_for_sensitivity(y, p, 0.90)
    bound = metrics.threshold_for_sensitivity_bound(y, p, 0.90)
    assert bound < point  # the margin costs some threshold
    kept = int((p[y == 1] >= bound).sum())
    assert metrics.wilson(kept, 600)[0] >= 0.90 > metrics.wilson(kept - 1, 600)[0]  # the highest such threshold
    # too few positives to show 97% with confidence: keep them all
    assert metrics.threshold_for_sensitivity_bound([1, 1, 1, 0], [0.9, 0.8, 0.7, 0.1], 0.97) == 0.7
    with pytest.raises(ValueError, match="no positives"):
        metrics.threshold_for_sensitivity_bound([0, 0], [0.1, 0.2], 0.9)


def test_confusion_and_bootstrap():
    cm = metrics.confusion_matrix(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 3)
    assert cm.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    y = np.r_[np.ones(50), np.zeros(50)]
    s = y + np.random.default_rng(0).normal(0, 1, 100)
    lo, hi = metrics.bootstrap_ci(metrics.auroc, y, s, n_boot=200, stratify=y)
    assert lo < metrics.auroc(y, s) < hi
