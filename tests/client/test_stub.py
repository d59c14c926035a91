"""Endpoints the server does not have yet (translate, chat), retries and headers, against stub transports."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from client import (AsyncNeuroserveClient, BadRequestError, ChatCompletion, ConflictError, NeuroserveClient,
                    NeuroserveConnectionError, NeuroserveTimeoutError, RetryPolicy, ServerError,
                    ServiceUnavailableError, Translation)
from tests.client.conftest import Stub, chunk, sse

FAST = RetryPolicy(max_retries=3, backoff_s=0.01, max_backoff_s=0.05, max_wait_s=2.0)


def sync_client(transport, **kwargs) -> NeuroserveClient:
    return NeuroserveClient("http://stub", transport=transport, retry=kwargs.pop("retry", FAST), **kwargs)


def run_async(transport, work, **kwargs):
    async def go():
        async with AsyncNeuroserveClient("http://stub", transport=transport, retry=kwargs.pop("retry", FAST), **kwargs) as ns:
            return await work(ns)
    return asyncio.run(go())


def test_translate_sends_the_contract_and_reads_the_answer(stub):
    with sync_client(stub.transport()) as ns:
        result = ns.translate(["good morning", "thanks"], target="fr", beam_size=4)
        assert isinstance(result, Translation) and result.translations == ["[fr] good morning", "[fr] thanks"]
        assert stub.body() == {"texts": ["good morning", "thanks"], "source": "en", "target": "fr", "beam_size": 4}
        ns.translate("hello", model="tiny-mt:2")
        assert stub.body() == {"texts": ["hello"], "source": "en", "target": "de", "model": "tiny-mt:2"}
    assert stub.requests[0].url.path == "/v1/text/translate"
    result = run_async(stub.transport(), lambda ns: ns.translate(["a"]))
    assert result.translations == ["[de] a"] and result.model == "tiny-mt" and result.version == "1"


def test_chat_completion_sync_and_async(stub):
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}]
    with sync_client(stub.transport()) as ns:
        reply = ns.chat(messages, model="tiny-chat", max_tokens=16, temperature=0.2, top_p=0.9, stop=["\n"])
    assert isinstance(reply, ChatCompletion) and reply.content == "hi there" and reply.finish_reason == "stop"
    assert reply.usage["completion_tokens"] == 2
    assert stub.body() == {"model": "tiny-chat", "messages": messages, "max_tokens": 16, "temperature": 0.2,
                           "top_p": 0.9, "stop": ["\n"]}
    reply = run_async(stub.transport(), lambda ns: ns.chat("just this"))
    assert reply.content == "just this" and stub.body()["messages"] == [{"role": "user", "content": "just this"}]


def test_chat_stream_yields_deltas_until_done(stub):
    with sync_client(stub.transport()) as ns:
        deltas = ns.chat("one two three", stream=True)
        assert not stub.requests  # sent when iteration starts
        assert list(deltas) == ["one ", "two ", "three "]
    assert stub.body()["stream"] is True and stub.requests[-1].headers["accept"] == "text/event-stream"

    async def collect(ns):
        return [delta async for delta in ns.chat([{"role": "user", "content": "a b"}], stream=True)]
    assert run_async(stub.transport(), collect) == ["a ", "b "]


def test_chat_stream_stops_at_done_and_raises_stream_errors():
    body = sse(chunk("kept"), {"choices": [{"delta": {}}]}, "[DONE]", chunk("after done"))
    errors = sse(chunk("partial"), {"error": {"message": "model crashed"}})
    answers = iter([body, errors])
    stub = Stub({("POST", "/v1/chat/completions"): lambda r: httpx.Response(200, content=next(answers))})
    with sync_client(stub.transport()) as ns:
        assert list(ns.chat("x", stream=True)) == ["kept"]
        stream = ns.chat("x", stream=True)
        assert next(stream) == "partial"
        with pytest.raises(ServerError, match="model crashed"):
            next(stream)
    from client._core import sse_delta

    with pytest.raises(ServerError, match="malformed event"):
        sse_delta("data: {not json")


def test_chat_stream_error_status_is_typed_sync_and_async():
    stub = Stub({("POST", "/v1/chat/completions"): lambda r: httpx.Response(422, json={"error": "messages: too long"})})
    with sync_client(stub.transport()) as ns, pytest.raises(BadRequestError, match="too long") as failed:
        list(ns.chat("x", stream=True))
    assert failed.value.status == 422

    async def collect(ns):
        return [d async for d in ns.chat("x", stream=True)]
    with pytest.raises(BadRequestError, match="too long"):
        run_async(stub.transport(), collect)


def flaky(statuses: list[int], retry_after: str | None = "0.1") -> Stub:
    """Answers with `statuses` in turn (then 200), recording when each attempt arrived."""
    answers = iter(statuses)

    def route(request: httpx.Request) -> httpx.Response:
        stub.times.append(time.monotonic())
        status = next(answers, 200)
        if status == 200:
            return httpx.Response(200, json={"object": "list", "data": []})
        headers = {"Retry-After": retry_after} if retry_after else {}
        return httpx.Response(status, json={"error": "queue full"}, headers=headers)

    stub = Stub({("GET", "/v1/models"): route})
    stub.times = []
    return stub


def test_retries_honour_retry_after_then_succeed():
    stub = flaky([503, 429])
    started = time.monotonic()
    with sync_client(stub.transport(), retry=RetryPolicy(max_retries=3, backoff_s=0.001)) as ns:
        assert len(ns.models()) == 0
    assert len(stub.requests) == 3
    gaps = [b - a for a, b in zip(stub.times, stub.times[1:])]
    assert all(gap >= 0.1 for gap in gaps), gaps  # Retry-After (0.1 s), not the 1 ms backoff
    assert time.monotonic() - started < 1.5

    stub = flaky([503])
    assert len(run_async(stub.transport(), lambda ns: ns.models())) == 0 and len(stub.requests) == 2
    assert stub.times[1] - stub.times[0] >= 0.1


def test_backoff_without_retry_after_grows_and_is_bounded():
    stub = flaky([503] * 10, retry_after=None)
    policy = RetryPolicy(max_retries=4, backoff_s=0.02, max_backoff_s=0.05, jitter=0.0)
    with sync_client(stub.transport(), retry=policy) as ns, pytest.raises(ServiceUnavailableError) as failed:
        ns.models()
    assert len(stub.requests) == 5 and failed.value.attempts == 5
    assert failed.value.status == 503 and failed.value.message == "queue full"
    gaps = [b - a for a, b in zip(stub.times, stub.times[1:])]
    assert gaps[0] >= 0.02 and gaps[1] >= 0.04 and gaps[2] >= 0.05 and max(gaps) < 0.5, gaps  # 20, 40, 50, 50 ms


def test_a_retry_after_beyond_the_total_wait_bound_fails_at_once():
    stub = flaky([503], retry_after="30")
    started = time.monotonic()
    with sync_client(stub.transport(), retry=RetryPolicy(max_wait_s=1.0)) as ns, \
            pytest.raises(ServiceUnavailableError) as failed:
        ns.models()
    assert time.monotonic() - started < 0.5 and len(stub.requests) == 1
    assert failed.value.retry_after == 30 and failed.value.status == 503


def test_client_errors_and_readiness_are_not_retried():
    stub = flaky([400])
    with sync_client(stub.transport()) as ns, pytest.raises(BadRequestError):
        ns.models()
    assert len(stub.requests) == 1
    not_ready = Stub({("GET", "/v2/health/live"): lambda r: httpx.Response(200, json={"live": True}),
                      ("GET", "/v2/health/ready"): lambda r: httpx.Response(
                          503, json={"ready": False, "loading": ["big"], "failed": {"bad": "no file"}})})
    with sync_client(not_ready.transport()) as ns:
        health = ns.health()
    assert health.live and not health.ready and health.loading == ["big"] and health.failed == {"bad": "no file"}
    assert len(not_ready.requests) == 2


def test_conflict_is_the_same_typed_error_over_rest_and_grpc():
    """409 (REST) and FAILED_PRECONDITION (gRPC, the server's mapping of 409) both raise ConflictError."""
    grpc = pytest.importorskip("grpc")
    from client.grpc_client import ERRORS

    stub = flaky([409])
    with sync_client(stub.transport()) as ns, pytest.raises(ConflictError) as raised:
        ns.models()
    assert raised.value.status == 409 and len(stub.requests) == 1  # not retried
    assert ERRORS[grpc.StatusCode.FAILED_PRECONDITION] == (ConflictError, 409)


def test_connection_errors_are_retried_then_typed():
    attempts = []

    def refuse(request):
        attempts.append(request)
        if len(attempts) < 3:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json={"object": "list", "data": []})

    with sync_client(httpx.MockTransport(refuse)) as ns:
        assert len(ns.models()) == 0 and len(attempts) == 3
    with sync_client(httpx.MockTransport(refuse), max_retries=0) as ns:
        attempts.clear()
        with pytest.raises(NeuroserveConnectionError, match="cannot reach http://stub"):
            ns.models()
        assert len(attempts) == 1

    def slow(request):
        attempts.append(request)
        raise httpx.ReadTimeout("timed out", request=request)

    attempts.clear()
    with sync_client(httpx.MockTransport(slow)) as ns, pytest.raises(NeuroserveTimeoutError):
        ns.models()
    assert len(attempts) == 1  # a slow answer is not retried


def test_api_key_and_url_from_arguments_or_environment(monkeypatch):
    stub = flaky([])
    with sync_client(stub.transport(), api_key="sk-test") as ns:
        ns.models()
    assert stub.requests[-1].headers["authorization"] == "Bearer sk-test"
    assert stub.requests[-1].headers["user-agent"].startswith("neuroserve-client/")

    monkeypatch.setenv("NEUROSERVE_URL", "http://from-env:9000/")
    monkeypatch.setenv("NEUROSERVE_API_KEY", "sk-env")
    with NeuroserveClient(transport=stub.transport()) as ns:
        assert ns.url == "http://from-env:9000"
        ns.models()
    assert str(stub.requests[-1].url) == "http://from-env:9000/v1/models"
    assert stub.requests[-1].headers["authorization"] == "Bearer sk-env"
    monkeypatch.delenv("NEUROSERVE_API_KEY")
    monkeypatch.delenv("NEUROSERVE_URL")
    with NeuroserveClient(transport=stub.transport()) as ns:
        assert ns.url == "http://127.0.0.1:8000"
        ns.models()
    assert "authorization" not in stub.requests[-1].headers


def test_infer_request_is_binary():
    import numpy as np

    from client.tensors import encode_request

    def identity(request):
        header_length = int(request.headers["inference-header-content-length"])
        header = json.loads(request.content[:header_length])
        assert header["parameters"] == {"binary_data_output": True}
        out = {"model_name": "m", "model_version": "3", "outputs": [
            {**spec, "name": "OUT_" + spec["name"]} for spec in header["inputs"]]}
        encoded = json.dumps(out).encode()
        return httpx.Response(200, content=encoded + request.content[header_length:],
                              headers={"Inference-Header-Content-Length": str(len(encoded))})

    stub = Stub({("POST", "/v2/models/my model/versions/3/infer"): identity})
    big_endian = np.arange(4, dtype=">i4").reshape(2, 2)
    with sync_client(stub.transport()) as ns:
        out = ns.infer("my model", {"x": big_endian, "s": np.array([b"\x00\xff", b"ok"])}, version=3)
    assert out["OUT_x"].dtype == np.int32 and out["OUT_x"].tolist() == [[0, 1], [2, 3]]
    assert out["OUT_s"].tolist() == [b"\x00\xff", b"ok"]
    assert stub.requests[0].url.raw_path == b"/v2/models/my%20model/versions/3/infer"
    body, length = encode_request({"x": np.zeros((1,), np.float32)}, outputs=["y"])
    assert json.loads(body[:length])["outputs"] == [{"name": "y", "parameters": {"binary_data": True}}]
