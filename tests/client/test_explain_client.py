"""explain=True through the SDK (sync and async) and the command line, against the real server process."""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image

from client import cli
from client.results import Explanation


def test_sdk_explanations_for_every_task(api, png_file):
    image = api("classify_images", [png_file], explain=True).results[0].explanation
    assert isinstance(image, Explanation) and np.array(image.relevance).shape == (32, 32)
    assert Image.open(io.BytesIO(image.overlay_png)).format == "PNG"
    scan = api("detect_tumor", [png_file], explain=True).results[0].explanation
    assert np.array(scan.relevance).shape == (64, 64)
    words = api("sentiment", "good movie !", explain=True).results[0].explanation
    assert words.tokens == ["good", "movie", "!"] and len(words.weights) == 3 and words.weights[0] > 0
    closes = api("forecast_price", np.linspace(10, 20, 60), explain=True).explanation
    assert len(closes.history_weights) == 60
    hours = api("forecast_traffic", np.linspace(100, 2000, 168), start="2024-01-01T00:00", explain=True)
    assert len(hours.explanation.history_weights) == 168
    # without explain nothing changes: no field sent, none returned
    assert api("sentiment", "good").results[0].explanation is None
    assert api("forecast_price", np.linspace(10, 20, 60)).explanation is None


def test_explanation_parse_of_features():
    parsed = Explanation.parse({"features": [{"name": "V14", "weight": -0.3}, {"name": "Amount", "weight": 0.1}]})
    assert parsed.features == [("V14", -0.3), ("Amount", 0.1)] and parsed.relevance is None
    assert Explanation.parse(None) is None


def test_cli_explain(server, capsys, png_file, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code = cli.main(["sentiment", "good movie", "--explain", "--url", server.url])
    out = capsys.readouterr().out
    assert code == 0 and "words that weighed most" in out and "good +" in out
    code = cli.main(["predict", "image", str(png_file), "--explain-to", str(tmp_path), "--url", server.url])
    out = capsys.readouterr().out
    written = list(tmp_path.glob("*.explain.png"))
    assert code == 0 and len(written) == 1 and Image.open(written[0]).format == "PNG"
    code = cli.main(["predict", "tumor", str(png_file), "--explain-to", str(tmp_path / "t"), "--json", "--url", server.url])
    assert code == 0 and "explanation" in json.loads(capsys.readouterr().out)["results"][0]


def test_sdk_and_cli_explain_fraud_and_deterioration(api, server, capsys, tmp_path, monkeypatch):
    from tests.onnx_models import FRAUD_FEATURES

    row = {name: 0.0 for name in FRAUD_FEATURES}
    row["Amount"] = 250.0
    fraud = api("score_fraud", row, explain=True).results[0].explanation
    assert fraud.features[0][0] == "Amount" and len(fraud.features) == 30
    stay = {"measurements": [{"minute": 5, "parameter": "HR", "value": 80.0}], "age": 60.0, "icu_type": 1}
    icu = api("deterioration", stay, explain=True).results[0].explanation
    assert icu.features[0][0] == "HR" and {name for name, _ in icu.features} == {"HR", "age", "gender", "height",
                                                                                   "icu_type"}
    monkeypatch.setenv("COLUMNS", "200")
    (tmp_path / "tx.json").write_text(json.dumps([row]))
    assert cli.main(["fraud", str(tmp_path / "tx.json"), "--explain", "--url", server.url]) == 0
    assert "Amount +" in capsys.readouterr().out
    (tmp_path / "stay.json").write_text(json.dumps(stay))
    assert cli.main(["deterioration", str(tmp_path / "stay.json"), "--explain", "--url", server.url]) == 0
    assert "HR +" in capsys.readouterr().out
