"""Sentiment and forecast endpoints on fixture models: shapes, normalisation, batching, bad input."""

from __future__ import annotations

import concurrent.futures
import json

import pytest


def test_sentiment_results_in_order(client):
    response = client.post("/v1/text/sentiment", json={"texts": ["good great movie", "awful bad", "It's GREAT!!"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "tiny-sentiment" and body["version"] == "1"
    labels = [r["label"] for r in body["results"]]
    assert labels == ["positive", "negative", "positive"]
    assert all(0 <= r["score"] <= 1 for r in body["results"])


def test_real_text_is_normalised_like_training_text(client):
    raw = client.post("/v1/text/sentiment", json={"texts": ["It's GREAT!!"]}).json()["results"][0]["score"]
    ptb = client.post("/v1/text/sentiment", json={"texts": ["it 's great ! !"]}).json()["results"][0]["score"]
    assert raw == pytest.approx(ptb, abs=1e-6)


def test_concurrent_texts_of_different_lengths_batch_without_changing_answers(client):
    texts = ["good", "bad movie movie movie movie movie", "great " * 12, "awful !", "it 's good"]
    alone = [client.post("/v1/text/sentiment", json={"texts": [t]}).json()["results"][0]["score"] for t in texts]
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        together = list(pool.map(lambda t: client.post("/v1/text/sentiment", json={"texts": [t]}).json()["results"][0]["score"], texts))
    assert together == pytest.approx(alone, abs=1e-6)


@pytest.mark.parametrize("body,status,fragment", [
    ({"texts": []}, 422, "texts"),
    ({"texts": [""]}, 422, "texts.0"),
    ({"texts": ["   "]}, 422, "blank"),
    ({"texts": ["x" * 5001]}, 422, "at most 5000 characters"),
    ({"texts": ["ok"] * 65}, 422, "texts"),
    ({"texts": "good"}, 422, "texts"),
    ({"texts": [5]}, 422, "texts"),
    ({"text": ["good"]}, 422, "text"),
    ({"texts": ["good"], "model": "nope"}, 404, "unknown model"),
    ({"texts": ["good"], "model": "tiny-cnn"}, 400, "serves task"),
])
def test_bad_sentiment_requests(client, body, status, fragment):
    response = client.post("/v1/text/sentiment", json=body)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]


def test_unicode_edge_cases_are_served(client):
    texts = ["😀 good", "\u200b\u200bbad", "ｇｏｏｄ", "e\u0301", "\U0010ffff", "a\x00b"]
    response = client.post("/v1/text/sentiment", json={"texts": texts})
    assert response.status_code == 200, response.text
    assert len(response.json()["results"]) == len(texts)


def _traffic(**overrides):
    body = {"history": [float(i % 24) * 100 for i in range(168)], "start": "2017-07-03T00:00:00", "horizon": 24}
    body.update(overrides)
    return body


def test_traffic_forecast_shape_and_times(client):
    response = client.post("/v1/forecast/traffic", json=_traffic(horizon=6))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "tiny-traffic" and body["interval"] == 0.8
    assert len(body["forecast"]) == len(body["lower"]) == len(body["upper"]) == 6
    assert all(lo <= mid <= hi for lo, mid, hi in zip(body["lower"], body["forecast"], body["upper"]))
    assert body["forecast"][0] == pytest.approx(2300.0)
    assert body["timestamps"][0] == "2017-07-10T00:00:00"


def test_traffic_with_timestamps_and_longer_history(client):
    from datetime import datetime, timedelta

    start = datetime(2017, 7, 1)
    history = [float(i) for i in range(200)]
    stamps = [(start + timedelta(hours=i)).isoformat() for i in range(200)]
    by_stamps = client.post("/v1/forecast/traffic", json={"history": history, "timestamps": stamps}).json()
    by_start = client.post("/v1/forecast/traffic", json={"history": history, "start": start.isoformat()}).json()
    assert by_stamps["forecast"] == by_start["forecast"] and by_stamps["forecast"][0] == pytest.approx(199.0)
    assert by_stamps["timestamps"][0] == (start + timedelta(hours=200)).isoformat()


@pytest.mark.parametrize("overrides,fragment", [
    ({"history": [1.0] * 167}, "history"),
    ({"history": [1.0] * 10_001}, "history"),
    ({"history": [-1.0] * 168}, "greater than or equal"),
    ({"history": [1e30] * 168}, "less than or equal"),
    ({"history": ["a"] * 168}, "history"),
    ({"horizon": 0}, "horizon"),
    ({"horizon": 25}, "horizon"),
    ({"start": "yesterday"}, "start"),
    ({"start": None}, "exactly one"),
    ({"timestamps": ["2017-01-01T00:00:00"] * 168}, "exactly one"),
    ({"extra": 1}, "extra"),
])
def test_bad_traffic_requests(client, overrides, fragment):
    response = client.post("/v1/forecast/traffic", json=_traffic(**overrides))
    assert response.status_code == 422, response.text
    assert fragment in response.json()["error"]


def test_traffic_timestamps_with_a_gap(client):
    from datetime import datetime, timedelta

    stamps = [(datetime(2017, 7, 1) + timedelta(hours=i + (i > 100))).isoformat() for i in range(168)]
    response = client.post("/v1/forecast/traffic", json={"history": [1.0] * 168, "timestamps": stamps})
    assert response.status_code == 422 and "contiguous" in response.json()["error"]


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_refused(client, literal):
    body = json.dumps(_traffic()).encode().replace(b"0.0,", literal + b",", 1)
    response = client.post("/v1/forecast/traffic", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code in (400, 422), response.text
    assert "error" in response.json()


def test_price_forecast(client):
    history = [100.0 + i for i in range(80)]
    response = client.post("/v1/forecast/price", json={"history": history, "horizon": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "tiny-prices" and len(body["forecast"]) == 3 and "timestamps" not in body
    assert body["forecast"][0] == pytest.approx(179.0) and body["lower"][0] < body["upper"][0]


@pytest.mark.parametrize("body,fragment", [
    ({"history": [100.0] * 59}, "history"),
    ({"history": [100.0] * 59 + [-1.0]}, "greater than 0"),
    ({"history": [100.0] * 59 + [0.0]}, "greater than 0"),
    ({"history": [100.0] * 60, "horizon": 6}, "horizon"),
    ({"history": [100.0] * 60, "horizon": "x"}, "horizon"),
    ({"history": [[100.0]] * 60}, "history"),
    ({"history": None}, "history"),
])
def test_bad_price_requests(client, body, fragment):
    response = client.post("/v1/forecast/price", json=body)
    assert response.status_code == 422, response.text
    assert fragment in response.json()["error"]


def test_a_text_model_without_its_tokenizer_fails_to_load_with_a_reason(make_client, tmp_path):
    from tests.onnx_models import tiny_sentiment, write_model

    write_model(tmp_path, "no-tokenizer", tiny_sentiment(), task="text-sentiment", tokenizer="tokenizer.json")
    client = make_client(models_dir=tmp_path)
    assert "tokenizer file 'tokenizer.json' is missing" in client.get("/v2/health/ready").json()["failed"]["no-tokenizer"]
    escape = write_model(tmp_path, "escape", tiny_sentiment(), task="text-sentiment", tokenizer="../../etc/passwd")
    assert escape.exists()
    client2 = make_client(models_dir=tmp_path)
    assert "outside the model folder" in client2.get("/v2/health/ready").json()["failed"]["escape"]
