"""Readers on the real shared data (skipped when it is absent)."""

import numpy as np

from training.data import cifar10, tumor


def test_cifar_real_split(data_dir):
    train, val = cifar10.load_splits(data_dir)
    assert len(train.y) == 45_000 and len(val.y) == 5_000
    assert np.bincount(val.y).tolist() == [500] * 10
    assert len(np.intersect1d(train.index, val.index)) == 0
    assert train.x.shape[1:] == (32, 32, 3) and train.x.dtype == np.uint8


def test_tumor_real_files(data_dir):
    train, val = tumor.load_splits(data_dir)
    assert len(train.y) == 3262 and len(val.y) == 579
    assert np.bincount(train.subtype).tolist() == [285, 1052, 886, 1039]
    assert int((val.y == 0).sum()) == 51
