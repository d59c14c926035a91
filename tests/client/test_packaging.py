"""`pip install ".[client]"` pulls httpx, numpy and rich, and none of the server's or training's dependencies."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT

SERVER_ONLY = {"fastapi", "uvicorn", "onnxruntime", "onnx", "torch", "pydantic", "pydantic-settings", "starlette",
               "python-multipart", "prometheus-client", "orjson", "tokenizers", "pillow"}


def test_client_extra_resolves_without_server_dependencies(tmp_path):
    report = tmp_path / "report.json"
    # --dry-run resolves the full dependency tree without installing; --ignore-installed so the
    # packages already in this venv do not hide what a fresh one would get.
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report),
         f"{ROOT}[client]"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    names = {item["metadata"]["name"].lower().replace("_", "-") for item in json.loads(report.read_text())["install"]}
    assert {"neuroserve", "httpx", "numpy", "rich"} <= names
    assert not names & SERVER_ONLY, sorted(names & SERVER_ONLY)


def test_importing_the_client_loads_no_server_module():
    code = ("import sys, client, client.cli; client.NeuroserveClient, client.AsyncNeuroserveClient; bad = [m for m in ('fastapi', 'onnxruntime', 'service', 'PIL', 'torch')"
            " if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def _without_client_deps(code: str) -> subprocess.CompletedProcess:
    """Runs `code` as on a server-only install: httpx, numpy and rich cannot be imported."""
    prelude = "import sys\nfor name in ('httpx', 'numpy', 'rich'): sys.modules[name] = None\n"
    return subprocess.run([sys.executable, "-c", prelude + code], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_serve_runs_on_a_server_only_install():
    done = _without_client_deps("from client.cli import main; sys.exit(main(['serve', '--help']))")
    assert done.returncode == 0, done.stderr
    assert "--limit-concurrency" in done.stdout and "--models" in done.stdout
    done = _without_client_deps("from client.cli import main; sys.exit(main(['models']))")
    assert done.returncode == 2 and "client extra" in done.stderr and "httpx" in done.stderr
