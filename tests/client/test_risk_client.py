"""Fraud and deterioration through the SDK (sync and async) and the CLI, against the real server process."""

from __future__ import annotations

import json

import pytest

from client import cli
from client.results import DeteriorationResult, FraudResult
from tests.onnx_models import FRAUD_FEATURES


def tx(amount: float) -> dict:
    return {**{name: 0.0 for name in FRAUD_FEATURES}, "Amount": amount}


STAY = {"measurements": [{"minute": 0, "parameter": "HR", "value": 88.0}, {"minute": 130, "parameter": "Temp", "value": 20.0}],
        "age": 71.0, "gender": 0, "height": None, "icu_type": 2}


def test_score_fraud(api):
    result = api("score_fraud", [tx(0.0), tx(250.0)])
    assert isinstance(result, FraudResult) and result.model == "tiny-fraud"
    assert [r.fraud for r in result.results] == [False, True] and result.results[0].threshold == 0.6
    assert api("score_fraud", tx(100.0), threshold=0.4).results[0].fraud is True  # one transaction as a dict


def test_deterioration(api):
    result = api("deterioration", [STAY, {**STAY, "measurements": []}])
    assert isinstance(result, DeteriorationResult) and result.model == "tiny-icu" and len(result.results) == 2
    first = result.results[0]
    assert first.hours_observed == 3 and first.ignored[0].parameter == "Temp" and first.ignored[0].minute == 130
    assert first.high_risk == (first.risk >= first.threshold)
    assert api("deterioration", STAY, threshold=0.0).results[0].high_risk is True


def test_cli_fraud_csv_and_deterioration_json(server, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    csv_file = tmp_path / "tx.csv"
    csv_file.write_text(",".join([*FRAUD_FEATURES, "Class"]) + "\n" +
                        "\n".join(",".join(["0"] * 29 + [amount, "0"]) for amount in ("0", "250")) + "\n")
    assert cli.main(["fraud", str(csv_file), "--url", server.url]) == 0
    out = capsys.readouterr().out
    assert "tiny-fraud v1" in out and "yes" in out and "no" in out
    stays = tmp_path / "stays.json"
    stays.write_text(json.dumps({"stays": [STAY]}))
    assert cli.main(["deterioration", str(stays), "--url", server.url, "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["results"][0]["ignored"][0]["parameter"] == "Temp"
    assert cli.main(["deterioration", str(stays), "--url", server.url, "--threshold", "0"]) == 0
    assert "not a medical device" in capsys.readouterr().out


@pytest.mark.parametrize("content,code", [("{not json", 2), ('{"stays": [{"age": 50}]}', 2)])
def test_cli_bad_input_exits_2(server, capsys, tmp_path, content, code):
    path = tmp_path / "bad.json"
    path.write_text(content)
    assert cli.main(["deterioration", str(path), "--url", server.url]) == code
    assert "error" in capsys.readouterr().err
