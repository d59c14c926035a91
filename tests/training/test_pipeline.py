"""The real recipe code path end to end on tiny synthetic data: train -> resume -> export (+parity) -> manifest."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from service.manifest import read_manifest
from training.cli import main
from training.export import ImageClassifier, ParityError, export_onnx, ort_session, parity_check, random_images


def _common(tiny_data, tmp_path):
    return ["--data-dir", str(tiny_data), "--checkpoint-dir", str(tmp_path / "ckpt"), "--quiet"]


@pytest.mark.timeout(240)
def test_cifar_small_train_resume_export(tiny_data, tmp_path, capsys):
    common = _common(tiny_data, tmp_path)
    assert main(["train", "cifar10-small", "--epochs", "1", "--batch-size", "64", *common]) == 0
    hist = json.loads((tmp_path / "ckpt" / "cifar10-small" / "history.json").read_text())
    assert len(hist["epochs"]) == 1 and "val_acc" in hist["epochs"][0]
    assert main(["train", "cifar10-small", "--epochs", "2", "--batch-size", "64", "--resume", *common]) == 0
    assert "resumed from" in capsys.readouterr().out
    hist = json.loads((tmp_path / "ckpt" / "cifar10-small" / "history.json").read_text())
    assert [r["epoch"] for r in hist["epochs"]] == [1, 2]

    models = tmp_path / "models"
    assert main(["export", "cifar10-small", "--out", str(models), *common]) == 0  # raises on parity failure
    model_dir = models / "cifar10-small"
    manifest = read_manifest(model_dir)  # the server's own validation
    assert manifest.task == "image-classification" and len(manifest.labels) == 10
    assert [(t.name, t.datatype, t.shape) for t in manifest.inputs] == [("images", "UINT8", [-1, 32, 32, 3])]
    assert [(t.name, t.datatype, t.shape) for t in manifest.outputs] == [("probabilities", "FP32", [-1, 10])]
    assert manifest.provenance["seed"] == 0 and manifest.provenance["params"] > 0
    for f in ("README.md", "card.json", "training_curves.png", "confusion_matrix.png"):
        assert (model_dir / f).exists(), f
    sess = ort_session(model_dir / "1" / "model.onnx")
    for b in (1, 5):
        (probs,) = sess.run(None, {"images": np.zeros((b, 32, 32, 3), np.uint8)})
        assert probs.shape == (b, 10)
        np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    assert main(["evaluate", "cifar10-small", *common]) == 0


@pytest.mark.timeout(240)
def test_tumor_train_export(tiny_data, tmp_path):
    common = _common(tiny_data, tmp_path)
    assert main(["train", "tumor", "--epochs", "2", "--batch-size", "32", *common]) == 0
    models = tmp_path / "models"
    assert main(["export", "tumor", "--out", str(models), "--skip-card", *common]) == 0
    manifest = read_manifest(models / "tumor-cnn")
    assert manifest.task == "tumor-detection"
    assert manifest.labels == ["none", "glioma", "meningioma", "pituitary"]
    assert [t.name for t in manifest.outputs] == ["tumor_probability", "subtype_probabilities"]
    assert 0.0 <= manifest.parameters["threshold"] <= 1.0
    sess = ort_session(models / "tumor-cnn" / "1" / "model.onnx")
    p, s = sess.run(None, {"images": np.zeros((3, 64, 64, 1), np.uint8)})
    assert p.shape == (3,) and s.shape == (3, 4)
    assert np.all((p >= 0) & (p <= 1))


def test_training_is_deterministic(tiny_data, tmp_path):
    weights = []
    for run in ("a", "b"):
        main(["train", "cifar10-small", "--epochs", "1", "--batch-size", "64", "--limit", "200",
              "--data-dir", str(tiny_data), "--checkpoint-dir", str(tmp_path / run), "--quiet"])
        state = torch.load(tmp_path / run / "cifar10-small" / "last.pt", weights_only=False)["recipe"]["model"]
        weights.append(state)
    for k in weights[0]:
        torch.testing.assert_close(weights[0][k], weights[1][k], rtol=0, atol=0)


@pytest.mark.timeout(120)
def test_parity_check_catches_a_wrong_graph(tmp_path):
    from training.nets.airbench import AirbenchNet

    torch.manual_seed(0)
    net = ImageClassifier(AirbenchNet((8, 8, 8)), (0.5,) * 3, (0.25,) * 3).eval()
    path = export_onnx(net, torch.from_numpy(random_images((32, 32, 3))(2)), tmp_path / "m.onnx", "images",
                       ["probabilities"])
    assert parity_check(net, path, random_images((32, 32, 3)))["max_abs_diff"] <= 1e-4
    other = ImageClassifier(AirbenchNet((8, 8, 8)), (0.5,) * 3, (0.25,) * 3).eval()  # different weights
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.5)
    with pytest.raises(ParityError):
        parity_check(other, path, random_images((32, 32, 3)))
