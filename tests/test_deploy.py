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
    assert {"name": "grpc", "containerPort": 8001} in container["ports"]
    service = yaml.safe_load((ROOT / "deploy" / "k8s" / "service.yaml").read_text())
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {"http", "grpc"}
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
    assert "EXPOSE 8000 8001" in dockerfile and Settings.model_fields["grpc_port"].default == 8001
    assert "8001:8001" in compose["services"]["neuroserve"]["ports"] and config["NEUROSERVE_GRPC_PORT"] == "8001"


def test_container_image_pins_only_serving_dependencies():
    pins = [line.split("==")[0] for line in (ROOT / "requirements-serve.txt").read_text().splitlines()
            if line and not line.startswith("#")]
    assert "onnxruntime" in pins and "fastapi" in pins
    assert not {"torch", "onnx", "onnxscript", "tritonclient"} & set(pins)


def _kserve_documents() -> tuple[dict, list[dict]]:
    documents = list(yaml.safe_load_all((ROOT / "deploy" / "kserve" / "inferenceservice.yaml").read_text()))
    isvc = next(d for d in documents if d["kind"] == "InferenceService")
    return isvc, [d for d in documents if d is not isvc]


def test_kserve_inferenceservice_validates_against_kserves_schema(tmp_path):
    """deploy/kserve: the InferenceService against KServe's own type definitions (scripts/kserve_schema.py: the
    kserve SDK's, strict about unknown fields), the rest against Kubernetes' schemas."""
    import json

    import jsonschema

    schema = json.loads((ROOT / "deploy" / "kserve" / "inferenceservice.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    isvc, others = _kserve_documents()
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(isvc)]
    assert not errors, errors
    typo = yaml.safe_load(yaml.safe_dump(isvc))
    typo["spec"]["predictor"]["containers"][0]["readinesProbe"] = typo["spec"]["predictor"]["containers"][0].pop("readinessProbe")
    assert not validator.is_valid(typo), "the schema must refuse unknown fields"
    rest = tmp_path / "others.yaml"
    rest.write_text(yaml.safe_dump_all(others))
    result = subprocess.run([_tool("kubernetes-validate"), "--strict", "-k", "1.30.0", str(rest)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_kserve_predictor_runs_the_image_with_both_ports_oip_probes_and_a_model_store():
    from service.settings import Settings

    isvc, others = _kserve_documents()
    assert isvc["metadata"]["name"] and isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    container = isvc["spec"]["predictor"]["containers"][0]
    assert container["name"] == "kserve-container" and container["image"] == "neuroserve:latest"
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [("http1", 8000), ("h2c", 8001)]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8000}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 8000}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["NEUROSERVE_GRPC_PORT"] == "8001" and env["NEUROSERVE_PORT"] == "8000" and env["NEUROSERVE_WORKERS"] == "1"
    assert env["STORAGE_URI"] == "pvc://neuroserve-models/models" and env["NEUROSERVE_MODELS_DIR"] == "/mnt/models"
    assert {d["metadata"]["name"] for d in others if d["kind"] == "PersistentVolumeClaim"} == {"neuroserve-models"}
    known = {f"NEUROSERVE_{name.upper()}" for name in Settings.model_fields}
    assert {name for name in env if name.startswith("NEUROSERVE_")} <= known
