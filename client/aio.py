"""The asyncio client: `AsyncNeuroserveClient` (the same methods as `NeuroserveClient`, awaited)."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Generator

import httpx

from client._core import Call, _Endpoints, sse_delta


class AsyncNeuroserveClient(_Endpoints):
    """Asyncio client; every endpoint method returns an awaitable, except chat(stream=True), which
    returns an async iterator of text deltas. Use it with ``async with`` or call aclose().

    >>> async with AsyncNeuroserveClient() as ns:
    ...     (await ns.models()).data
    """

    _http_class = httpx.AsyncClient

    async def __aenter__(self) -> "AsyncNeuroserveClient":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _attempt(self, call: Call) -> httpx.Response | Exception:
        try:
            response = await self._http.send(call.build(self._http), stream=call.stream)
        except httpx.TransportError as exc:
            return exc
        if call.stream and response.is_error:
            await response.aread()
        return response

    async def _execute(self, call: Call) -> Any:
        retries = self.retry.start()
        outcome = await self._attempt(call)
        while (delay := retries.delay_after(outcome, call.retry_allowed(outcome))) is not None:
            await asyncio.sleep(delay)
            outcome = await self._attempt(call)
        return call.finish(outcome, retries, self.url)

    async def _run(self, plan: Generator[Call, Any, Any]) -> Any:
        try:
            call = next(plan)
            while True:
                call = plan.send(await self._execute(call))
        except StopIteration as done:
            return done.value

    async def _stream_deltas(self, call: Call) -> AsyncIterator[str]:
        response = await self._execute(call)
        try:
            async for line in response.aiter_lines():
                delta = sse_delta(line)
                if delta is None:
                    break
                if delta:
                    yield delta
        finally:
            await response.aclose()
