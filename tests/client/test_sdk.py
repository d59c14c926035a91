"""Every SDK method against the real server process, through the sync and the async client."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
from PIL import Image

from client import (BadRequestError, NeuroserveConnectionError, NeuroserveClient, NotFoundError,
                    ServiceUnavailableError, UnsupportedMediaTypeError)
from client.results import ClassifyResult, Forecast, Health, ModelList, SentimentResult, TumorResult
from tests.onnx_models import CIFAR_LABELS


def test_classify_images_from_path_bytes_pil_and_numpy(api, png_file, rgb_array):
    images = [png_file, str(png_file), png_file.read_bytes(), Image.fromarray(rgb_array), rgb_array]
    result = api("classify_images", images, top_k=3, model="tiny-cnn")
    assert isinstance(result, ClassifyResult) and result.model == "tiny-cnn" and result.version == "1"
    assert len(result.results) == len(images)
    for row in result.results:
        assert row.label in CIFAR_LABELS and len(row.top_k) == 3 and row.top_k[0].label == row.label
    # the same pixels, however they were given, classify the same
    assert len({(r.label, round(r.score, 5)) for r in result.results}) == 1
    assert result.raw["results"][0]["label"] == result.results[0].label


def test_classify_grey_and_rgba_arrays_and_a_batch(api, rgb_array):
    grey = rgb_array[:, :, 0]
    rgba = np.dstack([rgb_array, np.full(rgb_array.shape[:2], 255, np.uint8)])
    result = api("classify_images", [grey, grey[:, :, None], rgba])
    assert len(result.results) == 3 and len(result.results[0].top_k) == 5  # server default top_k
    batch = api("classify_images", np.stack([rgb_array, rgb_array]), top_k=1)
    assert len(batch.results) == 2


def test_detect_tumor(api, png_file):
    result = api("detect_tumor", [png_file, png_file])
    assert isinstance(result, TumorResult) and result.model == "tiny-tumor" and len(result.results) == 2
    row = result.results[0]
    assert isinstance(row.tumor, bool) and 0 <= row.probability <= 1 and row.threshold == 0.5
    assert row.tumor == (row.probability >= row.threshold)


def test_sentiment(api):
    result = api("sentiment", ["good great", "bad awful"])
    assert isinstance(result, SentimentResult) and result.model == "tiny-sentiment"
    assert [r.label for r in result.results] == ["positive", "negative"]
    assert api("sentiment", "good").results[0].label == "positive"  # one text as a plain string


def test_forecast_traffic_with_start_or_timestamps(api):
    history = np.linspace(100, 2000, 200)
    result = api("forecast_traffic", history, start=datetime(2024, 1, 1), horizon=6)
    assert isinstance(result, Forecast) and result.model == "tiny-traffic"
    assert len(result.forecast) == len(result.lower) == len(result.upper) == 6 and result.interval == 0.8
    assert all(lo <= mid <= hi for lo, mid, hi in zip(result.lower, result.forecast, result.upper))
    assert result.timestamps[0] == "2024-01-09T08:00:00"  # 200 hours after the start
    hourly = [datetime(2024, 1, 1) + timedelta(hours=i) for i in range(168)]
    by_stamps = api("forecast_traffic", list(history[:168]), timestamps=hourly)
    assert len(by_stamps.forecast) == 24 and by_stamps.timestamps[0] == "2024-01-08T00:00:00"


def test_forecast_price(api):
    result = api("forecast_price", [100.0 + i for i in range(60)], horizon=3)
    assert result.model == "tiny-prices" and len(result.forecast) == 3 and result.timestamps is None


def test_models_and_health(api):
    models = api("models")
    assert isinstance(models, ModelList) and models.get("tiny-cnn").task == "image-classification"
    assert models.get("tiny-cnn").ready and models.get("identity-bytes") is not None
    assert "tiny-sentiment" in [m.id for m in models]
    health = api("health")
    assert isinstance(health, Health) and health.live and health.ready and health.failed == {}


DTYPE_CASES = {
    "fp32": np.arange(6, dtype=np.float32).reshape(2, 3) / 7,
    "fp16": np.array([[0.5, -1.25, 65504]], dtype=np.float16),
    "fp64": np.array([[np.pi, -np.e]]),
    "int8": np.array([[-128, 0, 127]], dtype=np.int8),
    "int64": np.array([[-(2**62), 2**62]], dtype=np.int64),
    "uint64": np.array([[0, 2**64 - 1]], dtype=np.uint64),
    "uint16": np.array([[1, 65535]], dtype=np.uint16),
    "bool": np.array([[True, False, True]]),
}


@pytest.mark.parametrize("name", sorted(DTYPE_CASES))
def test_infer_binary_round_trip(api, name):
    data = DTYPE_CASES[name]
    out = api("infer", f"identity-{name}", {"INPUT": data})
    assert set(out) == {"OUTPUT"} and out["OUTPUT"].dtype == data.dtype
    np.testing.assert_array_equal(out["OUTPUT"], data)


def test_infer_bytes_and_versions_and_chosen_outputs(api):
    strings = np.array([["héllo", ""], ["a" * 300, "zz"]], dtype=object)
    out = api("infer", "identity-bytes", {"INPUT": strings}, version=1)["OUTPUT"]
    assert out.shape == (2, 2) and out.dtype == object
    assert out.tolist() == [[s.encode() for s in row] for row in strings]
    assert api("infer", "identity-bytes", {"INPUT": np.array([["x"]])})["OUTPUT"][0, 0] == b"x"  # numpy str array
    a, b = np.ones((3, 4), np.float32), np.full((3, 4), 2, np.float32)
    out = api("infer", "add-sub", {"a": a, "b": b}, outputs=["diff"])
    assert list(out) == ["diff"] and (out["diff"] == -1).all()


def test_errors_carry_status_and_the_servers_message(api, png_file):
    with pytest.raises(NotFoundError) as unknown:
        api("sentiment", ["good"], model="no-such-model")
    assert unknown.value.status == 404 and "no-such-model" in unknown.value.message
    with pytest.raises(NotFoundError):
        api("infer", "no-such-model", {"INPUT": np.zeros((1, 1), np.float32)})
    with pytest.raises(UnsupportedMediaTypeError) as not_image:
        api("classify_images", [b"this is not an image"])
    assert not_image.value.status == 415 and "PNG, JPEG or WebP" in not_image.value.message
    with pytest.raises(BadRequestError) as truncated:
        api("classify_images", [png_file.read_bytes()[:60]])
    assert truncated.value.status == 400 and "could not be decoded" in truncated.value.message
    with pytest.raises(BadRequestError) as empty:
        api("sentiment", ["   "])
    assert empty.value.status == 422 and "texts" in empty.value.message
    with pytest.raises(BadRequestError) as wrong_dtype:
        api("infer", "identity-fp32", {"INPUT": np.zeros((1, 2), np.int32)})
    assert wrong_dtype.value.status == 400 and "datatype INT32" in wrong_dtype.value.message
    assert wrong_dtype.value.request_id


def test_local_input_errors_are_raised_before_sending(ns):
    with pytest.raises(TypeError, match="uint8"):
        ns.classify_images([np.zeros((4, 4, 3), np.float32)])
    with pytest.raises(ValueError, match="HxW"):
        ns.classify_images([np.zeros((4, 4, 2), np.uint8)])
    with pytest.raises(TypeError, match="unsupported image type"):
        ns.classify_images([1.5])
    with pytest.raises(FileNotFoundError):
        ns.classify_images(["/no/such/file.png"])


def test_api_key_is_sent_and_a_wrong_one_is_a_typed_error(start_server):
    from client import AuthenticationError

    secured = start_server(env={"NEUROSERVE_API_KEYS": "client-key-1"})
    with NeuroserveClient(secured.url) as anonymous, pytest.raises(AuthenticationError) as refused:
        anonymous.models()
    assert refused.value.status == 401 and "API key" in refused.value.message
    with NeuroserveClient(secured.url, api_key="client-key-1") as keyed:
        assert keyed.models().get("tiny-cnn") is not None
        assert keyed.health().ready


def test_unreachable_server_is_a_connection_error():
    from client import RetryPolicy
    from tests.conftest import free_port

    with NeuroserveClient(f"http://127.0.0.1:{free_port()}", retry=RetryPolicy(max_retries=1, backoff_s=0.01)) as ns:
        with pytest.raises(NeuroserveConnectionError, match="cannot reach") as failed:
            ns.models()
    assert isinstance(failed.value, ConnectionError) and failed.value.status is None
    assert not isinstance(failed.value, ServiceUnavailableError)


@pytest.fixture
def generation(server, repo_dir):
    from tests.generation_models import require_generation_models

    require_generation_models(repo_dir)
    return server


def test_translate_against_the_real_server(api, generation):
    from client.results import Translation

    result = api("translate", ["good morning", "thank you"], source="en", target="de", beam_size=2)
    assert isinstance(result, Translation) and result.model == "tiny-translate" and result.version == "1"
    assert result.translations == ["guten morgen", "danke schön"]
    assert api("translate", "good night", model="tiny-translate").translations == ["gute nacht"]  # one plain string
    with pytest.raises(BadRequestError) as unsupported:
        api("translate", ["hi"], target="fr")
    assert unsupported.value.status == 422 and "no translation model for en->fr" in unsupported.value.message


def test_chat_against_the_real_server(api, generation):
    from client.results import ChatCompletion

    reply = api("chat", "hi", temperature=0)
    assert isinstance(reply, ChatCompletion) and reply.model == "tiny-chat"
    assert reply.content == "hello there" and reply.finish_reason == "stop" and reply.usage["completion_tokens"] == 3
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"},
               {"role": "user", "content": "bye"}]
    assert api("chat", history, model="tiny-chat", temperature=0, max_tokens=10).content == "goodbye friend"
    story = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "tell me a story"}]
    assert api("chat", story, temperature=0, stop=["time"]).content == "once upon a "
    with pytest.raises(NotFoundError) as unknown:
        api("chat", "hi", model="gpt-4o")  # the server answers in OpenAI's error shape; the SDK reads it
    assert unknown.value.status == 404 and "unknown model 'gpt-4o'" in unknown.value.message


def test_chat_stream_against_the_real_server_sync_and_async(generation):
    import asyncio

    from client import AsyncNeuroserveClient

    with NeuroserveClient(generation.url, timeout=30) as ns:
        deltas = list(ns.chat("how are you", stream=True, temperature=0))
    assert "".join(deltas) == "i am fine thanks" and len(deltas) >= 2

    async def stream():
        async with AsyncNeuroserveClient(generation.url, timeout=30) as ns:
            return [d async for d in ns.chat("what is your name", stream=True, temperature=0)]

    assert "".join(asyncio.run(stream())) == "my name is tiny"
