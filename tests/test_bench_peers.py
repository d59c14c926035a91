"""The pure pieces of bench/peers (issue 8): hey CSV parsing, ratios, role selection, payloads and the
shared preprocessing. Fast, no peer venvs, no servers; the checks that need the venvs skip without them."""

from __future__ import annotations

import base64
import io
import json
import os
import math
from pathlib import Path

import numpy as np
import pytest

from bench.peers import run, shared

ROOT = Path(__file__).resolve().parent.parent
HEY_CSV = """response-time,DNS+dialup,DNS,Request-write,Response-delay,Response-read,status-code,offset
0.0100,0.0001,0.0000,0.0000,0.0099,0.0000,200,0.0000
0.0200,0.0000,0.0000,0.0000,0.0199,0.0000,200,0.0100
0.0300,0.0000,0.0000,0.0000,0.0299,0.0000,503,0.0300
0.0400,0.0000,0.0000,0.0000,0.0399,0.0000,200,0.9600
"""


def test_parse_hey_csv_counts_200s_and_spans_to_the_last_answer():
    latencies, errors, span = run.parse_hey_csv(HEY_CSV)
    assert latencies == pytest.approx([10.0, 20.0, 40.0])
    assert errors == 1
    assert span == pytest.approx(1.0)
    row = run.summarize("kserve", "POST /x", "cifar-task", 8, latencies, errors, span)
    assert (row.requests, row.errors, row.rps, row.p50_ms, row.p99_ms) == (3, 1, pytest.approx(3.0), 20.0, 40.0)


def test_parse_hey_csv_empty_output():
    latencies, errors, span = run.parse_hey_csv("response-time,status-code,offset\n")
    row = run.summarize("naive", "POST /x", "cifar-task", 1, latencies, errors, span)
    assert row.requests == 0 and row.rps == 0 and math.isnan(row.p50_ms)


def _row(system, workload, c, rps, p99):
    return run.Row(system, "r", workload, c, 100, 0, rps, p99 / 2, p99)


def test_ratios_against_best_peer_and_floor():
    rows = [
        _row("floor", "cifar-task", 8, 1000, 1.0),
        _row("floor", "cifar-oip-binary", 8, 1000, 1.0),
        _row("neuroserve", "cifar-task", 8, 600, 10.0),
        _row("kserve", "cifar-task", 8, 200, 40.0),
        _row("bentoml", "cifar-task", 8, 300, 20.0),
        _row("naive", "cifar-task", 8, 250, 30.0),
        _row("neuroserve", "cifar-oip-binary", 8, 800, 5.0),
        _row("kserve", "cifar-oip-binary", 8, 400, 20.0),
        _row("neuroserve", "sentiment-task", 8, 100, 5.0),  # no peer, no floor: no ratios
    ]
    run.compute_ratios(rows)
    by = {(r.system, r.workload): r.ratios for r in rows}
    assert by["neuroserve", "cifar-task"]["best_peer"] == "bentoml"
    assert by["neuroserve", "cifar-task"]["rps_vs_best_peer"] == pytest.approx(2.0)
    assert by["neuroserve", "cifar-task"]["p99_vs_best_peer"] == pytest.approx(0.5)
    assert by["neuroserve", "cifar-task"]["rps_vs_floor"] == pytest.approx(0.6)
    assert by["bentoml", "cifar-task"]["rps_vs_best_peer"] == pytest.approx(1.0)
    assert by["neuroserve", "cifar-oip-binary"]["best_peer"] == "kserve"
    assert by["neuroserve", "cifar-oip-binary"]["rps_vs_floor"] == pytest.approx(0.8)
    assert by["neuroserve", "sentiment-task"] == {}


def test_ratios_ignore_peers_that_served_nothing():
    rows = [_row("neuroserve", "cifar-task", 1, 100, 5.0), run.Row("kserve", "r", "cifar-task", 1, 0, 10, 0.0, math.nan, math.nan),
            _row("naive", "cifar-task", 1, 50, 10.0)]
    run.compute_ratios(rows)
    assert rows[0].ratios["best_peer"] == "naive"
    assert rows[1].ratios == {}
    table = run.markdown_tables(rows)
    assert "| neuroserve | `r` | 1 | 100 | 0 | 100 |" in table and "2.00x" in table


def _models(*entries):
    return {"object": "list", "data": [{"id": i, "task": t, "ready": r} for i, t, r in entries]}


def test_role_selection_prefers_the_real_models():
    data = _models(("a-cnn", "image-classification", True), ("cifar10-resnet", "image-classification", True),
                   ("sentiment-lstm", "text-sentiment", True), ("sentiment-rnn", "text-sentiment", True),
                   ("tiny-sentiment", "text-sentiment", True))
    assert run.select_roles(data) == {"classifier": "cifar10-resnet", "sentiment": "sentiment-lstm"}


def test_role_selection_falls_back_and_skips_models_not_ready():
    data = _models(("cifar10-resnet", "image-classification", False), ("tiny-cnn", "image-classification", True),
                   ("b-cnn", "image-classification", True), ("sentiment-lstm", "text-sentiment", False),
                   ("tiny-sentiment", "text-sentiment", True), ("tiny-tumor", "tumor-detection", True))
    assert run.select_roles(data) == {"classifier": "b-cnn", "sentiment": "tiny-sentiment"}
    assert run.select_roles(_models(("sentiment-rnn", "text-sentiment", True))) == {"classifier": None, "sentiment": None}


def test_payloads_carry_the_same_image_and_texts():
    image = shared.test_image()
    png = shared.png_bytes(image)
    task = json.loads(shared.classify_task_body(png))
    kserve = json.loads(shared.kserve_v1_classify_body(png))
    assert base64.b64decode(task["images"][0]) == png == base64.b64decode(kserve["instances"][0]["image_bytes"]["b64"])
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), image)
    assert json.loads(shared.sentiment_task_body())["texts"] == json.loads(shared.kserve_v1_sentiment_body())["instances"]


def test_oip_binary_body_is_header_then_raw_tensor():
    batch = shared.test_image()[None]
    body, headers = shared.oip_binary_body(batch)
    length = int(headers["Inference-Header-Content-Length"])
    header = json.loads(body[:length])
    assert header["inputs"][0] == {"name": "images", "shape": [1, 32, 32, 3], "datatype": "UINT8",
                                   "parameters": {"binary_data_size": 3072}}
    assert header["outputs"][0]["parameters"]["binary_data"] is True
    assert body[length:] == batch.tobytes()


def test_same_bytes_wherever_the_protocols_are_the_same(tmp_path):
    from tests.onnx_models import build_repository

    models = build_repository(tmp_path / "models")
    classifier = shared.ImageClassifier(models / "tiny-cnn", 1)
    sentiment = shared.SentimentModel(models / "tiny-sentiment", 1)
    requests = run.build_requests(classifier, sentiment)
    for workload in ("cifar-task", "sentiment-task"):
        bodies = {requests[s][workload].body for s in ("neuroserve", "bentoml", "naive")}
        assert len(bodies) == 1, workload
    assert requests["neuroserve"]["cifar-oip-binary"].body == requests["kserve"]["cifar-oip-binary"].body
    assert requests["kserve"]["cifar-oip-binary"].path == "/v2/models/tiny-cnn/infer"
    assert requests["kserve"]["sentiment-task"].path == "/v1/models/tiny-sentiment:predict"


def test_shared_preprocessing_matches_the_service(tmp_path):
    """The peers decode and tokenize exactly as Neuroserve's task endpoints do."""
    from service.tasks.images import ImageSpec, decode_image
    from service.tasks.text import encode_texts
    from tests.onnx_models import build_repository

    models = build_repository(tmp_path / "models")
    classifier = shared.ImageClassifier(models / "tiny-cnn", 1)
    png = shared.png_bytes(shared.test_image(40, 24, seed=3))  # resized to 32x32 by both
    spec = ImageSpec.from_manifest({}, [-1, 32, 32, 3])
    assert np.array_equal(classifier.decode(png), decode_image(png, 0, spec, 10**7))
    answer = classifier.classify_b64([base64.b64encode(png).decode()])
    assert answer[0]["label"] == answer[0]["top_k"][0]["label"] and len(answer[0]["top_k"]) == 5

    sentiment = shared.SentimentModel(models / "tiny-sentiment", 1)
    assert sentiment.info.max_tokens == 16  # the fixture's manifest; 128 when a manifest names none
    texts = ["good " * 40, "It's GREAT!!", "zzz"]
    extras = {"tokenizer": sentiment.tokenizer, "max_tokens": sentiment.info.max_tokens, "unk_id": sentiment.unk_id,
              "uses_lengths": True}
    mine, theirs = sentiment.encode(texts), encode_texts(extras, texts)
    assert mine.keys() == theirs.keys() and all(np.array_equal(mine[k], theirs[k]) for k in mine)
    assert mine["input_ids"].shape == (3, 16)
    assert [r["label"] for r in sentiment.predict(["good movie", "awful"])] == ["positive", "negative"]


def test_model_info_defaults_to_128_tokens(tmp_path):
    folder = tmp_path / "m"
    (folder / "2").mkdir(parents=True)
    (folder / "1").mkdir()
    (folder / "1" / "model.onnx").write_bytes(b"")
    (folder / "2" / "model.onnx").write_bytes(b"")
    (folder / "manifest.json").write_text(json.dumps({"name": "m", "task": "text-sentiment", "tokenizer": "tok.json"}))
    info = shared.ModelInfo.load(folder)
    assert info.max_tokens == 128 and info.onnx == folder / "2" / "model.onnx" and info.tokenizer == folder / "tok.json"


def test_find_label_in_each_systems_answer():
    assert shared.find_label({"model": "m", "results": [{"label": "cat", "score": 0.9}]}) == "cat"
    assert shared.find_label({"predictions": [{"label": "dog"}]}) == "dog"
    assert shared.find_label([{"label": "positive", "score": 0.7}]) == "positive"
    assert shared.find_label({"outputs": []}) is None


@pytest.mark.parametrize("peer", ["kserve", "bentoml"])
def test_peer_venv_has_no_torch(peer):
    venv = run.VENVS / peer
    if not (venv / "bin" / "python").exists():
        pytest.skip(f"peer venv {venv} not set up (run bench/peers/setup.sh); nothing to check")
    site = list((venv / "lib").glob("python3*/site-packages"))
    assert site and not any((s / "torch").exists() for s in site)
    lock = (ROOT / "bench" / "peers" / f"requirements-{peer}.txt").read_text()
    assert f"{peer}==" in lock and "torch" not in lock


def test_profile_buckets_by_the_innermost_known_frame_and_draws_a_flame_graph():
    import xml.etree.ElementTree as ET

    from bench import profile

    collapsed = "\n".join([
        "process;thread (1): MainThread;Server.run (uvicorn/server.py:86);classify (service/tasks/vision.py:121);"
        "decode_image (service/tasks/images.py:110);open (PIL/Image.py:3704) 3",
        "process;thread (2): ort-m;_worker (concurrent/futures/thread.py:83);"
        "run (onnxruntime/capi/onnxruntime_inference_collection.py:266) 6",
        "process;thread (2): ort-m;Thread.run (threading.py:982);_worker (concurrent/futures/thread.py:81) 1",
        "garbage line",
    ])
    stacks = profile.parse_collapsed(collapsed)
    assert sum(stacks.values()) == 10
    shares = profile.buckets(stacks)
    assert shares == {"onnxruntime (session.run)": 0.6, "image decode (PIL)": 0.3,
                      "threads parked (waiting for work or the GIL)": 0.1}
    svg = ET.fromstring(profile.flamegraph_svg(stacks, "t"))
    titles = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}title")]
    assert any(t.startswith("run (onnxruntime") and "60.0%" in t for t in titles)


def test_grpc_bench_model_alone_times_the_served_graph_at_the_clients_batch(tmp_path):
    """The gRPC bench's ceiling: the served graph, `concurrency` images a run, as images/s."""
    from bench.grpc_bench import image, model_alone
    from tests.onnx_models import build_repository

    models = build_repository(tmp_path / "models")
    window = model_alone(models, "tiny-cnn", image(), batch=8)
    row = window(0.2)
    assert row["requests"] % (8 // (os.cpu_count() or 1)) == 0 and row["requests"] > 0 and row["rps"] > 0 and row["errors"] == 0
