"""Work handed between worker threads and the event loop.

Every wake-up of the loop from another thread (``call_soon_threadsafe``: a self-pipe write, a loop turn, the
GIL handed over) costs time on the loop that every request waits for. Results and events from the decode
engines and the session threads therefore reach a loop through one mailbox per loop, one wake-up per burst.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import weakref
from typing import Any, Callable


# Tokenizing more text than this inline would hold the event loop noticeably: a thread does it then.
INLINE_CHARS = 20_000


async def off_loop(prepare: Callable[[], Any], chars: int) -> Any:
    """prepare() (tokenizing, building jobs) inline for short texts, on a thread for long ones: every task that
    tokenizes request text (sentiment, translation, chat) decides by this one rule."""
    return await asyncio.to_thread(prepare) if chars > INLINE_CHARS else prepare()


class LoopMailbox:
    """Callbacks posted from any thread, run on one event loop in the order posted, in bursts."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._lock = threading.Lock()
        self._items: list[tuple[Callable, tuple]] = []
        self._scheduled = False

    def post(self, callback: Callable, *args: Any) -> None:
        if self._loop.is_closed():  # nobody is listening any more
            return
        with self._lock:
            self._items.append((callback, args))
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # closed in between
            with self._lock:
                self._items.clear()

    def _deliver(self) -> None:
        with self._lock:
            items, self._items, self._scheduled = self._items, [], False
        for callback, args in items:
            callback(*args)


_mailboxes: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopMailbox]" = weakref.WeakKeyDictionary()
_mailboxes_lock = threading.Lock()


def mailbox_for(loop: asyncio.AbstractEventLoop) -> LoopMailbox:
    with _mailboxes_lock:
        box = _mailboxes.get(loop)
        if box is None:
            box = _mailboxes[loop] = LoopMailbox(loop)
        return box


class RunThreads:
    """`count` threads that run a batcher's session calls: a C queue in, the result back through the loop's
    mailbox. `loop.run_in_executor` did the same through ThreadPoolExecutor.submit and two chained futures,
    8% of the event loop's GIL time under the soak (py-spy)."""

    def __init__(self, count: int, name: str):
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._serve, name=f"{name}_{i}", daemon=True) for i in range(count)]
        for thread in self._threads:
            thread.start()

    def run(self, fn: Callable, arg) -> asyncio.Future:
        """fn(arg) on one of the threads; the returned future settles on the calling loop."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._inbox.put((mailbox_for(loop), future, fn, arg))
        return future

    def shutdown(self) -> None:
        for _ in self._threads:
            self._inbox.put(None)

    def _serve(self) -> None:
        while (work := self._inbox.get()) is not None:
            mailbox, future, fn, arg = work
            try:
                result, error = fn(arg), None
            except BaseException as exc:  # handed to the awaiting request, as run_in_executor does
                result, error = None, exc
            mailbox.post(_settle, future, result, error)


def _settle(future: asyncio.Future, result, error: BaseException | None) -> None:
    if future.done():  # cancelled while it ran
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
