"""Shared pieces of the benchmarks: servers as subprocesses, the `hey` load generator, tables.

Every load run is bounded in time and targets loopback only.
"""

from __future__ import annotations

import csv
import io
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    system: str
    encoding: str
    concurrency: int
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float

    def row(self) -> dict:
        return asdict(self)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def wait_ready(url: str, proc: subprocess.Popen, timeout_s: float, what: str) -> None:
    """Poll `url` until it answers 200; RuntimeError if the process exits, TimeoutError after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        time.sleep(0.1)
    raise TimeoutError(f"{what} never became ready")


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, for the machine line of every benchmark."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server subprocess on a loopback port, stopped with SIGTERM."""

    def __init__(self, args: list[str], port: int, env: dict | None = None, ready_path: str = "/v2/health/ready"):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_ready(self.url + ready_path, self.proc, 60, f"server {args}")
        except (RuntimeError, TimeoutError):
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def neuroserve(models: Path, extra_env: dict | None = None) -> Server:
    port = free_port()
    return Server([sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--models", str(models)], port,
                  {"NEUROSERVE_LOG_LEVEL": "warning", "NEUROSERVE_GRPC_PORT": "0", **(extra_env or {})})


def uvicorn_app(app: str, env: dict | None = None, ready_path: str = "/health") -> Server:
    port = free_port()
    return Server([sys.executable, "-m", "uvicorn", app, "--port", str(port), "--log-level", "warning", "--no-access-log"],
                  port, env, ready_path)


def require_hey() -> str:
    hey = shutil.which("hey")
    if hey is None:
        sys.exit("the benchmark needs `hey` (Debian/Ubuntu: apt-get install hey)")
    return hey


def hey_rows(url: str, body: bytes, concurrency: int, seconds: float, headers: dict[str, str] | None = None,
             content_type: str = "application/json", timeout_s: int = 20) -> list[dict[str, str]]:
    """A bounded load run with hey: its per-request CSV rows (status-code, response-time, offset...)."""
    body_file = ROOT / "bench" / "results" / f".body-{os.getpid()}-{threading.get_ident()}"
    body_file.parent.mkdir(parents=True, exist_ok=True)
    body_file.write_bytes(body)
    args = [require_hey(), "-z", f"{seconds}s", "-c", str(concurrency), "-m", "POST", "-T", content_type,
            "-D", str(body_file), "-o", "csv", "-t", str(timeout_s)]
    for key, value in (headers or {}).items():
        args += ["-H", f"{key}: {value}"]
    try:
        output = subprocess.run(args + [url], capture_output=True, text=True, timeout=seconds + 60 + timeout_s,
                                check=True).stdout
    finally:
        body_file.unlink(missing_ok=True)
    return list(csv.DictReader(io.StringIO(output)))


def run_hey(system: str, encoding: str, url: str, body: bytes, concurrency: int, seconds: float,
            headers: dict[str, str] | None = None, content_type: str = "application/json") -> Result:
    """A bounded load run with hey; latencies come from its per-request CSV."""
    latencies, errors, last_offset = [], 0, 0.0
    for row in hey_rows(url, body, concurrency, seconds, headers, content_type):
        if row.get("status-code") != "200":
            errors += 1
            continue
        latencies.append(float(row["response-time"]) * 1000)
        last_offset = max(last_offset, float(row["offset"]) + float(row["response-time"]))
    count = len(latencies)
    return Result(system, encoding, concurrency, count, errors, count / max(last_offset, 1e-9),
                  statistics.median(latencies) if latencies else float("nan"), percentile(latencies, 99))


def time_calls(call, concurrency: int, seconds: float) -> tuple[list[float], float]:
    """`call()` from `concurrency` threads for `seconds`: (latencies in ms, elapsed s). The floor of
    every benchmark: no HTTP at all."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def worker():
        own = []
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            call()
            own.append((time.perf_counter() - started) * 1000)
        with lock:
            latencies.extend(own)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, time.perf_counter() - started


def run_in_process(system: str, call, concurrency: int, seconds: float) -> Result:
    latencies, elapsed = time_calls(call, concurrency, seconds)
    return Result(system, "in-process", concurrency, len(latencies), 0, len(latencies) / elapsed,
                  statistics.median(latencies), percentile(latencies, 99))


def markdown_table(results: list[Result], baseline: dict[tuple[int], Result] | None = None,
                   baseline_name: str = "") -> str:
    header = "| system | encoding | concurrency | requests | errors | req/s | p50 ms | p99 ms |"
    sep = "|---|---|---:|---:|---:|---:|---:|---:|"
    if baseline:
        header += f" req/s vs {baseline_name} | p99 vs {baseline_name} |"
        sep += "---:|---:|"
    lines = [header, sep]
    for r in results:
        line = f"| {r.system} | {r.encoding} | {r.concurrency} | {r.requests} | {r.errors} | {r.rps:.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} |"
        if baseline:
            base = baseline.get(r.concurrency)
            line += f" {r.rps / base.rps:.2f}x | {r.p99_ms / base.p99_ms:.2f}x |" if base else " | |"
        lines.append(line)
    return "\n".join(lines)
