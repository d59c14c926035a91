"""The data plane (service/dataplane.py) without HTTP: the protocol's logic on decoded requests."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from service.codecs import InferInput, InferRequest, RequestedOutput
from service.dataplane import DataPlane
from service.errors import BadRequest, Conflict, NotFound, ServiceUnavailable
from service.metrics import Metrics
from service.repository import ModelRepository
from service.settings import Settings


def _plane(repo_dir, workers=None) -> DataPlane:
    settings = Settings(models_dir=repo_dir, load_models=["add-sub", "identity-bytes", "tiny-cnn"], log_json=False,
                        warmup_runs=0)
    metrics = Metrics()
    return DataPlane(ModelRepository(settings, metrics), settings, metrics, workers)


def _add_sub(rows: int = 2, outputs=None) -> InferRequest:
    a = np.arange(rows * 4, dtype=np.float32).reshape(rows, 4)
    return InferRequest("req-1", [InferInput("a", "FP32", [rows, 4], a), InferInput("b", "FP32", [rows, 4], np.ones_like(a))],
                        outputs, binary_output_default=False)


def test_health_metadata_infer_stats_and_errors_without_http(repo_dir):
    async def scenario():
        plane = _plane(repo_dir)
        ok, body = plane.ready()
        assert not ok and plane.live() == {"live": True}
        await plane.repository.load_all()
        try:
            assert plane.ready() == (True, {"ready": True, "loading": [], "failed": {}})
            assert plane.server_metadata()["extensions"][0] == "binary_tensor_data"
            metadata = plane.model_metadata(plane.model("add-sub"))
            assert metadata["inputs"] == [{"name": "a", "datatype": "FP32", "shape": [-1, 4]},
                                          {"name": "b", "datatype": "FP32", "shape": [-1, 4]}]
            assert plane.model_config(plane.model("add-sub"))["input"][0] == {"name": "a", "data_type": "TYPE_FP32", "dims": [4]}
            model, outputs = await plane.infer("add-sub", None, _add_sub(outputs=[RequestedOutput("diff", True)]))
            assert model.version == "1" and [(name, binary) for name, _, binary in outputs] == [("diff", True)]
            np.testing.assert_array_equal(outputs[0][1], np.arange(8, dtype=np.float32).reshape(2, 4) - 1)
            _, strings = await plane.infer("identity-bytes", "1", InferRequest(
                None, [InferInput("INPUT", "BYTES", [1, 2], np.array([[b"a", "\u00fc".encode()]], dtype=object))], None, False))
            assert strings[0][1].tolist() == [["a", "\u00fc"]]
            stats = plane.model_stats("add-sub")["model_stats"][0]
            assert stats["inference_count"] == 1 and stats["batch_stats"][0]["batch_size"] == 2

            wrong = InferRequest(None, [InferInput("a", "FP64", [1, 4], np.zeros((1, 4)))], None, False)
            with pytest.raises(BadRequest, match="input 'a': datatype FP64, model expects FP32"):
                await plane.infer("add-sub", None, wrong)
            with pytest.raises(BadRequest, match="missing inputs \\['b'\\]"):
                await plane.infer("add-sub", None, InferRequest(None, _add_sub().inputs[:1], None, False))
            with pytest.raises(BadRequest, match="unknown outputs \\['nope'\\]"):
                await plane.infer("add-sub", None, _add_sub(outputs=[RequestedOutput("nope", False)]))
            with pytest.raises(NotFound, match="unknown model 'nope'"):
                plane.model_metadata(plane.model("nope"))
            with pytest.raises(NotFound, match="has no version '7'"):
                plane.model("add-sub", "7")
            assert plane.model_ready("add-sub") == (True, None)
            assert {"add-sub", "identity-bytes", "tiny-cnn"} <= {row["name"] for row in plane.index()}
            assert await plane.unload("tiny-cnn") == {"name": "tiny-cnn", "state": "UNLOADED"}
            with pytest.raises(NotFound):
                plane.model("tiny-cnn")
            assert (await plane.load("tiny-cnn"))["state"] == "READY"
        finally:
            await plane.repository.close()

    asyncio.run(scenario())


def test_generation_waits_are_bounded_and_cancelled_when_the_caller_goes(repo_dir):
    from service.dataplane import ClientClosedRequest, await_or_cancel

    async def scenario():
        never = asyncio.Event()
        with pytest.raises(ServiceUnavailable, match="no answer within 0.05 s"):
            await await_or_cancel(never.wait(), 0.05)
        with pytest.raises(ClientClosedRequest):
            await await_or_cancel(never.wait(), 5, asyncio.sleep(0.01))
        assert await await_or_cancel(asyncio.sleep(0, "done"), 5, never.wait()) == "done"

    asyncio.run(scenario())


def test_repository_changes_are_refused_with_several_workers(repo_dir):
    class TwoWorkers:
        size, pid = 2, 1

    plane = _plane(repo_dir, TwoWorkers())
    with pytest.raises(Conflict, match="while 2 worker processes serve"):
        asyncio.run(plane.load("add-sub"))
