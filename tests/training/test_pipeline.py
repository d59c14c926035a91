"""The real recipe code path end to end on tiny synthetic data: train -> resume -> export (+parity) -> manifest."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from service.manifest import read_manifest
from training.cli import main
from training.exporters.cifar10 import TTAClassifier
from training.exporters.tumor import group_cv_section
from training.onnx_export import ParityError, export_onnx, ort_session, parity_check, random_images

REPO = Path(__file__).resolve().parents[2]


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
def test_cifar_ensemble_export_averages_the_members_logits(tiny_data, tmp_path):
    import onnx

    from training.onnx_export import round_weights_to_fp16
    from training.exporters.cifar10 import LogitEnsemble, TTAClassifier
    from training.recipes import get_recipe

    args = ["--epochs", "1", "--batch-size", "64", "--data-dir", str(tiny_data), "--quiet"]
    for seed in (0, 1):
        assert main(["train", "cifar10-small", "--seed", str(seed), "--checkpoint-dir", str(tmp_path / f"s{seed}"), *args]) == 0
    other = tmp_path / "s1" / "cifar10-small" / "last.pt"
    models = tmp_path / "models"
    assert main(["export", "cifar10-small", "--out", str(models), "--checkpoint-dir", str(tmp_path / "s0"),
                 "--ensemble", str(other), "--fp16-weights", "--tta", "0", *args[4:]]) == 0
    card = json.loads((models / "cifar10-small" / "card.json").read_text())
    assert [m["seed"] for m in card["metrics"]["ensemble"]["members"]] == [0, 1]
    assert [m["seed"] for m in card["provenance"]["ensemble_members"]] == [0, 1]
    assert len(card["provenance"]["training_command"].splitlines()) == 2  # one training command per member
    assert "Ensemble of 2" in (models / "cifar10-small" / "README.md").read_text()

    recipe = get_recipe("cifar10-small")
    nets = [recipe.load_trained(argparse.Namespace(checkpoint=str(tmp_path / f"s{seed}" / "cifar10-small" / "last.pt")))[0]
            for seed in (0, 1)]
    images = torch.from_numpy(random_images((32, 32, 3), seed=3)(4))
    level = card["config"]["tta_level"]
    assert level == 0  # --tta: the export's choice, not the recipe's (1 for cifar10-small)
    for net in nets:
        round_weights_to_fp16(net)  # as the export did: the file stores them as fp16
    with torch.no_grad():
        expected = TTAClassifier(LogitEnsemble(nets), level)(images).numpy()
        first_alone = TTAClassifier(nets[0], level)(images).numpy()
    (served,) = ort_session(models / "cifar10-small" / "1" / "model.onnx").run(None, {"images": images.numpy()})
    np.testing.assert_allclose(served, expected, atol=1e-4)  # the export's parity limit
    assert not np.allclose(served, first_alone, atol=1e-3)  # really both members, not the first one
    graph = onnx.load(str(models / "cifar10-small" / "1" / "model.onnx")).graph
    big = [i for i in graph.initializer if np.prod(i.dims) >= 1024]
    assert big and all(i.data_type == onnx.TensorProto.FLOAT16 for i in big)
    assert card["provenance"]["weights_storage"].startswith("fp16")


def test_cifar_ensemble_refuses_members_validated_on_other_images(tiny_data, tmp_path):
    args = ["--epochs", "1", "--batch-size", "64", "--limit", "300", "--data-dir", str(tiny_data), "--quiet"]
    assert main(["train", "cifar10-small", "--checkpoint-dir", str(tmp_path / "a"), *args]) == 0
    assert main(["train", "cifar10-small", "--checkpoint-dir", str(tmp_path / "b"), *args[:4], *args[6:]]) == 0
    with pytest.raises(SystemExit, match="validated on different images"):
        main(["export", "cifar10-small", "--out", str(tmp_path / "models"), "--checkpoint-dir", str(tmp_path / "a"),
              "--ensemble", str(tmp_path / "b" / "cifar10-small" / "last.pt"), "--data-dir", str(tiny_data), "--quiet"])


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


@pytest.mark.timeout(180)
def test_tumor_group_cv_scores_each_left_out_group_and_the_card_reports_it(tiny_data, tmp_path):
    """scripts/tumor_group_cv.py end to end on the tiny data: one model per left-out group, each scored on the rows
    it never saw; the exporter's card section renders the result."""
    out = tmp_path / "gcv.json"
    subprocess.run([sys.executable, "-m", "scripts.tumor_group_cv", "--work-dir", str(tmp_path / "gcv"), "--data-dir",
                    str(tiny_data), "--epochs", "1", "--groups", "2", "--out", str(out)],
                   cwd=REPO, check=True, timeout=170, capture_output=True)
    result = json.loads(out.read_text())
    folds = result["folds"]
    assert [f["group"] for f in folds] == [0, 1] and sum(f["n"] for f in folds) == 160
    assert all(f["trained_on"] + f["n"] == 160 for f in folds)  # exactly the left-out rows were held back
    assert 0.0 <= result["pooled_auroc"] <= 1.0 and len(result["pooled_auroc_ci95"]) == 2
    section = group_cv_section({"group_cv": result, "auroc": 0.99})
    assert "pooled AUROC over all left-out rows" in section and "| 0 | " in section and "| 1 | " in section


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
    net = TTAClassifier(AirbenchNet((8, 8, 8)), tta_level=1).eval()
    path = export_onnx(net, torch.from_numpy(random_images((32, 32, 3))(2)), tmp_path / "m.onnx", "images",
                       ["probabilities"])
    assert parity_check(net, path, random_images((32, 32, 3)))["max_abs_diff"] <= 1e-4
    other = TTAClassifier(AirbenchNet((8, 8, 8)), tta_level=1).eval()  # different weights
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.5)
    with pytest.raises(ParityError):
        parity_check(other, path, random_images((32, 32, 3)))


@pytest.mark.timeout(240)
def test_cifar_export_keep_int8_leaves_the_committed_int8_alone(tiny_data, tmp_path):
    """--keep-int8: cifar10-resnet is rewritten, cifar10-int8 (file, manifest, card) is not; the card lists it as kept."""
    from training.exporters.cifar10 import KEPT_INT8

    args = ["--epochs", "1", "--batch-size", "64", "--data-dir", str(tiny_data), "--quiet",
            "--checkpoint-dir", str(tmp_path / "ckpt")]
    assert main(["train", "cifar10", "--set", "widths=8,16,16", *args]) == 0
    models = tmp_path / "models"
    assert main(["export", "cifar10", "--out", str(models), "--fp16-weights", *args[4:]]) == 0
    int8 = models / "cifar10-int8"
    before = {f: (int8 / f).read_bytes() for f in ("1/model.onnx", "manifest.json", "card.json", "README.md")}
    assert main(["export", "cifar10", "--out", str(models), "--fp16-weights", "--tta", "0", "--keep-int8", *args[4:]]) == 0
    assert {f: (int8 / f).read_bytes() for f in before} == before
    card = json.loads((models / "cifar10-resnet" / "card.json").read_text())
    assert card["variants"][KEPT_INT8]["file"] == "cifar10-int8/1/model.onnx"
    assert card["variants"][KEPT_INT8]["accuracy"] == json.loads(before["card.json"])["metrics"]["accuracy"]
    assert read_manifest(models / "cifar10-resnet").parameters["tta"] == "none"
    # --int8-from-served: cifar10-int8 re-quantised from the committed fp16-stored graph, no checkpoint needed
    assert main(["export", "cifar10", "--int8-from-served", "--out", str(models), "--data-dir", str(tiny_data)]) == 0
    assert (int8 / "1" / "model.onnx").read_bytes() != before["1/model.onnx"]
    manifest = read_manifest(models / "cifar10-int8")
    assert manifest.parameters["tta"] == "none" and manifest.provenance["export_command"].endswith("--int8-from-served "
                                                                                                    f"--out {models} --data-dir {tiny_data}")
    fp32 = json.loads((models / "cifar10-resnet" / "card.json").read_text())["metrics"]["accuracy"]
    int8_card = json.loads((int8 / "card.json").read_text())
    assert abs(int8_card["metrics"]["accuracy"]["value"] - fp32["value"]) < 0.1
    assert "--int8-from-served" in (int8 / "README.md").read_text()
