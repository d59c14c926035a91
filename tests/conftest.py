"""Shared fixtures: a model repository of tiny ONNX models, in-process apps and real server processes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.onnx_models import build_repository

ROOT = Path(__file__).resolve().parent.parent
# The gRPC face binds a port of its own (8001 by default): off in every test server unless a test asks for it, so
# servers started side by side (and by other test runs on the machine) do not compete for it.
os.environ.setdefault("NEUROSERVE_GRPC_PORT", "0")


@pytest.fixture(scope="session")
def repo_dir(tmp_path_factory) -> Path:
    return build_repository(tmp_path_factory.mktemp("models"))


def wait_ready(get, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if get("/v2/health/ready").status_code == 200:
                return
        time.sleep(0.05)
    raise TimeoutError("server never became ready")


def _open_client(repo_dir: Path, wait: bool = True, **overrides) -> TestClient:
    from service.app import create_app
    from service.settings import Settings

    overrides.setdefault("models_dir", repo_dir)
    overrides.setdefault("log_json", False)
    overrides.setdefault("log_level", "warning")
    client = TestClient(create_app(Settings(**overrides)), raise_server_exceptions=False)
    client.__enter__()
    if wait:
        wait_ready(client.get)
    return client


@pytest.fixture
def make_client(repo_dir):
    """Build in-process apps (lifespan running) with settings overrides; closed after the test."""
    opened = []

    def factory(**overrides) -> TestClient:
        client = _open_client(repo_dir, **overrides)
        opened.append(client)
        return client

    yield factory
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture(scope="session")
def client(repo_dir) -> TestClient:
    """One shared in-process app with default settings, for tests that do not change server state."""
    shared = _open_client(repo_dir)
    yield shared
    shared.__exit__(None, None, None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A real `neuroserve serve` process on a free loopback port."""

    def __init__(self, models: Path, env: dict[str, str] | None = None, log_path: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, "NEUROSERVE_LOG_LEVEL": "info", **(env or {})}
        full_env["PYTHONPATH"] = str(ROOT)
        self.log_path = log_path
        self._log = open(log_path, "wb") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--port", str(self.port), "--models", str(models)],
            cwd=ROOT, env=full_env, stdout=self._log, stderr=self._log,
        )

    def wait_ready(self, timeout_s: float = 60.0) -> "ServerProcess":
        with httpx.Client(base_url=self.url, timeout=5) as http:
            wait_ready(http.get, timeout_s)
        return self

    def stop(self, timeout_s: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not subprocess.DEVNULL:
            self._log.close()
        return self.proc.returncode

    def logs(self) -> str:
        return self.log_path.read_text() if self.log_path else ""


@pytest.fixture(scope="session")
def server(repo_dir, tmp_path_factory):
    """One real server process for the integration tests (no API keys)."""
    proc = ServerProcess(repo_dir, log_path=tmp_path_factory.mktemp("logs") / "server.log").wait_ready()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def models_server(tmp_path_factory):
    """The committed models/ in one real server process, no API keys (as ./scripts/serve.sh runs it): the README
    tour's commands and the playground's browser tests run against it."""
    proc = ServerProcess(ROOT / "models", env={"NEUROSERVE_INTRA_OP_THREADS": "1"},
                         log_path=tmp_path_factory.mktemp("logs") / "models-server.log")
    try:
        proc.wait_ready(90)
    except Exception:
        proc.stop()
        raise
    yield proc
    proc.stop()


@pytest.fixture
def start_server(repo_dir, tmp_path):
    """Start extra server processes with their own settings; stopped at the end of the test."""
    started = []

    def factory(models: Path | None = None, env: dict[str, str] | None = None, wait: bool = True) -> ServerProcess:
        proc = ServerProcess(models or repo_dir, env, log_path=tmp_path / f"server-{len(started)}.log")
        started.append(proc)
        return proc.wait_ready() if wait else proc

    yield factory
    for proc in started:
        proc.stop()
