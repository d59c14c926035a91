"""Decoding algorithms over one request's rows of logits: greedy, sampling, beam search.

A *strategy* owns the rows of one request in the shared decode batch. Each step the engine hands it
the logits of its rows ([rows, vocab]); it answers which of its rows go on (local indices, repeated
or reordered for beam search) and the token each of those rows feeds next. A request whose strategy
keeps no row is finished. Output text, stop strings and streaming deltas live in ``TokenText``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

NEG_INF = -np.inf


@dataclass
class Event:
    """What a request's consumer receives: text deltas while streaming, one ``finish`` per choice,
    then ``done`` (or a single ``error``)."""

    kind: str  # "delta" | "finish" | "done" | "error"
    index: int = 0
    text: str = ""
    reason: str | None = None  # finish: "stop" | "length"
    tokens: int = 0  # finish: tokens generated for this choice (its end-of-sequence token included)
    error: BaseException | None = None


Sink = Callable[[Event], None]


class TokenText:
    """One output's tokens and text: stop strings, and streaming deltas that never show a partial
    stop string or a half-decoded character (text is always decoded from the whole token list, so
    words made of several pieces come out right)."""

    def __init__(self, decode: Callable[[list[int]], str], stop: Sequence[str] = ()):
        self.decode = decode
        self.stop = [s for s in stop if s]
        self.tokens: list[int] = []
        self.text = ""
        self.sent = ""  # the text already streamed

    def push(self, token: int) -> bool:
        """Append a token; True when a stop string now appears (the text is cut before it)."""
        self.tokens.append(token)
        if not self.stop:
            return False
        self.text = self.decode(self.tokens)
        cut = min((i for i in (self.text.find(s) for s in self.stop) if i >= 0), default=-1)
        if cut >= 0:
            self.text = self.text[:cut]
            return True
        return False

    def final(self) -> str:
        if not self.stop:
            self.text = self.decode(self.tokens)
        return self.text

    def delta(self, final: bool = False) -> str:
        """Text not streamed yet that is safe to show now (all of it once final)."""
        text = self.final()
        safe = len(text)
        if not final:
            while safe and text[safe - 1] == "\ufffd":  # an incomplete multi-byte character
                safe -= 1
            for s in self.stop:  # hold back a tail that may grow into a stop string
                for k in range(min(len(s) - 1, safe), 0, -1):
                    if text[safe - k:safe] == s[:k]:
                        safe -= k
                        break
        if safe <= len(self.sent) or not text.startswith(self.sent):
            return ""  # nothing new, or an earlier piece re-decoded differently: wait until it settles
        out, self.sent = text[len(self.sent):safe], text[:safe]
        return out


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x -= x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def mask_tokens(logits: np.ndarray, banned: np.ndarray) -> np.ndarray:
    if banned.size:
        logits = logits.copy()
        logits[:, banned] = NEG_INF
    return logits


@dataclass
class Sampling:
    """temperature 0 (or top_k 1) is greedy; top_k 0 and top_p 1 turn those filters off."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0 or self.top_k == 1


def sample(logits: np.ndarray, params: Sampling, rng: np.random.Generator) -> np.ndarray:
    """One token per row of [rows, vocab] logits (already masked)."""
    if params.greedy:
        return logits.argmax(axis=-1)
    x = logits.astype(np.float64) / params.temperature
    vocab = x.shape[-1]
    if 0 < params.top_k < vocab:
        candidates = np.argpartition(-x, params.top_k - 1, axis=-1)[:, : params.top_k]
    else:
        candidates = np.broadcast_to(np.arange(vocab), x.shape)
    scores = np.take_along_axis(x, candidates, axis=-1)
    order = np.argsort(-scores, axis=-1, kind="stable")
    candidates = np.take_along_axis(candidates, order, axis=-1)
    scores = np.take_along_axis(scores, order, axis=-1)
    probs = np.exp(scores - scores[:, :1])
    probs /= probs.sum(axis=-1, keepdims=True)
    if params.top_p < 1.0:
        # keep the smallest head whose mass reaches top_p (at least one token)
        before = np.cumsum(probs, axis=-1) - probs
        probs = np.where(before < params.top_p, probs, 0.0)
        probs /= probs.sum(axis=-1, keepdims=True)
    cdf = np.cumsum(probs, axis=-1)
    draws = rng.random((x.shape[0], 1)) * cdf[:, -1:]
    picks = np.minimum((cdf <= draws).sum(axis=-1), cdf.shape[-1] - 1)
    return candidates[np.arange(x.shape[0]), picks]


class Strategy:
    """Base: ``rows`` at admission; ``advance(logits)`` -> (kept local rows, their next tokens)."""

    rows: int = 1

    def advance(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class SampleStrategy(Strategy):
    """n independent choices (greedy or sampled), each ending at eos, a stop string or max_new_tokens."""

    def __init__(self, texts: list[TokenText], *, eos: int, max_new_tokens: int, params: Sampling,
                 banned: np.ndarray, sink: Sink, seed: int | None = None, stream: bool = False):
        self.texts = texts
        self.rows = len(texts)
        self.active = list(range(len(texts)))  # choice index of each row
        self.eos, self.max_new, self.params, self.banned = eos, max_new_tokens, params, banned
        self.rng = np.random.default_rng(seed)
        self.sink, self.stream = sink, stream

    def advance(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tokens = sample(mask_tokens(logits, self.banned), self.params, self.rng)
        keep = []
        for row, token in enumerate(tokens.tolist()):
            choice = self.active[row]
            out = self.texts[choice]
            reason = None
            if token == self.eos:
                reason = "stop"
            elif out.push(token):
                reason = "stop"
            elif len(out.tokens) >= self.max_new:
                reason = "length"
            if reason is None:
                keep.append(row)
                if self.stream and (delta := out.delta()):
                    self.sink(Event("delta", choice, delta))
                continue
            tail = out.delta(final=True) if self.stream else ""
            if tail:
                self.sink(Event("delta", choice, tail))
            used = len(out.tokens) + (token == self.eos)
            self.sink(Event("finish", choice, out.final(), reason, used))
        self.active = [self.active[row] for row in keep]
        return np.asarray(keep, dtype=np.int64), tokens[keep].astype(np.int64)


@dataclass(order=True)
class _Hypothesis:
    score: float
    tokens: list[int] = field(compare=False)


class BeamStrategy(Strategy):
    """Beam search with a length penalty, as in Hugging Face (early_stopping=False): a finished
    hypothesis scores sum(log p) / length**alpha, length counting its generated tokens (eos included);
    the search stops once ``beams`` hypotheses are finished and none running can still beat the worst
    of them at the current length, or at max_new_tokens (running beams then count as finished)."""

    def __init__(self, text: TokenText, *, beams: int, eos: int, max_new_tokens: int, length_penalty: float,
                 banned: np.ndarray, sink: Sink):
        self.text, self.beams, self.rows = text, beams, beams
        self.eos, self.max_new, self.alpha, self.banned, self.sink = eos, max_new_tokens, length_penalty, banned, sink
        # Every beam starts as the same row; only the first may expand at step one (no duplicates).
        self.scores = np.full(beams, NEG_INF)
        self.scores[0] = 0.0
        self.sequences: list[list[int]] = [[] for _ in range(beams)]
        self.finished: list[_Hypothesis] = []
        self.length = 0

    def _normalized(self, score: float, length: int) -> float:
        return score / (length ** self.alpha)

    def _add(self, score: float, tokens: list[int]) -> None:
        self.finished.append(_Hypothesis(self._normalized(score, len(tokens)), tokens))
        self.finished.sort(reverse=True)
        del self.finished[self.beams:]

    def advance(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows, vocab = logits.shape
        self.length += 1
        totals = (self.scores[:rows, None] + log_softmax(mask_tokens(logits, self.banned))).reshape(-1)
        wanted = min(2 * self.beams, totals.size)
        top = np.argpartition(-totals, wanted - 1)[:wanted]
        top = top[np.argsort(-totals[top], kind="stable")]
        keep, tokens, scores, sequences = [], [], [], []
        for rank, flat in enumerate(top.tolist()):
            score = float(totals[flat])
            if score == NEG_INF:
                break
            row, token = divmod(flat, vocab)
            if token == self.eos:
                if rank < self.beams:
                    self._add(score, self.sequences[row] + [token])
                continue
            keep.append(row)
            tokens.append(token)
            scores.append(score)
            sequences.append(self.sequences[row] + [token])
            if len(keep) == self.beams:
                break
        done = not keep or (len(self.finished) >= self.beams
                            and self.finished[-1].score >= self._normalized(scores[0], self.length))
        if not done and self.length >= self.max_new:
            for score, tokens_ in zip(scores, sequences):
                self._add(score, tokens_)
            done = True
        if done:
            self._finish()
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        self.scores, self.sequences = np.asarray(scores), sequences
        return np.asarray(keep, dtype=np.int64), np.asarray(tokens, dtype=np.int64)

    def _finish(self) -> None:
        best = self.finished[0].tokens if self.finished else []
        ended = bool(best) and best[-1] == self.eos
        self.text.tokens = best[:-1] if ended else list(best)
        self.sink(Event("finish", 0, self.text.final(), "stop" if ended else "length", len(best)))
