"""Generation against a real server process: the official openai package, tritonclient, disconnects.

The shared server serves the tiny trained translator and chat model (tests/generation_models.py);
the disconnect test starts its own server with an untrained chat model that never ends its reply.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import time

import httpx
import numpy as np
import openai
import pytest
import tritonclient.http as httpclient

from tests.generation_models import build_chat, require_generation_models


@pytest.fixture(scope="module")
def generation_server(server, repo_dir):
    require_generation_models(repo_dir)
    return server


@pytest.fixture(scope="module")
def oai(generation_server):
    with openai.OpenAI(base_url=f"{generation_server.url}/v1", api_key="not-needed", max_retries=0, timeout=30) as client:
        yield client


def test_openai_models_list(oai):
    models = {m.id: m for m in oai.models.list()}
    assert {"tiny-chat", "tiny-translate", "add-sub"} <= set(models)
    assert models["tiny-chat"].object == "model" and models["tiny-chat"].owned_by == "neuroserve"
    assert isinstance(models["tiny-chat"].created, int)


def test_openai_chat_completion(oai):
    completion = oai.chat.completions.create(model="tiny-chat", temperature=0, seed=1,
                                             messages=[{"role": "system", "content": "be brief"},
                                                       {"role": "user", "content": "tell me a story"}])
    assert completion.object == "chat.completion" and completion.model == "tiny-chat"
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == "once upon a time there was a cat"
    assert choice.finish_reason == "stop"
    assert completion.usage.completion_tokens > 0
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    cut = oai.chat.completions.create(model="tiny-chat", messages=[{"role": "user", "content": "tell me a story"}],
                                      max_tokens=2, temperature=0, stop=["never"])
    assert cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens == 2


def test_openai_chat_stream(oai):
    stream = oai.chat.completions.create(model="tiny-chat", messages=[{"role": "user", "content": "how are you"}],
                                         temperature=0, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "i am fine thanks"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == 5 and chunks[-1].usage.prompt_tokens > 0


def test_openai_async_stream(generation_server):
    async def run():
        async with openai.AsyncOpenAI(base_url=f"{generation_server.url}/v1", api_key="x", max_retries=0) as client:
            stream = await client.chat.completions.create(
                model="tiny-chat", messages=[{"role": "user", "content": "what is your name"}], temperature=0, stream=True)
            return "".join([c.choices[0].delta.content or "" async for c in stream])

    assert asyncio.run(run()) == "my name is tiny"


def test_openai_errors(oai):
    with pytest.raises(openai.NotFoundError) as missing:
        oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert "unknown model 'gpt-4o'" in missing.value.message
    with pytest.raises(openai.UnprocessableEntityError) as invalid:
        oai.chat.completions.create(model="tiny-chat", messages=[{"role": "user", "content": "hi"}], temperature=5)
    assert invalid.value.body["param"] == "temperature"
    with pytest.raises(openai.UnprocessableEntityError, match="has room for"):
        oai.chat.completions.create(model="tiny-chat", messages=[{"role": "user", "content": "how are you " * 80}])


def test_tritonclient_translates_and_chats(generation_server):
    triton = httpclient.InferenceServerClient(generation_server.url.removeprefix("http://"), network_timeout=30)
    try:
        for binary in (True, False):
            texts = np.array([b"good morning", b"we are here"], dtype=object)
            tensor = httpclient.InferInput("text", [2], "BYTES")
            tensor.set_data_from_numpy(texts, binary_data=binary)
            out = triton.infer("tiny-translate", [tensor], outputs=[httpclient.InferRequestedOutput("text", binary_data=binary)])
            got = [v.decode() if isinstance(v, bytes) else v for v in out.as_numpy("text").tolist()]  # JSON gives str
            assert got == ["guten morgen", "wir sind hier"]
        tensor = httpclient.InferInput("text", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([b"hi"], dtype=object))
        assert triton.infer("tiny-chat", [tensor]).as_numpy("text").tolist() == [b"hello there"]
        assert triton.get_model_metadata("tiny-chat")["inputs"][0]["datatype"] == "BYTES"
    finally:
        triton.close()


def _metric(url: str, name: str, **labels) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and ",".join(sorted(match.group(1).split(","))) == wanted:
            return float(match.group(2))
    return 0.0


@pytest.fixture(scope="module")
def endless_server(tmp_path_factory, generation_server):
    """A chat model whose greedy replies never end (its end-of-turn embedding is zero): 3000 tokens unless stopped."""
    root = tmp_path_factory.mktemp("endless")
    build_chat(root, "endless-chat", train=False, silence_eos=True, max_new_tokens=3000, max_context_tokens=3100,
               d_model=64, layers=2)
    from tests.conftest import ServerProcess

    proc = ServerProcess(root, log_path=root / "server.log").wait_ready()
    yield proc
    proc.stop()


def _finished(url: str) -> str:
    """The finish counters and rows in use, for a failure message."""
    lines = httpx.get(f"{url}/metrics", timeout=10).text.splitlines()
    return "\n".join(line for line in lines if line.startswith(("neuroserve_generation_finished_total", "neuroserve_generation_rows")))


def _wait_for(predicate, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_a_client_that_disconnects_mid_stream_frees_its_work(endless_server):
    url = endless_server.url
    body = {"model": "endless-chat", "messages": [{"role": "user", "content": "hi"}], "temperature": 0, "stream": True}
    before = _metric(url, "neuroserve_generated_tokens_total", model="endless-chat")
    with httpx.Client(timeout=30) as http:
        with http.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            received = [next(lines) for _ in range(8)]
            assert any('"content"' in line for line in received)
        # leaving the block closes the connection mid-stream
    assert _wait_for(lambda: _metric(url, "neuroserve_generation_finished_total", model="endless-chat", reason="cancelled") == 1), \
        _finished(url)
    assert _metric(url, "neuroserve_generation_rows", model="endless-chat") == 0
    generated = _metric(url, "neuroserve_generated_tokens_total", model="endless-chat") - before
    assert generated < 3000, "the reply ran to max_tokens: the disconnect did not stop it"
    time.sleep(0.3)
    assert _metric(url, "neuroserve_generated_tokens_total", model="endless-chat") - before == generated  # nothing runs on

    # A non-streamed request whose client gives up is cancelled too.
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{url}/v1/chat/completions", json={**body, "stream": False}, timeout=0.3)
    assert _wait_for(lambda: _metric(url, "neuroserve_generation_finished_total", model="endless-chat", reason="cancelled") == 2), \
        _finished(url)
    assert _metric(url, "neuroserve_generation_rows", model="endless-chat") == 0


def test_concurrent_streams_share_decode_steps_and_the_server_stays_responsive(endless_server):
    url = endless_server.url
    body = {"model": "endless-chat", "messages": [{"role": "user", "content": "hi"}], "temperature": 0, "max_tokens": 400}

    def complete(i):
        with httpx.Client(timeout=60) as http:
            return http.post(f"{url}/v1/chat/completions", json={**body, "seed": i}).json()["usage"]["completion_tokens"]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(complete, i) for i in range(4)]
        assert _wait_for(lambda: _metric(url, "neuroserve_generation_rows", model="endless-chat") >= 2, 20)
        started = time.perf_counter()
        assert httpx.get(f"{url}/v2/health/live", timeout=5).status_code == 200
        assert time.perf_counter() - started < 0.5  # decoding happens off the event loop
        assert [f.result() for f in futures] == [400] * 4
    steps = _metric(url, "neuroserve_generation_step_rows_count", model="endless-chat")
    single = _metric(url, "neuroserve_generation_step_rows_bucket", model="endless-chat", le="1.0")
    assert steps - single >= 300  # most steps of the four requests ran together
