"""Vision endpoints: multipart and base64 inputs, resizing and colour conversion, limits and bad files."""

from __future__ import annotations

import base64
import io
import zlib
import struct

import numpy as np
import pytest
from PIL import Image

from tests.onnx_models import CIFAR_LABELS


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def gray(value: int, size=(64, 64)) -> bytes:
    return encode(Image.new("L", size, value))


def rgb(seed: int, size=(32, 32), fmt="PNG") -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels), fmt)


def test_classify_json_results_in_order_with_top_k(client):
    images = [rgb(i) for i in range(3)]
    response = client.post("/v1/images/classify", json={"images": [b64(d) for d in images], "top_k": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "tiny-cnn" and body["version"] == "1"
    assert len(body["results"]) == 3
    for result in body["results"]:
        assert result["label"] in CIFAR_LABELS and len(result["top_k"]) == 3
        scores = [entry["score"] for entry in result["top_k"]]
        assert scores == sorted(scores, reverse=True) and result["score"] == scores[0]
    # The same images one at a time give the same answers: each got its own rows.
    for data, expected in zip(images, body["results"]):
        alone = client.post("/v1/images/classify", json={"images": [b64(data)], "top_k": 3}).json()["results"][0]
        assert alone["label"] == expected["label"] and alone["score"] == pytest.approx(expected["score"], rel=1e-5)


def test_classify_multipart_any_size_and_format(client):
    files = [("images", ("a.jpg", rgb(1, (200, 120), "JPEG"), "image/jpeg")),
             ("images", ("b.webp", rgb(2, (17, 300), "WEBP"), "image/webp")),
             ("images", ("c.png", encode(Image.new("RGBA", (40, 40), (255, 0, 0, 128))), "image/png")),
             ("images", ("d.png", encode(Image.new("L", (32, 32), 77)), "image/png")),
             ("images", ("e.png", encode(Image.new("P", (32, 32))), "image/png"))]
    response = client.post("/v1/images/classify", files=files, data={"top_k": "2", "model": "tiny-cnn:1"})
    assert response.status_code == 200, response.text
    assert [len(r["top_k"]) for r in response.json()["results"]] == [2] * 5


def test_more_images_than_one_batch_are_split_and_kept_in_order(client):
    # tiny-tumor has max_batch_size 4: ten images ride as three batches.
    values = [0, 25, 50, 75, 100, 125, 150, 175, 200, 255]
    response = client.post("/v1/tumor/detect", json={"images": [b64(gray(v)) for v in values]})
    assert response.status_code == 200, response.text
    probabilities = [r["probability"] for r in response.json()["results"]]
    assert probabilities == pytest.approx([v / 255 for v in values], abs=1e-4)


def test_tumor_detection_shape_threshold_and_subtype(client):
    response = client.post("/v1/tumor/detect", files=[("images", ("x.png", gray(230, (300, 200)), "image/png")),
                                                      ("images", ("y.png", gray(10), "image/png"))])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "tiny-tumor"
    first, second = body["results"]
    assert first["threshold"] == 0.5 and second["threshold"] == 0.5
    assert second["tumor"] is False and second["probability"] == pytest.approx(10 / 255, abs=1e-4)
    # Padded to a square with black before resizing, as the training data was: 230 * (2/3 of the area).
    assert first["probability"] == pytest.approx(230 / 255 * 2 / 3, abs=0.02)
    assert set(first["subtype"]["probabilities"]) == {"none", "glioma", "meningioma", "pituitary"}
    assert first["subtype"]["label"] == max(first["subtype"]["probabilities"], key=first["subtype"]["probabilities"].get)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (the pixel data is a tiny stub): a decompression bomb probe."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("body,status,fragment", [
    ({"images": []}, 400, "non-empty list"),
    ({"images": "abc"}, 400, "non-empty list"),
    ({"images": ["%%%not-base64"]}, 400, "not valid base64"),
    ({"images": [b64(b"hello, not an image")]}, 415, "not a PNG, JPEG or WebP"),
    ({"images": [b64(encode(Image.new("RGB", (8, 8)), "GIF"))]}, 415, "not a PNG, JPEG or WebP"),
    ({"images": [b64(rgb(0)[:60])]}, 400, "could not be decoded"),
    ({"images": [b64(_png_header_only(20000, 20000))]}, 413, "20000x20000"),
    ({"images": [b64(rgb(0))] * 65}, 413, "at most 64"),
    ({"images": [b64(rgb(0))], "top_k": 0}, 422, "top_k"),
    ({"images": [b64(rgb(0))], "top_k": 11}, 422, "top_k"),
    ({"images": [b64(rgb(0))], "top_k": "many"}, 422, "top_k"),
    ({"images": [b64(rgb(0))], "model": "no-such"}, 404, "unknown model"),
    ({"images": [b64(rgb(0))], "model": "tiny-tumor"}, 400, "serves task"),
    ({"images": [b64(rgb(0))], "model": 5}, 422, "'model'"),
    ({"images": [b64(rgb(0))], "colour": "red"}, 422, "unknown fields"),
])
def test_bad_image_requests_are_clear_4xx(client, body, status, fragment):
    response = client.post("/v1/images/classify", json=body)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]
    assert client.get("/v2/health/ready").status_code == 200


def test_wrong_content_types_and_bodies(client):
    assert client.post("/v1/images/classify", content=b"x", headers={"Content-Type": "text/plain"}).status_code == 415
    assert client.post("/v1/images/classify", content=b"{oops", headers={"Content-Type": "application/json"}).status_code == 400
    assert client.post("/v1/images/classify", content=b"[1]", headers={"Content-Type": "application/json"}).status_code == 400
    no_files = client.post("/v1/images/classify", data={"top_k": "1"}, files={"other": ("a.txt", b"x")})
    assert no_files.status_code == 400
    broken = client.post("/v1/images/classify", content=b"--x\r\nbroken", headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert broken.status_code == 400
    too_many = client.post("/v1/images/classify", files=[("images", ("a.png", rgb(0), "image/png"))] * 65)
    assert too_many.status_code == 413 and "at most 64" in too_many.json()["error"]


def test_vision_routes_are_in_the_openapi_schema(client):
    schema = client.get("/openapi.json").json()
    for path in ("/v1/images/classify", "/v1/tumor/detect"):
        operation = schema["paths"][path]["post"]
        assert {"multipart/form-data", "application/json"} <= set(operation["requestBody"]["content"])
        assert {"400", "413", "415", "422"} <= set(operation["responses"])
        for form in operation["requestBody"]["content"].values():  # the server refuses unknown fields (422)
            assert form["schema"]["additionalProperties"] is False
    refused = client.post("/v1/tumor/detect", json={"images": [base64.b64encode(rgb(0)).decode()], "top_k": 1})
    assert refused.status_code == 422 and "unknown fields ['top_k']" in refused.json()["error"]
    # the multipart aliases the schema lists are taken as images
    aliased = client.post("/v1/tumor/detect", files=[("file", ("a.png", rgb(1), "image/png"))])
    assert aliased.status_code == 200 and len(aliased.json()["results"]) == 1


def _nchw_classifier(datatype: int):
    """[batch, 3, 32, 32] -> probabilities [batch, 10]: an image model exported in the NCHW layout."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Cast", ["images"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["f"], ["m"], axes=[2, 3], keepdims=0),
             helper.make_node("Concat", ["m", "m", "m", "m"], ["wide"], axis=1),  # [batch, 12]
             helper.make_node("Slice", ["wide", "start", "end", "axis"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)]
    inits = [onnx.numpy_helper.from_array(np.array([v], np.int64), n) for n, v in (("start", 0), ("end", 10), ("axis", 1))]
    graph = helper.make_graph(nodes, "nchw", [helper.make_tensor_value_info("images", datatype, ["batch", 3, 32, 32])],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_an_image_model_in_the_wrong_layout_is_refused_at_load_with_the_reason(make_client, tmp_path):
    """It used to load READY and answer every request with a 500."""
    from onnx import TensorProto

    from tests.onnx_models import small_cnn, write_model

    write_model(tmp_path, "nchw-float", _nchw_classifier(TensorProto.FLOAT), task="image-classification", labels=CIFAR_LABELS)
    write_model(tmp_path, "nchw-uint8", _nchw_classifier(TensorProto.UINT8), task="image-classification", labels=CIFAR_LABELS)
    write_model(tmp_path, "wrong-labels", small_cnn(), task="image-classification", labels=CIFAR_LABELS[:4])
    write_model(tmp_path, "not-a-tumor-model", small_cnn(), task="tumor-detection", labels=["none"])
    client = make_client(models_dir=tmp_path)
    failed = client.get("/v2/health/ready").json()["failed"]
    assert "one UINT8 NHWC tensor" in failed["nchw-float"] and "'images' FP32 [-1, 3, 32, 32]" in failed["nchw-float"]
    assert "looks like NCHW" in failed["nchw-uint8"]
    assert "'probabilities' must be [batch, 4]" in failed["wrong-labels"]
    assert "lacks ['tumor_probability']" in failed["not-a-tumor-model"]
    response = client.post("/v1/images/classify", json={"images": [b64(rgb(0))], "model": "nchw-float"})
    assert response.status_code == 503 and "one UINT8 NHWC tensor" in response.json()["error"]
