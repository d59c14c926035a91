"""Readers and ``prepare`` on tiny files made here."""

from __future__ import annotations

import io
import pickle
import tarfile

import numpy as np
import pytest

from training.cli import main
from training.data import cifar10, tumor


def make_cifar_tarball(path, batches=2, per_batch=6, seed=0):
    rng = np.random.default_rng(seed)
    images, labels = [], []
    with tarfile.open(path, "w:gz") as tar:
        for b in range(1, batches + 1):
            chw = rng.integers(0, 256, size=(per_batch, 3, 32, 32), dtype=np.uint8)
            lab = rng.integers(0, 10, size=per_batch).tolist()
            blob = pickle.dumps({b"batch_label": b"x", b"labels": lab, b"data": chw.reshape(per_batch, 3072),
                                 b"filenames": [b"f"] * per_batch})
            info = tarfile.TarInfo(f"cifar-10-batches-py/data_batch_{b}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
            images.append(chw.transpose(0, 2, 3, 1))
            labels += lab
        meta = pickle.dumps({b"label_names": [n.encode() for n in cifar10.LABELS]})
        info = tarfile.TarInfo("cifar-10-batches-py/batches.meta")
        info.size = len(meta)
        tar.addfile(info, io.BytesIO(meta))
    return np.concatenate(images), np.array(labels)


def test_prepare_cifar_from_tarball(tmp_path):
    src = tmp_path / "cifar-10-python.tar.gz"
    x_expected, y_expected = make_cifar_tarball(src)
    out = tmp_path / "cifar10" / "train.npz"
    assert main(["prepare", "cifar10", "--source", str(src), "--out", str(out)]) == 0
    x, y = cifar10.load_npz(out)
    assert x.shape == (12, 32, 32, 3) and x.dtype == np.uint8
    np.testing.assert_array_equal(x, x_expected)  # CHW-flat -> HWC, pixel-exact
    np.testing.assert_array_equal(y, y_expected)
    with np.load(out) as raw:
        assert set(raw.files) == {"x", "y"} and raw["y"].dtype == np.uint8


def test_cifar_reader_rejects_bad_shape(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((2, 32, 32), np.uint8), y=np.zeros(2, np.uint8))
    with pytest.raises(ValueError):
        cifar10.load_npz(bad)


def test_stratified_split_is_seeded_disjoint_and_balanced():
    y = np.repeat(np.arange(10), 50)
    tr, va = cifar10.stratified_split(y, 100, seed=0)
    tr2, va2 = cifar10.stratified_split(y, 100, seed=0)
    np.testing.assert_array_equal(va, va2)
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == len(y)
    assert np.bincount(y[va]).tolist() == [10] * 10


def _save(img, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def test_prepare_tumor_from_folder_tree(tmp_path):
    from PIL import Image

    root = tmp_path / "Training"
    # a wide RGB image: must become grayscale, padded (black bars top/bottom), 64x64
    wide = Image.new("RGB", (200, 100), (200, 200, 200))
    _save(wide, root / "glioma" / "Tr-gl_0001.jpg")
    _save(Image.new("L", (128, 128), 255), root / "pituitary" / "Tr-pi_0001.png")
    _save(Image.new("L", (90, 90), 30), root / "notumor" / "Tr-no_0001.jpg")
    _save(Image.new("L", (70, 80), 120), root / "meningioma" / "Tr-me_0001.jpg")
    out = tmp_path / "tumor.npz"
    assert main(["prepare", "tumor", "--source", str(root), "--out", str(out)]) == 0
    s = tumor.load_npz(out)
    assert s.x.shape == (4, 64, 64, 1) and s.x.dtype == np.uint8
    assert s.subtype.tolist() == [0, 1, 2, 3]  # no tumour first, then by path
    assert s.y.tolist() == [0, 1, 1, 1]
    assert s.source_path[1] == "Training/glioma/Tr-gl_0001.jpg"
    g = s.x[1, :, :, 0]
    assert g[0].max() < 10 and g[-1].max() < 10  # padding rows are black
    assert abs(int(g[32, 32]) - 200) <= 3  # gray of (200,200,200)
    assert s.x[3].min() >= 250  # the white pituitary image stays white (square: no padding)


def test_prepare_tumor_rejects_unknown_folder(tmp_path):
    from PIL import Image

    _save(Image.new("L", (8, 8)), tmp_path / "src" / "cats" / "a.png")
    with pytest.raises(ValueError, match="unknown class folder"):
        tumor.prepare_from_folder(tmp_path / "src", tmp_path / "o.npz")


def test_tumor_reader_checks_consistency(tmp_path):
    p = tmp_path / "t.npz"
    np.savez(p, x=np.zeros((2, 64, 64, 1), np.uint8), y=np.array([1, 0], np.uint8),
             subtype=np.array([0, 0], np.uint8), source_path=np.array(["a", "b"]))
    with pytest.raises(ValueError, match="disagree"):
        tumor.load_npz(p)
