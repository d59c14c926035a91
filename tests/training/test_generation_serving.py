"""The service decodes the exported generation graphs exactly as torch does (the contract holds end to end)."""

from __future__ import annotations

import json

import numpy as np
import torch

from service.generation.contract import CHAT_TASK, GRAPHS, TRANSLATION_TASK
from service.generation.decoding import Sampling
from service.generation.engine import BlockingEvents, collect_blocking
from service.generation.runtime import load_generation
from service.manifest import read_manifest
from service.settings import Settings
from training.exporters.generation_graphs import (ENCODER_IO, LM_STEP_IO, SEQ2SEQ_STEP_IO, export_encoder, export_lm_step,
                                                  export_seq2seq_step, torch_greedy_lm, torch_greedy_translate)
from training.nets.transformer import DecoderOnlyLM, Seq2SeqTransformer, TransformerConfig
from tests.generation_models import CHAT_SPECIALS, ROLE_IDS, train_tokenizer


def _io(specs) -> list[tuple]:
    return [(s["name"], s["datatype"], len(s["shape"])) if isinstance(s, dict) else (s.name, s.datatype, len(s.shape))
            for s in specs]


def test_the_service_contract_is_the_exporters():
    for task, role, io in ((TRANSLATION_TASK, "encoder", ENCODER_IO), (TRANSLATION_TASK, "decoder", SEQ2SEQ_STEP_IO),
                           (CHAT_TASK, "decoder", LM_STEP_IO)):
        inputs, outputs = GRAPHS[task][role]
        assert _io(inputs) == _io(io["inputs"]) and _io(outputs) == _io(io["outputs"]), (task, role)


def _folder(tmp_path, name, task, config, graphs, **params):
    folder = tmp_path / name
    folder.mkdir()
    train_tokenizer(["some words to learn a few merges from"], CHAT_SPECIALS, 60).save(str(folder / "tokenizer.json"))
    (folder / "manifest.json").write_text(json.dumps({
        "name": name, "task": task, "tokenizer": "tokenizer.json", "graphs": graphs,
        "parameters": {"layers": config.decoder_layers, "heads": config.heads, "head_dim": config.head_dim,
                       "vocab_size": config.vocab_size, "max_positions": config.max_positions, **params}}))
    return folder


def _greedy_jobs(runtime, prompts_or_sources, events, max_new, translate: bool):
    runtime.banned = np.zeros(0, np.int64)  # torch's reference masks nothing
    if translate:
        return [runtime.job(s, events.sink(i), beam_size=1, max_new_tokens=max_new, length_penalty=1.0)
                for i, s in enumerate(prompts_or_sources)]
    return [runtime.job(p, events.sink(i), max_new_tokens=max_new, sampling=Sampling())
            for i, p in enumerate(prompts_or_sources)]


def _generated(jobs) -> list[list[int]]:
    return [job.strategy.texts[0].tokens for job in jobs]


def test_batched_cached_serving_equals_torch_uncached_greedy(tmp_path):
    torch.manual_seed(3)
    config = TransformerConfig(vocab_size=64, d_model=32, heads=2, encoder_layers=2, decoder_layers=2, ff=64,
                               dropout=0.0, max_positions=64)
    rng = np.random.default_rng(0)
    settings = Settings(models_dir=tmp_path, warmup_runs=1)
    max_new = 12

    translator = Seq2SeqTransformer(config).eval()
    folder = _folder(tmp_path, "t", TRANSLATION_TASK, config, {"encoder": "encoder.onnx", "decoder": "decoder.onnx"},
                     source_language="en", target_language="de", max_input_tokens=16, max_new_tokens=max_new,
                     default_beam_size=1)
    export_encoder(translator, folder / "1" / "encoder.onnx")
    export_seq2seq_step(translator, folder / "1" / "decoder.onnx")
    sources = [rng.integers(7, 64, n).tolist() + [2] for n in (3, 9, 1, 6)]
    runtime = load_generation(folder / "1", read_manifest(folder), settings)
    try:
        events = BlockingEvents()
        jobs = _greedy_jobs(runtime, sources, events, max_new, translate=True)
        collect_blocking(runtime.engine, events, jobs)  # all four in one batch, sources of four lengths
        for source, got in zip(sources, _generated(jobs)):
            ref, _ = torch_greedy_translate(translator, torch.tensor([source]), 1, 2, max_new)
            ref = ref[0, 1:].tolist()
            assert got == (ref[: ref.index(2)] if 2 in ref else ref)
    finally:
        runtime.close()

    lm = DecoderOnlyLM(config).eval()
    folder = _folder(tmp_path, "c", CHAT_TASK, config, {"decoder": "decoder.onnx"}, role_ids=ROLE_IDS,
                     max_context_tokens=64, max_new_tokens=max_new)
    export_lm_step(lm, folder / "1" / "decoder.onnx")
    prompts = [[1, 4, *rng.integers(7, 64, n).tolist(), 2, 5] for n in (2, 11, 5)]
    runtime = load_generation(folder / "1", read_manifest(folder), settings)
    try:
        events = BlockingEvents()
        jobs = _greedy_jobs(runtime, prompts, events, max_new, translate=False)
        collect_blocking(runtime.engine, events, jobs)  # three prompts prefilled together, left-padded
        for prompt, got in zip(prompts, _generated(jobs)):
            ref, _ = torch_greedy_lm(lm, torch.tensor([prompt]), 2, max_new)
            ref = ref[0, len(prompt):].tolist()
            assert got == (ref[: ref.index(2)] if 2 in ref else ref)
    finally:
        runtime.close()
