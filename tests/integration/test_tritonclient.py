"""The Open Inference Protocol against a real server process, driven by the real tritonclient[http]."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException


@pytest.fixture(scope="module")
def triton(server):
    client = httpclient.InferenceServerClient(url=server.url.removeprefix("http://"), network_timeout=30)
    yield client
    client.close()


def test_health_and_metadata(triton):
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.is_model_ready("add-sub")
    meta = triton.get_server_metadata()
    assert "binary_tensor_data" in meta["extensions"]
    model = triton.get_model_metadata("tiny-cnn")
    assert model["inputs"][0] == {"name": "images", "datatype": "UINT8", "shape": [-1, 32, 32, 3]}
    assert triton.get_model_config("add-sub")["max_batch_size"] == 16
    assert any(m["name"] == "add-sub" for m in triton.get_model_repository_index())
    assert triton.get_inference_statistics("add-sub")["model_stats"][0]["name"] == "add-sub"


@pytest.mark.parametrize("binary", [True, False])
def test_infer_binary_and_json(triton, binary):
    a = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    b = np.ones((3, 4), np.float32)
    inputs = [httpclient.InferInput("a", [3, 4], "FP32"), httpclient.InferInput("b", [3, 4], "FP32")]
    inputs[0].set_data_from_numpy(a, binary_data=binary)
    inputs[1].set_data_from_numpy(b, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput("sum", binary_data=binary), httpclient.InferRequestedOutput("diff", binary_data=not binary)]
    result = triton.infer("add-sub", inputs, outputs=outputs, request_id="r-7")
    np.testing.assert_allclose(result.as_numpy("sum"), a + b, rtol=1e-6)
    np.testing.assert_allclose(result.as_numpy("diff"), a - b, rtol=1e-6)
    assert result.get_response()["id"] == "r-7"


def test_infer_images_uint8_binary(triton):
    images = np.random.default_rng(1).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    tensor = httpclient.InferInput("images", list(images.shape), "UINT8")
    tensor.set_data_from_numpy(images)
    probs = triton.infer("tiny-cnn", [tensor]).as_numpy("probabilities")
    assert probs.shape == (5, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("datatype,values", [
    ("BOOL", np.array([[True, False]])), ("INT8", np.array([[-3, 4]], np.int8)), ("INT16", np.array([[-3, 4]], np.int16)),
    ("INT32", np.array([[-3, 4]], np.int32)), ("INT64", np.array([[-3, 2**40]], np.int64)), ("UINT8", np.array([[3, 250]], np.uint8)),
    ("UINT16", np.array([[3, 60000]], np.uint16)), ("UINT32", np.array([[3, 2**31]], np.uint32)),
    ("UINT64", np.array([[3, 2**63]], np.uint64)), ("FP16", np.array([[0.5, -1.5]], np.float16)),
    ("FP32", np.array([[0.5, -1.5]], np.float32)), ("FP64", np.array([[1e-300, -1.5]], np.float64)),
    ("BYTES", np.array([[b"hello", "wörld".encode()]], dtype=object)),
])
@pytest.mark.parametrize("binary", [True, False])
def test_every_datatype_round_trips(triton, datatype, values, binary):
    tensor = httpclient.InferInput("INPUT", list(values.shape), datatype)
    tensor.set_data_from_numpy(values, binary_data=binary)
    result = triton.infer(f"identity-{datatype.lower()}", [tensor],
                          outputs=[httpclient.InferRequestedOutput("OUTPUT", binary_data=binary)])
    got = result.as_numpy("OUTPUT")
    if datatype == "BYTES":
        assert [v if isinstance(v, bytes) else v.encode() for v in got.reshape(-1)] == list(values.reshape(-1))
    else:
        np.testing.assert_array_equal(got, values)


def test_compressed_request(triton):
    a = np.ones((2, 4), np.float32)
    inputs = [httpclient.InferInput("a", [2, 4], "FP32"), httpclient.InferInput("b", [2, 4], "FP32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(a)
    for algorithm in ("gzip", "deflate"):
        result = triton.infer("add-sub", inputs, request_compression_algorithm=algorithm)
        np.testing.assert_array_equal(result.as_numpy("sum"), a * 2)


def test_error_paths(triton):
    with pytest.raises(InferenceServerException, match="unknown model"):
        triton.get_model_metadata("no-such-model")
    assert not triton.is_model_ready("no-such-model")
    wrong_type = httpclient.InferInput("a", [1, 4], "FP64")
    wrong_type.set_data_from_numpy(np.ones((1, 4), np.float64))
    other = httpclient.InferInput("b", [1, 4], "FP32")
    other.set_data_from_numpy(np.ones((1, 4), np.float32))
    with pytest.raises(InferenceServerException, match="model expects FP32") as caught:
        triton.infer("add-sub", [wrong_type, other])
    assert caught.value.status() == "400"
    wrong_shape = httpclient.InferInput("a", [1, 5], "FP32")
    wrong_shape.set_data_from_numpy(np.ones((1, 5), np.float32))
    with pytest.raises(InferenceServerException, match="does not fit"):
        triton.infer("add-sub", [wrong_shape, other])
    with pytest.raises(InferenceServerException, match="missing inputs"):
        triton.infer("add-sub", [other])
    good = httpclient.InferInput("a", [1, 4], "FP32")
    good.set_data_from_numpy(np.ones((1, 4), np.float32))
    with pytest.raises(InferenceServerException, match="unknown outputs"):
        triton.infer("add-sub", [good, other], outputs=[httpclient.InferRequestedOutput("nope")])
    with pytest.raises(InferenceServerException, match="no version"):
        triton.infer("add-sub", [other], model_version="3")
    bad_index = httpclient.InferInput("index", [1], "INT64")
    bad_index.set_data_from_numpy(np.array([42], np.int64))
    with pytest.raises(InferenceServerException, match="rejected the input values"):
        triton.infer("lookup", [bad_index])
    assert triton.is_server_ready()


def test_async_requests_are_batched(triton, server):
    import httpx

    rows = [np.full((1, 4), i, np.float32) for i in range(24)]
    pending = []
    for row in rows:
        a, b = httpclient.InferInput("a", [1, 4], "FP32"), httpclient.InferInput("b", [1, 4], "FP32")
        a.set_data_from_numpy(row)
        b.set_data_from_numpy(row)
        pending.append(triton.async_infer("add-sub", [a, b]))
    for row, request in zip(rows, pending):
        np.testing.assert_array_equal(request.get_result().as_numpy("sum"), row * 2)
    stats = httpx.get(f"{server.url}/v2/models/add-sub/stats").json()["model_stats"][0]
    assert max(int(s["batch_size"]) for s in stats["batch_stats"]) > 1
