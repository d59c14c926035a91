"""Soak and overload: mixed traffic over every endpoint, bounded in time, loopback only.

    .venv/bin/python -m bench.soak --minutes 10 --clients 32            # the committed models
    .venv/bin/python -m bench.soak --minutes 1 --fixtures               # tiny fixture models

Phase 1 (soak): `--clients` concurrent clients send a mix of requests to every task endpoint (the
generation ones too: translation, chat, streamed chat) and the Open Inference Protocol for
`--minutes`, after `--warmup-s` of the same traffic (one unbroken load: the clients do not restart
between the two), each pausing `--think-ms` on average between requests (0: back to back, the server
saturated), spread over `--client-processes` load-generator processes. Reported: requests and errors
per route, p50/p99 per route, and the server's RSS every `--rss-every-s` from the first request: growth is the highest
sample of the soak's last 30 s against the highest of the warm-up's last 30 s (both under load).
Phase 2 (overload): `hey` floods a model whose queue holds 64 with 256 connections: every answer must
be a 200 or a quick 503 with Retry-After (hey is a compiled load generator: the Python clients of
phase 1 would measure themselves). Phase 3 (recovery): right after, a single request must get a 200.

The server runs with the environment it is deployed with (scripts/serve.sh, the Dockerfile):
MALLOC_ARENA_MAX=2. `--server-env KEY=VALUE` adds or overrides variables for experiments.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import gc
import io
import json
import multiprocessing
import os
import random
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from bench.common import ROOT, hey_rows, neuroserve, percentile

# What scripts/serve.sh and the Dockerfile set (few glibc malloc arenas for a many-threaded server)
DEPLOYED_ENV = {"MALLOC_ARENA_MAX": "2"}


def _png(array: np.ndarray) -> str:
    out = io.BytesIO()
    Image.fromarray(array).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


def build_requests(models: list[dict]) -> dict[str, tuple[str, dict]]:
    """One representative request per route, for the models this server has."""
    rng = np.random.default_rng(0)
    by_task = {}
    for model in models:
        if model["ready"]:
            by_task.setdefault(model["task"], model)
    requests: dict[str, tuple[str, dict]] = {}
    if "image-classification" in by_task:
        model = by_task["image-classification"]
        images = [_png(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(2)]
        requests["classify"] = ("/v1/images/classify", {"json": {"images": images, "top_k": 3}})
        raw = rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
        header = json.dumps({"inputs": [{"name": "images", "shape": [1, 32, 32, 3], "datatype": "UINT8",
                                         "parameters": {"binary_data_size": raw.nbytes}}],
                             "parameters": {"binary_data_output": True}}).encode()
        requests["oip-binary"] = (f"/v2/models/{model['id']}/infer", {
            "content": header + raw.tobytes(), "headers": {"Inference-Header-Content-Length": str(len(header))}})
    if "tumor-detection" in by_task:
        requests["tumor"] = ("/v1/tumor/detect", {"json": {"images": [_png(rng.integers(0, 256, (64, 64), dtype=np.uint8))]}})
    if "text-sentiment" in by_task:
        requests["sentiment"] = ("/v1/text/sentiment", {"json": {"texts": ["a gripping , beautifully acted film", "dull and far too long"]}})
    if "traffic-forecast" in by_task:
        history = (3000 + 2000 * np.sin(np.arange(168) / 24 * 2 * np.pi)).round().tolist()
        requests["traffic"] = ("/v1/forecast/traffic", {"json": {"history": history, "start": "2017-07-03T00:00:00"}})
    if "price-forecast" in by_task:
        requests["price"] = ("/v1/forecast/price", {"json": {"history": (100 * np.exp(np.cumsum(rng.normal(0, 0.01, 60)))).tolist()}})
    if "translation" in by_task:
        requests["translate"] = ("/v1/text/translate", {"json": {
            "texts": ["A man in a red shirt is riding a bike down the street.", "Two dogs play in the snow."],
            "source": "en", "target": "de"}})
    if "chat" in by_task:
        chat = {"model": by_task["chat"]["id"], "max_tokens": 24, "seed": 1,
                "messages": [{"role": "user", "content": "Hello, how are you today?"}]}
        requests["chat"] = ("/v1/chat/completions", {"json": chat})
        requests["chat-stream"] = ("/v1/chat/completions", {"json": {**chat, "stream": True}})
    requests["models"] = ("/v1/models", {})
    return requests


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class RssSampler(threading.Thread):
    """The server's RSS every `every_s` seconds, from /proc, on a thread beside the load."""

    def __init__(self, pid: int, every_s: float):
        super().__init__(daemon=True)
        self.pid, self.every_s, self.samples = pid, every_s, []
        self.started_at = time.monotonic()
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(self.every_s):
            self.samples.append((round(time.monotonic() - self.started_at), round(rss_mb(self.pid), 1)))


def hey_flood(url: str, path: str, kwargs: dict, clients: int, seconds: float) -> dict[str, list[float]]:
    """Latencies (ms) by outcome, from hey's per-request CSV."""
    body = kwargs.get("content") or json.dumps(kwargs["json"]).encode()
    content_type = "application/octet-stream" if "content" in kwargs else "application/json"
    outcomes: dict[str, list[float]] = defaultdict(list)
    for row in hey_rows(url + path, body, clients, seconds, kwargs.get("headers"), content_type, timeout_s=30):
        outcomes[row.get("status-code") or "error"].append(float(row["response-time"]) * 1000)
    return outcomes


def retry_after_check(url: str, path: str, kwargs: dict, clients: int = 200) -> dict[str, int]:
    """hey does not report headers: a burst from Python checks that every 503 carries Retry-After."""
    async def burst():
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=clients)) as http:
            return await asyncio.gather(*(http.post(path, **kwargs) for _ in range(clients)), return_exceptions=True)

    seen: dict[str, int] = defaultdict(int)
    for r in asyncio.run(burst()):
        key = type(r).__name__ if isinstance(r, Exception) else str(r.status_code)
        if key == "503" and not r.headers.get("retry-after"):
            key = "503 without Retry-After"
        seen[key] += 1
    return dict(seen)


async def soak(url: str, requests: dict, clients: range, began: float, warmup_s: float, seconds: float,
               think_ms: float = 0.0) -> dict:
    """One unbroken load from `began` (time.monotonic(), shared by the client processes) for `warmup_s + seconds`:
    the clients keep their connections and their pace across the end of the warm-up (a restart would send 32
    requests at once, a burst steady traffic never makes). Latencies and errors count for the requests started
    after the warm-up; the warm-up's errors are counted apart. `clients`: the seeds of this process's clients."""
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, list[str]] = defaultdict(list)
    warmup_errors: list[str] = []
    names = list(requests)
    measure_from, stop_at = began + warmup_s, began + warmup_s + seconds
    await asyncio.sleep(max(0.0, began - time.monotonic()))

    async def client(seed: int):
        rnd = random.Random(seed)
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            while time.monotonic() < stop_at:
                name = rnd.choice(names)
                path, kwargs = requests[name]
                started = time.monotonic()
                try:
                    if kwargs.get("json", {}).get("stream"):
                        async with http.stream("POST", path, **kwargs) as response:
                            body = b"".join([chunk async for chunk in response.aiter_bytes()])
                        status = response.status_code if body.rstrip().endswith(b"data: [DONE]") else "unfinished stream"
                    else:
                        response = await (http.get(path) if not kwargs else http.post(path, **kwargs))
                        status = response.status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                if started < measure_from:
                    if status != 200:
                        warmup_errors.append(f"{name}: {status}")
                else:
                    latencies[name].append((time.monotonic() - started) * 1000)
                    if status != 200:
                        errors[name].append(str(status))
                if think_ms:  # a user's pause between requests: exponential, so arrivals do not fall into step
                    await asyncio.sleep(rnd.expovariate(1000.0 / think_ms))

    await asyncio.gather(*(client(i) for i in clients))
    return {"latencies": latencies, "errors": errors, "warmup_errors": warmup_errors}


def route_table(result: dict) -> dict[str, dict]:
    """Per route: requests, errors, p50 and p99 of a soak's result; printed as the docs' markdown table."""
    print("\n| route | requests | errors | p50 ms | p99 ms | p99/p50 |\n|---|---:|---:|---:|---:|---:|")
    routes = {}
    for name, values in sorted(result["latencies"].items()):
        p50, p99 = statistics.median(values), percentile(values, 99)
        errs = result["errors"].get(name, [])
        routes[name] = {"requests": len(values), "errors": len(errs), "p50_ms": p50, "p99_ms": p99,
                        "error_kinds": sorted(set(errs))}
        print(f"| {name} | {len(values)} | {len(errs)} | {p50:.1f} | {p99:.1f} | {p99 / p50:.2f} |")
    return routes


def _soak_process(job: tuple) -> dict:
    gc.freeze()  # this process's own full GC passes would count as server latency (see main)
    return asyncio.run(soak(*job))


def soak_processes(url: str, requests: dict, clients: int, processes: int, began: float, warmup_s: float,
                   seconds: float, think_ms: float) -> dict:
    """`clients` spread over `processes` load-generator processes. One Python event loop driving 32 httpx
    clients is itself a source of latency (its own loop lag reached 7 ms at p99 in the soak); several loops
    measure the server, not the generator. The processes start together on a shared monotonic clock."""
    if processes <= 1:
        return asyncio.run(soak(url, requests, range(clients), began, warmup_s, seconds, think_ms))
    jobs = [(url, requests, range(i, clients, processes), began, warmup_s, seconds, think_ms) for i in range(processes)]
    with concurrent.futures.ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        parts = list(pool.map(_soak_process, jobs))
    merged = {"latencies": defaultdict(list), "errors": defaultdict(list), "warmup_errors": []}
    for part in parts:
        for key in ("latencies", "errors"):
            for name, values in part[key].items():
                merged[key][name].extend(values)
        merged["warmup_errors"].extend(part["warmup_errors"])
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--warmup-s", type=float, default=120.0,
                        help="traffic before the RSS baseline: long enough for every batch shape and decode length")
    parser.add_argument("--think-ms", type=float, default=0.0,
                        help="each client's mean pause between requests (exponential); 0: back to back (saturation)")
    parser.add_argument("--rss-every-s", type=float, default=10.0, help="RSS sampling period")
    parser.add_argument("--client-processes", type=int, default=1,
                        help="load-generator processes the clients are spread over (each its own event loop)")
    parser.add_argument("--skip", nargs="*", default=[], metavar="ROUTE",
                        help="leave these routes out of the mix (experiments: which route's load sets the others' tails)")
    parser.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the server (experiments), repeatable")
    parser.add_argument("--fixtures", action="store_true", help="serve the tiny test models instead of models/")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "soak.json")
    args = parser.parse_args()

    models_dir = ROOT / "models"
    if args.fixtures:
        from tests.onnx_models import build_repository
        models_dir = build_repository(Path(tempfile.mkdtemp(prefix="neuroserve-soak-")))
    env = {"NEUROSERVE_MAX_QUEUE_SIZE": "64", **DEPLOYED_ENV, **dict(kv.split("=", 1) for kv in args.server_env)}
    server = neuroserve(models_dir, env)
    try:
        models = httpx.get(f"{server.url}/v1/models").json()["data"]
        requests = {name: request for name, request in build_requests(models).items() if name not in args.skip}
        if args.fixtures and "translate" in requests:  # the tiny translator takes 32 tokens: its own sentences
            from tests.generation_models import TRANSLATIONS
            requests["translate"][1]["json"]["texts"] = [source for source, _ in TRANSLATIONS[:2]]
        # the load generator's own full GC passes (tens of ms with the request bodies built) would count as server
        # latency: freeze what exists now, as the server does after loading its models
        gc.collect()
        gc.freeze()
        load_before = os.getloadavg()[0]  # what else the machine was doing
        print(f"routes: {', '.join(requests)}; {args.clients} clients in {args.client_processes} process(es), think {args.think_ms:g} ms; {args.minutes:g} min; server env {env}; "
              f"load average before: {load_before:.2f}")
        sampler = RssSampler(server.proc.pid, args.rss_every_s)  # from the first request: the whole curve
        sampler.start()
        began = time.monotonic() + (3.0 if args.client_processes > 1 else 0.0)  # time for client processes to start
        warm_end = began + args.warmup_s - sampler.started_at
        result = soak_processes(server.url, requests, args.clients, args.client_processes, began, args.warmup_s,
                                args.minutes * 60, args.think_ms)
        soak_end = time.monotonic() - sampler.started_at
        sampler.halt.set()
        # Both ends are read under load (an idle instant reads lower: freed buffers go back to the OS), as the
        # highest sample of the last 30 s of the warm-up and of the soak.
        rss_start = max(m for t, m in sampler.samples if warm_end - 30 <= t <= warm_end)
        rss_end = max(m for t, m in sampler.samples if soak_end - 30 <= t <= soak_end)
        load_end = os.getloadavg()[0]
        report = {"load_average_before": load_before, "load_average_end": None, "server_env": env,
                  "clients": args.clients, "minutes": args.minutes, "warmup_s": args.warmup_s, "think_ms": args.think_ms,
                  "client_processes": args.client_processes,
                  "requests_per_s": sum(map(len, result["latencies"].values())) / (args.minutes * 60),
                  "routes": route_table(result), "rss_mb_after_warmup": rss_start, "rss_mb_end": rss_end,
                  "rss_mb_samples": sampler.samples, "warmup_errors": len(result["warmup_errors"])}
        print(f"\n{report['requests_per_s']:.1f} requests/s over the soak (mean think time {args.think_ms:g} ms)")
        growth = (rss_end - rss_start) / rss_start * 100
        print(f"\nRSS after warm-up {rss_start:.0f} MB, at the end {rss_end:.0f} MB: {growth:+.1f}%")
        print(f"RSS samples (s since the first request, MB; warm-up ends at {warm_end:.0f} s): "
              + ", ".join(f"{t}:{m:.0f}" for t, m in sampler.samples))
        report["rss_growth_percent"] = growth
        report["load_average_end"] = load_end

        path, kwargs = requests.get("oip-binary") or next(iter(requests.values()))
        flood = hey_flood(server.url, path, kwargs, clients=256, seconds=15)
        print("\nOverload, hey with 256 connections against a queue of 64 for 15 s:")
        for key, values in sorted(flood.items()):
            print(f"  {key}: {len(values)} answers, p50 {statistics.median(values):.1f} ms, p99 {percentile(values, 99):.1f} ms")
        report["overload"] = {k: {"count": len(v), "p50_ms": statistics.median(v), "p99_ms": percentile(v, 99)}
                              for k, v in flood.items()}
        report["overload_retry_after"] = retry_after_check(server.url, path, kwargs)
        print(f"  a burst of 200 at once from Python: {report['overload_retry_after']}")
        started = time.perf_counter()
        with httpx.Client(base_url=server.url, timeout=30) as http:
            first = http.post(path, **kwargs)
        recovery_ms = (time.perf_counter() - started) * 1000
        print(f"Recovery: first request after the flood answered {first.status_code} in {recovery_ms:.1f} ms")
        report["recovery"] = {"status": first.status_code, "ms": recovery_ms}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
