"""The HTTP surface in-process: OIP routes, errors, limits, auth, metrics, request ids."""

from __future__ import annotations

import gc
import gzip
import json
import struct
import time

import numpy as np

import pytest

from tests.conftest import wait_ready


def _add_sub_body(rows=1, **extra):
    a = np.arange(rows * 4, dtype=np.float32).reshape(rows, 4)
    return {"inputs": [{"name": "a", "shape": [rows, 4], "datatype": "FP32", "data": a.tolist()},
                       {"name": "b", "shape": [rows, 4], "datatype": "FP32", "data": np.ones_like(a).reshape(-1).tolist()}],
            **extra}


def test_health_and_server_metadata(client):
    assert client.get("/v2/health/live").json() == {"live": True}
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    meta = client.get("/v2").json()
    assert meta["name"] == "neuroserve" and "binary_tensor_data" in meta["extensions"]


def test_model_metadata_reads_the_session(client):
    meta = client.get("/v2/models/add-sub").json()
    assert meta["versions"] == ["1"] and meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "a", "datatype": "FP32", "shape": [-1, 4]}, {"name": "b", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["parameters"]["provider"] == "CPUExecutionProvider"
    assert client.get("/v2/models/add-sub/versions/1").json()["name"] == "add-sub"
    assert client.get("/v2/models/add-sub/ready").status_code == 200
    config = client.get("/v2/models/add-sub/config").json()
    assert config["max_batch_size"] == 16 and config["input"][0]["dims"] == [4]


@pytest.mark.parametrize("path,status", [
    ("/v2/models/nope", 404), ("/v2/models/add-sub/versions/9", 404), ("/v2/models/add-sub/versions/abc", 400),
    ("/v2/models/..%2F..%2Fetc", 404), ("/v2/models/%2e%2e", 404), ("/v2/models/UPPER", 404), ("/nothing/here", 404),
])
def test_unknown_or_invalid_names_are_4xx(client, path, status):
    response = client.get(path)
    assert response.status_code == status, response.text
    assert "error" in response.json()


def test_json_infer_with_request_id_and_requested_outputs(client):
    body = _add_sub_body(2, id="req-1", outputs=[{"name": "diff"}])
    response = client.post("/v2/models/add-sub/infer", json=body)
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["id"] == "req-1" and out["model_name"] == "add-sub" and out["model_version"] == "1"
    assert [o["name"] for o in out["outputs"]] == ["diff"]
    assert out["outputs"][0]["data"] == (np.arange(8) - 1).tolist()
    assert out["outputs"][0]["shape"] == [2, 4]


def test_binary_infer_in_both_directions_without_content_type(client):
    a = np.arange(8, dtype=np.float32).reshape(2, 4)
    header = json.dumps({
        "inputs": [{"name": "a", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": 32}},
                   {"name": "b", "shape": [2, 4], "datatype": "FP32", "data": [0.5] * 8}],
        "outputs": [{"name": "sum", "parameters": {"binary_data": True}}, {"name": "diff", "parameters": {"binary_data": False}}],
    }).encode()
    response = client.post("/v2/models/add-sub/infer", content=header + a.tobytes(),
                           headers={"Inference-Header-Content-Length": str(len(header)), "Content-Type": ""})
    assert response.status_code == 200, response.text
    length = int(response.headers["inference-header-content-length"])
    meta = json.loads(response.content[:length])
    size = meta["outputs"][0]["parameters"]["binary_data_size"]
    summed = np.frombuffer(response.content[length:length + size], dtype=np.float32).reshape(2, 4)
    np.testing.assert_array_equal(summed, a + 0.5)
    assert meta["outputs"][1]["data"] == (a - 0.5).reshape(-1).tolist()


def test_gzip_request_body(client):
    raw = json.dumps(_add_sub_body()).encode()
    response = client.post("/v2/models/add-sub/infer", content=gzip.compress(raw), headers={"Content-Encoding": "gzip"})
    assert response.status_code == 200, response.text
    bomb = gzip.compress(b" " * (70 * 1024 * 1024))
    assert client.post("/v2/models/add-sub/infer", content=bomb, headers={"Content-Encoding": "gzip"}).status_code == 413
    assert client.post("/v2/models/add-sub/infer", content=b"junk", headers={"Content-Encoding": "gzip"}).status_code == 400
    assert client.post("/v2/models/add-sub/infer", content=raw, headers={"Content-Encoding": "br"}).status_code == 400


@pytest.mark.parametrize("mutate,fragment", [
    (lambda b: b["inputs"][0].update(name="z"), "unexpected input"),
    (lambda b: b["inputs"][0].update(datatype="FP64"), "model expects FP32"),
    (lambda b: b["inputs"][0].update(shape=[4, 1]), "does not fit"),
    (lambda b: b["inputs"].pop(), "missing inputs"),
    (lambda b: b.update(outputs=[{"name": "nope"}]), "unknown outputs"),
    (lambda b: b["inputs"][1].update(shape=[2, 4], data=[1] * 8), "disagree on the batch"),
])
def test_tensors_that_do_not_fit_the_model_are_400(client, mutate, fragment):
    body = _add_sub_body()
    mutate(body)
    response = client.post("/v2/models/add-sub/infer", json=body)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]


@pytest.mark.parametrize("content", [b"", b"not json", b"[]", b'{"inputs": 3}', b"\xff\xfe"])
def test_garbage_bodies_are_400_never_500(client, content):
    response = client.post("/v2/models/add-sub/infer", content=content)
    assert response.status_code == 400
    assert response.json()["error"]


def test_models_loaded_are_frozen_out_of_gc_passes_and_pauses_are_measured(repo_dir):
    """After the models load, every object alive is in the permanent generation (full passes skip it); a reload
    freezes again; every pass's duration lands in neuroserve_gc_pause_seconds."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    gc.unfreeze()
    try:
        with TestClient(create_app(Settings(models_dir=repo_dir, log_json=False, log_level="warning"))) as app:
            deadline = time.monotonic() + 30
            while not gc.get_freeze_count() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert gc.get_freeze_count() > 1000
            gc.unfreeze()
            assert app.post("/v2/repository/models/add-sub/load").status_code == 200
            assert gc.get_freeze_count() > 1000
            gc.collect()
            assert 'neuroserve_gc_pause_seconds_count{generation="2"}' in app.get("/metrics").text
        gc.unfreeze()
        with TestClient(create_app(Settings(models_dir=repo_dir, log_json=False, log_level="warning", gc_freeze=False))) as app:
            wait_ready(app.get)
            assert app.post("/v2/repository/models/add-sub/load").status_code == 200
            assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()


def test_batch_larger_than_max_batch_size_is_400(client):
    response = client.post("/v2/models/add-sub/infer", json=_add_sub_body(17))
    assert response.status_code == 400 and "max_batch_size" in response.json()["error"]


def test_body_limit_answers_413(make_client):
    small = make_client(max_body_bytes=2048)
    big = _add_sub_body(16)
    big["inputs"][0]["data"] = [[123456.789] * 4] * 16
    big["padding"] = "x" * 4000
    response = small.post("/v2/models/add-sub/infer", json=big)
    assert response.status_code == 413 and "exceeds" in response.json()["error"]

    def chunks():  # no Content-Length: the limit applies while streaming
        for _ in range(10):
            yield b" " * 1000

    assert small.post("/v2/models/add-sub/infer", content=chunks()).status_code == 413


def test_middleware_errors_use_the_one_renderer_openai_shape_on_chat(make_client):
    """The body limit and the drain answer from the middleware: on /v1/chat/ in OpenAI's error shape, like the
    route's own errors (they used to be a bare {"error": "..."} there)."""
    small = make_client(max_body_bytes=1024)
    body = {"messages": [{"role": "user", "content": "x" * 2000}]}
    error = small.post("/v1/chat/completions", json=body).json()["error"]
    assert error["type"] == "invalid_request_error" and "exceeds 1024 bytes" in error["message"]
    assert set(error) == {"message", "type", "param", "code"}

    def chunks():  # no Content-Length: the limit trips while streaming
        for _ in range(10):
            yield b" " * 200

    streamed = small.post("/v1/chat/completions", content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413 and streamed.json()["error"]["type"] == "invalid_request_error"
    assert small.post("/v2/models/add-sub/infer", content=b"x" * 2000).json() == {"error": "request body exceeds 1024 bytes"}
    small.app.state.draining = True
    try:
        draining = small.post("/v1/chat/completions", json={"messages": []})
        assert draining.status_code == 503 and draining.json()["error"]["type"] == "service_unavailable_error"
    finally:
        small.app.state.draining = False


def test_every_datatype_through_identity_models(client):
    cases = {"bool": [True, False], "uint8": [1, 255], "int8": [-5, 5], "int64": [2**40, -1], "fp16": [0.5, 1.0],
             "fp32": [1.25, -2.5], "fp64": [1e-300, 2.0], "bytes": ["a", "ü"], "uint64": [2**63, 0], "int16": [1, 2],
             "int32": [3, 4], "uint16": [5, 6], "uint32": [7, 8]}
    for kind, data in cases.items():
        body = {"inputs": [{"name": "INPUT", "shape": [1, 2], "datatype": kind.upper(), "data": data}]}
        response = client.post(f"/v2/models/identity-{kind}/infer", json=body)
        assert response.status_code == 200, (kind, response.text)
        assert response.json()["outputs"][0]["data"] == data, kind


def test_variable_length_requests_batched_together_get_exact_answers(client):
    import concurrent.futures

    lengths = [1, 9, 3, 17, 4, 2, 30, 5]

    def call(n):
        body = {"inputs": [{"name": "ids", "shape": [1, n], "datatype": "INT64", "data": list(range(1, n + 1))}]}
        return client.post("/v2/models/sequence-sum/infer", json=body).json()["outputs"][0]["data"][0]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, lengths))
    assert results == [n * (n + 1) // 2 for n in lengths]


def test_input_values_the_graph_rejects_at_run_time_are_a_400_for_that_request_only(client):
    """onnxruntime's InvalidArgument at run time (an index past the Gather's table) is the input's fault."""
    bad = {"inputs": [{"name": "index", "shape": [1], "datatype": "INT64", "data": [99]}]}
    response = client.post("/v2/models/lookup/infer", json=bad)
    assert response.status_code == 400 and "rejected the input values" in response.json()["error"]
    good = {"inputs": [{"name": "index", "shape": [2], "datatype": "INT64", "data": [1, 4]}]}
    assert client.post("/v2/models/lookup/infer", json=good).json()["outputs"][0]["data"] == [10.0, 40.0]


def test_openai_shaped_model_list(client):
    listing = client.get("/v1/models").json()
    assert listing["object"] == "list"
    entry = next(m for m in listing["data"] if m["id"] == "tiny-cnn")
    assert entry["object"] == "model" and entry["task"] == "image-classification"
    assert entry["versions"] == ["1"] and entry["ready"] is True and entry["provider"] == "CPUExecutionProvider"


def test_request_id_is_accepted_and_returned(client):
    assert client.get("/v2", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    generated = client.get("/v2").headers["x-request-id"]
    assert len(generated) == 32
    # An id that could inject into logs is replaced.
    assert client.get("/v2", headers={"X-Request-ID": "bad id\n"}).headers["x-request-id"] != "bad id\n"


def test_prometheus_metrics(client):
    client.post("/v2/models/add-sub/infer", json=_add_sub_body())
    client.get("/v2/models/nope")
    text = client.get("/metrics").text
    assert 'neuroserve_requests_total{model="add-sub",route="/v2/models/{model_name}/infer",status="200"}' in text
    assert 'neuroserve_requests_total{model="",route="/v2/models/{model_name}",status="404"}' in text
    for name in ("neuroserve_queue_duration_seconds_bucket", "neuroserve_compute_duration_seconds_bucket",
                 "neuroserve_batch_size_bucket", "neuroserve_in_flight_requests", "neuroserve_request_duration_seconds"):
        assert name in text


def test_statistics(client):
    client.post("/v2/models/add-sub/infer", json=_add_sub_body())
    stats = client.get("/v2/models/add-sub/stats").json()["model_stats"][0]
    assert stats["inference_count"] >= 1 and stats["inference_stats"]["success"]["ns"] > 0
    assert client.get("/v2/models/nope/stats").status_code == 404


def test_api_keys_guard_every_route_but_health_and_metrics(make_client):
    secured = make_client(api_keys="k1,k2", admin_key="root")
    for path in ("/v2/health/live", "/v2/health/ready", "/metrics"):
        assert secured.get(path).status_code == 200, path
    for path in ("/v2", "/v2/models/add-sub", "/v1/models", "/v2/models/add-sub/stats", "/openapi.json", "/docs", "/redoc"):
        assert secured.get(path).status_code == 401, path
        assert secured.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401, path
        assert secured.get(path, headers={"Authorization": "Bearer k2"}).status_code == 200, path
    infer = secured.post("/v2/models/add-sub/infer", json=_add_sub_body())
    assert infer.status_code == 401 and infer.headers["www-authenticate"] == "Bearer"
    assert secured.post("/v2/repository/index").status_code == 401
    assert secured.post("/v2/repository/index", headers={"Authorization": "Bearer k1"}).status_code == 403
    assert secured.post("/v2/repository/index", headers={"Authorization": "Bearer root"}).status_code == 200


def test_cors_is_configurable(make_client):
    cors = make_client(cors_origins="https://app.example")
    response = cors.options("/v2", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"})
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    plain = make_client()
    assert "access-control-allow-origin" not in plain.get("/v2", headers={"Origin": "https://app.example"}).headers


def test_draining_server_refuses_new_work_but_answers_health(client):
    client.app.state.draining = True
    try:
        refused = client.get("/v2/models/add-sub")
        assert refused.status_code == 503 and refused.headers["retry-after"]
        assert client.get("/v2/health/live").status_code == 200
    finally:
        client.app.state.draining = False


def test_binary_bytes_tensor(client):
    blob = b"".join(struct.pack("<I", len(v)) + v for v in (b"xy", b"z"))
    header = json.dumps({"inputs": [{"name": "INPUT", "shape": [1, 2], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(blob)}}],
                         "parameters": {"binary_data_output": True}}).encode()
    response = client.post("/v2/models/identity-bytes/infer", content=header + blob,
                           headers={"Inference-Header-Content-Length": str(len(header))})
    length = int(response.headers["inference-header-content-length"])
    assert response.content[length:] == blob


def test_docs_work_offline(client):
    page = client.get("/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert f"/static-offline-docs/{asset}" in page.text
        assert client.get(f"/static-offline-docs/{asset}").status_code == 200
    redoc = client.get("/redoc")
    assert redoc.status_code == 200 and "https://cdn" not in redoc.text
