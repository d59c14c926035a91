"""The committed models: files present, manifests valid for the server, graphs load and match them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from service.manifest import read_manifest

MODELS = Path(__file__).resolve().parents[2] / "models"
ONNX_TYPES = {"tensor(uint8)": "UINT8", "tensor(float)": "FP32"}
EXPECTED = {
    "cifar10-resnet": ("image-classification", [("images", "UINT8", [-1, 32, 32, 3])], [("probabilities", "FP32", [-1, 10])]),
    "cifar10-small": ("image-classification", [("images", "UINT8", [-1, 32, 32, 3])], [("probabilities", "FP32", [-1, 10])]),
    "cifar10-int8": ("image-classification", [("images", "UINT8", [-1, 32, 32, 3])], [("probabilities", "FP32", [-1, 10])]),
    "tumor-cnn": ("tumor-detection", [("images", "UINT8", [-1, 64, 64, 1])],
                  [("tumor_probability", "FP32", [-1]), ("subtype_probabilities", "FP32", [-1, 4])]),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_committed_model(name):
    import onnxruntime as ort

    model_dir = MODELS / name
    onnx_path = model_dir / "1" / "model.onnx"
    assert onnx_path.exists(), f"{onnx_path} missing"
    assert onnx_path.stat().st_size < 20_000_000
    assert not list(model_dir.rglob("*.onnx.data")), "external data files must not be committed"
    manifest = read_manifest(model_dir)
    task, inputs, outputs = EXPECTED[name]
    assert manifest.task == task
    assert [(t.name, t.datatype, t.shape) for t in manifest.inputs] == inputs
    # an OOD profile (training/ood.py) adds the output ood_features after the task's own
    assert [(t.name, t.datatype, t.shape) for t in manifest.outputs if t.name != "ood_features"] == outputs
    assert manifest.metrics and manifest.provenance.get("training_command")
    for f in ("README.md", "card.json"):
        assert (model_dir / f).exists()
    json.loads((model_dir / "card.json").read_text())

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    got_in = [(i.name, ONNX_TYPES[i.type], len(i.shape)) for i in sess.get_inputs()]
    assert got_in == [(n, d, len(s)) for n, d, s in inputs]
    names = [o.name for o in sess.get_outputs()]
    assert [n for n in names if n != "ood_features"] == [n for n, _, _ in outputs]
    x = np.random.default_rng(0).integers(0, 256, size=(2, *inputs[0][2][1:]), dtype=np.uint8)
    values = dict(zip(names, sess.run(None, {"images": x})))
    for name_, _, shape in outputs:
        out = values[name_]
        assert out.shape == (2, *shape[1:])
        assert np.all(np.isfinite(out)) and np.all((out >= 0) & (out <= 1))
    if manifest.ood is not None:
        assert values["ood_features"].shape == (2, sum(g.size for g in manifest.ood.groups))
        assert (model_dir / manifest.ood.profile).exists()
    if name == "tumor-cnn":
        assert manifest.labels == ["none", "glioma", "meningioma", "pituitary"]
        assert 0 < manifest.parameters["threshold"] < 1
        assert (model_dir / "roc.png").exists()
    else:
        assert manifest.labels[0] == "airplane" and manifest.labels[-1] == "truck"
