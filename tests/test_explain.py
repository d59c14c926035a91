"""Explanations (service/explain.py) on fixture models: the methods' arithmetic, shapes, validation, batching.

The faithfulness of the explanations of the committed models on real data: tests/test_explain_faithfulness.py.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from service import explain


def _png(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _decoded(overlay: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(overlay)))
    assert image.format == "PNG"
    return image


# --- the methods ------------------------------------------------------------------------------------------------

def test_occlusion_weights_average_the_drops_over_the_variants_that_removed_an_input():
    masks = np.array([[1, 1, 0, 0], [0, 1, 1, 0]], bool)
    weights = explain.occlusion_weights(1.0, np.array([0.4, 0.8]), masks)
    assert weights.tolist() == pytest.approx([0.6, 0.4, 0.2, 0.0])


def test_patch_masks_cover_the_image_with_a_bounded_number_of_overlapping_patches():
    for height, width in ((32, 32), (64, 64), (28, 40)):
        masks = explain.patch_masks(height, width)
        assert masks.shape == (explain.IMAGE_GRID ** 2, height, width)
        cover = masks.sum(axis=0)
        assert cover.min() >= 1 and cover.max() <= 4  # every pixel in 1-4 patches


def test_shapley_sampling_is_exact_for_an_additive_score_and_efficient_with_interactions():
    record, baseline = np.array([1.0, 2.0, -1.0, 3.0]), np.zeros(4)
    orders = explain.shapley_orders(4, budget=64)
    masks = explain.shapley_masks(orders, 4)
    assert len(masks) <= 64 and len(orders) % 2 == 0
    coefficients = np.array([0.5, -1.0, 2.0, 0.1])
    additive = (np.where(masks, record, baseline) * coefficients).sum(axis=1)
    weights = explain.shapley_weights(float(record @ coefficients), additive, orders)
    assert weights == pytest.approx(record * coefficients)

    def interacting(x):
        return x[:, 0] * x[:, 1] + np.tanh(x[:, 2] + x[:, 3])

    scores = interacting(np.where(masks, record, baseline))
    full = float(interacting(record[None])[0])
    weights = explain.shapley_weights(full, scores, orders)
    assert weights.sum() == pytest.approx(full - scores[0])  # efficiency: they add up to f(x) - f(baseline)
    ranked = explain.ranked_features(["a", "b", "c", "d"], weights)["features"]
    assert [abs(f["weight"]) for f in ranked] == sorted((abs(f["weight"]) for f in ranked), reverse=True)


def test_word_deletions_map_tokens_back_to_the_words_as_written():
    text = "It's  GREAT!! not bad"
    # tokens as the real tokenizers give them: offsets into the original text, several per word
    ids = [10, 11, 12, 13, 13, 14, 15]
    offsets = [(0, 2), (3, 4), (6, 11), (11, 12), (12, 13), (14, 17), (18, 21)]
    words, rows, masks = explain.word_deletions(text, ids, offsets)
    assert words == ["It's", "GREAT!!", "not", "bad"]
    assert rows == [[12, 13, 13, 14, 15], [10, 11, 14, 15], [10, 11, 12, 13, 13, 15], [10, 11, 12, 13, 13, 14]]
    assert masks.tolist() == np.eye(4, dtype=bool).tolist()
    # a word whose tokens were truncated away is not varied (weight 0)
    words, rows, masks = explain.word_deletions(text, ids[:3], offsets)
    assert len(rows) == 2 and masks.sum(axis=0).tolist() == [1, 1, 0, 0]


def test_long_inputs_are_occluded_in_groups_within_the_variant_bound():
    history = np.arange(1000, dtype=np.float32)
    variants, masks = explain.occlude_series(history)
    assert len(variants) == explain.MAX_VARIANTS and masks.sum(axis=0).tolist() == [1] * 1000
    assert variants[0, 0] == pytest.approx(history.mean()) and variants[0, -1] == history[-1]


def test_round_sig_keeps_four_digits_of_the_largest():
    assert explain.round_sig([1234.5678, 0.001, -2.0]).tolist() == [1235.0, 0.0, -2.0]
    assert explain.round_sig([0.0123456, 0.0000123]).tolist() == [0.01235, 0.00001]
    assert explain.round_sig([0.0, 0.0]).tolist() == [0.0, 0.0]


# --- the endpoints ----------------------------------------------------------------------------------------------

def test_classify_explains_each_image_at_the_models_input_size(client):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (40, 48, 3), dtype=np.uint8) for _ in range(2)]
    response = client.post("/v1/images/classify", json={"images": [_png(i) for i in images], "explain": True})
    assert response.status_code == 200, response.text
    for result in response.json()["results"]:
        relevance = np.array(result["explanation"]["relevance"])
        assert relevance.shape == (32, 32) and np.isfinite(relevance).all()  # the image as the model saw it
        assert _decoded(result["explanation"]["overlay_png"]).size == (128, 128)
    plain = client.post("/v1/images/classify", json={"images": [_png(images[0])]}).json()["results"][0]
    assert "explanation" not in plain


def test_tumor_explanation_multipart_and_sign(client):
    dark = np.zeros((64, 64), np.uint8)
    dark[:, :32] = 250  # tiny-tumor: P(tumour) = mean brightness; bright half: 0.49 < 0.5, "no tumour"
    files = [("images", ("scan.png", base64.b64decode(_png(dark)), "image/png"))]
    response = client.post("/v1/tumor/detect", files=files, data={"explain": "true"})
    assert response.status_code == 200, response.text
    result = response.json()["results"][0]
    assert result["tumor"] is False
    relevance = np.array(result["explanation"]["relevance"])
    # hiding the bright half behind mid-grey lowers P(tumour), i.e. raises P(no tumour): the bright half opposes
    # the answer "no tumour" (negative), the dark half (grey raises brightness) supports it (positive)
    assert relevance.shape == (64, 64)
    assert relevance[:, :16].mean() < 0 < relevance[:, 48:].mean()


def test_sentiment_weights_are_the_drops_of_the_predicted_label_when_a_word_is_deleted(client):
    text = "good movie , awful"
    body = client.post("/v1/text/sentiment", json={"texts": [text, "bad bad good"], "explain": True}).json()
    first, second = body["results"]
    assert first["explanation"]["tokens"] == ["good", "movie", ",", "awful"]
    # tiny-sentiment: P(positive) = sigmoid(mean word score), good 2, awful -2, others 0

    def p(scores):
        return 1 / (1 + np.exp(-np.mean(scores)))

    full = p([2, 0, 0, -2])
    expected = [full - p([0, 0, -2]), full - p([2, 0, -2]), full - p([2, 0, -2]), full - p([2, 0, 0])]
    if full < 0.5:
        expected = [-e for e in expected]
    assert first["explanation"]["weights"] == pytest.approx(expected, abs=1e-4)
    assert second["label"] == "negative" and second["explanation"]["weights"][2] < 0 < second["explanation"]["weights"][0]


def test_explanations_do_not_depend_on_what_else_is_in_the_request(client):
    texts = ["good movie", "it 's a bad , awful movie !", "great"]
    together = client.post("/v1/text/sentiment", json={"texts": texts, "explain": True}).json()["results"]
    for text, result in zip(texts, together):
        alone = client.post("/v1/text/sentiment", json={"texts": [text], "explain": True}).json()["results"][0]
        assert alone["explanation"] == result["explanation"]


def test_forecast_history_weights_find_the_one_value_the_model_reads(client):
    # the fixture forecasters forecast the last history value: only it moves the forecast
    history = [float(v) for v in range(1, 201)]
    traffic = client.post("/v1/forecast/traffic", json={"history": history, "start": "2024-01-01T00:00",
                                                         "explain": True}).json()
    weights = traffic["explanation"]["history_weights"]
    assert len(weights) == 168 and weights[:-1] == [0.0] * 167
    assert weights[-1] == pytest.approx(200 - np.mean(history[-168:]), rel=1e-3)
    price = client.post("/v1/forecast/price", json={"history": history[:70], "horizon": 2, "explain": True}).json()
    assert len(price["explanation"]["history_weights"]) == 60
    assert "explanation" not in client.post("/v1/forecast/price", json={"history": history[:70]}).json()


@pytest.mark.parametrize("path,body,fragment", [
    ("/v1/text/sentiment", {"texts": ["good"], "explain": "yes"}, "explain"),
    ("/v1/text/sentiment", {"texts": ["good"], "explain": 1}, "explain"),
    ("/v1/text/sentiment", {"texts": ["good"] * 9, "explain": True}, "at most 8 items"),
    ("/v1/forecast/price", {"history": [1.0] * 60, "explain": "true"}, "explain"),
    ("/v1/images/classify", {"images": ["x"], "explain": 1}, "boolean"),
    ("/v1/images/classify", {"images": ["x"], "explain": None}, "boolean"),
])
def test_explain_is_validated(client, path, body, fragment):
    if path == "/v1/images/classify":
        body = {**body, "images": [_png(np.zeros((8, 8, 3), np.uint8))]}
    response = client.post(path, json=body)
    assert response.status_code == 422, response.text
    assert fragment in response.json()["error"]


def test_too_many_images_to_explain_is_a_422(client):
    image = _png(np.zeros((32, 32, 3), np.uint8))
    response = client.post("/v1/images/classify", json={"images": [image] * 9, "explain": True})
    assert response.status_code == 422 and "at most 8" in response.json()["error"]
    files = [("images", (f"{i}.png", base64.b64decode(image), "image/png")) for i in range(9)]
    assert client.post("/v1/tumor/detect", files=files, data={"explain": "maybe"}).status_code == 422


def test_fraud_shapley_weights_on_the_fixture_are_exact(client):
    # tiny-fraud: P = sigmoid(0.01 Amount - 1), no explain_baseline in its manifest (baseline 0 for every column):
    # the whole move from the baseline is Amount's
    from tests.onnx_models import FRAUD_FEATURES

    row = {name: 0.0 for name in FRAUD_FEATURES}
    row.update({"Amount": 250.0, "V3": 5.0, "Time": 1000.0})
    body = client.post("/v1/fraud/score", json={"transactions": [row, {**row, "Amount": 0.0}], "explain": True}).json()
    features = body["results"][0]["explanation"]["features"]
    assert [f["name"] for f in features][0] == "Amount" and len(features) == 30
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    assert features[0]["weight"] == pytest.approx(sigmoid(1.5) - sigmoid(-1), abs=1e-4)
    assert all(f["weight"] == 0 for f in features[1:])
    assert all(f["weight"] == 0 for f in body["results"][1]["explanation"]["features"])
    too_many = client.post("/v1/fraud/score", json={"transactions": [row] * 9, "explain": True})
    assert too_many.status_code == 422 and "at most 8" in too_many.json()["error"]


def test_oip_infer_says_explanations_are_a_task_endpoint_feature(client):
    tensor = {"name": "images", "shape": [1, 32, 32, 3], "datatype": "UINT8", "data": [0] * 3072}
    response = client.post("/v2/models/tiny-cnn/infer", json={"inputs": [tensor], "parameters": {"explain": True}})
    assert response.status_code == 400 and "task-endpoint feature" in response.json()["error"]
    plain = client.post("/v2/models/tiny-cnn/infer", json={"inputs": [tensor], "parameters": {"explain": False}})
    assert plain.status_code == 200


def test_deterioration_shapley_weights_on_the_fixture(client):
    # tiny-icu: risk = sigmoid(0.1 x observed cells + 0.01 x hours - 1); a parameter out of a coalition loses its
    # measurements, so HR (3 hours) weighs more than Temp (1 hour), the static fields nothing, GCS (never measured)
    # is not a player; the weights add up to risk - risk without any measurement
    measurements = [{"minute": m, "parameter": "HR", "value": 90.0} for m in (10, 70, 130)]
    measurements += [{"minute": 200, "parameter": "Temp", "value": 38.0}, {"minute": 250, "parameter": "HR", "value": 0.0}]
    stay = {"measurements": measurements, "age": 70.0, "gender": 1, "height": 180.0, "icu_type": 2}
    response = client.post("/v1/clinical/deterioration", json={"stays": [stay, stay], "explain": True})
    assert response.status_code == 200, response.text
    result = response.json()["results"][0]
    weights = {f["name"]: f["weight"] for f in result["explanation"]["features"]}
    assert list(weights)[:2] == ["HR", "Temp"] and set(weights) == {"HR", "Temp", "age", "gender", "height", "icu_type"}

    def sigmoid(z):
        return 1 / (1 + np.exp(-z))

    hours = result["hours_observed"]
    assert sum(weights.values()) == pytest.approx(result["risk"] - sigmoid(0.01 * hours - 1), abs=2e-4)
    assert weights["HR"] > weights["Temp"] > 0 and all(weights[k] == 0 for k in ("age", "gender", "height", "icu_type"))
    too_many = client.post("/v1/clinical/deterioration", json={"stays": [stay] * 9, "explain": True})
    assert too_many.status_code == 422 and "at most 8" in too_many.json()["error"]


def test_a_multipart_explain_takes_only_true_or_false(client):
    """The OpenAPI schema says boolean: in a form that is the text true or false; 0/1 are refused with the reason."""
    image = base64.b64decode(_png(np.zeros((32, 32, 3), np.uint8)))
    for text in ("0", "1", "yes"):
        response = client.post("/v1/images/classify", files=[("images", ("a.png", image, "image/png"))], data={"explain": text})
        assert response.status_code == 422 and "must be a boolean" in response.json()["error"], response.text
    ok = client.post("/v1/images/classify", files=[("images", ("a.png", image, "image/png"))], data={"explain": "false"})
    assert ok.status_code == 200 and ok.json()["results"][0].get("explanation") is None
