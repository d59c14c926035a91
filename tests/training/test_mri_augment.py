"""Acquisition-robustness augmentation and the per-image normalisation of tumor-cnn (training/data/mri_augment.py),
and that the exported graph normalises exactly like training does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.data.mri_augment import (ForegroundNorm, erode, filled_head_mask, monotone_remap, random_curve,
                                       skull_strip, strong_augment)


def _head(b: int = 4, size: int = 64) -> torch.Tensor:
    """Synthetic 'heads': a bright ring (skull) around a mid-grey disk (brain) with a dark hole (ventricle)."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    r = ((yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2).sqrt()
    img = torch.zeros(size, size)
    img[r < 26] = 0.9  # skull ring 22..26
    img[r < 22] = 0.4  # brain
    img[r < 5] = 0.0  # dark ventricle inside (must stay inside the mask)
    return img.expand(b, 1, size, size).clone()


def test_foreground_norm_standardises_tissue_and_fixes_background():
    x = _head()
    z = ForegroundNorm("fg_z")(x)
    fg = x > 0.04
    assert torch.all(z[~fg] == -3.0)
    assert abs(float(z[fg].mean())) < 1e-2 and abs(float(z[fg].std()) - 1) < 0.02
    # invariant to each image's brightness/contrast scale (what differs between scanners)
    z2 = ForegroundNorm("fg_z")(x * 0.5)
    torch.testing.assert_close(z, z2, atol=1e-2, rtol=0)
    s = ForegroundNorm("fg_scale")(x)
    torch.testing.assert_close(s, ForegroundNorm("fg_scale")(x * 0.6), atol=1e-2, rtol=0)
    assert float(s[~fg].max()) < float(s[fg].min())
    with pytest.raises(ValueError):
        ForegroundNorm("nope")


def test_head_mask_fills_the_interior_and_skull_strip_removes_the_ring():
    x = _head(2)
    m = filled_head_mask(x)
    assert m[0, 0, 32, 32] == 1  # the dark ventricle is inside the head
    assert m[0, 0, 0, 0] == 0
    assert float(erode(m, 3).sum()) < float(m.sum())
    out = skull_strip(x, torch.Generator().manual_seed(0), p=1.0, k_min=5, k_max=5)
    assert float(out[:, :, 32, 8].max()) == 0.0  # on the ring (r ~ 24): gone
    assert torch.allclose(out[:, :, 32, 20], x[:, :, 32, 20])  # brain (r ~ 12): kept
    assert torch.equal(skull_strip(x, torch.Generator().manual_seed(0), p=0.0), x)


def test_monotone_remap_keeps_order_and_ends():
    x = torch.linspace(0, 1, 64 * 64).view(1, 1, 64, 64).repeat(5, 1, 1, 1)
    y = monotone_remap(x, torch.Generator().manual_seed(1), p=1.0)
    flat = y.view(5, -1)
    assert torch.all(flat[:, 1:] >= flat[:, :-1] - 1e-6)  # never an inversion
    torch.testing.assert_close(flat[:, 0], torch.zeros(5))
    torch.testing.assert_close(flat[:, -1], torch.ones(5))
    assert not torch.allclose(y, x)


def test_random_curve_keeps_background_black_and_reorders_tissues():
    x = _head(16)
    y = random_curve(x, torch.Generator().manual_seed(2), p=1.0)
    assert torch.all(y[x == 0] == 0) and float(y.max()) <= 1
    brain, skull = y[:, 0, 32, 20], y[:, 0, 32, 8]  # 0.4 and 0.9 before
    assert bool((brain > skull).any()) and bool((brain < skull).any())  # not always increasing


def test_strong_augment_is_seeded_bounded_and_varied():
    x = _head(8)
    a = strong_augment(x, torch.Generator().manual_seed(3))
    b = strong_augment(x, torch.Generator().manual_seed(3))
    c = strong_augment(x, torch.Generator().manual_seed(4))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert len({round(float(v), 4) for v in a.mean(dim=(1, 2, 3))}) > 4  # per-image randomness


def _images() -> np.ndarray:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 64, 64, 1), dtype=np.uint8)
    images[1] = 0  # all background
    images[2, :, :32] = 0  # half background
    images[3] = (_head(1)[0, 0].numpy() * 255).astype(np.uint8)[:, :, None]
    return images


def _wrapper(norm: str):
    from training.exporters.tumor import TumorExport
    from training.nets.tumor_cnn import TumorCNN

    torch.manual_seed(0)
    net = TumorCNN((4, 8), dropout=0.0)
    for m in net.modules():  # trained-looking BatchNorm statistics (a fresh net's 0/1 are folded away by the exporter)
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return TumorExport(net.eval(), 0.2, 0.25, 0.7, 0.1, 1.5, norm).eval()


@pytest.mark.parametrize("norm", ["fg_z", "fg_scale", "global"])
def test_graph_normalisation_is_the_recipes(norm):
    from training.recipes.tumor import to_float

    images = _images()
    torch.testing.assert_close(_wrapper(norm).normalize(torch.from_numpy(images)), to_float(images, 0.2, 0.25, norm))


@pytest.mark.timeout(120)
def test_exported_in_graph_normalisation_matches_torch_and_warm_starts(tmp_path):
    from training.onnx_export import export_onnx, ort_session

    wrapper = _wrapper("fg_z")
    images = _images()
    path = export_onnx(wrapper, torch.from_numpy(images[:2]), tmp_path / "m.onnx", "images",
                       ["tumor_probability", "subtype_probabilities"])
    got_p, got_s = ort_session(path).run(None, {"images": images})
    with torch.no_grad():
        want_p, want_s = wrapper(torch.from_numpy(images))
    np.testing.assert_allclose(got_p, want_p.numpy(), atol=1e-5)
    np.testing.assert_allclose(got_s, want_s.numpy(), atol=1e-5)

    # and the warm start (--set init_onnx=...) reads the same weights back out of the graph
    from training.nets.tumor_cnn import TumorCNN
    from training.recipes.tumor import load_onnx_weights

    fresh = TumorCNN((4, 8), dropout=0.0)
    assert load_onnx_weights(fresh, str(path)) == len([k for k in fresh.state_dict() if "num_batches" not in k])
    for k, v in wrapper.net.state_dict().items():
        if "num_batches" not in k:
            torch.testing.assert_close(fresh.state_dict()[k], v)
    with pytest.raises(SystemExit, match="same widths"):
        load_onnx_weights(TumorCNN((8, 16)), str(path))
