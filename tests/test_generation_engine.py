"""The decoding algorithms and the step scheduler, on fake graphs (no ONNX, no torch): fast and exact.

The fake decoder writes each token id into its key/value cache and computes its logits from the
token history it reads back (cache + attention mask, or the whole prefix with an empty past: the reference
decoder of tests/generation_reference.py), so any mistake in padding, trimming, beam reordering or joining
rows changes the tokens generated.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from service.errors import BadRequest, InferenceFailed, ServiceUnavailable
from service.generation.batch import Rows
from service.generation.decoding import BeamStrategy, Event, SampleStrategy, Sampling, TokenText, sample
from service.generation.engine import BlockingEvents, Engine, Job, collect_blocking
from tests.generation_reference import ReferenceDecoder

V, EOS, BOS, PAD = 12, 2, 1, 0
NO_BANNED = np.array([PAD, BOS], np.int64)


def hashed_logits(source: tuple, prefix: tuple) -> np.ndarray:
    """Deterministic pseudo-random logits of a history; eos grows likelier with length."""
    rng = np.random.default_rng(abs(hash((source, prefix))) % 2**32)
    logits = rng.normal(size=V) * 2
    logits[EOS] += 0.35 * len(prefix) - 2.5
    return logits.astype(np.float32)


class FakeGraphs:
    """Encoder and decoder with the contract's I/O; layers = heads = head_dim = 1."""

    def __init__(self, logits_of=hashed_logits, delay_s: float = 0.0):
        self.logits_of, self.delay_s = logits_of, delay_s
        self.step_rows: list[int] = []
        self.fail_next = False

    def encoder(self, feeds):
        src = feeds["src_ids"]
        kv = src.astype(np.float32)[None, :, None, :, None]
        return {"cross_key": kv, "cross_value": kv, "encoder_attention_mask": (src != PAD).astype(np.int64)}

    def decoder(self, feeds):
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("boom")
        if self.delay_s:
            time.sleep(self.delay_s)
        ids, mask, positions = feeds["input_ids"], feeds["attention_mask"], feeds["position_ids"]
        b, t = ids.shape
        past = feeds["past_key"]
        assert past.shape[3] + t == mask.shape[1], "cache length + new tokens == mask length"
        present = np.concatenate([past, ids.astype(np.float32)[None, :, None, :, None]], axis=3)
        history = present[0, :, 0, :, 0].astype(np.int64)
        self.step_rows.append(b)
        rows = []
        for i in range(b):
            real = mask[i].astype(bool)
            assert positions[i, -1] == max(real.sum() - 1, 0), "positions count real tokens only"
            source = ()
            if "cross_key" in feeds:
                source = tuple(feeds["cross_key"][0, i, 0, feeds["encoder_attention_mask"][i].astype(bool), 0].astype(int))
            rows.append(self.logits_of(source, tuple(history[i, real].tolist())))
        return {"logits": np.stack(rows), "present_key": present, "present_value": present}


def engine_for(graphs: "FakeGraphs", seq2seq: bool = True, **kwargs) -> Engine:
    return Engine("fake", graphs.decoder, encoder=graphs.encoder if seq2seq else None, cache_shape=(1, 1, 1),
                  pad_id=PAD, **kwargs).start()


def reference_for(graphs: "FakeGraphs", seq2seq: bool = True) -> ReferenceDecoder:
    """The same graphs decoded one request at a time, without a cache (tests/generation_reference.py)."""
    return ReferenceDecoder(graphs.decoder, encoder=graphs.encoder if seq2seq else None, cache_shape=(1, 1, 1))


def decode(tokens: list[int]) -> str:
    return " ".join(f"t{t}" for t in tokens)


def translate_job(source, events, tag, beams=1, max_new=20, alpha=0.6) -> Job:
    sink = events.sink(tag)
    text = TokenText(decode)
    if beams > 1:
        strategy = BeamStrategy(text, beams=beams, eos=EOS, max_new_tokens=max_new, length_penalty=alpha,
                                banned=NO_BANNED, sink=sink)
    else:
        strategy = SampleStrategy([text], eos=EOS, max_new_tokens=max_new, params=Sampling(), banned=NO_BANNED, sink=sink)
    return Job(strategy, sink, list(source), start_id=BOS)


def run_translations(engine, sources, **kwargs) -> list[list[int]]:
    events = BlockingEvents()
    jobs = [translate_job(s, events, i, **kwargs) for i, s in enumerate(sources)]
    collect_blocking(engine, events, jobs, timeout_s=30)
    return [job.strategy.texts[0].tokens if isinstance(job.strategy, SampleStrategy) else job.strategy.text.tokens
            for job in jobs]


def reference_greedy(source, max_new=20, start=(BOS,)) -> list[int]:
    """Greedy decoding straight from the logits function: no engine, no batch, no cache."""
    prefix = list(start)
    for _ in range(max_new):
        logits = hashed_logits(tuple(source), tuple(prefix)).astype(np.float64)
        logits[[PAD, BOS]] = -np.inf
        token = int(logits.argmax())
        if token == EOS:
            break
        prefix.append(token)
    return prefix[len(start):]


SOURCES = [[5, 6, 7, EOS], [3, EOS], [9, 8, 7, 6, 5, 4, 3, EOS], [4, 4, EOS]]


@pytest.fixture
def graphs():
    return FakeGraphs()


def test_greedy_matches_a_plain_reference_alone_and_batched(graphs):
    engine = engine_for(graphs)
    try:
        expected = [reference_greedy(s) for s in SOURCES]
        assert run_translations(engine, SOURCES) == expected
        assert [run_translations(engine, [s])[0] for s in SOURCES] == expected
        assert max(graphs.step_rows) == len(SOURCES)  # the batched run shared its steps
    finally:
        engine.close()


@pytest.mark.parametrize("beams", [1, 2, 4])
def test_batched_cached_decoding_matches_the_reference_without_cache(graphs, beams):
    engine = engine_for(graphs)
    try:
        assert run_translations(engine, SOURCES, beams=beams) == run_translations(reference_for(graphs), SOURCES,
                                                                                  beams=beams)
    finally:
        engine.close()


def test_beam_of_one_is_greedy(graphs):
    engine = engine_for(graphs)
    try:
        sources = SOURCES + [[int(x) for x in np.random.default_rng(i).integers(3, V, 6)] + [EOS] for i in range(12)]
        assert run_translations(engine, sources, beams=1) == [reference_greedy(s) for s in sources]
        events = BlockingEvents()
        jobs = []
        for i, source in enumerate(sources):  # BeamStrategy itself with one beam
            sink = events.sink(i)
            jobs.append(Job(BeamStrategy(TokenText(decode), beams=1, eos=EOS, max_new_tokens=20, length_penalty=0.6,
                                         banned=NO_BANNED, sink=sink), sink, source, start_id=BOS))
        collect_blocking(engine, events, jobs)
        assert [job.strategy.text.tokens for job in jobs] == [reference_greedy(s) for s in sources]
    finally:
        engine.close()


def _table_logits(table: dict[tuple, dict[int, float]]):
    def logits_of(source, prefix):
        probs = np.full(V, 1e-9)
        for token, p in table.get(prefix[1:], {}).items():
            probs[token] = p
        return np.log(probs / probs.sum()).astype(np.float32)
    return logits_of


def test_length_penalty_decides_between_short_and_long_hypotheses():
    # "eos" at once: log 0.5 = -0.69 over length 1; "5 5 eos": log(0.5 * 0.9 * 0.9) = -0.90 over length 3
    table = {(): {EOS: 0.5, 5: 0.45, 6: 0.05}, (5,): {5: 0.9, 6: 0.1}, (6,): {EOS: 1.0},
             (5, 5): {EOS: 0.9, 6: 0.1}, (5, 6): {EOS: 1.0}}
    engine = engine_for(FakeGraphs(_table_logits(table)))
    try:
        assert run_translations(engine, [[3, EOS]], beams=2, alpha=0.0) == [[]]  # -0.69 > -0.90
        assert run_translations(engine, [[3, EOS]], beams=2, alpha=1.0) == [[5, 5]]  # -0.69 < -0.30
        assert run_translations(engine, [[3, EOS]], beams=1) == [[]]  # greedy takes eos at once
    finally:
        engine.close()


def test_beam_search_finds_what_greedy_misses():
    # greedy: 5 (0.6) then 7 or 8 (0.5 each) -> 0.3; beam: 6 (0.4) then eos (1.0) -> 0.4
    table = {(): {5: 0.6, 6: 0.4}, (5,): {7: 0.5, 8: 0.5}, (6,): {EOS: 1.0}, (5, 7): {EOS: 1.0}, (5, 8): {EOS: 1.0}}
    engine = engine_for(FakeGraphs(_table_logits(table)))
    try:
        assert run_translations(engine, [[3, EOS]], beams=1) == [[5, 7]]
        assert run_translations(engine, [[3, EOS]], beams=2, alpha=0.0) == [[6]]
    finally:
        engine.close()


def test_max_new_tokens_ends_with_length(graphs):
    engine = engine_for(FakeGraphs(lambda s, p: np.eye(V, dtype=np.float32)[5] * 10))  # never eos
    try:
        events = BlockingEvents()
        jobs = [translate_job([3, EOS], events, 0, max_new=7), translate_job([3, EOS], events, 1, beams=3, max_new=5)]
        finished = collect_blocking(engine, events, jobs)
        assert [(f[0].reason, f[0].tokens) for f in finished] == [("length", 7), ("length", 5)]
        assert finished[0][0].text == decode([5] * 7)
    finally:
        engine.close()


def chat_job(prompt, events, tag=0, n=1, max_new=30, params=Sampling(), stop=(), seed=None, stream=False) -> Job:
    sink = events.sink(tag)
    strategy = SampleStrategy([TokenText(decode, stop) for _ in range(n)], eos=EOS, max_new_tokens=max_new,
                              params=params, banned=NO_BANNED, sink=sink, seed=seed, stream=stream)
    return Job(strategy, sink, list(prompt))


PROMPTS = [[BOS, 4, 5, 6], [BOS, 7], [BOS, 3, 3, 3, 3, 3, 3, 3, 3, 9], [BOS]]


def chat_outputs(engine, prompts, **kwargs) -> list[list[str]]:
    events = BlockingEvents()
    finished = collect_blocking(engine, events, [chat_job(p, events, i, **kwargs) for i, p in enumerate(prompts)])
    return [[e.text for e in sorted(f, key=lambda e: e.index)] for f in finished]


def test_prefill_of_left_padded_prompts_matches_one_by_one_and_no_cache(graphs):
    engine = engine_for(graphs, seq2seq=False)
    try:
        together = chat_outputs(engine, PROMPTS)
        assert together == [[decode(reference_greedy((), 30, start=p))] for p in PROMPTS]
        assert together == [chat_outputs(engine, [p])[0] for p in PROMPTS]
        assert together == chat_outputs(reference_for(graphs, seq2seq=False), PROMPTS)
        hot = Sampling(temperature=1.3, top_k=0, top_p=0.9)  # seeded sampling too, 3 choices a prompt
        assert chat_outputs(engine, PROMPTS, n=3, params=hot, seed=5) == \
            chat_outputs(reference_for(graphs, seq2seq=False), PROMPTS, n=3, params=hot, seed=5)
    finally:
        engine.close()


def test_sampling_is_seeded_and_n_choices_are_independent(graphs):
    engine = engine_for(graphs, seq2seq=False)
    try:
        hot = Sampling(temperature=1.5, top_k=0, top_p=1.0)
        a = chat_outputs(engine, [PROMPTS[0]], n=4, params=hot, seed=7)[0]
        assert a == chat_outputs(engine, [PROMPTS[0]], n=4, params=hot, seed=7)[0]
        assert len(set(a)) > 1  # four different samples
        assert chat_outputs(engine, [PROMPTS[0]], n=4, params=hot, seed=8)[0] != a
    finally:
        engine.close()


def test_sample_respects_top_k_and_top_p():
    rng = np.random.default_rng(0)
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]] * 4000))
    top1 = sample(logits, Sampling(1.0, 0, 0.5), rng)
    assert set(top1.tolist()) == {0}  # 0.5 alone reaches top_p 0.5
    top2 = sample(logits, Sampling(1.0, 2, 1.0), rng)
    assert set(top2.tolist()) == {0, 1} and abs((top2 == 0).mean() - 0.5 / 0.8) < 0.04
    nucleus = sample(logits, Sampling(1.0, 0, 0.85), rng)
    assert set(nucleus.tolist()) == {0, 1, 2}
    assert (sample(logits[:3], Sampling(0.0), rng) == 0).all()
    cold = sample(logits, Sampling(0.05, 0, 1.0), rng)
    assert (cold == 0).mean() > 0.99


def test_stop_strings_cut_the_reply_and_streaming_never_shows_them(graphs):
    engine = engine_for(graphs, seq2seq=False)
    try:
        prompts = PROMPTS + [[BOS, k] for k in range(3, V)]
        prompt, full = max(zip(prompts, (o[0] for o in chat_outputs(engine, prompts))), key=lambda pair: len(pair[1]))
        words = full.split()
        assert len(words) >= 4, full
        stop = f"{words[2]} {words[3][:2]}"  # spans two tokens
        events = BlockingEvents()
        job = chat_job(prompt, events, stop=[stop, "never-there"], stream=True)
        engine.submit(job)
        deltas, finish = [], None
        while True:
            _, event = events.get(10)
            if event.kind == "delta":
                deltas.append(event.text)
            elif event.kind == "finish":
                finish = event
            elif event.kind == "done":
                break
        assert finish.reason == "stop" and finish.text == f"{words[0]} {words[1]} "
        assert "".join(deltas) == finish.text and len(deltas) >= 2
    finally:
        engine.close()


def test_token_text_deltas_hold_back_partial_stops_and_broken_characters():
    decoded = {(1,): "ab", (1, 2): "ab\ufffd", (1, 2, 3): "abé", (1, 2, 3, 4): "abéXY", (1, 2, 3, 4, 5): "abéXYZ"}
    text = TokenText(lambda ids: decoded[tuple(ids)], stop=["XYZ"])
    assert not text.push(1) and text.delta() == "ab"
    assert not text.push(2) and text.delta() == ""  # half a character waits
    assert not text.push(3) and text.delta() == "é"
    assert not text.push(4) and text.delta() == ""  # "XY" may be the start of the stop string
    assert text.push(5) and text.final() == "abé" and text.delta(final=True) == ""
    plain = TokenText(lambda ids: decoded[tuple(ids)])
    for token in (1, 2, 3, 4):
        plain.push(token)
    assert plain.delta() == "abéXY" and plain.final() == "abéXY"


def test_requests_join_and_leave_a_running_batch(graphs):
    slow = FakeGraphs(lambda s, p: np.eye(V, dtype=np.float32)[5] * 10, delay_s=0.002)  # never ends by itself
    engine = engine_for(slow, seq2seq=False)
    try:
        events = BlockingEvents()
        long_job = chat_job([BOS, 4], events, 0, max_new=120)
        engine.submit(long_job)
        while engine.steps < 20:
            time.sleep(0.002)
        short = chat_job([BOS, 5, 6, 7], events, 1, max_new=10)
        engine.submit(short)
        ended = {}
        while len(ended) < 2:
            tag, event = events.get(30)
            if event.kind == "done":
                ended[tag] = engine.steps
        assert ended[1] < ended[0]  # the short request joined the running one and finished first
        assert max(slow.step_rows) == 2 and slow.step_rows[-1] == 1
    finally:
        engine.close()


def test_a_decoding_engine_counts_as_a_run_in_flight_so_no_other_model_runs_solo():
    """While any row decodes, the server's RunTracker sees one run in flight (a lone request of another model then
    keeps to its single-threaded instance instead of taking every core); idle again, the count drops back to 0."""
    from service.batching import RunTracker

    tracker = RunTracker()
    slow = FakeGraphs(lambda s, p: np.eye(V, dtype=np.float32)[5] * 10, delay_s=0.002)
    engine = engine_for(slow, seq2seq=False, tracker=tracker)
    try:
        assert tracker.running == 0 and tracker.begin(True) is True
        tracker.end()
        events = BlockingEvents()
        engine.submit(chat_job([BOS, 4], events, 0, max_new=60))
        while engine.steps < 5:
            time.sleep(0.002)
        assert tracker.running == 1 and tracker.begin(True) is False  # another model's lone request: not solo
        tracker.end()
        while events.get(30)[1].kind != "done":
            pass
        deadline = time.monotonic() + 5
        while tracker.running and time.monotonic() < deadline:
            time.sleep(0.002)
        assert tracker.running == 0
    finally:
        engine.close()
    assert tracker.running == 0


def test_cancelled_jobs_free_their_rows_and_waiting_jobs_are_dropped():
    slow = FakeGraphs(lambda s, p: np.eye(V, dtype=np.float32)[5] * 10, delay_s=0.002)
    engine = engine_for(slow, seq2seq=False, max_rows=8)
    try:
        events = BlockingEvents()
        running = chat_job([BOS, 4], events, 0, n=8, max_new=1000)
        queued = chat_job([BOS, 4], events, 1, max_new=1000)
        engine.submit(running, queued)
        while engine.steps < 5:
            time.sleep(0.002)
        assert engine.active_rows == 8 and engine.waiting == 1  # no room for the second
        queued.cancel()
        running.cancel()
        deadline = time.monotonic() + 5
        while (engine.active_rows or engine.waiting) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert engine.active_rows == 0 and engine.waiting == 0
        assert engine.steps < 200 and running.ended is not None and queued.ended is not None
    finally:
        engine.close()


class _Finished:
    """GenerationMetrics' finish counter alone."""

    def __init__(self):
        self.reasons: list[str] = []
        self.rows = self.waiting = self.tokens = self.step_rows = self

    def set(self, value):
        pass

    inc = observe = set

    def finished(self, reason: str) -> None:
        self.reasons.append(reason)


def test_a_job_cancelled_during_a_step_ends_once():
    """The client's cancel lands while the engine thread is inside a step, after it read the flag:
    the run is dropped next round and counted as cancelled once, not once per place that saw the flag."""
    graphs, finished = FakeGraphs(lambda s, p: np.eye(V, dtype=np.float32)[5] * 10), _Finished()
    engine = engine_for(graphs, seq2seq=False, metrics=finished)
    try:
        events = BlockingEvents()
        job = chat_job([BOS, 4], events, 0, max_new=1000)
        advance = job.strategy.advance

        def advance_then_cancel(block):
            result = advance(block)
            if engine.steps >= 3:
                job.cancel()
            return result

        job.strategy.advance = advance_then_cancel
        engine.submit(job)
        deadline = time.monotonic() + 5
        while job.ended is None and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(0.05)
        assert finished.reasons == ["cancelled"] and engine.active_rows == 0
    finally:
        engine.close()


def test_bounds_refuse_clearly():
    gate, graphs = threading.Event(), FakeGraphs()
    engine = Engine("fake", lambda feeds: (gate.wait(10), graphs.decoder(feeds))[1], cache_shape=(1, 1, 1),
                    max_rows=8, max_waiting=2).start()
    events = BlockingEvents()
    try:
        with pytest.raises(BadRequest):
            engine.submit(chat_job([BOS], events, n=9))  # more rows than a decode batch holds
        engine.submit(chat_job([4], events, 0, n=8))  # admitted, then held in its first step
        deadline = time.monotonic() + 5
        while engine.active_rows < 8 and time.monotonic() < deadline:
            time.sleep(0.005)
        engine.submit(chat_job([4], events, 1), chat_job([4], events, 2))  # no room: both wait
        with pytest.raises(ServiceUnavailable):
            engine.submit(chat_job([4], events, 3))  # the waiting queue is full
    finally:
        gate.set()
        engine.close(10)
    with pytest.raises(ServiceUnavailable):
        engine.submit(chat_job([4], events))  # closed


def test_a_failed_step_fails_its_requests_and_the_engine_serves_on():
    graphs = FakeGraphs()
    engine = engine_for(graphs, seq2seq=False)
    try:
        graphs.fail_next = True
        events = BlockingEvents()
        with pytest.raises(InferenceFailed):
            collect_blocking(engine, events, [chat_job([BOS, 4], events)])
        assert chat_outputs(engine, [[BOS, 4]]) == [[decode(reference_greedy((), 30, start=[BOS, 4]))]]
    finally:
        engine.close()


def test_close_finishes_queued_work_then_refuses():
    engine = engine_for(FakeGraphs(), seq2seq=False)
    events = BlockingEvents()
    jobs = [chat_job(p, events, i) for i, p in enumerate(PROMPTS)]
    engine.submit(*jobs)
    engine.close(10)
    assert all(job.ended is not None for job in jobs)
    kinds = []
    while True:
        try:
            kinds.append(events.get(0.01)[1].kind)
        except Exception:
            break
    assert kinds.count("done") == len(PROMPTS) and "error" not in kinds


def test_rows_concat_take_and_trim():
    cache = np.array([0, 7, 8], np.float32)[None, None, None, :, None]  # [L, B, H, P, dh]: the ids, as the fake writes
    a = Rows(np.array([[0, 7, 8]]), np.array([[0, 1, 1]]), cache, cache.copy(), np.array([9]), np.array([2]))
    b = Rows.fresh(np.array([1, 1]), (1, 1, 1))
    both = Rows.concat([a, b])
    assert both.ids.tolist() == [[0, 7, 8], [0, 0, 0], [0, 0, 0]] and both.mask.sum() == 2
    assert both.past_key.shape == (1, 3, 1, 3, 1) and both.past_key[0, :, 0, :, 0].tolist() == both.ids.tolist()
    only_b = both.take(np.array([1, 2]))
    assert only_b.length == 0 and only_b.next_ids.tolist() == [1, 1]  # all-padding columns trimmed
    assert only_b.past_key.shape == (1, 2, 1, 0, 1)  # the caches with them
    again = both.take(np.array([0, 0]))
    assert again.ids.tolist() == [[7, 8], [7, 8]] and again.past_value[0, :, 0, :, 0].tolist() == [[7, 8], [7, 8]]


def test_event_defaults():
    assert Event("done").index == 0 and Event("finish", reason="stop").reason == "stop"


def test_async_events_from_a_thread_arrive_in_order_with_few_loop_wakeups():
    """An engine step emits an event per row; they reach the loop in order, in bursts, not one wake-up each."""
    import asyncio

    from service.generation.engine import AsyncEvents

    async def main():
        loop = asyncio.get_running_loop()
        wakeups = []
        real = loop.call_soon_threadsafe

        def counting(callback, *args, **kwargs):
            wakeups.append(callback)
            return real(callback, *args, **kwargs)

        loop.call_soon_threadsafe = counting
        try:
            first, second = AsyncEvents(), AsyncEvents()
            sinks = [first.sink(0), second.sink(1)]
            emitted = threading.Event()

            def engine_step():
                for i in range(200):
                    sinks[i % 2](Event("delta", i))
                emitted.set()

            thread = threading.Thread(target=engine_step)
            thread.start()
            got = {0: [], 1: []}
            for _ in range(100):
                got[0].append((await first.get())[1].index)
                got[1].append((await second.get())[1].index)
            thread.join()
        finally:
            loop.call_soon_threadsafe = real
        assert got[0] == list(range(0, 200, 2)) and got[1] == list(range(1, 200, 2))
        assert emitted.is_set() and 1 <= len(wakeups) < 200

    asyncio.run(main())
