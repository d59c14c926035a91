"""Decoding speed of the generation engine: greedy vs beam search, key/value cache vs none, alone vs batched.

    .venv/bin/python -m bench.generation_bench                 # models/translate-en-de and models/chat-dailydialog
    .venv/bin/python -m bench.generation_bench --models DIR    # another repository
    python -m bench.generation_bench --providers cpu,cuda --quick  # tokens/s GPU vs CPU, KV cache on host vs device

Runs the service's own engine in process (service.generation: the code behind /v1/text/translate and
/v1/chat/completions, without HTTP). The baseline, "no cache", is the plain loop of
tests/generation_reference.py on the same decoder graph: one request after the other, the whole prefix fed
every step with an empty past, no batching; the engine's cache and batching are what it lacks. "alone" sends
one request at a time (sentence latency); "batched" sends them all at once, so the engine decodes their steps
together (the baseline has no such mode: each row's speed-up is against the baseline's one-at-a-time run). A model that
is not in the repository is replaced by the tiny trained test model (tests/generation_models.py, needs
torch), and the table says so.

``--providers`` loads the models on each ONNX Runtime provider in turn (cpu, cuda); ``--device-cache``
compares where the KV caches live between steps: ``host`` (numpy, copied each step: the CPU default) and
``device`` (OrtValues kept by IO binding: service/generation/device.py, the CUDA default). ``--quick``
measures only batched requests with the cache (greedy and beam 4 translation, greedy chat).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, cpu_name, percentile
from service.generation.engine import BlockingEvents, collect_blocking
from service.generation.runtime import ChatModel, GenerationRuntime, Translator, load_generation
from service.manifest import read_manifest, valid_version
from service.settings import Settings
from tests.generation_reference import ReferenceDecoder

SENTENCES = [
    "A man in a blue shirt is standing on a ladder.", "Two dogs are playing in the snow.",
    "A group of people are sitting at a table in a restaurant.", "The little girl is riding her bicycle down the street.",
    "A woman is reading a book in the park.", "Children are swimming in the lake on a sunny day.",
    "An older man is playing the guitar on the sidewalk.", "A young boy jumps into the pool.",
    "Several workers are repairing the road.", "A cat sleeps on the windowsill.",
    "Three friends are laughing at a joke.", "A crowd watches the fireworks over the river.",
    "The chef is preparing food in a busy kitchen.", "A person in a red jacket climbs a rock wall.",
    "Two women are talking on a bench near the fountain.", "A dog runs through the tall grass.",
]
PROMPTS = [
    "Hi, how are you today?", "What do you want to do this weekend?", "Can you help me find the train station?",
    "I am thinking about buying a new car.", "Did you watch the game last night?", "What time does the shop close?",
    "I would like to book a table for two.", "How was your trip to London?",
]


def _version_dir(folder: Path) -> Path:
    return max((p for p in folder.iterdir() if p.is_dir() and valid_version(p.name)), key=lambda p: int(p.name))


def load(models: Path, name: str, task: str, fallback: Path, provider: str = "cpu",
         device_cache: str = "off") -> tuple[GenerationRuntime, str]:
    folder = models / name
    label = name
    if not (folder / "manifest.json").exists():
        from tests.generation_models import build_chat, build_translator

        folder = fallback / f"tiny-{task}"
        if not folder.exists() and task == "translation":
            build_translator(fallback, folder.name, max_new_tokens=128, max_input_tokens=160, max_positions=192)
        elif not folder.exists():
            build_chat(fallback, folder.name, max_new_tokens=128, max_context_tokens=256)
        label = f"{folder.name} (stand-in: {name} not found)"
    runtime = load_generation(_version_dir(folder), read_manifest(folder), Settings(warmup_runs=1, providers=provider),
                              device_cache=device_cache)
    return runtime, label


def reference(runtime: GenerationRuntime) -> ReferenceDecoder:
    """The baseline on the runtime's own graphs: no cache, no batching."""
    encoder = runtime.graphs.get("encoder")
    return ReferenceDecoder(runtime.graphs["decoder"].run, encoder=encoder.run if encoder else None,
                            cache_shape=(runtime.params.layers, runtime.params.heads, runtime.params.head_dim))


def _jobs(runtime: GenerationRuntime, texts: list[str], events, beam: int, max_tokens: int) -> list:
    if isinstance(runtime, Translator):
        return runtime.jobs(texts, events, beam_size=beam, max_new_tokens=min(max_tokens, runtime.params.max_new_tokens))
    assert isinstance(runtime, ChatModel)
    new = min(max_tokens, runtime.params.max_new_tokens)
    greedy = runtime.sampling(0.0, None, None)
    return [runtime.job(runtime.prompt([("user", t)], new), events.sink(i), max_new_tokens=new, sampling=greedy)
            for i, t in enumerate(texts)]


def measure(runtime: GenerationRuntime, texts: list[str], beam: int, max_tokens: int, together: bool,
            engine=None) -> dict:
    """Requests alone (one after the other) or together: latency of each (queued to finished) and output tokens/s.
    ``engine``: what decodes them (default the runtime's engine; the baseline passes its ReferenceDecoder)."""
    engine = engine or runtime.engine
    latencies, tokens = [], 0
    steps = engine.steps
    started = time.perf_counter()
    for group in [texts] if together else [[t] for t in texts]:
        events = BlockingEvents()
        jobs = _jobs(runtime, group, events, beam, max_tokens)
        finished = collect_blocking(engine, events, jobs, timeout_s=600)
        tokens += sum(e.tokens for one in finished for e in one)
        latencies += [job.ended - job.enqueued for job in jobs]
    wall = time.perf_counter() - started
    return {"n": len(texts), "tokens": tokens, "tokens_per_s": tokens / wall, "wall_s": wall,
            "p50_ms": statistics.median(latencies) * 1000, "p95_ms": percentile(latencies, 95) * 1000,
            "steps": engine.steps - steps}


CACHE_CHOICES = {"host": ["off"], "device": ["on"], "both": ["off", "on"]}


def run(models: Path, repeat: int, max_tokens: int, providers: list[str] = ("cpu",), device_cache: str = "host",
        quick: bool = False, json_path: Path | None = None) -> list[dict]:
    """The table's rows; with json_path they are also written there after each one (a run cut short keeps them)."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for provider in providers:
            for task, name, texts, beams in (("translation", "translate-en-de", SENTENCES, (1, 4)),
                                             ("chat", "chat-dailydialog", PROMPTS, (1,))):
                texts = texts * repeat
                variants = [(True, choice) for choice in CACHE_CHOICES[device_cache]]
                if not quick:
                    variants.append((False, "off"))
                for cached, choice in variants:
                    runtime, label = load(models, name, task, Path(tmp), provider, choice)
                    engine = runtime.engine if cached else reference(runtime)
                    try:
                        measure(runtime, texts[:2], 1, 8, together=True, engine=engine)  # warm
                        for beam in beams:
                            # the baseline decodes one request after another: "batched" would be the same run
                            modes = (True,) if quick else (False, True) if cached else (False,)
                            for together in modes:
                                result = measure(runtime, texts, beam, max_tokens, together, engine)
                                rows.append({"model": label, "provider": runtime.provider,
                                             "decoding": "greedy" if beam == 1 else f"beam {beam}",
                                             "cache": "yes" if cached else "no",
                                             "cache_where": runtime.cache_location if cached else "none",
                                             "requests": "batched" if together else "alone", **result})
                                if json_path is not None:
                                    json_path.parent.mkdir(parents=True, exist_ok=True)
                                    json_path.write_text(json.dumps(rows, indent=2))
                    finally:
                        runtime.close()
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| model | provider | decoding | KV cache (kept on) | requests | n | output tokens | tokens/s | latency p50 ms | p95 ms | steps | vs baseline |",
             "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    # the baseline decodes one request at a time: every row is compared with its one-at-a-time run
    base = {(r["model"], r.get("provider"), r["decoding"]): r for r in rows if r["cache"] == "no"}
    for r in rows:
        other = base.get((r["model"], r.get("provider"), r["decoding"]))
        speedup = f"{r['tokens_per_s'] / other['tokens_per_s']:.2f}x" if other and r["cache"] == "yes" else ""
        where = f"yes ({r.get('cache_where', 'host')})" if r["cache"] == "yes" else "no"
        lines.append(f"| {r['model']} | {r.get('provider', '')} | {r['decoding']} | {where} | {r['requests']} | {r['n']} | "
                     f"{r['tokens']} | {r['tokens_per_s']:.0f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['steps']} | {speedup} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=ROOT / "models", help="model repository (default models/)")
    parser.add_argument("--repeat", type=int, default=1, help="send each sentence/prompt this many times")
    parser.add_argument("--max-tokens", type=int, default=64, help="most tokens per answer")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "generation.json")
    parser.add_argument("--providers", default="cpu", help="comma-separated ONNX Runtime providers, each measured in turn (cpu, cuda)")
    parser.add_argument("--device-cache", choices=sorted(CACHE_CHOICES), default=None,
                        help="where the KV caches live between steps: host (numpy), device (IO binding) or both "
                             "(default: both with --quick, else host)")
    parser.add_argument("--quick", action="store_true", help="batched requests with the cache only")
    args = parser.parse_args()
    providers = [p.strip() for p in args.providers.split(",") if p.strip()]
    rows = run(args.models, args.repeat, args.max_tokens, providers, args.device_cache or ("both" if args.quick else "host"),
               args.quick, args.json)
    import onnxruntime

    print(f"machine: {cpu_name()}; onnxruntime {onnxruntime.__version__}; settings: {Settings().intra_op_threads} "
          f"intra-op thread(s) per session")
    print(table(rows))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
