"""The blocking client: `NeuroserveClient`."""

from __future__ import annotations

import time
from itertools import takewhile
from typing import Any, Generator, Iterator

import httpx

from client._core import Call, _Endpoints, sse_delta


class NeuroserveClient(_Endpoints):
    """Blocking client for a Neuroserve server; use it as a context manager or call close().

    >>> with NeuroserveClient("http://127.0.0.1:8000") as ns:
    ...     ns.sentiment(["what a great film"]).results[0].label
    """

    _http_class = httpx.Client

    def __enter__(self) -> "NeuroserveClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _attempt(self, call: Call) -> httpx.Response | Exception:
        try:
            response = self._http.send(call.build(self._http), stream=call.stream)
        except httpx.TransportError as exc:
            return exc
        if call.stream and response.is_error:
            response.read()  # the error message, and the connection goes back to the pool
        return response

    def _execute(self, call: Call) -> Any:
        retries = self.retry.start()
        outcome = self._attempt(call)
        while (delay := retries.delay_after(outcome, call.retry_allowed(outcome))) is not None:
            time.sleep(delay)
            outcome = self._attempt(call)
        return call.finish(outcome, retries, self.url)

    def _run(self, plan: Generator[Call, Any, Any]) -> Any:
        try:
            call = next(plan)
            while True:
                call = plan.send(self._execute(call))
        except StopIteration as done:
            return done.value

    def _stream_deltas(self, call: Call) -> Iterator[str]:
        response = self._execute(call)
        try:
            yield from filter(None, takewhile(lambda delta: delta is not None, map(sse_delta, response.iter_lines())))
        finally:
            response.close()
