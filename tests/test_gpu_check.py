"""scripts/gpu_check.py in its reduced CPU mode: two real CPU servers, parity, short load runs, the report."""

from __future__ import annotations

import json

import pytest

from scripts import gpu_check


def test_gpu_check_quick_on_cpu_servers_writes_parity_and_load(repo_dir, tmp_path):
    out = tmp_path / "check"
    status = gpu_check.main(["--models", str(repo_dir), "--out", str(out), "--providers", "cpu,cpu+NEUROSERVE_MODEL_INSTANCES=1", "--quick",
                             "--seconds", "0.3", "--clients", "1,2", "--translate-clients", "2", "--load", "python",
                             "--skip", "generation", "--time-limit", "90"])
    report = json.loads((out / "report.json").read_text())
    assert set(report["servers"]) == {"cpu", "cpu+NEUROSERVE_MODEL_INSTANCES=1"} and all("error" not in s for s in report["servers"].values())
    assert report["environment"]["onnxruntime"] and "CPUExecutionProvider" in report["environment"]["available_providers"]
    parity = report["parity"]
    endpoints = {r["endpoint"] for r in parity}
    assert {"/v1/images/classify", "/v1/tumor/detect", "/v1/text/sentiment", "/v1/forecast/traffic", "/v1/forecast/price",
            "OIP infer"} <= endpoints
    assert not [r for r in parity if r["ok"] is False], parity  # the same CPU twice agrees exactly
    load = report["load"]
    keys = {r["key"] for r in load}
    assert {"oip-1", "classify", "sentiment"} <= keys and any(k.startswith("oip-") and k != "oip-1" for k in keys)
    assert all(r.get("requests", 0) > 0 and r["errors"] == 0 for r in load), load
    markdown = (out / "report.md").read_text()
    assert "## Parity" in markdown and "## Load" in markdown and "req/s cpu+NEUROSERVE_MODEL_INSTANCES=1 / cpu" in markdown
    assert (out / "server-cpu.log").exists() and (out / "server-cpu-NEUROSERVE_MODEL_INSTANCES-1.log").exists()
    assert status == 0


def test_comparisons_flag_real_differences_and_allow_ties():
    ref = {"results": [{"label": "cat", "top_k": [{"label": "cat", "score": 0.9}, {"label": "dog", "score": 0.1}]}]}
    assert gpu_check.compare_task("image-classification", ref, ref, 1e-3)[0]
    flipped = {"results": [{"label": "dog", "top_k": [{"label": "cat", "score": 0.1}, {"label": "dog", "score": 0.9}]}]}
    assert not gpu_check.compare_task("image-classification", ref, flipped, 1e-3)[0]
    tie = {"results": [{"label": "cat", "top_k": [{"label": "cat", "score": 0.50002}, {"label": "dog", "score": 0.49998}]}]}
    tie_other = {"results": [{"label": "dog", "top_k": [{"label": "cat", "score": 0.49999}, {"label": "dog", "score": 0.50001}]}]}
    assert gpu_check.compare_task("image-classification", tie, tie_other, 1e-3)[0]  # a near tie may flip
    assert not gpu_check.compare_task("translation", {"translations": ["a"]}, {"translations": ["b"]}, 1e-3)[0]
    assert gpu_check.compare_task("price-forecast", {"forecast": [100.0], "lower": [90.0], "upper": [110.0]},
                                  {"forecast": [100.05], "lower": [90.0], "upper": [110.0]}, 1e-3)[0]  # relative
    assert gpu_check.tolerance({"id": "cifar10-int8"}) == 1e-2 and gpu_check.tolerance({"id": "identity-uint8"}) == 1e-3
    assert not gpu_check.compare_oip({"outputs": [{"name": "p", "datatype": "FP32", "data": [0.5]}]},
                                     {"outputs": [{"name": "p", "datatype": "FP32", "data": [0.51]}]}, 1e-3)[0]


def test_forecasts_compare_relative_to_their_scale_and_int8_features_leniently():
    # traffic-lstm on the H200: OIP quantiles up to ~11,700 vehicles/hour differed by 1.45 (1.2e-4 of the scale);
    # a low quantile of 12.6 carrying the same absolute error is no disagreement
    ref = {"outputs": [{"name": "quantiles", "datatype": "FP32", "data": [12.6, 1869.0, 11660.0]}]}
    got = {"outputs": [{"name": "quantiles", "datatype": "FP32", "data": [14.05, 1869.5, 11661.0]}]}
    assert not gpu_check.compare_oip(ref, got, 1e-3)[0]  # element by element it would fail
    assert gpu_check.compare_oip(ref, got, 1e-3, per_tensor=True)[0]
    off = {"outputs": [{"name": "quantiles", "datatype": "FP32", "data": [12.6, 1869.0, 11700.0]}]}  # 3.4e-3 of it
    assert not gpu_check.compare_oip(ref, off, 1e-3, per_tensor=True)[0]
    assert gpu_check.compare_task("traffic-forecast", {"forecast": [12.6, 11660.0], "lower": [0.0], "upper": [1.0]},
                                  {"forecast": [14.0, 11660.0], "lower": [0.0], "upper": [1.0]}, 1e-3)[0]
    # cifar10-int8's ood_features (magnitudes up to ~11) moved by 0.144, about 3 quantization steps
    features = {"outputs": [{"name": "ood_features", "datatype": "FP32", "data": [0.05, 11.06]}]}
    moved = {"outputs": [{"name": "ood_features", "datatype": "FP32", "data": [0.194, 11.06]}]}
    assert not gpu_check.compare_oip(features, moved, 1e-2)[0]
    assert gpu_check.compare_oip(features, moved, 1e-2, int8=True)[0]
    far = {"outputs": [{"name": "ood_features", "datatype": "FP32", "data": [1.2, 11.06]}]}  # 10% of the scale
    assert not gpu_check.compare_oip(features, far, 1e-2, int8=True)[0]
    assert gpu_check.quantized({"id": "cifar10-int8"}) and not gpu_check.quantized({"id": "identity-uint8"})


def test_the_report_survives_failed_steps_and_reports_skips(tmp_path):
    report = gpu_check.Report(tmp_path)
    assert report.step("boom", lambda: 1 / 0) is None
    report.data["load"] = [{"workload": "w", "key": "w", "provider": "cuda", "clients": 1, "error": "skipped: time limit"}]
    report.save()
    text = (tmp_path / "report.md").read_text()
    assert "boom: ZeroDivisionError" in text and "skipped: time limit" in text


def test_translation_parity_allows_the_int8_rewrite_to_differ_only_outside_the_domain():
    ref = {"translations": ["Ein Mann steht.", "Zwei Hunde.", "Ein Mädchen.", "gut", "Ein dickes Sie Sie."]}
    rewritten = {"translations": [*ref["translations"][:4], "Dämmerung albern."]}
    assert gpu_check.compare_task("translation", ref, ref, 1e-3) == (True, 0.0, "")
    assert not gpu_check.compare_task("translation", ref, rewritten, 1e-3)[0]  # a float model must match exactly
    ok, _, detail = gpu_check.compare_task("translation", ref, rewritten, 1e-2, quantized_graphs=True)
    assert ok and "Dämmerung" in detail
    caption_moved = {"translations": ["Ein Mann sitzt.", *ref["translations"][1:]]}
    assert not gpu_check.compare_task("translation", ref, caption_moved, 1e-2, quantized_graphs=True)[0]


def test_a_providers_entry_may_carry_settings_for_its_server_alone():
    assert gpu_check.server_variant("cuda") == ("cuda", {})
    assert gpu_check.server_variant("cuda+NEUROSERVE_MODEL_INSTANCES=2+NEUROSERVE_BATCH_BUCKETS=off") == (
        "cuda", {"NEUROSERVE_MODEL_INSTANCES": "2", "NEUROSERVE_BATCH_BUCKETS": "off"})
    for bad in ("gpu", "cuda+INSTANCES"):
        with pytest.raises(SystemExit):
            gpu_check.server_variant(bad)
