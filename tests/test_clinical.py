"""POST /v1/clinical/deterioration on a tiny fixture model (risk = sigmoid(0.1 x observed hour-cells + 0.01 x hours
- 1); variables HR, Temp, GCS) and service/vitals.py's cleaning and binning."""

from __future__ import annotations

import json

import numpy as np
import pytest

from service.vitals import HOURS, PARAMETERS, Variable, stay_inputs
from tests.onnx_models import ICU_VARIABLES

TABLE = [Variable.from_dict(v) for v in ICU_VARIABLES]


def sigmoid(z: float) -> float:
    return 1 / (1 + np.exp(-z))


def stay(measurements=(), **overrides) -> dict:
    body = {"measurements": [{"minute": m, "parameter": p, "value": v} for m, p, v in measurements],
            "age": 70.0, "gender": 1, "height": 175.0, "icu_type": 3}
    body.update(overrides)
    return body


def test_binning_cleaning_and_carry_forward():
    s = stay_inputs([(5, "HR", 80.0), (30, "HR", 100.0), (130, "Temp", 20.0), (150, "GCS", 15.0), (2880, "HR", 0.0)],
                    TABLE, age=64.0, gender=None, height=-1.0, icu_type=2)
    assert s.hours == HOURS  # the last measurement (even an ignored one) is at minute 2880: bin 47
    assert s.masks[0].tolist() == [1, 0, 0] and s.masks[2].tolist() == [0, 0, 1] and s.masks.sum() == 2
    assert s.values[0, 0] == pytest.approx((90.0 - 86.0) / 15.0)  # the hour's mean, standardised
    assert s.values[47, 0] == pytest.approx((90.0 - 86.0) / 15.0)  # carried forward
    assert s.values[1, 2] == 0.0 and s.values[2, 2] == pytest.approx(1.0)  # 0 before the first GCS
    assert s.deltas[0, 0] == pytest.approx(1 / HOURS) and s.deltas[5, 0] == pytest.approx(5 / HOURS)
    assert [(r["parameter"], r["minute"]) for r in s.ignored] == [("Temp", 130), ("HR", 2880)]
    assert "below the physiological limit 25" in s.ignored[0]["reason"]
    assert s.statics[1] == 0 and s.statics[2] == 0 and s.statics[4] == 0 and s.statics[6] == 1  # unknown sex/height


def test_order_of_measurements_does_not_matter():
    rows = [(5, "HR", 80.0), (61, "Temp", 38.0), (30, "HR", 100.0)]
    a = stay_inputs(rows, TABLE, age=50.0, gender=0, height=None, icu_type=1)
    b = stay_inputs(rows[::-1], TABLE, age=50.0, gender=0, height=None, icu_type=1)
    assert np.array_equal(a.values, b.values) and a.hours == b.hours == 2


def test_risk_in_order_with_ignored_values_listed(client):
    body = {"stays": [stay([(0, "HR", 80.0), (70, "Temp", 20.0), (75, "HR", 0.0), (200, "GCS", 9)]),
                      stay([(i * 60, "HR", 90.0) for i in range(10)]),
                      stay([], height=400.0, gender=None)]}
    response = client.post("/v1/clinical/deterioration", json=body)
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["model"] == "tiny-icu" and len(out["results"]) == 3
    first, second, third = out["results"]
    assert first["hours_observed"] == 4 and first["risk"] == pytest.approx(sigmoid(0.2 + 0.04 - 1), abs=1e-6)
    assert [(i["minute"], i["parameter"], i["value"]) for i in first["ignored"]] == [(70, "Temp", 20.0), (75, "HR", 0.0)]
    assert second["hours_observed"] == 10 and second["risk"] == pytest.approx(sigmoid(1.0 + 0.1 - 1), abs=1e-6)
    assert second["ignored"] == [] and second["high_risk"] is True and second["threshold"] == 0.5
    assert third["hours_observed"] == 1 and third["ignored"][0]["parameter"] == "Height"


def test_threshold_override(client):
    out = client.post("/v1/clinical/deterioration", json={"stays": [stay([(0, "HR", 80.0)])], "threshold": 0.1}).json()
    assert out["results"][0]["high_risk"] is True and out["results"][0]["threshold"] == 0.1


def test_a_stay_in_progress_is_scored_on_its_hours_so_far(client):
    full = [(h * 60, "HR", 90.0) for h in range(48)]
    risks = [client.post("/v1/clinical/deterioration", json={"stays": [stay(full[:h])]}).json()["results"][0]
             for h in (12, 48)]
    assert [r["hours_observed"] for r in risks] == [12, 48]


def test_parameters_known_to_the_server_but_not_to_the_model_are_ignored(client):
    out = client.post("/v1/clinical/deterioration", json={"stays": [stay([(0, "Lactate", 2.0)])]}).json()
    assert out["results"][0]["ignored"][0]["reason"] == "not used by this model"


def test_bounds_are_accepted_at_their_limits(client):
    body = {"stays": [stay([(m % 2881, "HR", 80.0) for m in range(10_000)])] + [stay()] * 63}
    response = client.post("/v1/clinical/deterioration", json=body)
    assert response.status_code == 200, response.text
    assert len(response.json()["results"]) == 64


@pytest.mark.parametrize("body,fragment", [
    ({"stays": []}, "stays"),
    ({"stays": [stay()] * 65}, "stays"),
    ({"stays": [stay([(0, "Heartrate", 80.0)])]}, "stays.0.measurements.0.parameter"),
    ({"stays": [stay([(0, "Age", 80.0)])]}, "stays.0.measurements.0.parameter"),
    ({"stays": [stay(), stay([(0, "HR", 80.0), (2881, "HR", 80.0)])]}, "stays.1.measurements.1.minute"),
    ({"stays": [stay([(-1, "HR", 80.0)])]}, "stays.0.measurements.0.minute"),
    ({"stays": [stay([(1.5, "HR", 80.0)])]}, "stays.0.measurements.0.minute"),
    ({"stays": [stay([(0, "HR", 1e30)])]}, "stays.0.measurements.0.value"),
    ({"stays": [stay([(0, "HR", "80")])]}, "stays.0.measurements.0.value"),
    ({"stays": [stay([(0, "HR", 80.0)] * 10_001)]}, "stays.0.measurements"),
    ({"stays": [{k: v for k, v in stay().items() if k != "age"}]}, "stays.0.age"),
    ({"stays": [{k: v for k, v in stay().items() if k != "icu_type"}]}, "stays.0.icu_type"),
    ({"stays": [stay(icu_type=5)]}, "stays.0.icu_type"),
    ({"stays": [stay(gender=2)]}, "stays.0.gender"),
    ({"stays": [stay(gender=False)]}, "stays.0.gender"),  # JSON booleans are not 0/1 (schemathesis)
    ({"stays": [stay(icu_type=True)]}, "stays.0.icu_type"),
    ({"stays": [stay()], "threshold": True}, "threshold"),
    ({"stays": [stay(age=-3.0)]}, "stays.0.age"),
    ({"stays": [stay(weight=80.0)]}, "stays.0.weight"),
    ({"stays": [{**stay(), "measurements": [{"minute": 0, "parameter": "HR", "value": 80.0, "unit": "bpm"}]}]},
     "stays.0.measurements.0.unit"),
    ({"stays": [stay()], "threshold": 1.01}, "threshold"),
    ({"stays": [stay()], "hours": 12}, "hours"),
])
def test_bad_requests_name_the_item(client, body, fragment):
    response = client.post("/v1/clinical/deterioration", json=body)
    assert response.status_code == 422, response.text
    assert fragment in response.json()["error"]


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_finite_values_are_refused(client, literal):
    raw = json.dumps({"stays": [stay([(0, "HR", 80.5)])]}).encode().replace(b"80.5", literal)
    response = client.post("/v1/clinical/deterioration", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code in (400, 422), response.text
    assert "error" in response.json()


def test_the_server_knows_the_datas_parameters():
    assert len(PARAMETERS) == len(set(PARAMETERS)) == 37 and {"HR", "GCS", "Lactate", "Weight", "pH"} <= set(PARAMETERS)
