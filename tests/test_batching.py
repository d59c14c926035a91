"""The dynamic batcher: coalescing, own rows back, padding, bounded queue, failure isolation."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from service.batching import Batcher, RunTracker
from service.errors import BadRequest, InferenceFailed, ServiceUnavailable
from service.manifest import Batching


class RecordingRunner:
    """Doubles its input and records every batch it ran."""

    def __init__(self, delay_s: float = 0.0, fail_on: float | None = None):
        self.batches: list[int] = []
        self.delay_s = delay_s
        self.fail_on = fail_on
        self.threads: set[str] = set()

    def __call__(self, feeds):
        self.threads.add(threading.current_thread().name)
        x = feeds["x"]
        self.batches.append(x.shape[0])
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail_on is not None and (x == self.fail_on).any():
            raise RuntimeError("poisoned row")
        return {"y": x * 2, "lengths": (x != 0).sum(axis=tuple(range(1, x.ndim)))}


def run(coro):
    return asyncio.run(coro)


async def _with_batcher(policy: Batching, runner, body):
    batcher = Batcher("m", runner, policy)
    batcher.start()
    try:
        return await body(batcher)
    finally:
        await batcher.close()


def test_concurrent_requests_share_a_run_and_get_their_own_rows():
    runner = RecordingRunner()

    async def body(batcher):
        rows = [np.full((i % 3 + 1, 4), i, dtype=np.float32) for i in range(12)]
        results = await asyncio.gather(*(batcher.infer({"x": r}, r.shape[0]) for r in rows))
        for r, (outputs, stats) in zip(rows, results):
            np.testing.assert_array_equal(outputs["y"], r * 2)
            assert stats.batch_size >= r.shape[0]
        return results

    results = run(_with_batcher(Batching(max_batch_size=64, max_queue_delay_ms=50), runner, body))
    assert len(runner.batches) < 12, "requests were not coalesced"
    assert sum(runner.batches) == sum(i % 3 + 1 for i in range(12))
    assert sum(1 for _, s in results if s.leader) == len(runner.batches)
    assert all(name.startswith("ort-") for name in runner.threads), "session.run must run off the event loop"


def test_max_batch_size_is_respected():
    runner = RecordingRunner()

    async def body(batcher):
        await asyncio.gather(*(batcher.infer({"x": np.ones((1, 2), np.float32)}, 1) for _ in range(20)))

    run(_with_batcher(Batching(max_batch_size=4, max_queue_delay_ms=20), runner, body))
    assert max(runner.batches) <= 4
    assert sum(runner.batches) == 20


def test_variable_length_inputs_are_padded_per_batch_and_answers_stay_exact():
    runner = RecordingRunner()

    async def body(batcher):
        seqs = [np.arange(1, n + 1, dtype=np.int64)[None, :] for n in (3, 7, 1, 5)]
        results = await asyncio.gather(*(batcher.infer({"x": s}, 1) for s in seqs))
        for s, (outputs, _) in zip(seqs, results):
            assert outputs["lengths"].tolist() == [s.shape[1]]
            # Padded output: the request's own values first, then the pad value.
            np.testing.assert_array_equal(outputs["y"][0, : s.shape[1]], s[0] * 2)
        return results

    run(_with_batcher(Batching(max_batch_size=8, max_queue_delay_ms=50, pad_inputs={"x": 0}), runner, body))
    assert runner.batches == [4]


def test_incompatible_shapes_run_in_separate_batches():
    runner = RecordingRunner()

    async def body(batcher):
        a = batcher.infer({"x": np.ones((1, 3), np.float32)}, 1)
        b = batcher.infer({"x": np.ones((1, 5), np.float32)}, 1)
        (out_a, _), (out_b, _) = await asyncio.gather(a, b)
        assert out_a["y"].shape == (1, 3) and out_b["y"].shape == (1, 5)

    run(_with_batcher(Batching(max_batch_size=8, max_queue_delay_ms=20), runner, body))
    assert sorted(runner.batches) == [1, 1]


def test_zero_delay_does_not_wait_and_zero_batch_size_runs_one_by_one():
    runner = RecordingRunner()

    async def body(batcher):
        started = time.perf_counter()
        await batcher.infer({"x": np.ones((1, 2), np.float32)}, 1)
        return time.perf_counter() - started

    assert run(_with_batcher(Batching(max_batch_size=8, max_queue_delay_ms=0), runner, body)) < 0.2

    single = RecordingRunner()

    async def many(batcher):
        await asyncio.gather(*(batcher.infer({"x": np.ones((2, 2), np.float32)}, 2) for _ in range(5)))

    run(_with_batcher(Batching(max_batch_size=0, max_queue_delay_ms=50), single, many))
    assert single.batches == [2] * 5


def test_full_queue_answers_503_with_retry_after():
    runner = RecordingRunner(delay_s=0.2)

    async def body(batcher):
        first = batcher.submit({"x": np.ones((1, 1), np.float32)}, 1)
        await asyncio.sleep(0.05)  # the worker is now busy in the slow run
        queued = [batcher.submit({"x": np.ones((1, 1), np.float32)}, 1) for _ in range(2)]
        with pytest.raises(ServiceUnavailable) as caught:
            batcher.submit({"x": np.ones((1, 1), np.float32)}, 1)
        assert caught.value.headers["Retry-After"]
        await asyncio.gather(first, *queued)

    run(_with_batcher(Batching(max_batch_size=1, max_queue_delay_ms=0, max_queue_size=2), runner, body))


def test_a_request_over_max_batch_size_is_a_400():
    async def body(batcher):
        with pytest.raises(BadRequest, match="max_batch_size"):
            batcher.submit({"x": np.ones((5, 1), np.float32)}, 5)

    run(_with_batcher(Batching(max_batch_size=4), RecordingRunner(), body))


def test_a_failing_run_fails_its_batch_only_and_the_batcher_keeps_serving():
    runner = RecordingRunner(fail_on=-1.0)

    async def body(batcher):
        with pytest.raises(InferenceFailed, match="poisoned row"):
            await batcher.infer({"x": np.full((1, 2), -1.0, np.float32)}, 1)
        outputs, _ = await batcher.infer({"x": np.ones((1, 2), np.float32)}, 1)
        np.testing.assert_array_equal(outputs["y"], 2 * np.ones((1, 2)))

    run(_with_batcher(Batching(max_batch_size=4, max_queue_delay_ms=0), runner, body))


def test_a_request_that_fails_a_merged_run_gets_the_error_alone_and_the_others_their_answers():
    runner = RecordingRunner(delay_s=0.02, fail_on=-1.0)

    async def body(batcher):
        rows = [np.full((1, 2), -1.0 if i == 2 else i, np.float32) for i in range(6)]
        results = await asyncio.gather(*(batcher.infer({"x": r}, 1) for r in rows), return_exceptions=True)
        assert isinstance(results[2], InferenceFailed) and "poisoned row" in str(results[2])
        for i, result in enumerate(results):
            if i != 2:
                np.testing.assert_array_equal(result[0]["y"], rows[i] * 2)
        assert max(runner.batches) > 1  # they did share a run before the culprit was found

    run(_with_batcher(Batching(max_batch_size=8, max_queue_delay_ms=30), runner, body))


def test_onnxruntime_invalid_argument_at_run_time_is_the_requests_fault():
    from service.batching import run_error

    InvalidArgument = type("InvalidArgument", (Exception,), {})  # onnxruntime's pybind class of that name
    assert isinstance(run_error("m", InvalidArgument("Gather: indices element out of data bounds")), BadRequest)
    assert isinstance(run_error("m", RuntimeError("CUDA failure 2: out of memory")), InferenceFailed)
    unavailable = ServiceUnavailable("draining")
    assert run_error("m", unavailable) is unavailable


def test_close_drains_queued_requests_then_refuses_new_ones():
    runner = RecordingRunner(delay_s=0.05)

    async def body():
        batcher = Batcher("m", runner, Batching(max_batch_size=1, max_queue_delay_ms=0))
        batcher.start()
        futures = [batcher.submit({"x": np.full((1, 1), i, np.float32)}, 1) for i in range(4)]
        await batcher.close()
        results = await asyncio.gather(*futures)
        assert [float(o["y"][0, 0]) for o, _ in results] == [0.0, 2.0, 4.0, 6.0]
        with pytest.raises(ServiceUnavailable):
            batcher.submit({"x": np.ones((1, 1), np.float32)}, 1)

    run(body())


def test_a_cancelled_request_is_skipped():
    runner = RecordingRunner(delay_s=0.1)

    async def body(batcher):
        busy = batcher.submit({"x": np.ones((1, 1), np.float32)}, 1)
        await asyncio.sleep(0.02)
        doomed = batcher.submit({"x": np.full((1, 1), 7, np.float32)}, 1)
        doomed.cancel()
        await busy
        await batcher.infer({"x": np.ones((1, 1), np.float32)}, 1)

    run(_with_batcher(Batching(max_batch_size=1, max_queue_delay_ms=0), runner, body))
    assert runner.batches == [1, 1]


def test_instances_run_batches_in_parallel():
    runner = RecordingRunner(delay_s=0.3)

    async def body():
        batcher = Batcher("m", runner, Batching(max_batch_size=1, max_queue_delay_ms=0), instances=2)
        batcher.start()
        try:
            started = time.perf_counter()
            await asyncio.gather(*(batcher.infer({"x": np.ones((1, 2), np.float32)}, 1) for _ in range(2)))
            return time.perf_counter() - started
        finally:
            await batcher.close()

    elapsed = run(body())
    assert elapsed < 0.55, f"two runs of 0.3 s took {elapsed:.2f} s: they did not overlap"
    assert len(runner.threads) == 2


def _solo_batcher(runner, solo_runner, tracker=None, instances=2):
    return Batcher("m", runner, Batching(max_batch_size=8, max_queue_delay_ms=0), instances=instances,
                   solo_runner=solo_runner, tracker=tracker)


def test_a_lone_request_runs_on_the_solo_session():
    instance, solo = RecordingRunner(), RecordingRunner()

    async def body():
        batcher = _solo_batcher(instance, solo)
        batcher.start()
        try:
            results = []
            for i in range(3):  # one after the other: each is alone in the server
                x = np.full((2, 2), i, np.float32)
                outputs, stats = await batcher.infer({"x": x}, 2)
                np.testing.assert_array_equal(outputs["y"], x * 2)
                results.append(stats.solo)
            return results
        finally:
            await batcher.close()

    assert run(body()) == [True, True, True]
    assert solo.batches == [2, 2, 2] and instance.batches == []


def test_concurrent_requests_run_on_the_instances_not_the_solo_session():
    instance, solo = RecordingRunner(delay_s=0.2), RecordingRunner(delay_s=0.2)

    async def body():
        batcher = _solo_batcher(instance, solo)
        batcher.start()
        try:
            first = asyncio.ensure_future(batcher.infer({"x": np.ones((1, 2), np.float32)}, 1))
            await asyncio.sleep(0.05)  # the first is running (solo: it was alone when it started)
            rest = await asyncio.gather(*(batcher.infer({"x": np.full((1, 2), i, np.float32)}, 1) for i in range(4)))
            return (await first)[1], [stats for _, stats in rest]
        finally:
            await batcher.close()

    first, rest = run(body())
    assert first.solo
    assert not any(stats.solo for stats in rest), "a request that overlaps another run must not take every core"
    assert sum(instance.batches) == 4 and solo.batches == [1]


def test_a_run_in_flight_on_another_model_keeps_a_request_off_the_solo_session():
    tracker = RunTracker()
    busy_runner, instance, solo = RecordingRunner(delay_s=0.3), RecordingRunner(), RecordingRunner()

    async def body():
        other = _solo_batcher(busy_runner, None, tracker)
        mine = _solo_batcher(instance, solo, tracker)
        other.start()
        mine.start()
        try:
            busy = asyncio.ensure_future(other.infer({"x": np.ones((1, 2), np.float32)}, 1))
            await asyncio.sleep(0.05)
            assert tracker.running == 1
            _, during = await mine.infer({"x": np.ones((1, 2), np.float32)}, 1)
            await busy
            _, after = await mine.infer({"x": np.ones((1, 2), np.float32)}, 1)
            return during, after
        finally:
            await other.close()
            await mine.close()

    during, after = run(body())
    assert not during.solo and after.solo
    assert tracker.running == 0
    assert instance.batches == [1] and solo.batches == [1]


def test_a_failing_solo_run_releases_its_slot():
    tracker = RunTracker()
    solo = RecordingRunner(fail_on=7.0)

    async def body():
        batcher = _solo_batcher(RecordingRunner(), solo, tracker)
        batcher.start()
        try:
            with pytest.raises(InferenceFailed):
                await batcher.infer({"x": np.full((1, 2), 7.0, np.float32)}, 1)
            assert tracker.running == 0
            return (await batcher.infer({"x": np.ones((1, 2), np.float32)}, 1))[1]
        finally:
            await batcher.close()

    assert run(body()).solo
    assert solo.batches == [1, 1] and tracker.running == 0


def test_a_crowd_is_shared_between_the_instances_not_taken_by_one():
    runner = RecordingRunner(delay_s=0.05)

    async def body():
        batcher = Batcher("m", runner, Batching(max_batch_size=64, max_queue_delay_ms=0), instances=2)
        batcher.start()
        try:
            first = asyncio.ensure_future(batcher.infer({"x": np.ones((1, 2), np.float32)}, 1))
            await asyncio.sleep(0.01)  # one instance busy with one row; 31 arrive
            await asyncio.gather(first, *(batcher.infer({"x": np.ones((1, 2), np.float32)}, 1) for _ in range(31)))
        finally:
            await batcher.close()

    run(body())
    # The free instance takes its share of the 32 rows (16), not all 31; the rest go to the other one.
    assert runner.batches[:3] == [1, 16, 15]
