"""Deployment files: hadolint-clean Dockerfile, Compose Spec, Kubernetes schemas, consistent ports and probes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        found = shutil.which(name)
        if found is None:
            pytest.fail(f"{name} is not installed (dev extra)")
        return found
    return str(path)


def test_dockerfile_is_hadolint_clean():
    result = subprocess.run([_tool("hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_follows_the_compose_spec():
    result = subprocess.run([_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
                             str(ROOT / "docker-compose.yml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_manifests_validate():
    manifests = sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))
    manifests = [m for m in manifests if m.name != "kustomization.yaml"]
    result = subprocess.run([_tool("kubernetes-validate"), "--strict", "-k", "1.30.0", *map(str, manifests)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    kustomization = yaml.safe_load((ROOT / "deploy" / "k8s" / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(m.name for m in manifests if "example" not in m.name)


def test_probes_and_ports_agree_with_the_server():
    deployment = yaml.safe_load((ROOT / "deploy" / "k8s" / "deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["ports"][0]["containerPort"] == 8000
    config = yaml.safe_load((ROOT / "deploy" / "k8s" / "configmap.yaml").read_text())["data"]
    from service.settings import Settings
    known = {f"NEUROSERVE_{name.upper()}" for name in Settings.model_fields}
    assert set(config) <= known, set(config) - known
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert "health/ready" in " ".join(compose["services"]["neuroserve"]["healthcheck"]["test"])
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    assert prometheus["scrape_configs"][0]["static_configs"][0]["targets"] == ["neuroserve:8000"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "USER 10001:10001" in dockerfile and "HEALTHCHECK" in dockerfile and "health/ready" in dockerfile


def test_container_image_pins_only_serving_dependencies():
    pins = [line.split("==")[0] for line in (ROOT / "requirements-serve.txt").read_text().splitlines()
            if line and not line.startswith("#")]
    assert "onnxruntime" in pins and "fastapi" in pins
    assert not {"torch", "onnx", "onnxscript", "tritonclient"} & set(pins)
