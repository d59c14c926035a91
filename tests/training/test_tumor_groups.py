"""Source-group balanced sampling (training/data/tumor_groups.py) and intensity inversion (mri_augment.invert)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.data.mri_augment import invert
from training.data.tumor import TumorSet
from training.data.tumor_groups import balanced_weights, image_stats, source_groups
from training.recipes.tumor import without_group


def _images(n: int, padded: bool, level: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 64, 64, 1), np.uint8)
    lo = 16 if padded else 0  # 'another source': letterboxed (black rows) and brighter
    x[:, lo : 64 - lo, :, 0] = rng.integers(level - 20, level + 20, size=(n, 64 - 2 * lo, 64))
    return x


def test_groups_follow_acquisition_and_weights_balance_classes_within_groups():
    # source A: 90 tumour + 10 none; source B: 5 tumour + 45 none (the label leaks through the source)
    x = np.concatenate([_images(100, False, 80, 0), _images(50, True, 200, 1)])
    y = np.array([1] * 90 + [0] * 10 + [1] * 5 + [0] * 45)
    assert image_stats(x).shape == (150, 14)
    g = source_groups(x, k=2, seed=0)
    assert len(set(g[:100])) == 1 and len(set(g[100:])) == 1 and g[0] != g[100]
    w = balanced_weights(g, y, cap=100.0)
    assert abs(w.mean() - 1) < 1e-9
    for grp in (g[0], g[100]):  # within each group both classes carry the same total weight
        assert np.isclose(w[(g == grp) & (y == 1)].sum(), w[(g == grp) & (y == 0)].sum())
    # the rare cells (none in A, tumour in B) are up-weighted per image; the cap bounds any single image
    assert w[(g == g[0]) & (y == 0)][0] > w[(g == g[0]) & (y == 1)][0]
    capped = balanced_weights(g, y, cap=3.0)
    assert capped.max() < w.max() and abs(capped.mean() - 1) < 1e-9


def test_invert_flips_tissue_and_keeps_background_black():
    x = torch.zeros(8, 1, 64, 64)
    x[:, :, 8:56, 8:56] = 0.3
    x[:, :, 28:36, 28:36] = 0.9
    gen = torch.Generator().manual_seed(0)
    out = invert(x, gen, p=1.0)
    assert torch.all(out[:, :, :8] == 0)  # background stays black
    assert torch.allclose(out[:, :, 30, 30], torch.full((8, 1), 0.1)) and torch.allclose(out[:, :, 12, 12], torch.full((8, 1), 0.7))
    assert torch.equal(invert(x, torch.Generator().manual_seed(0), p=0.0), x)


def test_area_groups_are_head_size_quantiles():
    from training.data.tumor_groups import area_groups, head_area

    x = np.zeros((30, 64, 64, 1), np.uint8)
    for i in range(30):  # squares ('heads') of growing size, with a dark hole that the fill must close
        r = 6 + i
        x[i, 32 - r // 2 : 32 + (r + 1) // 2, 32 - r // 2 : 32 + (r + 1) // 2, 0] = 120
        x[i, 31:33, 31:33, 0] = 0
    a = head_area(x)
    assert np.all(np.diff(a) > 0) and np.isclose(a[0], 36 / 4096)
    g = area_groups(x, k=3)
    assert g.tolist() == [0] * 10 + [1] * 10 + [2] * 10


def test_group_aware_validation_leaves_exactly_one_acquisition_group_out():
    x = np.concatenate([_images(100, False, 80, 0), _images(50, True, 200, 1)])
    y = np.array([1] * 90 + [0] * 10 + [1] * 5 + [0] * 45)
    train = TumorSet(x, y, y * 2, np.array([f"r{i}" for i in range(150)]))
    g = source_groups(x, k=2, seed=0)
    kept = without_group(train, 2, int(g[100]))  # the letterboxed, bright 'source' out
    assert len(kept.y) == 100 and set(kept.source_path) == {f"r{i}" for i in range(100)}
    assert kept.x.shape == (100, 64, 64, 1) and kept.subtype.tolist() == (y[:100] * 2).tolist()
    with pytest.raises(SystemExit, match="not one of the 2 groups"):
        without_group(train, 2, 2)


def test_outside_head_stats_see_padding_and_background_but_no_head_pixel():
    from training.data.tumor_groups import outside_head_stats

    rng = np.random.default_rng(0)
    a = np.zeros((2, 64, 64, 1), np.uint8)
    a[:, 20:44, 20:44, 0] = 120  # a 'head' on a clean black background, full frame
    b = a.copy()
    b[0, 26:34, 26:34, 0] = 250  # a bright 'lesion' inside the head changes nothing outside it
    assert np.array_equal(outside_head_stats(a), outside_head_stats(b))
    noisy = a.copy()
    noisy[..., 0] += rng.integers(0, 10, (2, 64, 64), dtype=np.uint8) * (a[..., 0] == 0)  # scanner noise outside
    s_clean, s_noisy = outside_head_stats(a)[0], outside_head_stats(noisy)[0]
    assert s_clean[2:].tolist() == [0.0, 0.0, 0.0] and s_noisy[2] > 0 and s_noisy[3] > 0 and s_noisy[4] > s_noisy[2]
    assert s_clean[0] == s_clean[1] == 40 / 64  # rows/cols with no tissue: everything but the 24-px head
    assert s_noisy[0] == 0.0  # noise in every row: no empty row is left to read as padding


def test_card_states_the_probe_that_never_sees_the_head():
    from training.exporters.tumor import outside_head_probe

    base = {"boosted_outside_head": {"auroc": 0.8912, "auroc_ci95": [0.8357, 0.9441], "external_auroc": 0.7059}}
    line = outside_head_probe(base)
    assert "AUROC 0.8912" in line and "0.8357-0.9441" in line and "tumor_external_val: 0.7059" in line
    assert outside_head_probe({}) == ""  # a card exported before the probe existed renders as before
