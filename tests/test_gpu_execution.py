"""Serving on CUDA, checked without a GPU: batch buckets (padding, unpadding, row order, warm-up per bucket),
provider truth (a session that did not get CUDA) and the CUDA provider options, through fake provider lists and a
fake InferenceSession that wraps a real CPU one."""

from __future__ import annotations

import asyncio
import json
import logging

import numpy as np
import onnxruntime as ort
import pytest

from service import runtime
from service.batching import Batcher, BucketRunner
from service.errors import ModelLoadError
from service.manifest import Batching, Manifest
from service.runtime import OnnxRuntimeSession
from service.settings import Settings
from tests.onnx_models import add_sub, sequence_sum, write_model

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"


class Recorder:
    """y = 2x, a constant `table` of 100 (no batch dim) and a scalar; records every feed it ran."""

    def __init__(self):
        self.feeds: list[np.ndarray] = []

    def __call__(self, feeds):
        x = feeds["x"]
        self.feeds.append(x.copy())
        return {"y": x * 2, "table": np.arange(100.0), "scalar": np.float32(3)}

    @property
    def rows(self) -> list[int]:
        return [x.shape[0] for x in self.feeds]


# ----- the bucket runner -----

def test_manifest_buckets_default_to_powers_of_two_and_are_validated():
    assert Batching(max_batch_size=64).bucket_sizes() == [1, 2, 4, 8, 16, 32, 64]
    assert Batching(max_batch_size=48).bucket_sizes() == [1, 2, 4, 8, 16, 32, 48]
    assert Batching(max_batch_size=8, buckets=[2, 8]).bucket_sizes() == [2, 8]
    assert Batching(max_batch_size=0).bucket_sizes() == []
    for bad in ([4, 2], [2, 2], [0, 4], [], [1, 16]):
        with pytest.raises(ValueError):
            Batching(max_batch_size=8, buckets=bad)


@pytest.mark.parametrize("rows,ran", [(1, 1), (3, 4), (4, 4), (5, 8), (8, 8)])
def test_a_batch_is_padded_to_the_smallest_bucket_with_copies_of_its_last_row(rows, ran):
    recorder = Recorder()
    x = np.arange(rows * 3, dtype=np.float32).reshape(rows, 3) + 1
    out = BucketRunner(recorder, [1, 2, 4, 8])({"x": x})
    assert recorder.rows == [ran]
    fed = recorder.feeds[0]
    np.testing.assert_array_equal(fed[:rows], x)
    assert (fed[rows:] == x[-1]).all(), "padding rows are copies of the last real row"
    np.testing.assert_array_equal(out["y"], x * 2)  # padding dropped, row order kept
    np.testing.assert_array_equal(out["table"], np.arange(100.0))  # not a batch output: left alone
    assert out["scalar"].ndim == 0


def test_a_batch_over_the_largest_bucket_runs_in_chunks_of_it():
    recorder = Recorder()
    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    out = BucketRunner(recorder, [1, 2, 4])({"x": x})
    assert recorder.rows == [4, 4, 2]
    np.testing.assert_array_equal(out["y"], x * 2)
    np.testing.assert_array_equal(out["table"], np.arange(100.0))


def _run_batcher(policy: Batching, runner, body, buckets):
    async def main():
        batcher = Batcher("m", runner, policy, instances=1, buckets=buckets)
        batcher.start()
        try:
            return await body(batcher)
        finally:
            await batcher.close()

    return asyncio.run(main())


def test_the_batcher_runs_bucket_sizes_only_and_every_request_gets_its_own_rows():
    recorder = Recorder()

    async def body(batcher):
        requests = [np.full((i % 3 + 1, 2), i, np.float32) for i in range(20)]
        answers = await asyncio.gather(*(batcher.infer({"x": r}, r.shape[0]) for r in requests))
        for r, (out, stats) in zip(requests, answers):
            np.testing.assert_array_equal(out["y"], r * 2)
            np.testing.assert_array_equal(out["table"], np.arange(100.0))
            assert stats.batch_size <= 8  # the real rows, not the padded ones

    _run_batcher(Batching(max_batch_size=64, max_queue_delay_ms=20), recorder, body, [1, 2, 4, 8])
    assert set(recorder.rows) <= {1, 2, 4, 8}, "a run was merged past the largest bucket or left unpadded"
    assert len(recorder.rows) < 20, "requests were not coalesced"


def test_a_request_larger_than_the_largest_bucket_is_answered_whole():
    recorder = Recorder()

    async def body(batcher):
        x = np.arange(12, dtype=np.float32).reshape(6, 2)
        out, _ = await batcher.infer({"x": x}, 6)
        np.testing.assert_array_equal(out["y"], x * 2)

    _run_batcher(Batching(max_batch_size=8, buckets=[1, 2, 4]), recorder, body, [1, 2, 4])
    assert recorder.rows == [4, 2]


def test_buckets_pad_dim_0_after_pad_inputs_padded_dim_1():
    seen = []

    def runner(feeds):
        ids = feeds["ids"]
        seen.append(ids.shape)
        return {"total": ids.sum(axis=1)}

    async def body(batcher):
        seqs = [np.arange(1, n + 1, dtype=np.int64)[None, :] for n in (3, 7, 1)]
        answers = await asyncio.gather(*(batcher.infer({"ids": s}, 1) for s in seqs))
        assert [int(out["total"][0]) for out, _ in answers] == [int(s.sum()) for s in seqs]

    _run_batcher(Batching(max_batch_size=8, max_queue_delay_ms=50, pad_inputs={"ids": 0}), runner, body, [1, 2, 4, 8])
    assert seen == [(4, 7)]


def test_no_buckets_means_todays_behaviour():
    recorder = Recorder()

    async def body(batcher):
        await batcher.infer({"x": np.ones((3, 2), np.float32)}, 3)

    _run_batcher(Batching(max_batch_size=8), recorder, body, None)
    assert recorder.rows == [3]


# ----- fakes for a CUDA box -----

class FakeSession:
    """A real CPU InferenceSession that records what it was asked for and reports `reported` as its providers,
    and the batch size of every run (`runs`; `runs_by` the same per session, by its index in `created`)."""

    created: list[dict] = []
    reported: list[str] | None = None  # None: the real session's list
    runs: list[int] = []
    runs_by: list[tuple[int, int]] = []

    def __init__(self, path, sess_options=None, providers=None):
        self.index = len(FakeSession.created)
        FakeSession.created.append({"path": path, "providers": providers})
        self._real = REAL_SESSION(path, sess_options=sess_options, providers=[CPU])

    def get_providers(self):
        return list(self.reported) if self.reported is not None else self._real.get_providers()

    def run(self, names, feeds):
        FakeSession.runs.append(next(iter(feeds.values())).shape[0])
        FakeSession.runs_by.append((self.index, next(iter(feeds.values())).shape[0]))
        return self._real.run(names, feeds)

    def __getattr__(self, name):
        return getattr(self._real, name)


REAL_SESSION = ort.InferenceSession


@pytest.fixture
def cuda_box(monkeypatch):
    """onnxruntime offers CUDA; sessions are FakeSessions (set FakeSession.reported to what they 'get')."""
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    monkeypatch.setattr(ort, "InferenceSession", FakeSession)
    FakeSession.created, FakeSession.runs, FakeSession.runs_by, FakeSession.reported = [], [], [], None
    yield FakeSession


@pytest.fixture
def gpu_repo(tmp_path):
    root = tmp_path / "models"
    write_model(root, "add-sub", add_sub(), batching={"max_batch_size": 16, "max_queue_delay_ms": 1})
    write_model(root, "sequence-sum", sequence_sum(), batching={"max_batch_size": 8, "pad_inputs": {"ids": 0}})
    return root


def _add(client, rows: int):
    a = np.arange(rows * 4, dtype=np.float32)
    body = {"inputs": [{"name": "a", "shape": [rows, 4], "datatype": "FP32", "data": a.tolist()},
                       {"name": "b", "shape": [rows, 4], "datatype": "FP32", "data": [1.0] * rows * 4}]}
    response = client.post("/v2/models/add-sub/infer", json=body)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["sum"]["shape"] == [rows, 4]
    assert outputs["sum"]["data"] == (a + 1).tolist()


def _models(client) -> dict:
    return {m["id"]: m for m in client.get("/v1/models").json()["data"]}


# ----- provider truth -----

def test_providers_cuda_refuses_a_session_that_did_not_get_cuda(cuda_box, make_client, gpu_repo):
    cuda_box.reported = [CPU]
    client = make_client(models_dir=gpu_repo, providers="cuda")
    model = _models(client)["add-sub"]
    assert model["state"] == "UNAVAILABLE" and not model["ready"]
    assert "asked for CUDAExecutionProvider but the session runs on CPUExecutionProvider" in model["reason"]
    assert client.post("/v2/models/add-sub/infer", json={"inputs": []}).status_code == 503


def test_providers_cuda_without_a_cuda_build_fails_with_the_reason(monkeypatch, tmp_path):
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CPU])
    folder = write_model(tmp_path, "add-sub", add_sub())
    manifest = Manifest(name="add-sub", task="tensor")
    with pytest.raises(ModelLoadError, match="providers=cuda but this onnxruntime has no CUDAExecutionProvider"):
        OnnxRuntimeSession.load(folder / "1" / "model.onnx", manifest, Settings(providers="cuda"))


def test_auto_serves_a_cpu_fallback_and_says_so_in_the_log_models_and_metrics(cuda_box, make_client, gpu_repo):
    cuda_box.reported = [CPU]
    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logging.getLogger("neuroserve.runtime").addHandler(handler)
    try:
        client = make_client(models_dir=gpu_repo, providers="auto")
    finally:
        logging.getLogger("neuroserve.runtime").removeHandler(handler)
    assert any("asked for CUDAExecutionProvider but the session runs on CPUExecutionProvider" in line
               and "serving on the CPU" in line for line in lines), lines
    model = _models(client)["add-sub"]
    assert model["ready"] and model["provider"] == CPU
    assert model["providers"] == [CPU] and model["provider_fallback"] is True
    _add(client, 3)
    metrics = client.get("/metrics").text
    assert 'neuroserve_model_provider{model="add-sub",provider="CPUExecutionProvider",version="1"} 1.0' in metrics
    assert 'neuroserve_model_provider_fallback{model="add-sub",version="1"} 1.0' in metrics


def test_a_cpu_server_reports_no_fallback(make_client, gpu_repo):
    client = make_client(models_dir=gpu_repo)
    model = _models(client)["add-sub"]
    assert model["providers"] == [CPU] and model["provider_fallback"] is False
    assert 'neuroserve_model_provider_fallback{model="add-sub",version="1"} 0.0' in client.get("/metrics").text


def test_cuda_provider_options_come_from_the_settings(cuda_box, make_client, gpu_repo):
    cuda_box.reported = [CUDA, CPU]
    make_client(models_dir=gpu_repo, providers="cuda", cuda_device_id=1, cuda_conv_algo_search="DEFAULT",
                cuda_mem_limit_mb=512, cuda_arena_extend_strategy="kNextPowerOfTwo", cuda_tf32=False,
                cuda_copy_in_default_stream=False)
    providers = cuda_box.created[0]["providers"]
    assert providers == [(CUDA, {"device_id": "1", "cudnn_conv_algo_search": "DEFAULT",
                                 "arena_extend_strategy": "kNextPowerOfTwo", "use_tf32": "0",
                                 "do_copy_in_default_stream": "0", "gpu_mem_limit": str(512 * 1024 * 1024)}), CPU]


def test_default_cuda_options():
    assert runtime.cuda_options(Settings()) == {"device_id": "0", "cudnn_conv_algo_search": "HEURISTIC",
                                                "arena_extend_strategy": "kNextPowerOfTwo", "use_tf32": "1",
                                                "do_copy_in_default_stream": "1"}


def test_providers_cpu_asks_for_the_cpu_alone(cuda_box, make_client, gpu_repo):
    client = make_client(models_dir=gpu_repo, providers="cpu")
    assert all(made["providers"] == [CPU] for made in cuda_box.created)
    assert _models(client)["add-sub"]["provider_fallback"] is False


# ----- a model on CUDA: buckets, warm-up per bucket, one instance, no solo session -----

def test_on_cuda_each_bucket_has_its_own_session_warmed_at_its_shape(cuda_box, make_client, gpu_repo):
    cuda_box.reported = [CUDA, CPU]
    client = make_client(models_dir=gpu_repo, warmup_runs=2, load_models=["add-sub"])
    version = client.app.state.repository.get("add-sub")
    batcher = version.batcher
    assert batcher.buckets == [1, 2, 4, 8, 16]
    assert batcher.instances == 1 and batcher._solo_runner is None  # no solo session on CUDA
    assert len(cuda_box.created) == 5, "one session per bucket, no more"
    assert all(made["providers"] == cuda_box.created[0]["providers"] for made in cuda_box.created), "same options"
    assert sorted(version.bucket_sessions) == [1, 2, 4, 8, 16]
    assert version.bucket_sessions[1] is version.session, "the smallest bucket runs on the version's session"
    assert len({id(s) for s in version.bucket_sessions.values()}) == 5
    assert len(version.graphs) == 5 and version.provider == CUDA and version.provider_fallback is False
    # warm-up: each session warmup_runs times at its own bucket's shape, nothing else
    shape_of = {s.session.index: size for size, s in version.bucket_sessions.items()}
    assert sorted(cuda_box.runs_by) == sorted((index, size) for index, size in shape_of.items() for _ in range(2))
    cuda_box.runs_by.clear()
    for rows in (3, 5, 16, 1, 2):
        _add(client, rows)  # checks the answer: padding dropped, rows in order
    assert cuda_box.runs_by == [(version.bucket_sessions[size].session.index, size) for size in (4, 8, 16, 1, 2)]


def test_a_merged_batch_runs_on_its_buckets_session_with_padding_dropped_and_rows_in_order():
    per_bucket = {size: Recorder() for size in (1, 2, 4, 8)}
    shared = Recorder()

    async def body(batcher):
        requests = [np.full((rows, 2), i + 1, np.float32) for i, rows in enumerate((1, 2, 1, 1))]  # 5 rows: bucket 8
        answers = await asyncio.gather(*(batcher.infer({"x": r}, r.shape[0]) for r in requests))
        for r, (out, stats) in zip(requests, answers):
            np.testing.assert_array_equal(out["y"], r * 2)
            assert stats.batch_size == 5

    async def main():
        batcher = Batcher("m", shared, Batching(max_batch_size=8, max_queue_delay_ms=50), instances=1,
                          buckets=[1, 2, 4, 8], bucket_runners=per_bucket)
        batcher.start()
        try:
            await body(batcher)
        finally:
            await batcher.close()

    asyncio.run(main())
    assert shared.rows == [] and [per_bucket[size].rows for size in (1, 2, 4)] == [[], [], []]
    assert per_bucket[8].rows == [8]
    fed = per_bucket[8].feeds[0]
    np.testing.assert_array_equal(fed[:5, 0], [1, 2, 2, 3, 4])  # the requests' rows in arrival order
    assert (fed[5:] == fed[4]).all()  # then copies of the last row


def test_bucket_runner_chunks_run_on_the_largest_buckets_runner():
    per_bucket = {size: Recorder() for size in (1, 2, 4)}
    x = np.arange(10, dtype=np.float32).reshape(10, 1)
    out = BucketRunner(Recorder(), [1, 2, 4], per_bucket)({"x": x})
    assert per_bucket[4].rows == [4, 4] and per_bucket[2].rows == [2] and per_bucket[1].rows == []
    np.testing.assert_array_equal(out["y"], x * 2)


def test_batch_buckets_off_turns_them_off_on_cuda(cuda_box, make_client, gpu_repo):
    cuda_box.reported = [CUDA, CPU]
    client = make_client(models_dir=gpu_repo, batch_buckets="off", load_models=["add-sub"])
    version = client.app.state.repository.get("add-sub")
    assert version.batcher.buckets is None and version.bucket_sessions == {}
    assert len(cuda_box.created) == 1, "one session without buckets"
    assert set(cuda_box.runs) == {1}


def test_cpu_keeps_todays_behaviour_unless_buckets_are_on(make_client, gpu_repo, monkeypatch):
    runs = []
    real_run = OnnxRuntimeSession.run
    monkeypatch.setattr(OnnxRuntimeSession, "run", lambda self, feeds: runs.append(len(next(iter(feeds.values())))) or real_run(self, feeds))
    client = make_client(models_dir=gpu_repo, warmup_runs=1, load_models=["add-sub"], solo_session=False)
    version = client.app.state.repository.get("add-sub")
    assert version.batcher.buckets is None and version.bucket_sessions == {} and len(version.graphs) == 1
    assert set(runs) == {1}
    runs.clear()
    client = make_client(models_dir=gpu_repo, warmup_runs=1, load_models=["add-sub"], solo_session=False,
                         batch_buckets="on")
    version = client.app.state.repository.get("add-sub")
    # buckets on the CPU: one shared session warmed at every bucket (the CPU provider plans nothing per shape)
    assert version.bucket_sessions == {} and len(version.graphs) == 1
    assert sorted(runs) == [1, 2, 4, 8, 16]
    runs.clear()
    _add(client, 3)
    assert runs == [4]


def test_manifest_buckets_are_used_and_bad_ones_fail_the_load(cuda_box, make_client, tmp_path):
    cuda_box.reported = [CUDA, CPU]
    root = tmp_path / "models"
    write_model(root, "add-sub", add_sub(), batching={"max_batch_size": 16, "buckets": [4, 16]})
    write_model(root, "bad", add_sub(), batching={"max_batch_size": 4, "buckets": [2, 8]})
    client = make_client(models_dir=root)
    version = client.app.state.repository.get("add-sub")
    assert version.batcher.buckets == [4, 16]
    assert sorted(version.bucket_sessions) == [4, 16], "sessions only for the buckets the manifest lists"
    models = _models(client)
    assert models["bad"]["state"] == "UNAVAILABLE" and "larger than max_batch_size" in models["bad"]["reason"]
    _add(client, 1)


# ----- the start-up log -----

def test_runtime_summary():
    assert runtime.runtime_summary().startswith(f"onnxruntime {ort.__version__}, providers available: ")


def test_cuda_summary_is_none_on_a_cpu_box_and_guarded_on_a_cuda_one(monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CPU])
    assert runtime.cuda_summary() is None
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    summary = runtime.cuda_summary()  # no CUDA libraries here: says so instead of failing
    assert "CUDA runtime" in summary and "cuDNN" in summary and "onnxruntime build" in summary


def test_on_cuda_int8_matmul_graphs_are_opened_as_float_graphs(cuda_box, make_client, tmp_path):
    """CUDA has no DynamicQuantizeLinear kernel: under auto the session gets the rewritten graph (bytes), not the file."""
    from tests.onnx_models import quantized_mlp

    root = tmp_path / "models"
    write_model(root, "mlp", quantized_mlp()[1], batching={"max_batch_size": 4})
    client = make_client(models_dir=root)
    opened = [entry["path"] for entry in cuda_box.created]
    assert opened and all(isinstance(source, bytes) for source in opened)
    body = {"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [0.5] * 16}]}
    assert client.post("/v2/models/mlp/infer", json=body).status_code == 200
    cpu = make_client(models_dir=root, providers="cpu")
    assert cpu.get("/v2/models/mlp/ready").status_code == 200
    assert all(isinstance(entry["path"], str) for entry in cuda_box.created[len(opened):])
