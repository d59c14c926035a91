"""Out-of-distribution scores (service/ood.py) through the API, and the training-side tool (training/ood.py)."""

from __future__ import annotations

import argparse
import base64
import io
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from PIL import Image

from tests.onnx_models import CIFAR_LABELS, small_cnn, tiny_forecaster, write_model

CNN_PREPROCESSING = {"layout": "NHWC", "dtype": "uint8", "height": 32, "width": 32, "channels": 3}
GROUPS = [("penultimate", 20, 5.0, 2.0), ("early", 12, 1.0, 3.0)]  # sizes add up to small_cnn's 32 pooled features


def with_feature_output(model: onnx.ModelProto, tensor: str, width: int) -> onnx.ModelProto:
    """The model plus `ood_features` = an existing tensor [batch, width]."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    out.graph.node.append(helper.make_node("Identity", [tensor], ["ood_features"]))
    out.graph.output.append(helper.make_tensor_value_info("ood_features", TensorProto.FLOAT, ["batch", width]))
    onnx.checker.check_model(out)
    return out


def random_profile(rng, groups, classes: int = 3) -> dict[str, np.ndarray]:
    arrays = {}
    for name, size, _, _ in groups:
        arrays[f"{name}.means"] = rng.standard_normal((classes, size)).astype(np.float32) * 0.1
        arrays[f"{name}.whiten"] = (rng.standard_normal((size, size)) / np.sqrt(size) + np.eye(size) * 3).astype(np.float32)
    return arrays


def mahalanobis_scores(features: np.ndarray, arrays: dict, groups) -> np.ndarray:
    """Computed independently of service/ood.py: d = min_c (x - m_c)^T P (x - m_c), P = W^T W; standardised; summed."""
    total, start = np.zeros(len(features)), 0
    for name, size, loc, scale in groups:
        x = features[:, start:start + size].astype(np.float64)
        w = arrays[f"{name}.whiten"].astype(np.float64)
        precision = w.T @ w
        d = np.array([[(row - m) @ precision @ (row - m) for m in arrays[f"{name}.means"].astype(np.float64)] for row in x])
        total += (d.min(axis=1) - loc) / scale
        start += size
    return total


def ood_spec(groups, threshold: float, **extra) -> dict:
    return {"profile": "ood_profile.npz", "threshold": threshold, "window": 100,
            "groups": [{"name": n, "size": s, "loc": loc, "scale": scale} for n, s, loc, scale in groups], **extra}


def png(pixels: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def ood_repo(tmp_path_factory):
    """ood-cnn and ood-prices with valid profiles (thresholds at the median score of the inputs the tests send),
    plain-cnn without one, and two models whose profiles must not load."""
    root = tmp_path_factory.mktemp("ood-models")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
    cnn = with_feature_output(small_cnn(), "flat", 32)
    features = ort.InferenceSession(cnn.SerializeToString()).run(["ood_features"], {"images": images})[0]
    arrays = random_profile(rng, GROUPS)
    expected = mahalanobis_scores(features, arrays, GROUPS)
    threshold = float(np.median(expected))
    folder = write_model(root, "ood-cnn", cnn, task="image-classification", labels=CIFAR_LABELS,
                         preprocessing=CNN_PREPROCESSING, ood=ood_spec(GROUPS, threshold))
    np.savez(folder / "ood_profile.npz", **arrays)
    write_model(root, "plain-cnn", small_cnn(), task="image-classification", labels=CIFAR_LABELS,
                preprocessing=CNN_PREPROCESSING)

    history = (np.arange(60, dtype=np.float32) + 100)[None]
    prices = with_feature_output(tiny_forecaster("closes", 60, 5), "closes", 60)
    price_groups = [("window", 60, 0.0, 1.0)]
    price_arrays = random_profile(rng, price_groups, classes=1)
    price_expected = mahalanobis_scores(history, price_arrays, price_groups)
    folder = write_model(root, "ood-prices", prices, task="price-forecast", parameters={"interval": 0.8, "horizon": 5},
                         ood=ood_spec(price_groups, float(price_expected[0]) + 1.0))
    np.savez(folder / "ood_profile.npz", **price_arrays)

    bad = dict(arrays)
    bad["early.whiten"] = bad["early.whiten"][:11, :11]
    folder = write_model(root, "bad-whiten", cnn, task="image-classification", labels=CIFAR_LABELS,
                         preprocessing=CNN_PREPROCESSING, ood=ood_spec(GROUPS, threshold))
    np.savez(folder / "ood_profile.npz", **bad)
    wide = [("penultimate", 20, 5.0, 2.0), ("early", 20, 1.0, 3.0)]
    folder = write_model(root, "bad-width", cnn, task="image-classification", labels=CIFAR_LABELS,
                         preprocessing=CNN_PREPROCESSING, ood=ood_spec(wide, threshold))
    np.savez(folder / "ood_profile.npz", **random_profile(rng, wide))
    return {"root": root, "images": images, "expected": expected, "threshold": threshold, "history": history,
            "price_expected": price_expected}


@pytest.fixture(scope="module")
def ood_client(ood_repo):
    from tests.conftest import _open_client

    client = _open_client(ood_repo["root"])
    yield client
    client.__exit__(None, None, None)


def test_classify_answers_carry_ood_scores_that_match_an_independent_mahalanobis(ood_client, ood_repo):
    body = {"images": [png(im) for im in ood_repo["images"]], "model": "ood-cnn"}
    response = ood_client.post("/v1/images/classify", json=body)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 6
    scores = np.array([r["ood"]["score"] for r in results])
    np.testing.assert_allclose(scores, ood_repo["expected"], atol=1e-3, rtol=1e-5)
    flags = [r["ood"]["unusual"] for r in results]
    assert flags == [bool(s >= ood_repo["threshold"]) for s in ood_repo["expected"]]
    assert sum(flags) == 3  # the threshold is the median of the six
    assert set(results[0]) == {"label", "score", "top_k", "ood"}

    plain = ood_client.post("/v1/images/classify", json={"images": body["images"][:1], "model": "plain-cnn"}).json()
    assert "ood" not in plain["results"][0]  # no profile: no field


def test_metrics_expose_the_rolling_unusual_share(ood_client, ood_repo):
    ood_client.post("/v1/images/classify", json={"images": [png(im) for im in ood_repo["images"]], "model": "ood-cnn"})
    text = ood_client.get("/metrics").text
    share = next(line for line in text.splitlines() if line.startswith('neuroserve_ood_unusual_share{model="ood-cnn"}'))
    assert float(share.split()[-1]) == pytest.approx(0.5)
    assert 'neuroserve_ood_inputs_total{model="ood-cnn"}' in text
    assert 'neuroserve_ood_unusual_total{model="ood-cnn"}' in text


def test_forecasts_carry_a_top_level_ood_list(ood_client, ood_repo):
    response = ood_client.post("/v1/forecast/price", json={"history": ood_repo["history"][0].tolist(), "model": "ood-prices"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["ood"]) == 1
    assert body["ood"][0]["score"] == pytest.approx(ood_repo["price_expected"][0], abs=1e-3)
    assert body["ood"][0]["unusual"] is False  # threshold = its score + 1


def test_model_list_says_which_models_have_a_profile(ood_client):
    rows = {row["id"]: row for row in ood_client.get("/v1/models").json()["data"]}
    assert rows["ood-cnn"]["ood"] is True and rows["ood-prices"]["ood"] is True
    assert rows["plain-cnn"]["ood"] is False


def test_a_profile_that_does_not_fit_fails_to_load_with_its_reason(ood_client):
    rows = {row["id"]: row for row in ood_client.get("/v1/models").json()["data"]}
    assert rows["bad-whiten"]["state"] == "UNAVAILABLE"
    assert "whitening matrix has shape [11, 11], expected [12, 12]" in rows["bad-whiten"]["reason"]
    assert rows["bad-width"]["state"] == "UNAVAILABLE"
    assert "has 32 features but the profile's groups cover 40" in rows["bad-width"]["reason"]


def test_rolling_share_forgets_beyond_its_window():
    from service.ood import RollingShare

    window = RollingShare(4)
    assert window.add([True, True, False, False]) == pytest.approx(0.5)
    assert window.add([False, False]) == pytest.approx(0.0)  # the two unusual ones left the window
    assert window.add([True]) == pytest.approx(0.25)


# ------------------------------------------------------------------------------------------- training side
def tiny_torch_classifier(path: Path) -> None:
    """A tiny trained-looking torch MLP (6 -> 12 -> 3, softmax), exported to ONNX."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 12), torch.nn.ReLU(), torch.nn.Linear(12, 3), torch.nn.Softmax(dim=1))
    from training.onnx_export import export_onnx

    export_onnx(net, torch.randn(2, 6), path, "x", ["probabilities"])


def test_training_tool_exposes_the_penultimate_layer_fits_a_profile_and_the_server_agrees(tmp_path):
    from service.manifest import read_manifest
    from service.ood import check_against_graph, load_profile
    from service.runtime import OnnxRuntimeSession
    from service.settings import Settings
    from training import ood

    folder = tmp_path / "mlp"
    (folder / "1").mkdir(parents=True)
    tiny_torch_classifier(folder / "1" / "model.onnx")
    (folder / "manifest.json").write_text(json.dumps({
        "name": "mlp", "task": "tensor", "labels": ["a", "b", "c"],
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 6]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}]}))
    (folder / "README.md").write_text("# mlp\n")
    rng = np.random.default_rng(0)
    sample = lambda n, shift=0.0: {"x": (rng.standard_normal((n, 6)) + shift).astype(np.float32)}  # noqa: E731
    data = ood.OodData(fit=sample(600), fit_labels=rng.integers(0, 3, 600), calibration=sample(200),
                       validation=sample(300), pairs=[("shifted by 6", sample(200, 6.0))], describe={
                           "fit": "600 draws", "calibration": "200 draws", "validation": "300 draws"})
    args = argparse.Namespace(model="mlp", models_dir=str(tmp_path), version=None, data_dir=None, seed=0, threads=1,
                              quantile=0.9, window=50, combine="sum", dry_run=False)
    probe = sample(5)
    before = ort.InferenceSession(str(folder / "1" / "model.onnx")).run(["probabilities"], probe)[0]

    result = ood.fit_model(args, data)
    assert [g["name"] for g in result["groups"]] == ["penultimate"]
    assert result["groups"][0]["size"] == 12  # the ReLU output feeding the last Linear
    assert result["threshold"] == pytest.approx(np.quantile(result["val_scores"], 0.9))
    assert result["pairs"][0]["auroc_ood_score"] > 0.95
    ood.write_outputs(result, args)
    ood.write_outputs(ood.fit_model(args, data), args)  # re-runnable on its own output: replaces, never stacks

    graph = onnx.load(str(folder / "1" / "model.onnx"))
    assert [o.name for o in graph.graph.output] == ["probabilities", "ood_features"]
    assert sum(n.name == "ood/output" for n in graph.graph.node) == 1
    assert (folder / "README.md").read_text().count("## Out-of-distribution flag") == 1
    manifest = read_manifest(folder)
    assert manifest.ood is not None and manifest.ood.threshold == pytest.approx(result["threshold"], abs=1e-3)
    session = OnnxRuntimeSession.load(folder / "1" / "model.onnx", manifest, Settings(models_dir=tmp_path))
    outputs = session.run(probe)
    np.testing.assert_allclose(outputs["probabilities"], before, rtol=1e-6)  # the existing output is unchanged
    profile = load_profile(manifest, folder, lambda name: folder / name)
    check_against_graph(profile, session)
    np.testing.assert_allclose(profile.scores(outputs["ood_features"]),
                               ood.profile_scores(result["groups"], outputs["ood_features"]), rtol=1e-4, atol=1e-4)


def test_ledoit_wolf_shrinks_toward_a_scaled_identity():
    from training.ood import ledoit_wolf

    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 30))
    x -= x.mean(axis=0)
    cov, shrink = ledoit_wolf(x)
    assert 0 < shrink < 1  # few rows for many columns: shrunk
    empirical = x.T @ x / len(x)
    mu = np.trace(empirical) / 30
    np.testing.assert_allclose(cov, (1 - shrink) * empirical + shrink * mu * np.eye(30))
    assert np.linalg.eigvalsh(cov).min() > 0


def test_auroc_matches_the_pairwise_definition():
    from training.ood import auroc

    rng = np.random.default_rng(2)
    neg, pos = rng.normal(size=50).round(1), rng.normal(0.7, size=40).round(1)
    pairwise = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert auroc(neg, pos) == pytest.approx(pairwise)


def test_sdk_result_types_carry_the_optional_ood_field():
    from client.results import ClassifyResult, Forecast, ModelInfo, SentimentResult, TumorResult

    ood = {"score": 3.5, "unusual": True}
    classify = ClassifyResult.from_json({"model": "m", "version": "1", "results": [
        {"label": "cat", "score": 0.9, "top_k": [{"label": "cat", "score": 0.9}], "ood": ood},
        {"label": "dog", "score": 0.8, "top_k": [{"label": "dog", "score": 0.8}]}]})
    assert classify.results[0].ood.unusual is True and classify.results[0].ood.score == 3.5
    assert classify.results[1].ood is None
    tumor = TumorResult.from_json({"model": "t", "version": "1", "results": [
        {"tumor": False, "probability": 0.1, "threshold": 0.5, "ood": ood}]})
    assert tumor.results[0].ood.score == 3.5
    sentiment = SentimentResult.from_json({"model": "s", "version": "1", "results": [
        {"label": "positive", "score": 0.7, "ood": {"score": -1.0, "unusual": False}}]})
    assert sentiment.results[0].ood.unusual is False
    forecast = Forecast.from_json({"model": "p", "version": "1", "forecast": [1.0], "lower": [0.5], "upper": [1.5],
                                   "interval": 0.8, "ood": [ood]})
    assert forecast.ood[0].unusual is True
    assert Forecast.from_json({**forecast.raw, "ood": None}).ood is None
    assert ModelInfo.from_json({"id": "m", "ready": True, "ood": True}).ood is True
