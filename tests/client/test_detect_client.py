"""Object detection through the SDK (sync and async) and `neuroserve predict detect` (table, --json, --save) against
the shared real server and its tiny fixture detector (tests/onnx_models.py tiny_detector: "red" / "green" cells)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from client import DetectionResult, cli


@pytest.fixture(scope="module")
def red_square(tmp_path_factory):
    pixels = np.zeros((32, 64, 3), np.uint8)
    pixels[8:24, 16:32, 0] = 255  # a red square in a 64 x 32 picture
    path = tmp_path_factory.mktemp("detect") / "signs.png"
    Image.fromarray(pixels).save(path)
    return path


def test_detect_objects(api, red_square):
    result = api("detect_objects", [red_square, red_square], score_threshold=0.9, max_detections=5)
    assert isinstance(result, DetectionResult) and result.model == "tiny-detector" and len(result.results) == 2
    row = result.results[0]
    assert (row.width, row.height) == (64, 32) and 1 <= len(row.detections) <= 5
    assert {d.label for d in row.detections} == {"red"} and all(d.score >= 0.9 for d in row.detections)
    x0, y0, x1, y1 = row.detections[0].box
    assert 16 <= (x0 + x1) / 2 <= 32 and 8 <= (y0 + y1) / 2 <= 24  # centred on the square, pixels as sent
    assert result.results[1] == row


def test_cli_table_json_and_saved_picture(server, capsys, red_square, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    out_png = tmp_path / "boxes.png"
    code = cli.main(["predict", "detect", str(red_square), "--save", str(out_png), "--url", server.url])
    out = capsys.readouterr().out
    assert code == 0 and "tiny-detector v1" in out and "red" in out and str(out_png) in out
    with Image.open(out_png) as drawn:
        pixels = np.asarray(drawn.convert("RGB"))
    assert pixels.shape == (32, 64, 3) and not np.array_equal(pixels[:, :, 2], np.zeros((32, 64)))  # boxes drawn
    code = cli.main(["predict", "detect", str(red_square), str(red_square), "--json", "--max-detections", "1",
                     "--save", str(tmp_path / "many"), "--url", server.url])
    body = json.loads(capsys.readouterr().out)
    assert code == 0 and [len(r["detections"]) for r in body["results"]] == [1, 1]
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == ["0-signs.detect.png", "1-signs.detect.png"]
    assert cli.main(["predict", "detect", str(red_square), "--score-threshold", "2", "--url", server.url]) == 2
