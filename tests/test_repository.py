"""The model repository: manifests checked against graphs, failures isolated, atomic reload, safe names."""

from __future__ import annotations

import concurrent.futures
import json
import shutil

import numpy as np
import pytest

from tests.onnx_models import add_sub, lookup, write_model


@pytest.fixture
def own_repo(tmp_path):
    root = tmp_path / "models"
    write_model(root, "add-sub", add_sub(), batching={"max_batch_size": 8, "max_queue_delay_ms": 1})
    write_model(root, "lookup", lookup())
    return root


def _infer_add(client, model="add-sub", version=None):
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    body = {"inputs": [{"name": "a", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
                       {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]}]}
    return client.post(path, json=body)


@pytest.mark.parametrize("breakage,fragment", [
    (lambda f: (f / "1" / "model.onnx").write_bytes(b"garbage"), "could not load"),
    (lambda f: (f / "1" / "model.onnx").unlink(), "missing"),
    (lambda f: (f / "manifest.json").write_text("{"), "invalid"),
    (lambda f: (f / "manifest.json").write_text(json.dumps({"name": "other", "task": "t"})), "does not match"),
    (lambda f: (f / "manifest.json").write_text(json.dumps(
        {"name": "broken", "task": "t", "inputs": [{"name": "a", "datatype": "INT8", "shape": [-1, 4]}]})), "graph has FP32"),
    (lambda f: (f / "manifest.json").write_text(json.dumps(
        {"name": "broken", "task": "t", "outputs": [{"name": "nope", "datatype": "FP32", "shape": [-1]}]})), "not in the graph"),
    (lambda f: shutil.rmtree(f / "1"), "no version folder"),
])
def test_a_broken_model_is_reported_and_the_others_serve(make_client, own_repo, breakage, fragment):
    folder = write_model(own_repo, "broken", add_sub())
    breakage(folder)
    client = make_client(models_dir=own_repo)
    ready = client.get("/v2/health/ready").json()
    assert fragment in ready["failed"]["broken"]
    listing = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert listing["broken"]["state"] == "UNAVAILABLE" and fragment in listing["broken"]["reason"]
    assert client.get("/v2/models/broken/ready").status_code == 503
    assert _infer_add(client, "broken").status_code == 503
    assert _infer_add(client).status_code == 200
    assert 'neuroserve_model_load_failures_total{model="broken"} 1.0' in client.get("/metrics").text


def test_strict_readiness_stays_503_while_a_model_failed(make_client, own_repo):
    (write_model(own_repo, "broken", add_sub()) / "1" / "model.onnx").write_bytes(b"junk")
    client = make_client(models_dir=own_repo, strict_readiness=True, wait=False)
    import time
    time.sleep(1.5)
    response = client.get("/v2/health/ready")
    assert response.status_code == 503 and "broken" in response.json()["failed"]


def test_versions_and_default_version(make_client, own_repo):
    write_model(own_repo, "multi", add_sub(), versions=("1", "2", "10"))
    client = make_client(models_dir=own_repo)
    assert client.get("/v2/models/multi").json()["versions"] == ["1", "2", "10"]
    assert _infer_add(client, "multi").json()["model_version"] == "10"
    assert _infer_add(client, "multi", "2").json()["model_version"] == "2"
    write_model(own_repo, "pinned", add_sub(), versions=("1", "2"), default_version="1")
    client2 = make_client(models_dir=own_repo)
    assert _infer_add(client2, "pinned").json()["model_version"] == "1"


def test_unload_load_and_index(make_client, own_repo):
    client = make_client(models_dir=own_repo)
    index = client.post("/v2/repository/index").json()
    assert {"name": "add-sub", "version": "1", "state": "READY", "reason": ""} in index
    assert client.post("/v2/repository/models/add-sub/unload").json()["state"] == "UNLOADED"
    assert _infer_add(client).status_code == 404
    assert {"name": "add-sub", "state": "UNLOADED", "reason": ""} in client.post("/v2/repository/index").json()
    assert client.post("/v2/repository/models/add-sub/load").status_code == 200
    assert _infer_add(client).status_code == 200


def test_a_new_model_dropped_in_is_loaded_without_restart(make_client, own_repo):
    client = make_client(models_dir=own_repo)
    assert _infer_add(client, "late").status_code == 404
    write_model(own_repo, "late", add_sub())
    assert client.post("/v2/repository/models/late/load").status_code == 200
    assert _infer_add(client, "late").status_code == 200


def test_reload_is_atomic_under_load(make_client, own_repo):
    client = make_client(models_dir=own_repo)
    write_model(own_repo, "add-sub", add_sub(), versions=("1", "2"), batching={"max_batch_size": 8, "max_queue_delay_ms": 1})

    def hammer(_):
        return _infer_add(client).status_code

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(hammer, i) for i in range(120)]
        for _ in range(3):
            assert client.post("/v2/repository/models/add-sub/load").status_code == 200
        codes = [f.result() for f in futures]
    assert codes == [200] * 120
    assert client.get("/v2/models/add-sub").json()["versions"] == ["1", "2"]


def test_a_failed_reload_keeps_the_old_version_serving(make_client, own_repo):
    client = make_client(models_dir=own_repo)
    (own_repo / "add-sub" / "1" / "model.onnx").write_bytes(b"corrupt")
    response = client.post("/v2/repository/models/add-sub/load")
    assert response.status_code == 400 and "still serving" in response.json()["error"]
    assert _infer_add(client).status_code == 200


@pytest.mark.parametrize("name", ["..", "a/b", "%2e%2e%2fetc", "x" * 100, "Bad"])
def test_repository_api_refuses_names_outside_the_repository(make_client, own_repo, name):
    client = make_client(models_dir=own_repo)
    response = client.post(f"/v2/repository/models/{name}/load")
    assert response.status_code in (400, 404), response.text
    assert "error" in response.json()


def test_load_of_a_missing_model_is_404(make_client, own_repo):
    client = make_client(models_dir=own_repo)
    assert client.post("/v2/repository/models/ghost/load").status_code == 404
    assert client.post("/v2/repository/models/ghost/unload").status_code == 404


def test_model_lookup_for_tasks(make_client, own_repo):
    write_model(own_repo, "cls-a", add_sub(), task="demo")
    write_model(own_repo, "cls-b", add_sub(), task="demo", priority=5)
    client = make_client(models_dir=own_repo)
    repo = client.app.state.repository
    assert repo.for_task("demo", None).name == "cls-b"
    assert repo.for_task("demo", "cls-a:1").name == "cls-a"
    from service.errors import BadRequest, NotFound, ServiceUnavailable
    with pytest.raises(BadRequest):
        repo.for_task("demo", "lookup")
    with pytest.raises(NotFound):
        repo.for_task("demo", "cls-a:7")
    with pytest.raises(ServiceUnavailable):
        repo.for_task("nothing", None)


def test_resources_cannot_escape_the_model_folder(make_client, own_repo):
    client = make_client(models_dir=own_repo)
    model = client.app.state.repository.get("add-sub")
    from service.errors import ModelLoadError
    with pytest.raises(ModelLoadError):
        model.resource("../lookup/manifest.json")
    assert model.resource("manifest.json").name == "manifest.json"


def test_ready_is_503_until_every_model_is_warm(make_client, own_repo, monkeypatch):
    import threading

    from service.repository import ModelRepository

    release = threading.Event()
    original = ModelRepository._build

    def slow_build(self, name, folder):
        release.wait(10)
        return original(self, name, folder)

    monkeypatch.setattr(ModelRepository, "_build", slow_build)
    client = make_client(models_dir=own_repo, wait=False)
    loading = client.get("/v2/health/ready")
    assert loading.status_code == 503 and loading.headers["retry-after"]
    assert client.get("/v2/health/live").status_code == 200
    assert _infer_add(client).status_code == 503  # known but not loaded yet
    release.set()
    from tests.conftest import wait_ready
    wait_ready(client.get)
    assert _infer_add(client).status_code == 200


def test_a_full_queue_answers_503_with_retry_after_over_http(make_client, tmp_path):
    import concurrent.futures

    from tests.onnx_models import small_cnn

    root = tmp_path / "m"
    write_model(root, "slow", small_cnn(size=160, width=64), batching={"max_batch_size": 0, "max_queue_size": 1})
    client = make_client(models_dir=root, intra_op_threads=1)
    image = np.zeros((1, 160, 160, 3), np.uint8)
    header = json.dumps({"inputs": [{"name": "images", "shape": [1, 160, 160, 3], "datatype": "UINT8",
                                     "parameters": {"binary_data_size": image.nbytes}}]}).encode()

    def call(_):
        response = client.post("/v2/models/slow/infer", content=header + image.tobytes(),
                               headers={"Inference-Header-Content-Length": str(len(header))})
        return response.status_code, response.headers.get("retry-after")

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        results = list(pool.map(call, range(24)))
    codes = [code for code, _ in results]
    assert set(codes) <= {200, 503} and 503 in codes and 200 in codes
    assert all(retry for code, retry in results if code == 503)
    assert call(0)[0] == 200  # recovers at once when the load drops


def _solo_threads(client, model="add-sub"):
    """Intra-op threads of the model's solo session, None when it has none."""
    solo = client.app.state.repository.get(model).batcher._solo_runner
    return None if solo is None else solo.__self__.session.get_session_options().intra_op_num_threads


def test_several_single_threaded_instances_get_a_solo_session_with_their_threads(make_client, own_repo, monkeypatch):
    monkeypatch.setattr("service.settings.os.cpu_count", lambda: 4)
    client = make_client(models_dir=own_repo, model_instances=2, intra_op_threads=1)
    assert _solo_threads(client) == 2
    batcher = client.app.state.repository.get("add-sub").batcher
    solo_runs, solo = [], batcher._solo_runner
    batcher._solo_runner = lambda feeds: solo_runs.append(feeds) or solo(feeds)
    response = _infer_add(client)  # alone in the server: served by the solo session
    assert response.status_code == 200 and response.json()["outputs"][0]["data"] == [2, 3, 4, 5]
    assert len(solo_runs) == 1
    assert client.app.state.repository.runs.running == 0


@pytest.mark.parametrize("overrides, solo_spins", [
    ({}, "0"),  # the default: the solo session's threads sleep between the work a run hands them
    ({"solo_spinning": True}, "1"),  # spinning during a run, stopped when it ends (the earlier default)
    ({"solo_spinning": True, "ort_spinning": False}, "0"),
])
def test_the_solo_session_spins_only_when_asked(make_client, own_repo, monkeypatch, overrides, solo_spins):
    monkeypatch.setattr("service.settings.os.cpu_count", lambda: 4)
    client = make_client(models_dir=own_repo, model_instances=2, intra_op_threads=1, **overrides)
    batcher = client.app.state.repository.get("add-sub").batcher
    solo = batcher._solo_runner.__self__.session.get_session_options()
    instance = batcher._runner.__self__.session.get_session_options()
    assert solo.get_session_config_entry("session.intra_op.allow_spinning") == solo_spins
    if solo_spins == "1":  # and stops when its run ends, leaving the cores to the instances
        assert solo.get_session_config_entry("session.force_spinning_stop") == "1"
    # the instances keep NEUROSERVE_ORT_SPINNING (one thread each here: no pool to spin)
    assert instance.get_session_config_entry("session.intra_op.allow_spinning") == \
        ("1" if overrides.get("ort_spinning", True) else "0")
    assert _infer_add(client).status_code == 200


@pytest.mark.parametrize("overrides", [
    {"model_instances": 1, "intra_op_threads": 1},  # one instance: nothing to gain
    {"model_instances": 2, "intra_op_threads": 4},  # the instances already have every core
    {"model_instances": 2, "intra_op_threads": 1, "solo_session": False},
])
def test_no_solo_session_where_it_would_not_add_threads_or_is_turned_off(make_client, own_repo, monkeypatch, overrides):
    monkeypatch.setattr("service.settings.os.cpu_count", lambda: 4)
    client = make_client(models_dir=own_repo, **overrides)
    assert _solo_threads(client) is None
    assert _infer_add(client).status_code == 200
