"""A reference decoder for the generation engine's tests and the benchmark's baseline: one request at a time, no
key/value cache, no batching, no padding.

Each step feeds the decoder graph the whole token history of every row with an empty past (the same graph the
engine runs with its caches), then lets the request's own strategy (greedy, beam, sampling) pick the next tokens,
exactly as the engine does. So the engine's cached, left-padded, continuously batched decoding must produce the
same tokens as this loop, and the benchmark can say what the cache and the batching buy over it.
"""

from __future__ import annotations

import time

import numpy as np

from service.generation.decoding import Event
from service.generation.engine import Job, Runner


class ReferenceDecoder:
    """In place of an ``Engine`` for ``collect_blocking``: ``submit`` decodes each job to its end, one after the
    other, on the caller's thread; its events go to the job's sink as the engine's would (tokens, then ``done``).
    Translation (``encoder`` given): the source is encoded once and every row starts from ``job.start_id``;
    chat: every row starts from the whole prompt. ``cache_shape`` is (layers, heads, head_dim)."""

    def __init__(self, decoder: Runner, *, cache_shape: tuple[int, int, int], encoder: Runner | None = None):
        self.decoder, self.encoder, self.cache_shape = decoder, encoder, cache_shape
        self.steps = 0  # decoder runs, as Engine.steps

    def submit(self, *jobs: Job) -> None:
        for job in jobs:
            job.admitted = time.perf_counter()
            self._decode(job)
            job.ended = time.perf_counter()
            job.sink(Event("done"))

    def close(self, timeout_s: float = 0.0) -> None:
        """Nothing runs in the background."""

    def _decode(self, job: Job) -> None:
        decoder, encoder = self.decoder, self.encoder
        layers, heads, head_dim = self.cache_shape
        cross: dict[str, np.ndarray] = {}
        if encoder is not None:
            cross = encoder({"src_ids": np.asarray([job.tokens], np.int64)})
            history = np.full((job.rows, 1), job.start_id, np.int64)
        else:
            history = np.tile(np.asarray(job.tokens, np.int64), (job.rows, 1))
        while not job.cancelled:
            rows, length = history.shape
            feeds = {"input_ids": history, "position_ids": np.tile(np.arange(length, dtype=np.int64), (rows, 1)),
                     "attention_mask": np.ones((rows, length), np.int64),
                     "past_key": np.zeros((layers, rows, heads, 0, head_dim), np.float32)}
            feeds["past_value"] = feeds["past_key"]
            if encoder is not None:
                first = np.zeros(rows, np.int64)  # every row reads the one source
                feeds.update(cross_key=cross["cross_key"][:, first], cross_value=cross["cross_value"][:, first],
                             encoder_attention_mask=cross["encoder_attention_mask"][first])
            kept, tokens = job.strategy.advance(decoder(feeds)["logits"])
            self.steps += 1
            if not kept.size:
                return
            history = np.concatenate([history[kept], tokens[:, None]], axis=1)
