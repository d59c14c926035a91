"""The KV caches kept as OrtValues between decode steps (IO binding, service.generation.device), run here with
device 'cpu': the same answers, token for token, as the host (numpy) path, on the tiny trained models."""

from __future__ import annotations

import queue
import time

import numpy as np
import pytest

from service.generation.decoding import Sampling
from service.generation.device import DeviceCache, build_graphs
from service.generation.engine import BlockingEvents, Collected
from service.generation.runtime import load_generation
from service.manifest import read_manifest
from service.settings import Settings
from tests.generation_models import require_generation_models


def _load(repo_dir, name: str, choice: str):
    folder = repo_dir / name
    return load_generation(folder / "1", read_manifest(folder), Settings(warmup_runs=1), device_cache=choice)


def _staggered(runtime, make_jobs, every: int = 2) -> list[list[tuple[str, int]]]:
    """The first group of jobs is submitted at once, each further one from inside the engine's every-th decoder
    call (so the same rounds in every run): later rows join a running batch (left-padded, joined caches) while
    earlier ones finish and leave it (rows dropped)."""
    events = BlockingEvents()
    groups = make_jobs(events)
    jobs = [job for group in groups for job in group]
    pending, calls = list(groups[1:]), [0]
    engine = runtime.engine
    inner = engine.decoder

    def gated(feeds):
        calls[0] += 1
        if pending and calls[0] % every == 0:
            engine.submit(*pending.pop(0))
        return inner(feeds)

    engine.decoder = gated
    try:
        engine.submit(*groups[0])
        collected = Collected(jobs)
        deadline = time.monotonic() + 60
        while collected.pending and time.monotonic() < deadline:
            try:
                collected.add(*events.get(1))
            except queue.Empty:
                if pending and not engine.active_rows:  # everything finished before the next group's turn
                    engine.submit(*pending.pop(0))
    finally:
        engine.decoder = inner
    return [[(e.text, e.tokens) for e in sorted(one, key=lambda e: e.index)] for one in collected.finished]


@pytest.fixture(scope="module")
def translators(repo_dir):
    require_generation_models(repo_dir)
    host, device = _load(repo_dir, "tiny-translate", "off"), _load(repo_dir, "tiny-translate", "on")
    yield host, device
    host.close()
    device.close()


@pytest.mark.parametrize("beam", [1, 3])
def test_translations_on_device_caches_match_the_host_path_token_for_token(translators, beam):
    host, device = translators
    assert host.cache_location == "host" and device.cache_location == "cpu"
    texts = ["good morning", "the house is small", "where is the station", "i love you", "thank you", "we are here"]

    def make(runtime):
        return lambda events: [runtime.jobs(texts[i:i + 2], _Tagged(events, i), beam_size=beam) for i in range(0, len(texts), 2)]

    before = dict(device.device.copies)
    expected, got = _staggered(host, make(host)), _staggered(device, make(device))
    assert got == expected and all(text for (text, _), *_ in expected)
    copies = {k: device.device.copies[k] - before[k] for k in before}
    assert copies["select"] > 0 and copies["upload"] > 0  # beams reordered / rows dropped, cross uploaded per layout
    assert copies["join"] > 0  # later requests joined a running batch on the device
    assert copies["cross_select"] > 0 and copies["join_right"] > 0  # encoder outputs gathered on the device


def test_chat_on_device_caches_matches_the_host_path_seeded_and_greedy(repo_dir):
    require_generation_models(repo_dir)
    host, device = _load(repo_dir, "tiny-chat", "off"), _load(repo_dir, "tiny-chat", "on")
    try:
        def make(runtime):
            def jobs(events):
                seeded = runtime.sampling(0.9, 0.95, 20)
                return [[runtime.job(runtime.prompt([("user", "hi")], 20), events.sink(0), n=2, max_new_tokens=20,
                                     sampling=seeded, seed=3)],
                        [runtime.job(runtime.prompt([("user", "how are you")], 20), events.sink(1), max_new_tokens=20,
                                     sampling=Sampling())],
                        [runtime.job(runtime.prompt([("system", "be brief"), ("user", "tell me a story")], 24), events.sink(2),
                                     n=3, max_new_tokens=24, sampling=seeded, seed=5)]]
            return jobs

        before = dict(device.device.copies)
        expected, got = _staggered(host, make(host)), _staggered(device, make(device))
        assert got == expected
        assert device.device.copies["join"] > before["join"]  # later prompts joined a running batch on the device
    finally:
        host.close()
        device.close()


class _Tagged:
    """events.sink(i) numbered from an offset, so staggered groups keep one tag per job."""

    def __init__(self, events, offset: int):
        self.events, self.offset = events, offset

    def sink(self, tag: int):
        return self.events.sink(self.offset + tag)


def test_cache_graphs_select_and_join_like_numpy(repo_dir):
    require_generation_models(repo_dir)
    runtime = _load(repo_dir, "tiny-chat", "on")
    try:
        cache: DeviceCache = runtime.device
        cache.self_test()
        rng = np.random.default_rng(0)
        a = rng.normal(size=(2, 3, 2, 4, 5)).astype(np.float32)
        b = rng.normal(size=(2, 2, 2, 6, 5)).astype(np.float32)
        key, value = cache.join((cache.upload(a), a), (b, cache.upload(b)))
        want = np.concatenate([np.concatenate([np.zeros((2, 3, 2, 2, 5), np.float32), a], 3), b], 1)
        assert np.array_equal(key.numpy(), want) and np.array_equal(value.numpy(), want)
        key, value = cache.select(key, value, np.array([4, 1, 1]), 2)
        assert np.array_equal(key.numpy(), want[:, [4, 1, 1], :, 2:]) and key.device_name() == "cpu"
    finally:
        runtime.close()


def test_the_embedded_cache_graphs_are_what_build_graphs_makes():
    pytest.importorskip("onnx")
    import base64

    from service.generation import device

    built = build_graphs()
    for name in ("SELECT", "JOIN", "CROSS_SELECT", "JOIN_RIGHT"):
        assert base64.b64decode("".join(getattr(device, name))) == built[name], f"regenerate {name} with build_graphs()"


def test_auto_keeps_the_host_path_on_the_cpu_and_a_bad_choice_is_refused(repo_dir):
    require_generation_models(repo_dir)
    runtime = _load(repo_dir, "tiny-chat", "auto")
    try:
        assert runtime.device is None and runtime.cache_location == "host"
    finally:
        runtime.close()
    from service.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="generation_device_cache"):
        _load(repo_dir, "tiny-chat", "sometimes")


def test_a_device_path_that_fails_at_run_time_fails_those_requests_then_serves_on_the_host_path(repo_dir):
    require_generation_models(repo_dir)
    from service.errors import InferenceFailed
    from service.generation.engine import collect_blocking

    host, runtime = _load(repo_dir, "tiny-translate", "off"), _load(repo_dir, "tiny-translate", "on")
    try:
        def broken(feeds):
            raise RuntimeError("CUDA failure 700: an illegal memory access was encountered")

        runtime.engine.decoder = broken
        events = BlockingEvents()
        with pytest.raises(InferenceFailed, match="illegal memory access"):
            collect_blocking(runtime.engine, events, runtime.jobs(["good morning"], events), timeout_s=30)
        assert runtime.cache_location == "host"
        answers = []
        for model in (host, runtime):
            events = BlockingEvents()
            finished = collect_blocking(model.engine, events, model.jobs(["good morning", "thank you"], events), timeout_s=30)
            answers.append([e.text for one in finished for e in one])
        assert answers[0] == answers[1] and all(answers[1])
    finally:
        host.close()
        runtime.close()


def test_the_cross_pool_gathers_each_requests_encoder_output_like_the_host_path(repo_dir):
    require_generation_models(repo_dir)
    from types import SimpleNamespace

    from service.generation.device import CrossPool

    runtime = _load(repo_dir, "tiny-chat", "on")
    try:
        pool = CrossPool(runtime.device)
        rng = np.random.default_rng(1)
        jobs, sources = [], {}
        for batch in range(12):  # 12 admissions of 2 requests: 24 pool rows, compacted once few are live
            lengths = [int(n) for n in rng.integers(1, 7, 2)]
            key = rng.normal(size=(2, 2, 2, max(lengths), 3)).astype(np.float32)
            value = rng.normal(size=key.shape).astype(np.float32)
            new = [SimpleNamespace(name=f"{batch}-{i}") for i in range(2)]
            pool.add(new, key, value, lengths)
            for i, job in enumerate(new):
                sources[id(job)] = (key[:, i, :, :lengths[i]], value[:, i, :, :lengths[i]])
            jobs += new
        runs = [SimpleNamespace(job=jobs[3], rows=2), SimpleNamespace(job=jobs[20], rows=1), SimpleNamespace(job=jobs[7], rows=3)]
        for _ in range(2):  # the second call runs on the compacted pool
            key, value = pool.batch(runs)
            length = max(sources[id(r.job)][0].shape[2] for r in runs)
            want_key = np.zeros((2, 6, 2, length, 3), np.float32)
            want_value = np.zeros_like(want_key)
            row = 0
            for r in runs:
                k, v = sources[id(r.job)]
                want_key[:, row:row + r.rows, :, :k.shape[2]] = k[:, None]
                want_value[:, row:row + r.rows, :, :v.shape[2]] = v[:, None]
                row += r.rows
            assert np.array_equal(key.numpy(), want_key) and np.array_equal(value.numpy(), want_value)
        assert len(pool.lengths) == 3  # compacted to the live requests
    finally:
        runtime.close()
