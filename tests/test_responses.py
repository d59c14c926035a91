"""Response classes of service/responses.py."""

from __future__ import annotations

import asyncio

from service.responses import GuardedStream


def test_a_guarded_stream_runs_its_close_hook_when_the_client_leaves_during_a_drain():
    """The client goes away while the sender waits for the socket to drain (a slow reader's buffers are
    full): Starlette cancels the sender outside the body generator, so the generator's own finally does
    not run; the stream's close hook (which frees the request's decode rows) must."""
    hooks, generator_finally = [], []

    async def body():
        try:
            while True:
                yield b"data: token\n\n"
        finally:
            generator_finally.append(True)

    async def main():
        socket_full, client_gone = asyncio.Event(), asyncio.Event()

        async def send(message):
            if message["type"] == "http.response.body":
                await socket_full.wait()  # never drains

        async def receive():
            await client_gone.wait()
            return {"type": "http.disconnect"}

        response = GuardedStream(body(), on_close=lambda: hooks.append(True), media_type="text/event-stream")
        sending = asyncio.create_task(response({"type": "http", "asgi": {"spec_version": "2.3"}}, receive, send))
        await asyncio.sleep(0.05)
        assert not hooks
        client_gone.set()
        await asyncio.wait_for(sending, 5)
        assert hooks == [True]
        assert not generator_finally, "the generator was closed after all: this test no longer shows the drain case"

    asyncio.run(main())
