"""bench/tail.py's pure pieces: percentiles, the request bytes (the peers harness's), the ASGI driver, CPU time."""

from __future__ import annotations

import asyncio
import os

from bench import tail
from bench.peers import shared


def test_stats_are_percentiles_of_the_values():
    s = tail.stats(list(range(1, 101)))
    assert s["n"] == 100 and s["max"] == 100 and abs(s["p50"] - 50.5) < 1e-9 and 98 < s["p99"] <= 100
    assert tail.stats([]) == {"n": 0}


def test_requests_are_the_peers_harness_bytes(tmp_path):
    path, body, content_type, _ = tail._requests("classify", "m", tmp_path)
    assert path == "/v1/images/classify" and content_type == "application/json"
    assert body == shared.classify_task_body(shared.png_bytes(shared.test_image(32, 32)))
    path, body, content_type, headers = tail._requests("oip-binary", "m", tmp_path)
    assert path == "/v2/models/m/infer" and content_type == "application/octet-stream"
    assert "Inference-Header-Content-Length" in headers
    assert tail._requests("sentiment", "m", tmp_path)[1] == shared.sentiment_task_body()


def test_asgi_call_drives_an_app_without_sockets():
    seen = {}

    async def app(scope, receive, send):
        message = await receive()
        seen.update(path=scope["path"], body=message["body"])
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    assert asyncio.run(tail.asgi_call(app, "/x", b"{}")) == (201, b"ok")
    assert seen == {"path": "/x", "body": b"{}"}


def test_cpu_seconds_reads_this_process():
    before = tail.cpu_seconds(os.getpid())
    sum(i * i for i in range(300_000))
    assert tail.cpu_seconds(os.getpid()) >= before >= 0
