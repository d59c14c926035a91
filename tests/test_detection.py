"""POST /v1/images/detect on the tiny fixture detector (tests/onnx_models.py tiny_detector: class "red" = a cell's
mean red, "green" = its mean green, 4-px cells of a 32x32 letterbox, each cell's box its centre +- 8 px): boxes
mapped back to a non-square picture's pixels, sorting, per-class NMS, options, the raw OIP route, and the 4xx of
the other image routes."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

RED = (16, 8, 32, 24)  # x0, y0, x1, y1 of the red square in the 64 x 32 picture
GREEN = (40, 0, 56, 16)


def picture(fmt: str = "PNG") -> bytes:
    """64 x 32 black picture: a red square (scores ~1.0) and a green one at 200/255 (scores ~0.78)."""
    pixels = np.zeros((32, 64, 3), np.uint8)
    pixels[RED[1]:RED[3], RED[0]:RED[2], 0] = 255
    pixels[GREEN[1]:GREEN[3], GREEN[0]:GREEN[2], 1] = 200
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def detect(client, **body):
    return client.post("/v1/images/detect", json={"images": [b64(picture())], **body})


def inside(box, square) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return square[0] <= cx <= square[2] and square[1] <= cy <= square[3]


def test_boxes_in_the_pixels_of_the_picture_sorted_and_suppressed(client):
    response = detect(client)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "tiny-detector" and body["version"] == "1"
    (result,) = body["results"]
    assert (result["width"], result["height"]) == (64, 32)
    found = result["detections"]
    scores = [d["score"] for d in found]
    assert scores == sorted(scores, reverse=True)
    red = [d for d in found if d["label"] == "red"]
    green = [d for d in found if d["label"] == "green"]
    # 2x2 tied red cells: NMS at IoU 0.5 drops the two neighbours that overlap the first at 0.6; the diagonal one
    # (IoU 0.39) stays
    # (bilinear letterboxing blurs the squares' edges: cells score a little under 1.0 and 200/255)
    assert len(red) == 2 and all(0.9 < d["score"] <= 1.0 for d in red)
    assert len(green) >= 1 and all(0.6 < d["score"] <= 200 / 255 + 1e-4 for d in green)
    assert [d["label"] for d in found] == ["red", "red"] + ["green"] * len(green)
    for d in found:  # the letterbox scale (0.5) undone: centres on the squares of the picture as sent
        assert inside(d["box"], RED if d["label"] == "red" else GREEN), d
        x0, y0, x1, y1 = d["box"]
        assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 32
    # the first red cell is (row 1, col 2) of the 32 x 32 letterbox: centre (10, 6) +- 8, x2, clipped at y = 0
    assert red[0]["box"] == [4.0, 0.0, 36.0, 28.0]


def test_options_threshold_and_max_detections(client):
    only_red = detect(client, score_threshold=0.9).json()["results"][0]["detections"]
    assert {d["label"] for d in only_red} == {"red"}
    assert len(detect(client, max_detections=1).json()["results"][0]["detections"]) == 1
    assert detect(client, score_threshold=0).status_code == 200  # every peak, bounded by max_detections (20)
    assert len(detect(client, score_threshold=0).json()["results"][0]["detections"]) <= 20


def test_multipart_and_json_agree_and_batches(client):
    data = picture()
    as_json = client.post("/v1/images/detect", json={"images": [b64(data)] * 3}).json()
    files = [("images", (f"p{i}.png", data, "image/png")) for i in range(3)]
    as_form = client.post("/v1/images/detect", files=files, data={"max_detections": "20", "score_threshold": "0.5"})
    assert as_form.status_code == 200, as_form.text
    assert as_form.json()["results"] == as_json["results"] and len(as_json["results"]) == 3


def test_raw_outputs_through_oip(client):
    pixels = np.zeros((1, 32, 32, 3), np.uint8)
    body = {"inputs": [{"name": "images", "datatype": "UINT8", "shape": [1, 32, 32, 3],
                        "data": pixels.reshape(-1).tolist()}]}
    response = client.post("/v2/models/tiny-detector/infer", json=body)
    assert response.status_code == 200, response.text
    shapes = {o["name"]: o["shape"] for o in response.json()["outputs"]}
    assert shapes == {"boxes": [1, 64, 4], "scores": [1, 64, 2]}


@pytest.mark.parametrize("options,status,fragment", [
    ({"score_threshold": 1.5}, 422, "score_threshold"),
    ({"score_threshold": -0.1}, 422, "score_threshold"),
    ({"score_threshold": "high"}, 422, "score_threshold"),
    ({"score_threshold": True}, 422, "score_threshold"),
    ({"max_detections": 0}, 422, "max_detections"),
    ({"max_detections": 301}, 422, "max_detections"),
    ({"max_detections": 2.5}, 422, "max_detections"),
    ({"top_k": 3}, 422, "top_k"),
    ({"model": "tiny-cnn"}, 400, "object-detection"),
    ({"model": 7}, 422, "model"),
])
def test_bad_options(client, options, status, fragment):
    response = detect(client, **options)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]


def test_bad_pictures_get_the_image_routes_errors(client):
    big = io.BytesIO()
    Image.new("RGB", (1100, 20)).save(big, format="PNG")
    response = client.post("/v1/images/detect", json={"images": [b64(big.getvalue())]})
    assert response.status_code == 413 and "1024" in response.json()["error"]
    assert client.post("/v1/images/detect", json={"images": ["not base64!"]}).status_code == 400
    assert client.post("/v1/images/detect", json={"images": [b64(b"GIF89a" + b"\0" * 40)]}).status_code == 415
    assert client.post("/v1/images/detect", json={"images": [b64(picture()[:60])]}).status_code == 400
    assert client.post("/v1/images/detect", json={"images": []}).status_code == 400
    assert client.post("/v1/images/detect", content=b"x", headers={"Content-Type": "text/plain"}).status_code == 415
    # a 1,024 px side is inside the limit
    edge = io.BytesIO()
    Image.new("RGB", (1024, 16)).save(edge, format="JPEG")
    assert client.post("/v1/images/detect", json={"images": [b64(edge.getvalue())]}).status_code == 200
