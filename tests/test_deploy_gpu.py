"""The GPU deployment files: Dockerfile.gpu (hadolint, the CUDA 13 wheels, providers=cuda), the compose override
and the kustomize overlay (merged onto deploy/k8s, then validated against the Kubernetes 1.30 schemas).
The image itself is built and checked by scripts/gpu_image_check.sh (several GB: not in CI)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from tests.test_deploy import ROOT, _tool

GPU_DOCKERFILE = ROOT / "Dockerfile.gpu"


def test_gpu_dockerfile_is_hadolint_clean():
    result = subprocess.run([_tool("hadolint"), str(GPU_DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_gpu_image_pairs_onnxruntime_gpu_with_the_cuda_it_was_built_for():
    dockerfile = GPU_DOCKERFILE.read_text()
    pins = [line for line in (ROOT / "requirements-gpu.txt").read_text().splitlines() if line and line[0] != "#"]
    assert pins[0] == "onnxruntime-gpu[cuda,cudnn]==1.31.1"  # built for CUDA 13 and cuDNN 9: those come as wheels
    assert all("==" in pin for pin in pins)
    versions = dict(pin.split("==") for pin in pins[1:])
    assert versions["nvidia-cuda-runtime"].startswith("13.") and versions["nvidia-cudnn-cu13"].startswith("9.")
    assert "requirements-gpu.txt" in dockerfile and "grep -v '^onnxruntime=='" in dockerfile  # one onnxruntime only
    assert "ld.so.conf.d" in dockerfile and "stubs" in dockerfile
    assert "NEUROSERVE_PROVIDERS=cuda" in dockerfile
    assert "USER 10001:10001" in dockerfile and "health/ready" in dockerfile
    # the same base and user as the CPU image
    assert re.search(r"^ARG BASE=(.+)$", dockerfile, re.M)[1] == re.search(r"^ARG BASE=(.+)$", (ROOT / "Dockerfile").read_text(), re.M)[1]
    for path in [ROOT / "Dockerfile", GPU_DOCKERFILE, ROOT / "docs" / "deployment.md", ROOT / "README.md"]:
        assert "nvidia/cuda:12" not in path.read_text(), f"{path.name} still names the CUDA 12 base"


def test_gpu_compose_override_follows_the_compose_spec():
    path = ROOT / "docker-compose.gpu.yml"
    result = subprocess.run([_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    service = yaml.safe_load(path.read_text())["services"]["neuroserve"]
    assert service["build"]["dockerfile"] == "Dockerfile.gpu" and service["environment"]["NEUROSERVE_PROVIDERS"] == "cuda"
    assert service["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


def _merge(base, patch):
    """The strategic merge kustomize applies, for what the overlay patches: maps recursively, containers by name."""
    if isinstance(base, dict) and isinstance(patch, dict):
        return {**base, **{key: _merge(base[key], value) if key in base else value for key, value in patch.items()}}
    if isinstance(base, list) and isinstance(patch, list) and all(isinstance(i, dict) and "name" in i for i in base + patch):
        by_name = {item["name"]: item for item in base}
        return [_merge(by_name[item["name"]], item) if item["name"] in by_name else item for item in patch] + \
               [item for item in base if item["name"] not in {p["name"] for p in patch}]
    return patch


def test_gpu_kustomize_overlay_patches_the_base_into_valid_manifests(tmp_path: Path):
    overlay = ROOT / "deploy" / "k8s-gpu"
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["../k8s"]
    assert kustomization["images"] == [{"name": "neuroserve", "newTag": "gpu"}]
    base = {path.name: yaml.safe_load(path.read_text()) for path in (ROOT / "deploy" / "k8s").glob("*.yaml")}
    merged = []
    for entry in kustomization["patches"]:
        patch = yaml.safe_load((overlay / entry["path"]).read_text())
        target = next(doc for doc in base.values() if doc.get("kind") == patch["kind"]
                      and doc["metadata"]["name"] == patch["metadata"]["name"])
        merged.append(_merge(target, patch))
    deployment = next(doc for doc in merged if doc["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"  # the base's probes survive
    config = next(doc for doc in merged if doc["kind"] == "ConfigMap")
    assert config["data"]["NEUROSERVE_PROVIDERS"] == "cuda"  # envFrom would otherwise override the image's cuda
    files = []
    for doc in merged:
        files.append(tmp_path / f"{doc['kind']}.yaml")
        files[-1].write_text(yaml.safe_dump(doc))
    result = subprocess.run([_tool("kubernetes-validate"), "--strict", "-k", "1.30.0", *map(str, files)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
