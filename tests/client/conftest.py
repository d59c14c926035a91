"""Client fixtures: a client on the shared real server, sample images, and stub servers on MockTransport."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Callable

import httpx
import numpy as np
import pytest

from client import AsyncNeuroserveClient, NeuroserveClient
from client.images import png_bytes


@pytest.fixture(params=["sync", "async"])
def api(request, server) -> Callable:
    """api("method", *args) calls the method on the sync or the async client (each test runs with both)."""
    if request.param == "sync":
        with NeuroserveClient(server.url, timeout=30) as client:
            yield lambda name, *args, **kwargs: getattr(client, name)(*args, **kwargs)
        return

    def call(name, *args, **kwargs):
        async def run():
            async with AsyncNeuroserveClient(server.url, timeout=30) as client:
                return await getattr(client, name)(*args, **kwargs)
        return asyncio.run(run())

    yield call


@pytest.fixture
def ns(server):
    with NeuroserveClient(server.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def rgb_array() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)


@pytest.fixture(scope="session")
def png_file(tmp_path_factory, rgb_array) -> Path:
    path = tmp_path_factory.mktemp("images") / "cat.png"
    path.write_bytes(png_bytes(rgb_array))
    return path


class Stub:
    """A stub server: routes (method, path) to a handler, and records every request it saw."""

    def __init__(self, routes: dict[tuple[str, str], Callable[[httpx.Request], httpx.Response]]):
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        handler = self.routes.get((request.method, request.url.path))
        if handler is None:
            return httpx.Response(404, json={"error": f"no route {request.url.path}"})
        return handler(request)

    def body(self, index: int = -1) -> dict:
        return json.loads(self.requests[index].content)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def sse(*events: dict | str) -> bytes:
    """A server-sent-event body: one `data:` line per event (strings starting ':' are comments), blank lines between."""
    lines = [e if isinstance(e, str) and e.startswith(":") else f"data: {e if isinstance(e, str) else json.dumps(e)}"
             for e in events]
    return "".join(line + "\n\n" for line in lines).encode()


def chunk(text: str) -> dict:
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


def completion(text: str, model: str = "tiny-chat") -> dict:
    return {"object": "chat.completion", "model": model, "usage": {"prompt_tokens": 3, "completion_tokens": 2},
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}


def chat_route(request: httpx.Request) -> httpx.Response:
    """Echoes the last user message; streams it word by word when asked to."""
    body = json.loads(request.content)
    words = body["messages"][-1]["content"].split()
    if body.get("stream"):
        events = [chunk(w + " ") for w in words] + [": keep-alive", "[DONE]"]
        return httpx.Response(200, content=sse(*events), headers={"Content-Type": "text/event-stream"})
    return httpx.Response(200, json=completion(" ".join(words)))


def translate_route(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    return httpx.Response(200, json={"model": "tiny-mt", "version": "1",
                                     "translations": [f"[{body['target']}] {t}" for t in body["texts"]]})


@pytest.fixture
def stub() -> Stub:
    return Stub({("POST", "/v1/chat/completions"): chat_route, ("POST", "/v1/text/translate"): translate_route})
