"""A corpus of hostile inputs for every endpoint, sent to a real server process.

Every case must answer a clear 4xx JSON error, and the server must stay ready afterwards.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib

import httpx
import pytest
from PIL import Image


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def huge_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A real, valid 20,000 x 20,000 grayscale PNG (400 megapixels, ~400 KB compressed)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte + pixels
    parts = [compressor.compress(row) for _ in range(height)]
    parts.append(compressor.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def corpus():
    good_png = _png(Image.new("RGB", (32, 32), (10, 20, 30)))
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    header = json.dumps({"inputs": [{"name": "a", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}},
                                    {"name": "b", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}]}).encode()
    add = lambda **kw: {"inputs": [{"name": "a", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},  # noqa: E731
                                   {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]}], **kw}
    tx = {"Time": 406.0, **{f"V{i}": 0.5 for i in range(1, 29)}, "Amount": 12.5}
    stay = lambda rows: {"measurements": [{"minute": m, "parameter": p, "value": v} for m, p, v in rows],  # noqa: E731
                         "age": 60.0, "gender": 1, "height": None, "icu_type": 3}
    cases = {
        # images
        "truncated png": ("/v1/images/classify", {"json": {"images": [b64(good_png[: len(good_png) // 2])]}}),
        "undecodable bytes": ("/v1/images/classify", {"json": {"images": [b64(b"\x00garbage" * 10)]}}),
        "20000x20000 png": ("/v1/images/classify", {"files": [("images", ("huge.png", huge_png(), "image/png"))]}),
        "20000x20000 png as tumor scan": ("/v1/tumor/detect", {"json": {"images": [b64(huge_png())]}}),
        "wrong base64": ("/v1/tumor/detect", {"json": {"images": ["!!!!not base64"]}}),
        "image field of numbers": ("/v1/images/classify", {"json": {"images": [1, 2, 3]}}),
        "text/plain body": ("/v1/images/classify", {"content": b"hello", "headers": {"Content-Type": "text/plain"}}),
        "deep json nesting": ("/v1/images/classify", {"content": b'{"images": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                                                      "headers": {"Content-Type": "application/json"}}),
        # object detection
        "detect: 20000x20000 png": ("/v1/images/detect", {"json": {"images": [b64(huge_png())]}}),
        "detect: 1100 px side": ("/v1/images/detect", {"json": {"images": [b64(_png(Image.new("RGB", (1100, 8))))]}}),
        "detect: truncated png": ("/v1/images/detect", {"files": [("images", ("t.png", good_png[:40], "image/png"))]}),
        "detect: score_threshold NaN": ("/v1/images/detect", {"content": json.dumps({"images": [b64(good_png)]}).encode()[:-1]
                                        + b', "score_threshold": NaN}', "headers": {"Content-Type": "application/json"}}),
        "detect: score_threshold as list": ("/v1/images/detect", {"json": {"images": [b64(good_png)], "score_threshold": [0.5]}}),
        "detect: max_detections 10**9": ("/v1/images/detect", {"json": {"images": [b64(good_png)], "max_detections": 10**9}}),
        "detect: max_detections -1 (form)": ("/v1/images/detect", {"files": [("images", ("a.png", good_png, "image/png"))],
                                                                   "data": {"max_detections": "-1"}}),
        "detect: score_threshold inf (form)": ("/v1/images/detect", {"files": [("images", ("a.png", good_png, "image/png"))],
                                                                     "data": {"score_threshold": "inf"}}),
        "detect: unknown option": ("/v1/images/detect", {"json": {"images": [b64(good_png)], "nms": 0.1}}),
        # text
        "empty text": ("/v1/text/sentiment", {"json": {"texts": [""]}}),
        "over-long text": ("/v1/text/sentiment", {"json": {"texts": ["word " * 5000]}}),
        "texts not a list": ("/v1/text/sentiment", {"json": {"texts": {"a": 1}}}),
        "lone surrogate escape": ("/v1/text/sentiment", {"content": b'{"texts": ["\\ud800"]}', "headers": {"Content-Type": "application/json"}}),
        "invalid utf-8": ("/v1/text/sentiment", {"content": b'{"texts": ["\xff\xfe"]}', "headers": {"Content-Type": "application/json"}}),
        # forecasts
        "NaN in history": ("/v1/forecast/price", {"content": b'{"history": [' + b"1.0," * 59 + b"NaN]}", "headers": {"Content-Type": "application/json"}}),
        "Infinity in history": ("/v1/forecast/traffic", {"content": b'{"start": "2017-01-01T00:00:00", "history": [' + b"1.0," * 167 + b"Infinity]}",
                                                         "headers": {"Content-Type": "application/json"}}),
        "negative price": ("/v1/forecast/price", {"json": {"history": [1.0] * 59 + [-5.0]}}),
        "huge history": ("/v1/forecast/price", {"json": {"history": [1.0] * 200_000}}),
        "history of strings": ("/v1/forecast/price", {"json": {"history": ["1"] * 60}}),
        # fraud scoring
        "fraud: missing column": ("/v1/fraud/score", {"json": {"transactions": [{k: v for k, v in tx.items() if k != "V9"}]}}),
        "fraud: unknown column": ("/v1/fraud/score", {"json": {"transactions": [{**tx, "Merchant": 1.0}]}}),
        "fraud: negative Amount": ("/v1/fraud/score", {"json": {"transactions": [{**tx, "Amount": -10.0}]}}),
        "fraud: NaN": ("/v1/fraud/score", {"content": json.dumps({"transactions": [tx]}).replace('"V2": 0.5', '"V2": NaN').encode(),
                                           "headers": {"Content-Type": "application/json"}}),
        "fraud: 1,025 transactions": ("/v1/fraud/score", {"json": {"transactions": [tx] * 1025}}),
        "fraud: threshold 2": ("/v1/fraud/score", {"json": {"transactions": [tx], "threshold": 2}}),
        "fraud: Amount as text": ("/v1/fraud/score", {"json": {"transactions": [{**tx, "Amount": "12.50"}]}}),
        "fraud: transactions an object": ("/v1/fraud/score", {"json": {"transactions": tx}}),
        "fraud: unknown parameter": ("/v1/fraud/score", {"json": {"transactions": [tx], "explain_all": True}}),
        # ICU deterioration
        "icu: unknown parameter": ("/v1/clinical/deterioration", {"json": {"stays": [stay([(0, "Heart rate", 80.0)])]}}),
        "icu: minute 2881": ("/v1/clinical/deterioration", {"json": {"stays": [stay([(2881, "HR", 80.0)])]}}),
        "icu: negative minute": ("/v1/clinical/deterioration", {"json": {"stays": [stay([(-60, "HR", 80.0)])]}}),
        "icu: NaN value": ("/v1/clinical/deterioration", {"content": json.dumps({"stays": [stay([(0, "HR", 80.5)])]}).replace(
            "80.5", "NaN").encode(), "headers": {"Content-Type": "application/json"}}),
        "icu: 10,001 measurements": ("/v1/clinical/deterioration", {"json": {"stays": [stay([(0, "HR", 80.0)] * 10_001)]}}),
        "icu: 65 stays": ("/v1/clinical/deterioration", {"json": {"stays": [stay([])] * 65}}),
        "icu: missing age": ("/v1/clinical/deterioration", {"json": {"stays": [{"measurements": [], "icu_type": 1}]}}),
        "icu: missing icu_type": ("/v1/clinical/deterioration", {"json": {"stays": [{"measurements": [], "age": 60}]}}),
        "icu: icu_type 9": ("/v1/clinical/deterioration", {"json": {"stays": [{**stay([]), "icu_type": 9}]}}),
        "icu: value as text": ("/v1/clinical/deterioration", {"json": {"stays": [stay([(0, "HR", "eighty")])]}}),
        "icu: threshold -1": ("/v1/clinical/deterioration", {"json": {"stays": [stay([])], "threshold": -1}}),
        "icu: stays not a list": ("/v1/clinical/deterioration", {"json": {"stays": stay([])}}),
        # Open Inference Protocol
        "oip wrong dtype": ("/v2/models/add-sub/infer", {"json": {"inputs": [{"name": "a", "shape": [1, 4], "datatype": "INT8", "data": [1, 2, 3, 4]}]}}),
        "oip wrong shape": ("/v2/models/add-sub/infer", {"json": add(inputs=[{"name": "a", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}])}),
        "oip wrong name": ("/v2/models/add-sub/infer", {"json": {"inputs": [{"name": "zzz", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}}),
        "oip shape claims a huge tensor": ("/v2/models/add-sub/infer", {"json": {"inputs": [{"name": "a", "shape": [2**31, 2**31], "datatype": "FP32", "data": [1]}]}}),
        "oip binary header lies (short data)": ("/v2/models/add-sub/infer", {"content": header + b"\0" * 20,
                                                                          "headers": {"Inference-Header-Content-Length": str(len(header))}}),
        "oip header length beyond body": ("/v2/models/add-sub/infer", {"content": header, "headers": {"Inference-Header-Content-Length": "999999"}}),
        "oip negative header length": ("/v2/models/add-sub/infer", {"content": header, "headers": {"Inference-Header-Content-Length": "-5"}}),
        "oip unknown model": ("/v2/models/ghost/infer", {"json": add()}),
        "oip traversal in name": ("/v2/models/..%2f..%2fetc%2fpasswd/infer", {"json": add()}),
        "oip traversal in version": ("/v2/models/add-sub/versions/..%2f1/infer", {"json": add()}),
        "oip deep nesting": ("/v2/models/add-sub/infer", {"content": b"[" * 100_000, "headers": {"Content-Type": "application/json"}}),
        "oip unknown output": ("/v2/models/add-sub/infer", {"json": add(outputs=[{"name": "nope"}])}),
        "oversized body": ("/v2/models/add-sub/infer", {"content": b"0" * (17 * 1024 * 1024)}),
        "gzip bomb": ("/v2/models/add-sub/infer", {"content": zlib.compress(b"\0" * (100 * 1024 * 1024), 9)[:0] or
                                                   __import__("gzip").compress(b" " * (100 * 1024 * 1024)),
                                                   "headers": {"Content-Encoding": "gzip"}}),
        "repository traversal": ("/v2/repository/models/..%2f..%2ftmp/load", {"content": b""}),
    }
    return cases


@pytest.fixture(scope="module")
def generation_corpus():
    tr = lambda **kw: {"json": {"texts": ["good morning"], "source": "en", "target": "de", **kw}}  # noqa: E731
    chat = lambda **kw: {"json": {"messages": [{"role": "user", "content": "hi"}], **kw}}  # noqa: E731
    return {
        # translation
        "no texts": ("/v1/text/translate", tr(texts=[])),
        "empty text": ("/v1/text/translate", tr(texts=[""])),
        "source over the token bound": ("/v1/text/translate", tr(texts=["good " * 5000])),
        "too many texts": ("/v1/text/translate", tr(texts=["hi"] * 10_000)),
        "beam size 0": ("/v1/text/translate", tr(beam_size=0)),
        "beam size 9": ("/v1/text/translate", tr(beam_size=9)),
        "beam size as text": ("/v1/text/translate", tr(beam_size="four")),
        "max_tokens beyond the bound": ("/v1/text/translate", tr(max_tokens=10**9)),
        "unsupported language pair": ("/v1/text/translate", tr(target="xx")),
        "texts of numbers": ("/v1/text/translate", tr(texts=[1, 2])),
        "unknown translation model": ("/v1/text/translate", tr(model="ghost")),
        "translate deep nesting": ("/v1/text/translate", {"content": b'{"texts": ' + b"[" * 100_000,
                                                          "headers": {"Content-Type": "application/json"}}),
        "translate invalid utf-8": ("/v1/text/translate", {"content": b'{"texts": ["\xff"], "source": "en", "target": "de"}',
                                                           "headers": {"Content-Type": "application/json"}}),
        # chat
        "no messages": ("/v1/chat/completions", chat(messages=[])),
        "messages not a list": ("/v1/chat/completions", chat(messages="hi")),
        "unknown role": ("/v1/chat/completions", chat(messages=[{"role": "wizard", "content": "hi"}])),
        "prompt over the context": ("/v1/chat/completions", chat(messages=[{"role": "user", "content": "word " * 20_000}])),
        "max_tokens beyond the bound": ("/v1/chat/completions", chat(max_tokens=10**9)),
        "negative temperature": ("/v1/chat/completions", chat(temperature=-1)),
        "top_p above 1": ("/v1/chat/completions", chat(top_p=1.5)),
        "n too large": ("/v1/chat/completions", chat(n=1000)),
        "too many stop strings": ("/v1/chat/completions", chat(stop=["x"] * 1000)),
        "unknown chat model": ("/v1/chat/completions", chat(model="gpt-4o")),
        "stream not a boolean": ("/v1/chat/completions", chat(stream="maybe")),
        "chat lone surrogate": ("/v1/chat/completions", {"content": b'{"messages": [{"role": "user", "content": "\\ud800"}]}',
                                                         "headers": {"Content-Type": "application/json"}}),
        # the Open Inference Protocol face of a generation model
        "oip text of numbers": ("/v2/models/tiny-translate/infer",
                                {"json": {"inputs": [{"name": "text", "shape": [1], "datatype": "FP32", "data": [1.0]}]}}),
    }


def error_message(response: httpx.Response) -> str | None:
    """Neuroserve's {"error": "..."} or, on the OpenAI-compatible route, {"error": {"message": "..."}}."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return None
    if isinstance(error, dict):
        error = error.get("message")
    return error if isinstance(error, str) and error else None


def assert_clear_4xx_and_ready(server, corpus: dict) -> None:
    failures = []
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for name, (path, kwargs) in corpus.items():
            response = http.post(path, **kwargs)
            if not (400 <= response.status_code < 500 and error_message(response)):
                failures.append(f"{name}: {response.status_code} {response.text[:200]}")
            ready = http.get("/v2/health/ready")
            if ready.status_code != 200:
                failures.append(f"{name}: server not ready afterwards ({ready.status_code})")
    assert not failures, "\n".join(failures)


def test_every_hostile_input_gets_a_clear_4xx_and_the_server_stays_ready(server, corpus):
    assert_clear_4xx_and_ready(server, corpus)


def test_every_hostile_generation_input_gets_a_clear_4xx(server, repo_dir, generation_corpus):
    from tests.generation_models import require_generation_models

    require_generation_models(repo_dir)
    assert_clear_4xx_and_ready(server, generation_corpus)
