"""`neuroserve serve --workers 2`: a real parent process and two workers on one port (service/workers.py)."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import signal
import threading
import time

import httpx
import numpy as np

from tests.conftest import ServerProcess
from tests.onnx_models import add_sub, small_cnn, write_model

INFER = "/v2/models/add-sub/infer"
BODY = {"inputs": [{"name": "a", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
                   {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]}]}


def _repo(tmp_path):
    root = tmp_path / "models"
    write_model(root, "add-sub", add_sub(), batching={"max_batch_size": 16, "max_queue_delay_ms": 1})
    # ~0.15 s a run on one thread: requests that are still in flight when SIGTERM arrives
    write_model(root, "slow-cnn", small_cnn(size=224, width=96), batching={"max_batch_size": 0, "max_queue_size": 100})
    return root


def _fresh(url: str) -> httpx.Client:
    """A new connection per request, so the kernel spreads them over the workers."""
    return httpx.Client(base_url=url, timeout=10, limits=httpx.Limits(max_keepalive_connections=0))


def _metric(text: str, line_start: str) -> float:
    found = [line for line in text.splitlines() if line.startswith(line_start)]
    assert len(found) == 1, (line_start, found)
    return float(found[0].rsplit(" ", 1)[1])


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0] != b"Z"
    except FileNotFoundError:
        return False


def test_two_workers_share_the_port_metrics_readiness_restarts_and_drain(tmp_path):
    state_parent = tmp_path / "tmp"
    state_parent.mkdir()
    server = ServerProcess(_repo(tmp_path), env={"NEUROSERVE_WORKERS": "2", "NEUROSERVE_DRAIN_TIMEOUT_S": "15",
                                                 "TMPDIR": str(state_parent)}, log_path=tmp_path / "server.log")
    try:
        # Readiness: never 200 before both workers have loaded their models.
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=server.url, timeout=5) as http:
            while time.monotonic() < deadline:
                try:
                    response = http.get("/v2/health/ready")
                except httpx.TransportError:
                    time.sleep(0.05)
                    continue
                body = response.json()
                assert body["workers"]["total"] == 2
                if response.status_code == 200:
                    assert body["ready"] and body["workers"]["ready"] == 2, body
                    break
                assert not body["ready"] and body["workers"]["ready"] < 2, body
                time.sleep(0.05)
            else:
                raise AssertionError(f"never ready: {server.logs()[-3000:]}")

        # Both workers answer; the counters /metrics shows are the sum of both.
        served: dict[str, int] = {}
        with _fresh(server.url) as http:
            for _ in range(300):
                response = http.post(INFER, json=BODY)
                assert response.status_code == 200 and response.json()["outputs"][0]["data"] == [2, 3, 4, 5]
                served[response.headers["x-neuroserve-worker"]] = served.get(response.headers["x-neuroserve-worker"], 0) + 1
                if len(served) == 2 and min(served.values()) >= 5:
                    break
            assert len(served) == 2, f"one worker took every connection: {served}"
            text = http.get("/metrics").text
        sent = sum(served.values())
        route = 'neuroserve_requests_total{model="add-sub",route="/v2/models/{model_name}/infer",status="200"}'
        assert _metric(text, route) == sent, (served, text)
        assert _metric(text, "neuroserve_in_flight_requests ") == 1  # livesum: only the /metrics request itself
        assert _metric(text, "neuroserve_models_ready ") == 2  # livemin over the workers
        # every series is combined across the workers: a Gauge without a multiprocess_mode shows one per pid
        assert "pid=" not in text, [line for line in text.splitlines() if "pid=" in line]

        # The repository API would change one worker only: refused with a clear 409.
        with httpx.Client(base_url=server.url, timeout=5) as http:
            for action in ("load", "unload"):
                response = http.post(f"/v2/repository/models/add-sub/{action}")
                assert response.status_code == 409, response.text
                assert "2 worker processes" in response.json()["error"]
            assert http.post("/v2/repository/index").status_code == 200

        # kill -9 one worker: requests keep succeeding on the other, readiness drops, a replacement comes.
        victim = int(next(iter(served)))
        failures, statuses, stop = [], [], threading.Event()

        def traffic() -> None:
            with _fresh(server.url) as http:
                while not stop.is_set():
                    try:
                        statuses.append(http.post(INFER, json=BODY).status_code)
                    except httpx.TransportError as exc:  # the one request the victim held when it died
                        failures.append(repr(exc))

        runner = threading.Thread(target=traffic)
        runner.start()
        try:
            time.sleep(0.3)
            os.kill(victim, signal.SIGKILL)
            seen_unready = False
            replaced = False
            deadline = time.monotonic() + 30
            with httpx.Client(base_url=server.url, timeout=5) as http:
                while time.monotonic() < deadline and not replaced:
                    response = http.get("/v2/health/ready")
                    body = response.json()
                    if response.status_code == 503:
                        seen_unready = True
                        assert body["workers"]["ready"] == 1, body
                    elif seen_unready:
                        replaced = body["workers"]["ready"] == 2
                    time.sleep(0.05)
            assert seen_unready and replaced, "the killed worker was not replaced"
            pids = set()
            with _fresh(server.url) as http:
                for _ in range(300):
                    pids.add(int(http.get("/v2/health/live").json()["pid"]))
                    if len(pids) == 2:
                        break
            assert victim not in pids and len(pids) == 2, pids
        finally:
            stop.set()
            runner.join(10)
        assert statuses and set(statuses) == {200}, set(statuses)
        assert len(failures) <= 1, failures

        # SIGTERM to the parent: every worker finishes its in-flight requests, then everything exits.
        images = np.random.default_rng(0).integers(0, 255, (1, 224, 224, 3), dtype=np.uint8)
        header = json.dumps({"inputs": [{"name": "images", "shape": list(images.shape), "datatype": "UINT8",
                                         "parameters": {"binary_data_size": images.nbytes}}]}).encode()

        def slow(_):
            with httpx.Client(timeout=30) as http:
                return http.post(f"{server.url}/v2/models/slow-cnn/infer", content=header + images.tobytes(),
                                 headers={"Inference-Header-Content-Length": str(len(header))}).status_code

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(slow, i) for i in range(8)]
            deadline = time.monotonic() + 10
            in_flight = 0
            while in_flight < 5 and time.monotonic() < deadline:  # the slow requests, over both workers
                in_flight = _metric(httpx.get(f"{server.url}/metrics").text, "neuroserve_in_flight_requests ") - 1
            assert in_flight >= 5 and not all(f.done() for f in futures), "nothing in flight at SIGTERM: proves nothing"
            stopped_at = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            codes = [f.result() for f in futures]
        assert server.proc.wait(20) == 0
        assert time.monotonic() - stopped_at < 15
        # every request a worker had accepted finished; one not yet accepted may be refused cleanly
        assert codes.count(200) >= in_flight and set(codes) <= {200, 503}, codes
        assert not any(_pid_alive(pid) for pid in pids)
        assert not list(state_parent.glob("neuroserve-workers-*"))  # the shared state folder is gone
        logs = server.logs()
        assert re.search(rf"Child process \[{victim}\] died", logs), logs[-3000:]
    finally:
        server.stop()


def test_workers_divide_the_cores(monkeypatch):
    from service import settings

    monkeypatch.setattr(settings.os, "cpu_count", lambda: 16)
    for workers, cores, instances, threads in ((1, 16, 4, 4), (2, 8, 4, 2), (4, 4, 4, 1), (8, 2, 2, 1), (32, 1, 1, 1)):
        monkeypatch.setenv("NEUROSERVE_WORKERS", str(workers))
        assert (settings.cpu_cores(), settings.default_instances(), settings.Settings().intra_op_threads) == \
            (cores, instances, threads), workers
