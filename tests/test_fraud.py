"""POST /v1/fraud/score on a tiny fixture model (P = sigmoid(0.01 Amount - 1), threshold 0.6): shapes, order,
threshold override, and 422s that name the field."""

from __future__ import annotations

import math

import pytest

from tests.onnx_models import FRAUD_FEATURES


def tx(amount: float = 100.0, **overrides) -> dict:
    row = {name: 0.0 for name in FRAUD_FEATURES}
    row.update({"Time": 406.0, "V1": -2.31, "Amount": amount, **overrides})
    return row


def expected(amount: float) -> float:
    return 1 / (1 + math.exp(-(0.01 * amount - 1)))


def test_scores_in_order_with_the_models_threshold(client):
    response = client.post("/v1/fraud/score", json={"transactions": [tx(0), tx(200), tx(100)]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "tiny-fraud" and body["version"] == "1"
    probs = [r["probability"] for r in body["results"]]
    assert probs == pytest.approx([expected(0), expected(200), expected(100)], abs=1e-6)
    assert [r["fraud"] for r in body["results"]] == [False, True, False]
    assert {r["threshold"] for r in body["results"]} == {0.6}
    assert set(body["results"][0]) == {"fraud", "probability", "threshold"}


def test_threshold_override_and_integers_accepted(client):
    row = {**tx(), "Amount": 100, "Time": 0}
    body = client.post("/v1/fraud/score", json={"transactions": [row], "threshold": 0.5}).json()
    assert body["results"][0] == {"fraud": True, "probability": pytest.approx(0.5, abs=1e-6), "threshold": 0.5}
    assert client.post("/v1/fraud/score", json={"transactions": [row], "threshold": 1}).json()["results"][0]["fraud"] is False


def test_a_full_request_of_1024(client):
    response = client.post("/v1/fraud/score", json={"transactions": [tx(i % 300) for i in range(1024)]})
    assert response.status_code == 200 and len(response.json()["results"]) == 1024


@pytest.mark.parametrize("body,fragment", [
    ({"transactions": []}, "transactions"),
    ({"transactions": [tx()] * 1025}, "transactions"),
    ({"transactions": [{k: v for k, v in tx().items() if k != "V7"}]}, "transactions.0.V7"),
    ({"transactions": [tx(), {**tx(), "V29": 1.0}]}, "transactions.1.V29"),
    ({"transactions": [tx(amount=-1.0)]}, "transactions.0.Amount"),
    ({"transactions": [tx(Time=-5.0)]}, "transactions.0.Time"),
    ({"transactions": [tx(V3=1e30)]}, "transactions.0.V3"),
    ({"transactions": [tx(V3="1.5")]}, "transactions.0.V3"),
    ({"transactions": [tx(V3=None)]}, "transactions.0.V3"),
    ({"transactions": [tx()], "threshold": 1.5}, "threshold"),
    ({"transactions": [tx()], "threshold": -0.1}, "threshold"),
    ({"transactions": [tx()], "threshold": False}, "threshold"),
    ({"transactions": [tx()], "explain_everything": True}, "explain_everything"),
    ({"transaction": [tx()]}, "transaction"),
])
def test_bad_requests_name_the_field(client, body, fragment):
    response = client.post("/v1/fraud/score", json=body)
    assert response.status_code == 422, response.text
    assert fragment in response.json()["error"]


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_finite_values_are_refused(client, literal):
    import json

    raw = json.dumps({"transactions": [tx()]}).encode().replace(b'"V5": 0.0', b'"V5": ' + literal)
    response = client.post("/v1/fraud/score", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code in (400, 422), response.text
    assert "error" in response.json()


def test_model_of_another_task_is_refused(client):
    response = client.post("/v1/fraud/score", json={"transactions": [tx()], "model": "tiny-cnn"})
    assert response.status_code == 400 and "serves task" in response.json()["error"]


def test_oip_face_of_the_fraud_model(client):
    row = [tx()[name] for name in FRAUD_FEATURES]
    response = client.post("/v2/models/tiny-fraud/infer",
                           json={"inputs": [{"name": "transactions", "shape": [1, 30], "datatype": "FP32", "data": row}]})
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"][0] == pytest.approx(0.5, abs=1e-6)
