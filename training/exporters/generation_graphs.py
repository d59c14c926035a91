"""ONNX graphs for incremental decoding, and their token-for-token parity check against torch.

Translator: ``encoder.onnx`` (src_ids -> cross-attention K/V + source mask) and ``decoder.onnx`` (one
step with a self-attention K/V cache). Chat LM: ``decoder.onnx`` alone. The I/O names and layouts are
the contract with ``service/generation``; they are listed in ENCODER_IO / SEQ2SEQ_STEP_IO / LM_STEP_IO
and written into each manifest.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from training.nets.transformer import DecoderOnlyLM, EncoderExport, LMStepExport, Seq2SeqStepExport, Seq2SeqTransformer
from training.onnx_export import ort_session

ENCODER_IO = {
    "inputs": [{"name": "src_ids", "datatype": "INT64", "shape": [-1, -1]}],
    "outputs": [{"name": "cross_key", "datatype": "FP32", "shape": [-1, -1, -1, -1, -1]},
                {"name": "cross_value", "datatype": "FP32", "shape": [-1, -1, -1, -1, -1]},
                {"name": "encoder_attention_mask", "datatype": "INT64", "shape": [-1, -1]}],
}
_STEP_IN = [{"name": "input_ids", "datatype": "INT64", "shape": [-1, -1]},
            {"name": "position_ids", "datatype": "INT64", "shape": [-1, -1]},
            {"name": "attention_mask", "datatype": "INT64", "shape": [-1, -1]},
            {"name": "past_key", "datatype": "FP32", "shape": [-1, -1, -1, -1, -1]},
            {"name": "past_value", "datatype": "FP32", "shape": [-1, -1, -1, -1, -1]}]
_STEP_OUT = [{"name": "logits", "datatype": "FP32", "shape": [-1, -1]},
             {"name": "present_key", "datatype": "FP32", "shape": [-1, -1, -1, -1, -1]},
             {"name": "present_value", "datatype": "FP32", "shape": [-1, -1, -1, -1, -1]}]
LM_STEP_IO = {"inputs": _STEP_IN, "outputs": _STEP_OUT}
SEQ2SEQ_STEP_IO = {
    "inputs": _STEP_IN + [{"name": "cross_key", "datatype": "FP32", "shape": [-1, -1, -1, -1, -1]},
                          {"name": "cross_value", "datatype": "FP32", "shape": [-1, -1, -1, -1, -1]},
                          {"name": "encoder_attention_mask", "datatype": "INT64", "shape": [-1, -1]}],
    "outputs": _STEP_OUT,
}


def _names(io: dict, key: str) -> list[str]:
    return [t["name"] for t in io[key]]


def _export(module: torch.nn.Module, args: tuple, path: Path, io: dict, dynamic_axes: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        # The legacy exporter keeps every axis symbolic, including a zero-length cache at step 0.
        torch.onnx.export(module.eval(), args, str(path), dynamo=False, opset_version=17,
                          input_names=_names(io, "inputs"), output_names=_names(io, "outputs"),
                          dynamic_axes=dynamic_axes)
    return path


def _cache_axes() -> dict[int, str]:
    return {1: "batch", 3: "time"}


def export_encoder(model: Seq2SeqTransformer, path: Path) -> Path:
    src = torch.randint(4, model.config.vocab_size, (2, 7))
    axes = {"src_ids": {0: "batch", 1: "src"}, "cross_key": {1: "batch", 3: "src"},
            "cross_value": {1: "batch", 3: "src"}, "encoder_attention_mask": {0: "batch", 1: "src"}}
    return _export(EncoderExport(model), (src,), path, ENCODER_IO, axes)


def _empty_cache(config, batch: int, past: int) -> torch.Tensor:
    return torch.randn(config.decoder_layers, batch, config.heads, past, config.head_dim)


def export_seq2seq_step(model: Seq2SeqTransformer, path: Path) -> Path:
    c = model.config
    b, t, p, s = 2, 1, 3, 5
    args = (torch.randint(4, c.vocab_size, (b, t)), torch.full((b, t), p), torch.ones(b, p + t, dtype=torch.long),
            _empty_cache(c, b, p), _empty_cache(c, b, p), _empty_cache(c, b, s), _empty_cache(c, b, s),
            torch.ones(b, s, dtype=torch.long))
    axes = {"input_ids": {0: "batch", 1: "new"}, "position_ids": {0: "batch", 1: "new"},
            "attention_mask": {0: "batch", 1: "total"}, "past_key": _cache_axes(), "past_value": _cache_axes(),
            "cross_key": {1: "batch", 3: "src"}, "cross_value": {1: "batch", 3: "src"},
            "encoder_attention_mask": {0: "batch", 1: "src"}, "logits": {0: "batch"},
            "present_key": {1: "batch", 3: "total"}, "present_value": {1: "batch", 3: "total"}}
    return _export(Seq2SeqStepExport(model), args, path, SEQ2SEQ_STEP_IO, axes)


def export_lm_step(model: DecoderOnlyLM, path: Path) -> Path:
    c = model.config
    b, t, p = 2, 3, 4
    args = (torch.randint(4, c.vocab_size, (b, t)), torch.arange(p, p + t).repeat(b, 1),
            torch.ones(b, p + t, dtype=torch.long), _empty_cache(c, b, p), _empty_cache(c, b, p))
    axes = {"input_ids": {0: "batch", 1: "new"}, "position_ids": {0: "batch", 1: "new"},
            "attention_mask": {0: "batch", 1: "total"}, "past_key": _cache_axes(), "past_value": _cache_axes(),
            "logits": {0: "batch"}, "present_key": {1: "batch", 3: "total"}, "present_value": {1: "batch", 3: "total"}}
    return _export(LMStepExport(model), args, path, LM_STEP_IO, axes)


def empty_past(config, batch: int) -> np.ndarray:
    return np.zeros((config.decoder_layers, batch, config.heads, 0, config.head_dim), np.float32)


# -- decoding with the ONNX graphs (greedy), and the same in torch without a cache -----------

def onnx_greedy_translate(encoder_path: Path, decoder_path: Path, src_ids: np.ndarray, config, bos: int, eos: int,
                          max_new: int, sessions=None) -> tuple[np.ndarray, list[np.ndarray]]:
    """Greedy decode through the graphs with the KV cache; returns tokens and each step's logits."""
    enc, dec = sessions or (ort_session(encoder_path), ort_session(decoder_path))
    ck, cv, emask = enc.run(None, {"src_ids": src_ids})
    b = src_ids.shape[0]
    tokens = np.full((b, 1), bos, np.int64)
    pk = pv = empty_past(config, b)
    step_logits = []
    done = np.zeros(b, bool)
    for step in range(max_new):
        feeds = {"input_ids": tokens[:, -1:], "position_ids": np.full((b, 1), step, np.int64),
                 "attention_mask": np.ones((b, step + 1), np.int64), "past_key": pk, "past_value": pv,
                 "cross_key": ck, "cross_value": cv, "encoder_attention_mask": emask}
        logits, pk, pv = dec.run(None, feeds)
        step_logits.append(logits)
        nxt = np.where(done, eos, logits.argmax(-1))
        tokens = np.concatenate([tokens, nxt[:, None]], axis=1)
        done |= nxt == eos
        if done.all():
            break
    return tokens, step_logits


@torch.no_grad()
def torch_greedy_translate(model: Seq2SeqTransformer, src_ids: torch.Tensor, bos: int, eos: int,
                           max_new: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Reference: recompute the whole prefix each step (no cache)."""
    model.eval()
    b = src_ids.shape[0]
    tokens = torch.full((b, 1), bos, dtype=torch.long, device=src_ids.device)
    done = torch.zeros(b, dtype=torch.bool, device=src_ids.device)
    step_logits = []
    for _ in range(max_new):
        logits = model(src_ids, tokens)[:, -1]
        step_logits.append(logits)
        nxt = torch.where(done, torch.full_like(done, eos, dtype=torch.long), logits.argmax(-1))
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        done |= nxt == eos
        if bool(done.all()):
            break
    return tokens, step_logits


def onnx_greedy_lm(decoder_path: Path, prompt: np.ndarray, config, eos: int, max_new: int,
                   session=None) -> tuple[np.ndarray, list[np.ndarray]]:
    """Prefill the (unpadded, batch-1 or equal-length) prompt, then step with the cache."""
    dec = session or ort_session(decoder_path)
    b, t = prompt.shape
    feeds = {"input_ids": prompt, "position_ids": np.tile(np.arange(t), (b, 1)).astype(np.int64),
             "attention_mask": np.ones((b, t), np.int64), "past_key": empty_past(config, b),
             "past_value": empty_past(config, b)}
    tokens, step_logits = prompt, []
    for step in range(max_new):
        logits, pk, pv = dec.run(None, feeds)
        step_logits.append(logits)
        nxt = logits.argmax(-1)
        tokens = np.concatenate([tokens, nxt[:, None]], axis=1)
        if (nxt == eos).all():
            break
        n = tokens.shape[1]
        feeds = {"input_ids": nxt[:, None].astype(np.int64), "position_ids": np.full((b, 1), n - 1, np.int64),
                 "attention_mask": np.ones((b, n), np.int64), "past_key": pk, "past_value": pv}
    return tokens, step_logits


@torch.no_grad()
def torch_greedy_lm(model: DecoderOnlyLM, prompt: torch.Tensor, eos: int, max_new: int):
    model.eval()
    tokens, step_logits = prompt, []
    for _ in range(max_new):
        logits = model(tokens)[:, -1]
        step_logits.append(logits)
        nxt = logits.argmax(-1)
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        if bool((nxt == eos).all()):
            break
    return tokens, step_logits


def _compare(ref_tokens, ref_logits, got_tokens, got_logits, what: str, atol: float) -> dict[str, float]:
    ref_tokens = np.asarray(ref_tokens)
    if ref_tokens.shape != got_tokens.shape or not np.array_equal(ref_tokens, got_tokens):
        raise AssertionError(f"{what}: ONNX (cached) tokens differ from torch (uncached):\n{got_tokens}\n{ref_tokens}")
    diff = max(float(np.max(np.abs(np.asarray(r) - g))) for r, g in zip(ref_logits, got_logits))
    if not diff <= atol:
        raise AssertionError(f"{what}: logits differ by {diff} > {atol}")
    return {"steps": len(ref_logits), "max_abs_logit_diff": diff, "tokens_equal": True}


def check_translator(model: Seq2SeqTransformer, encoder_path: Path, decoder_path: Path, src_batches: list[np.ndarray],
                     bos: int, eos: int, max_new: int = 40, atol: float = 1e-3) -> dict[str, float]:
    """Token for token: cached ONNX greedy decode == uncached torch greedy decode, on each batch."""
    model = model.cpu().eval()
    sessions = (ort_session(encoder_path), ort_session(decoder_path))
    out = {"batches": len(src_batches), "steps": 0, "max_abs_logit_diff": 0.0}
    for src in src_batches:
        ref_t, ref_l = torch_greedy_translate(model, torch.from_numpy(src), bos, eos, max_new)
        got_t, got_l = onnx_greedy_translate(encoder_path, decoder_path, src, model.config, bos, eos, max_new, sessions)
        r = _compare(ref_t.numpy(), [x.numpy() for x in ref_l], got_t, got_l, "translator", atol)
        out["steps"] += r["steps"]
        out["max_abs_logit_diff"] = max(out["max_abs_logit_diff"], r["max_abs_logit_diff"])
    out["tokens_equal"] = True
    return out


def check_lm(model: DecoderOnlyLM, decoder_path: Path, prompts: list[np.ndarray], eos: int, max_new: int = 40,
             atol: float = 1e-3) -> dict[str, float]:
    model = model.cpu().eval()
    session = ort_session(decoder_path)
    out = {"prompts": len(prompts), "steps": 0, "max_abs_logit_diff": 0.0}
    for prompt in prompts:
        ref_t, ref_l = torch_greedy_lm(model, torch.from_numpy(prompt), eos, max_new)
        got_t, got_l = onnx_greedy_lm(decoder_path, prompt, model.config, eos, max_new, session)
        r = _compare(ref_t.numpy(), [x.numpy() for x in ref_l], got_t, got_l, "chat LM", atol)
        out["steps"] += r["steps"]
        out["max_abs_logit_diff"] = max(out["max_abs_logit_diff"], r["max_abs_logit_diff"])
    out["tokens_equal"] = True
    return out
