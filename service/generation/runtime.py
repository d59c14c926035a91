"""A loaded generation model: its graphs (one ONNX Runtime session each), tokenizer, parameters and engine.

It stands where a plain model has its ``OnnxRuntimeSession``: the repository loads it when the
manifest names ``graphs``, and the Open Inference Protocol sees its text face (a BYTES input "text"
-> a BYTES output "text", one translation or chat reply per element, with the model's defaults).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import numpy as np
from pydantic import ValidationError
from tokenizers import Tokenizer

from service.batching import BatchStats
from service.errors import BadRequest, ModelLoadError, Unprocessable
from service.generation.contract import (CHAT_TASK, GRAPHS, PARAMS, TEXT_FACE, TRANSLATION_TASK, ChatParams,
                                         TranslationParams)
from service.generation.decoding import BeamStrategy, Event, SampleStrategy, Sampling, TokenText
from service.generation.device import DeviceCache
from service.generation.engine import (AsyncEvents, BlockingEvents, Engine, GenerationMetrics, Job, collect,
                                       collect_blocking)
from service.manifest import Batching, Manifest, resource_path
from service.runtime import OnnxRuntimeSession
from service.settings import Settings
from service.threads import off_loop

log = logging.getLogger("neuroserve.generation")

CHAT_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
class GenerationRuntime:
    """Base of Translator and ChatModel; ``load`` picks the class from the manifest's task."""

    task: str = ""

    def __init__(self, path: Path, graphs: dict[str, OnnxRuntimeSession], tokenizer: Tokenizer, params,
                 settings: Settings, metrics: GenerationMetrics | None = None, name: str = "model",
                 tracker=None, device_cache: str | None = None):
        self.path, self.graphs, self.tokenizer, self.params = path, graphs, tokenizer, params
        self.inputs, self.outputs = TEXT_FACE
        self.banned = np.asarray(sorted(self._banned_ids()), np.int64)
        encoder = graphs.get("encoder")
        choice = device_cache or settings.generation_device_cache
        self.device = device_cache_for(graphs["decoder"], choice)
        self.engine = Engine(name, graphs["decoder"].run, encoder=encoder.run if encoder else None,
                             cache_shape=(params.layers, params.heads, params.head_dim), pad_id=params.pad_id,
                             max_rows=settings.generation_max_rows, max_waiting=settings.generation_max_waiting,
                             metrics=metrics, tracker=tracker, device=self.device).start()

    @property
    def cache_location(self) -> str:
        """Where the KV caches live between decode steps: 'cuda' / 'cpu' (IO binding) or 'host' (numpy copies)."""
        device = self.engine.device  # None again after a failure on the device (the engine fell back)
        return device.device if device is not None else "host"

    # ----- what the repository and the OIP routes use, like an OnnxRuntimeSession -----
    @property
    def provider(self) -> str:
        return self.graphs["decoder"].provider

    @property
    def output_names(self) -> list[str]:
        return [spec.name for spec in self.outputs]

    def close(self, timeout_s: float = 30.0) -> None:
        self.engine.close(timeout_s)

    # ----- shared helpers -----
    def _banned_ids(self) -> set[int]:
        """Tokens a reply may never contain (padding, a second bos)."""
        return {self.params.pad_id, self.params.bos_id} - {self.params.eos_id}

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        for index, text in enumerate(texts):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:  # JSON can carry lone surrogates ("\ud800"); tokenizers refuses them
                raise Unprocessable(f"text {index} is not valid Unicode: {exc.reason} at character {exc.start}") from None
        return [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def default_jobs(self, texts: list[str], events) -> list[Job]:
        """One job per text with the model's defaults (the Open Inference Protocol face)."""
        raise NotImplementedError

    def warm_up(self, runs: int) -> None:
        """Run two tiny requests of different lengths through the engine (graphs, padding, cache reuse)."""
        word = min(7, self.params.vocab_size - 1)  # an ordinary token
        for _ in range(runs):
            events = BlockingEvents()
            collect_blocking(self.engine, events, self.warm_up_jobs([[word], [word] * 5], events), timeout_s=120)

    def warm_up_jobs(self, token_lists: list[list[int]], events) -> list[Job]:
        raise NotImplementedError

    def check_shapes(self) -> None:
        """One step on a single token: the outputs must have the manifest's layers, heads, head_dim, vocabulary."""
        p = self.params
        decoder = self.graphs["decoder"]
        declared = {spec.name: spec.shape for spec in decoder.inputs + decoder.outputs}
        for name, shape in (("past_key", [p.layers, -1, p.heads, -1, p.head_dim]), ("logits", [-1, p.vocab_size])):
            if any(have not in (-1, want) for have, want in zip(declared[name], shape)):
                raise ModelLoadError(f"decoder {name!r} has shape {declared[name]}; the manifest's parameters "
                                     f"(layers, heads, head_dim, vocab_size) say {shape}")
        past = np.zeros((p.layers, 1, p.heads, 0, p.head_dim), np.float32)
        feeds = {"input_ids": np.array([[p.bos_id]], np.int64), "position_ids": np.zeros((1, 1), np.int64),
                 "attention_mask": np.ones((1, 1), np.int64), "past_key": past, "past_value": past}
        if "encoder" in self.graphs:
            feeds.update(self.graphs["encoder"].run({"src_ids": np.array([[p.eos_id]], np.int64)}))
        out = self.graphs["decoder"].run(feeds)
        want = {"logits": (1, p.vocab_size), "present_key": (p.layers, 1, p.heads, 1, p.head_dim)}
        for name, shape in want.items():
            if tuple(out[name].shape) != shape:
                raise ModelLoadError(f"decoder output {name!r} has shape {list(out[name].shape)}, the manifest's "
                                     f"parameters say {list(shape)}")


class Translator(GenerationRuntime):
    task = TRANSLATION_TASK
    params: TranslationParams

    def languages(self) -> tuple[str, str]:
        return self.params.source_language, self.params.target_language

    def source_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each source, ending with eos when the model was trained so (parameter source_eos)."""
        end = [self.params.eos_id] if self.params.source_eos else []
        encoded = [ids + end for ids in self.token_ids(texts)]
        for i, ids in enumerate(encoded):
            if len(ids) == len(end):
                raise Unprocessable(f"texts[{i}] has no tokens", param=f"texts.{i}")
            if len(ids) > self.params.max_input_tokens:
                raise Unprocessable(f"texts[{i}] is {len(ids)} tokens long; this model takes at most "
                                    f"{self.params.max_input_tokens}", param=f"texts.{i}")
        return encoded

    def settings_for(self, beam_size: int | None, max_tokens: int | None, length_penalty: float | None) -> tuple[int, int, float]:
        p = self.params
        beam = p.default_beam_size if beam_size is None else beam_size
        if beam > p.max_beam_size:
            raise Unprocessable(f"beam_size {beam} exceeds this model's maximum of {p.max_beam_size}", param="beam_size")
        new = p.max_new_tokens if max_tokens is None else max_tokens
        if new > p.max_new_tokens:
            raise Unprocessable(f"max_tokens {new} exceeds this model's maximum of {p.max_new_tokens}", param="max_tokens")
        return beam, new, p.length_penalty if length_penalty is None else length_penalty

    def job(self, source: list[int], sink, *, beam_size: int, max_new_tokens: int, length_penalty: float) -> Job:
        p, text = self.params, TokenText(self.decode)
        if beam_size > 1:
            strategy = BeamStrategy(text, beams=beam_size, eos=p.eos_id, max_new_tokens=max_new_tokens,
                                    length_penalty=length_penalty, banned=self.banned, sink=sink)
        else:
            strategy = SampleStrategy([text], eos=p.eos_id, max_new_tokens=max_new_tokens, params=Sampling(),
                                      banned=self.banned, sink=sink)
        return Job(strategy, sink, source, start_id=p.bos_id)

    def jobs(self, texts: list[str], events, beam_size: int | None = None, max_new_tokens: int | None = None,
             length_penalty: float | None = None) -> list[Job]:
        beam, new, alpha = self.settings_for(beam_size, max_new_tokens, length_penalty)
        return [self.job(ids, events.sink(i), beam_size=beam, max_new_tokens=new, length_penalty=alpha)
                for i, ids in enumerate(self.source_ids(texts))]

    def default_jobs(self, texts: list[str], events) -> list[Job]:
        return self.jobs(texts, events)

    def warm_up_jobs(self, token_lists: list[list[int]], events) -> list[Job]:
        beam, _, alpha = self.settings_for(None, None, None)
        return [self.job(ids + [self.params.eos_id], events.sink(i), beam_size=beam, max_new_tokens=3, length_penalty=alpha)
                for i, ids in enumerate(token_lists)]


class ChatModel(GenerationRuntime):
    task = CHAT_TASK
    params: ChatParams

    def _banned_ids(self) -> set[int]:
        return super()._banned_ids() | set(self.params.role_ids.values())

    def prompt(self, messages: list[tuple[str, str]], max_tokens: int) -> list[int]:
        """[bos] + ([role] + text + [eos] per message) + [assistant role], the oldest turns dropped to leave
        max_tokens of room in max_context_tokens. Roles: system/developer (dropped when the model has no
        system role), user, assistant."""
        p = self.params
        if max_tokens > p.max_new_tokens:
            raise Unprocessable(f"max_tokens {max_tokens} exceeds this model's maximum of {p.max_new_tokens}",
                                param="max_tokens")
        kept = []
        for i, (role, content) in enumerate(messages):
            role = CHAT_ROLES.get(role, role)
            if role not in CHAT_ROLES.values():
                raise Unprocessable(f"messages[{i}]: role {role!r} is not supported (system, developer, user, assistant)",
                                    param=f"messages.{i}.role")
            if role != "system" or "system" in p.role_ids:
                kept.append((role, content))
        if not kept:
            raise Unprocessable("messages: nothing to answer (only system messages, and this model has no system role)",
                                param="messages")
        ids = self.token_ids([content for _, content in kept])
        turns = [(role, [p.role_ids[role], *tokens, p.eos_id]) for (role, _), tokens in zip(kept, ids)]
        budget = p.max_context_tokens - max_tokens - 2  # bos and the assistant role
        systems = [t for t in turns if t[0] == "system"]
        dialogue = [t for t in turns if t[0] != "system"]

        def size() -> int:
            return sum(len(t[1]) for t in systems + dialogue)

        dropped = False
        while size() > budget and len(dialogue) > 1:
            dialogue.pop(0)
            dropped = True
        if size() > budget:
            systems = []
        if size() > budget or not dialogue:
            last = len(dialogue[-1][1]) if dialogue else 0
            raise Unprocessable(f"the last message is {last} tokens; with max_tokens {max_tokens} this model has room "
                                f"for {budget} prompt tokens (context {p.max_context_tokens})", param="messages",
                                code="context_length_exceeded")
        while dropped and len(dialogue) > 1 and dialogue[0][0] != "user":
            dialogue.pop(0)  # a truncated conversation starts with a user turn
        order = {id(t): i for i, t in enumerate(turns)}
        body = sorted(systems + dialogue, key=lambda t: order[id(t)])
        return [p.bos_id, *(token for _, tokens in body for token in tokens), p.role_ids["assistant"]]

    def job(self, prompt: list[int], sink, *, n: int = 1, max_new_tokens: int, sampling: Sampling,
            stop: list[str] = (), seed: int | None = None, stream: bool = False) -> Job:
        texts = [TokenText(self.decode, stop) for _ in range(n)]
        strategy = SampleStrategy(texts, eos=self.params.eos_id, max_new_tokens=max_new_tokens, params=sampling,
                                  banned=self.banned, sink=sink, seed=seed, stream=stream)
        return Job(strategy, sink, prompt)

    def sampling(self, temperature: float | None, top_p: float | None, top_k: int | None) -> Sampling:
        p = self.params
        return Sampling(p.temperature if temperature is None else temperature, p.top_k if top_k is None else top_k,
                        p.top_p if top_p is None else top_p)

    def default_jobs(self, texts: list[str], events) -> list[Job]:
        """Greedy replies to one user message each (deterministic, as an inference protocol should be)."""
        new = self.params.max_new_tokens
        return [self.job(self.prompt([("user", text)], new), events.sink(i), max_new_tokens=new, sampling=Sampling())
                for i, text in enumerate(texts)]

    def warm_up_jobs(self, token_lists: list[list[int]], events) -> list[Job]:
        p = self.params
        return [self.job([p.bos_id, p.role_ids["user"], *ids, p.eos_id, p.role_ids["assistant"]], events.sink(i),
                         max_new_tokens=3, sampling=self.sampling(None, None, None)) for i, ids in enumerate(token_lists)]


RUNTIMES: dict[str, type[GenerationRuntime]] = {TRANSLATION_TASK: Translator, CHAT_TASK: ChatModel}
DEVICE_CACHE_CHOICES = ("auto", "on", "off")


def device_cache_for(decoder: OnnxRuntimeSession, choice: str) -> DeviceCache | None:
    """The IO-binding cache keeper for a decoder, or None for today's host path. ``auto``: on the CUDA provider
    only (on the CPU the numpy path is as fast and is what it always was); ``on``: on any provider (the CPU
    provider then keeps 'cpu' OrtValues: the tests); ``off``: never."""
    if choice not in DEVICE_CACHE_CHOICES:
        raise ModelLoadError(f"generation_device_cache must be one of {', '.join(DEVICE_CACHE_CHOICES)}, not {choice!r}")
    if choice == "off" or (choice == "auto" and decoder.provider != "CUDAExecutionProvider"):
        return None
    return DeviceCache(decoder.session)


def load_generation(version_dir: Path, manifest: Manifest, settings: Settings, metrics=None,
                    tracker=None, device_cache: str | None = None) -> GenerationRuntime:
    """Blocking: open each graph, check it against the contract, load the tokenizer, start and warm the engine.
    ``tracker``: the server's RunTracker, told while the engine decodes (so no other model takes every core).
    ``device_cache``: auto/on/off (default: the setting generation_device_cache); should the device path fail
    its warm-up, the model is loaded again on the host path and the reason logged."""
    task = manifest.task
    if task not in GRAPHS:
        raise ModelLoadError(f"the manifest names graphs, but {task!r} is not a generation task ({', '.join(GRAPHS)})")
    expected = GRAPHS[task]
    if set(manifest.graphs) != set(expected):
        raise ModelLoadError(f"a {task} model has graphs {sorted(expected)}; the manifest names {sorted(manifest.graphs)}")
    try:
        params = PARAMS[task].model_validate(manifest.parameters)
    except ValidationError as exc:
        raise ModelLoadError(f"{task} parameters are invalid: {exc}") from exc
    for declared, face in ((manifest.inputs, TEXT_FACE[0]), (manifest.outputs, TEXT_FACE[1])):
        if declared and [(s.name, s.datatype) for s in declared] != [(s.name, s.datatype) for s in face]:
            raise ModelLoadError(f"a {task} model's inputs and outputs are one BYTES tensor 'text' each")
    tokenizer_path = resource_path(version_dir.parent, manifest.tokenizer or "tokenizer.json")
    if not tokenizer_path.is_file():
        raise ModelLoadError(f"tokenizer file {tokenizer_path.name!r} is missing")
    try:
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
    except Exception as exc:
        raise ModelLoadError(f"{tokenizer_path.name}: not a tokenizers file: {exc}") from exc
    tokenizer.no_padding()
    tokenizer.no_truncation()
    if tokenizer.get_vocab_size() > params.vocab_size:
        raise ModelLoadError(f"the tokenizer has {tokenizer.get_vocab_size()} tokens, the model {params.vocab_size}")
    graphs = {}
    for role, file in manifest.graphs.items():
        path = version_dir / file
        if not path.is_file():
            raise ModelLoadError(f"{path} is missing")
        graphs[role] = OnnxRuntimeSession.load(path, manifest, settings, contract=expected[role])
    def start(choice: str | None) -> GenerationRuntime:
        return RUNTIMES[task](version_dir, graphs, tokenizer, params, settings, metrics,
                              name=f"{manifest.name}:{version_dir.name}", tracker=tracker, device_cache=choice)

    runtime = start(device_cache)
    if runtime.device is not None:
        try:  # at least one warm-up run: it takes every device-side path (empty past, join, select)
            runtime.device.self_test()
            runtime.check_shapes()
            runtime.warm_up(max(1, settings.warmup_runs))
            return runtime
        except Exception as exc:
            log.warning("%s: decoding with the KV cache on the device failed its warm-up (%s: %s); the host path serves",
                        manifest.name, type(exc).__name__, exc)
            runtime.close(0)
            runtime = start("off")
    try:
        runtime.check_shapes()
        runtime.warm_up(settings.warmup_runs)
    except ModelLoadError:
        runtime.close(0)
        raise
    except Exception as exc:
        runtime.close(0)
        raise ModelLoadError(f"{version_dir}: warm-up failed: {type(exc).__name__}: {exc}") from exc
    return runtime


class EngineBatcher:
    """Stands where a plain model's Batcher does, for the Open Inference Protocol: each request's texts
    become jobs of the engine (which batches their decode steps with every other request's)."""

    def __init__(self, name: str, runtime: GenerationRuntime, policy: Batching):
        self.name, self.runtime = name, runtime
        self.max_batch_size = policy.max_batch_size
        self.max_delay_s = 0.0
        self.max_queue_size = runtime.engine.max_waiting
        self.instances = 1

    @property
    def batching(self) -> bool:
        return self.max_batch_size > 0

    @property
    def depth(self) -> int:
        return self.runtime.engine.waiting

    def start(self) -> None:
        pass  # the engine thread runs from load on

    def check_capacity(self) -> None:
        self.runtime.engine.check_capacity()

    def submit(self, feeds: dict[str, np.ndarray], rows: int) -> asyncio.Future:
        if self.batching and rows > self.max_batch_size:
            raise BadRequest(f"batch size {rows} exceeds the model's max_batch_size {self.max_batch_size}")
        self.check_capacity()
        texts = [str(v) for v in feeds["text"].reshape(-1)]
        for i, text in enumerate(texts):
            if not text.strip():
                raise BadRequest(f"input 'text' element {i} is blank")
        return asyncio.ensure_future(self._outputs(texts, feeds["text"].shape))

    async def _outputs(self, texts: list[str], shape) -> tuple[dict[str, np.ndarray], BatchStats]:
        events = AsyncEvents()
        try:
            jobs = await off_loop(lambda: self.runtime.default_jobs(texts, events), sum(map(len, texts)))
        except Unprocessable as exc:
            raise BadRequest(exc.message) from None
        self.runtime.engine.submit(*jobs)
        finished, stats = await collect_with_stats(jobs, events)
        outputs = np.empty(len(jobs), dtype=object)
        outputs[:] = [found[0].text for found in finished]
        return {"text": outputs.reshape(shape)}, stats

    async def close(self, timeout_s: float = 30.0) -> None:
        await asyncio.to_thread(self.runtime.close, timeout_s)


async def collect_with_stats(jobs: list[Job], events: AsyncEvents) -> tuple[list[list[Event]], BatchStats]:
    """collect(), plus the queue and compute time of the jobs (what ModelVersion.track records)."""
    finished = await collect(jobs, events)
    enqueued = min(job.enqueued for job in jobs)
    admitted = min((job.admitted for job in jobs if job.admitted is not None), default=enqueued)
    return finished, BatchStats(queue_s=admitted - enqueued, compute_s=time.perf_counter() - admitted,
                                batch_size=sum(job.rows for job in jobs), leader=True)
