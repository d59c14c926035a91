"""The traffic endpoint feeds a calendar-aware model the request's holidays (service/calendar.py), hour by hour."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.conftest import _open_client
from tests.onnx_models import _model, write_model


def calendar_forecaster() -> object:
    """quantiles[b, h] = (last history value + 1000 x federal_holiday[hour 168 + h]) x (0.9, 1.0, 1.1)."""
    inits = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
             (("last_start", [167]), ("last_end", [168]), ("axis1", [1]), ("cal_starts", [168, 0]),
              ("cal_ends", [192, 1]), ("cal_axes", [1, 2]), ("col", [-1, 1, 1]))]
    inits += [numpy_helper.from_array(np.array(1000.0, np.float32), "k"),
              numpy_helper.from_array(np.array([0.9, 1.0, 1.1], np.float32).reshape(1, 1, 3), "spread"),
              numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
    nodes = [helper.make_node("Slice", ["history", "last_start", "last_end", "axis1"], ["last"]),
             helper.make_node("Reshape", ["last", "col"], ["last3"]),  # [B,1,1]
             helper.make_node("Slice", ["calendar", "cal_starts", "cal_ends", "cal_axes"], ["holiday"]),  # [B,24,1]
             helper.make_node("Mul", ["holiday", "k"], ["bump"]),
             helper.make_node("Add", ["last3", "bump"], ["level"]),  # [B,24,1]
             helper.make_node("Mul", ["level", "spread"], ["scaled"]),  # [B,24,3]
             helper.make_node("Cast", ["hour_of_week"], ["how_f"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["how_f", "zero"], ["nothing"]),
             helper.make_node("Reshape", ["nothing", "col"], ["nothing3"]),
             helper.make_node("Add", ["scaled", "nothing3"], ["quantiles"])]
    inputs = [helper.make_tensor_value_info("history", TensorProto.FLOAT, ["batch", 168]),
              helper.make_tensor_value_info("hour_of_week", TensorProto.INT64, ["batch"]),
              helper.make_tensor_value_info("calendar", TensorProto.FLOAT, ["batch", 192, 4])]
    out = helper.make_tensor_value_info("quantiles", TensorProto.FLOAT, ["batch", 24, 3])
    return _model(nodes, inputs, [out], inits)


@pytest.fixture(scope="module")
def cal_client(tmp_path_factory):
    root = tmp_path_factory.mktemp("calmodels")
    write_model(root, "cal-traffic", calendar_forecaster(), task="traffic-forecast",
                parameters={"interval": 0.8, "horizon": 24})
    client = _open_client(root)
    yield client
    client.__exit__(None, None, None)


@pytest.mark.parametrize("start,holiday_hours", [
    ("2017-06-27T00:00:00", list(range(24))),  # forecast = 2017-07-04 (Independence Day, a Tuesday)
    ("2017-06-26T12:00:00", list(range(12, 24))),  # forecast from 2017-07-03 12:00: the holiday starts at h = 12
    ("2017-06-26T12:00:00-05:00", list(range(12, 24))),  # an offset changes nothing: the wall clock as given
    ("2017-11-03T00:00:00", list(range(24))),  # 2017-11-10: Veterans Day observed (the 11th is a Saturday)
    ("2017-07-05T00:00:00", []),
])
def test_forecast_hours_see_their_holidays(cal_client, start, holiday_hours):
    history = [100.0] * 168
    body = cal_client.post("/v1/forecast/traffic", json={"history": history, "start": start}).json()
    expect = [1100.0 if h in holiday_hours else 100.0 for h in range(24)]
    assert body["forecast"] == pytest.approx(expect)


def test_timestamps_give_the_same_calendar_as_start(cal_client):
    from datetime import datetime, timedelta

    first = datetime(2017, 6, 20, 0)  # 200 values: the window starts 32 h later
    stamps = [(first + timedelta(hours=i)).isoformat() for i in range(200)]
    by_stamps = cal_client.post("/v1/forecast/traffic", json={"history": [100.0] * 200, "timestamps": stamps}).json()
    by_start = cal_client.post("/v1/forecast/traffic", json={"history": [100.0] * 200, "start": first.isoformat()}).json()
    assert by_stamps["forecast"] == by_start["forecast"]
    assert by_stamps["timestamps"][0] == "2017-06-28T08:00:00"
    assert by_stamps["forecast"][0] == pytest.approx(100.0)


@pytest.mark.parametrize("body,fragment", [
    ({"history": [1.0] * 168}, "exactly one"),
    ({"history": [1.0] * 168, "start": "2017-13-01T00:00:00"}, "start"),
])
def test_calendar_model_refuses_requests_without_a_usable_time(cal_client, body, fragment):
    response = cal_client.post("/v1/forecast/traffic", json=body)
    assert response.status_code == 422 and fragment in response.json()["error"]


def test_a_calendar_of_the_wrong_shape_does_not_load(tmp_path):
    import time

    model = calendar_forecaster()
    model.graph.input[2].type.tensor_type.shape.dim[1].dim_value = 168  # history only, no forecast hours
    write_model(tmp_path, "bad-cal", model.SerializeToString(), task="traffic-forecast", parameters={"horizon": 24})
    client = _open_client(tmp_path, wait=False)
    try:
        for _ in range(200):
            (entry,) = client.get("/v1/models").json()["data"]
            if entry["state"] == "UNAVAILABLE":
                break
            time.sleep(0.05)
        assert entry["state"] == "UNAVAILABLE" and "'calendar' must be FP32 [batch, 192, 4]" in entry["reason"]
    finally:
        client.__exit__(None, None, None)
