"""A real uvicorn process: JSON logs with request ids, keys at start, graceful drain on SIGTERM."""

from __future__ import annotations

import concurrent.futures
import json
import signal
import time

import httpx
import numpy as np

from tests.onnx_models import add_sub, small_cnn, write_model


def _slow_repo(tmp_path):
    """A big-ish CNN with batching off, so a burst of requests keeps the server busy for a while."""
    root = tmp_path / "slow-models"
    write_model(root, "slow-cnn", small_cnn(size=224, width=96), batching={"max_batch_size": 0, "max_queue_size": 1000})
    write_model(root, "add-sub", add_sub())
    return root


def test_json_logs_carry_request_ids_and_no_bodies(server):
    secret_payload = "TOP-SECRET-PAYLOAD"
    response = httpx.post(f"{server.url}/v2/models/add-sub/infer", headers={"X-Request-ID": "trace-me-1"},
                          json={"id": secret_payload, "inputs": []})
    assert response.status_code == 400 and response.headers["x-request-id"] == "trace-me-1"
    time.sleep(0.2)
    complete = server.logs().rpartition("\n")[0]  # the server may be mid-line
    # split on "\n" only: logged paths may hold U+2028 and friends, which str.splitlines() also splits on
    lines = [json.loads(line) for line in complete.split("\n") if line.startswith("{")]
    mine = [line for line in lines if line.get("request_id") == "trace-me-1"]
    assert mine and mine[-1]["status"] == 400 and mine[-1]["path"] == "/v2/models/add-sub/infer"
    assert secret_payload not in server.logs()


def test_server_warns_without_keys_and_not_with_them(server, start_server):
    assert "no API keys configured" in server.logs()
    secured = start_server(env={"NEUROSERVE_API_KEYS": "sekrit-key-123", "NEUROSERVE_ADMIN_KEY": "admin-key-456"})
    assert httpx.get(f"{secured.url}/v2").status_code == 401
    assert httpx.get(f"{secured.url}/v2", headers={"Authorization": "Bearer sekrit-key-123"}).status_code == 200
    assert "no API keys configured" not in secured.logs()
    assert "sekrit-key-123" not in secured.logs() and "admin-key-456" not in secured.logs()


def _in_flight(url: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    line = next(line for line in text.splitlines() if line.startswith("neuroserve_in_flight_requests "))
    return float(line.split()[1]) - 1  # minus this /metrics request


def test_sigterm_drains_in_flight_requests_and_refuses_new_ones(start_server, tmp_path):
    proc = start_server(models=_slow_repo(tmp_path), env={"NEUROSERVE_DRAIN_TIMEOUT_S": "20", "NEUROSERVE_INTRA_OP_THREADS": "1"})
    images = np.random.default_rng(0).integers(0, 255, (1, 224, 224, 3), dtype=np.uint8)
    header = json.dumps({"inputs": [{"name": "images", "shape": list(images.shape), "datatype": "UINT8",
                                     "parameters": {"binary_data_size": images.nbytes}}]}).encode()

    def call(_):
        try:
            with httpx.Client(timeout=30) as http:
                response = http.post(f"{proc.url}/v2/models/slow-cnn/infer", content=header + images.tobytes(),
                                     headers={"Inference-Header-Content-Length": str(len(header))})
                return response.status_code
        except httpx.TransportError:  # sent after the listener closed: never accepted, refused
            return "refused"

    started = time.perf_counter()
    assert call(0) == 200
    one = time.perf_counter() - started
    burst = max(8, min(48, int(2.0 / max(one, 1e-3))))  # about two seconds of queued work
    with concurrent.futures.ThreadPoolExecutor(burst) as pool:
        futures = [pool.submit(call, i) for i in range(burst)]
        deadline = time.monotonic() + 10
        while (in_flight := _in_flight(proc.url)) < burst // 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not all(f.done() for f in futures), "the burst finished before SIGTERM; the test proves nothing"
        stopped_at = time.perf_counter()
        proc.proc.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        try:
            refused = httpx.get(f"{proc.url}/v2", timeout=2).status_code
        except httpx.TransportError:
            refused = "connection refused"
        codes = [f.result() for f in futures]
    assert proc.proc.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after its graceful shutdown
    elapsed = time.perf_counter() - stopped_at
    assert elapsed < 25, f"shutdown took {elapsed:.1f}s, over the drain timeout"
    # Every request the server had accepted completed; the rest were refused cleanly, none failed.
    assert codes.count(200) >= in_flight, (in_flight, codes)
    assert set(codes) <= {200, 503, "refused"}, codes
    assert refused in (503, "connection refused")


def test_clients_that_disconnect_mid_request_leave_the_server_healthy(start_server, tmp_path):
    proc = start_server(models=_slow_repo(tmp_path), env={"NEUROSERVE_INTRA_OP_THREADS": "1"})
    images = np.zeros((1, 224, 224, 3), np.uint8)
    header = json.dumps({"inputs": [{"name": "images", "shape": list(images.shape), "datatype": "UINT8",
                                     "parameters": {"binary_data_size": images.nbytes}}]}).encode()
    body = header + images.tobytes()
    headers = {"Inference-Header-Content-Length": str(len(header))}

    def impatient(_):
        try:
            httpx.post(f"{proc.url}/v2/models/slow-cnn/infer", content=body, headers=headers, timeout=0.02)
        except httpx.TimeoutException:
            return "gave up"
        return "answered"

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(impatient, range(32)))
    assert "gave up" in outcomes
    # Half-sent bodies: the connection closes before the declared length arrives.
    import socket
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", proc.port)) as raw:
            raw.sendall(b"POST /v2/models/add-sub/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"inputs\"")
    deadline = time.monotonic() + 30
    while _in_flight(proc.url) > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _in_flight(proc.url) == 0
    ok = httpx.post(f"{proc.url}/v2/models/slow-cnn/infer", content=body, headers=headers, timeout=30)
    assert ok.status_code == 200
    assert httpx.get(f"{proc.url}/v2/health/ready").status_code == 200
