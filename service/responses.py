"""JSON responses encoded with orjson (fast, and numpy-aware)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from fastapi.responses import Response, StreamingResponse


class JSONBytes(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


class GuardedStream(StreamingResponse):
    """A streamed response that runs `on_close` however the stream ends: finished, failed, or the client gone.

    When the client goes away Starlette cancels the task that sends the stream. If that task is parked in a
    socket drain rather than inside the body generator, the generator's own `finally` only runs when the
    garbage collector finds it, which on a quiet server can be never; work tied to the stream (decode rows)
    must not wait for that."""

    def __init__(self, content, on_close: Callable[[], None], **kwargs):
        super().__init__(content, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()
