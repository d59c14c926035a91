"""Export the generation models: fp32 graphs, token-for-token parity, INT8 (dynamic) graphs that are
served, validation metrics measured on the exported graphs, manifest, card and plots.

    neuroserve-train export translation --checkpoint RUN/translation/best.pt   # models/translate-en-de
    neuroserve-train export chat --checkpoint RUN/chat/best.pt                 # models/chat-dailydialog
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training import cards
from training.data import textgen
from training.exporters import generation_graphs as graphs
from training.onnx_export import file_size, ort_session
from training.paths import models_dir
from training.provenance import command_line, git_commit
from training.recipes import get_recipe

TRANSLATION_NAME = "translate-en-de"
CHAT_NAME = "chat-dailydialog"
SEED_COMMAND = "scripts/gpu_train_generation.sh ../shared/data TOKDIR RUN 300"


def quantize_int8(fp32: Path, out: Path) -> Path:
    """Dynamic INT8 (weights int8, activations quantised on the fly): MatMul and the embedding Gather."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gather"],
                     per_channel=False)
    return out


def batched(seq: list, n: int):
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def pad_right(rows: list[list[int]]) -> np.ndarray:
    out = np.zeros((len(rows), max(len(r) for r in rows)), np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def onnx_translate(encoder: Path, decoder: Path, tok, texts: list[str], config, max_new: int = 128,
                   batch: int = 64) -> tuple[list[str], float]:
    """Greedy decoding through the graphs (cache on); returns texts and seconds."""
    sessions = (ort_session(encoder), ort_session(decoder))
    ids = textgen.encode_batch(tok, texts)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out: dict[int, str] = {}
    t0 = time.perf_counter()
    for idx in batched(order, batch):
        src = pad_right([ids[i][:127] + [textgen.EOS_ID] for i in idx])
        tokens, _ = graphs.onnx_greedy_translate(encoder, decoder, src, config, textgen.BOS_ID, textgen.EOS_ID,
                                                 min(max_new, src.shape[1] * 2 + 10), sessions)
        for i, row in zip(idx, tokens[:, 1:].tolist()):
            row = row[: row.index(textgen.EOS_ID)] if textgen.EOS_ID in row else row
            out[i] = tok.decode(row)
    return [out[i] for i in range(len(texts))], time.perf_counter() - t0


def sentence_latency_ms(encoder: Path, decoder: Path, tok, texts: list[str], config, n: int = 30) -> float:
    sessions = (ort_session(encoder), ort_session(decoder))
    times = []
    for text in texts[:n]:
        src = np.asarray([textgen.encode_batch(tok, [text])[0][:127] + [textgen.EOS_ID]], np.int64)
        t0 = time.perf_counter()
        graphs.onnx_greedy_translate(encoder, decoder, src, config, textgen.BOS_ID, textgen.EOS_ID, 128, sessions)
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 2)


def bleu_report(hyps: list[str], refs: list[str]) -> dict[str, Any]:
    import sacrebleu

    metric = sacrebleu.BLEU()
    b = metric.corpus_score(hyps, [refs])
    return {"bleu": round(float(b.score), 2), "signature": str(metric.get_signature()),
            "precisions": [round(p, 1) for p in b.precisions], "bp": round(float(b.bp), 3),
            "ci95": bootstrap_bleu(hyps, refs)}


def bootstrap_bleu(hyps: list[str], refs: list[str], n_boot: int = 200, seed: int = 0) -> list[float]:
    import sacrebleu

    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(hyps), len(hyps))
        scores.append(sacrebleu.corpus_bleu([hyps[i] for i in idx], [[refs[i] for i in idx]]).score)
    return [round(float(np.percentile(scores, 2.5)), 2), round(float(np.percentile(scores, 97.5)), 2)]


def recorded_training_command(ckpt: dict) -> dict[str, str]:
    """The command the checkpoint's run recorded; a checkpoint saved before runs recorded it gets one rebuilt from
    its config, and says so."""
    if ckpt.get("command"):
        return {"training_command": ckpt["command"]}
    cfg = ckpt["config"]
    sets = " ".join(f"--set {k}={cfg[k]}" for k in ("d_model", "heads", "encoder_layers", "decoder_layers", "ff",
                                                      "dropout", "lr") if k in cfg)
    device = " --device cuda" if str(ckpt.get("device", "")).startswith("cuda") else ""
    return {"training_command": f"neuroserve-train train {ckpt['task']}{device} --seed {ckpt['seed']} {sets}",
            "training_command_note": "not recorded by this checkpoint: rebuilt from its config, seed and device (its "
                                     "time budget is not known)"}


def _provenance(ckpt: dict, command: str, extra: dict[str, Any]) -> dict[str, Any]:
    cfg = ckpt["config"]
    return {
        **recorded_training_command(ckpt),
        # a run kept from scripts/gpu_train_generation.sh's sweep (packed by gpu_pick_best.py, which names the run)
        **({"sweep_command": SEED_COMMAND} if ckpt.get("run") else {}),
        "export_command": command,
        "seed": ckpt["seed"], "epochs_run": len(ckpt["history"]), "planned_epochs": ckpt["planned_epochs"],
        "best_epoch": ckpt["best"]["epoch"], "train_wall_time_s": round(ckpt["train_wall_time_s"], 1),
        "hardware": ckpt["hardware"], "device": ckpt["device"], "params": ckpt["params"],
        "run": ckpt.get("run"), "config": cfg, "git_commit": git_commit(), "framework": f"torch {torch.__version__}",
        **extra,
    }


def _sweep_rows(checkpoint: Path, task: str) -> list[list[Any]]:
    """The sweep's table, when the checkpoint came from one (its summary.json two levels up)."""
    summary = checkpoint.parent.parent / "summary.json"
    if not summary.exists():
        return []
    data = json.loads(summary.read_text())
    rows = []
    for run, info in data.items():
        if isinstance(info, dict) and info.get("task") == task:
            c = info["config"]
            metric, value = next((k, v) for k, v in info["best"].items() if k != "epoch")
            rows.append([run, f"d{c['d_model']} h{c['heads']} {c['encoder_layers']}+{c['decoder_layers']} "
                              f"ff{c['ff']} drop{c['dropout']} lr{c['lr']}", f"{info['params']:,}",
                         f"{len(info['history'])}/{info['planned_epochs']}", f"{metric} {value:.3f}",
                         info["best"]["epoch"]])
    return rows


def main(args: argparse.Namespace) -> int:
    """``neuroserve-train export translation|chat``: the trained model and its tokenizer, the data and (chat) the
    recipe's validation perplexity -> ``export_translation`` / ``export_chat``."""
    torch.set_num_threads(2)
    recipe = get_recipe(args.task)
    checkpoint = recipe.checkpoint_path(args)
    model, ckpt, tok = recipe.load_checkpoint(checkpoint)
    train, val = recipe.load(args)
    common = {"skip_card": args.skip_card, "command": command_line(args.argv),
              "sweep": _sweep_rows(checkpoint, args.task) if args.checkpoint else []}
    if args.task == "translation":
        out_dir = _model_dir(models_dir(args) / TRANSLATION_NAME, checkpoint)
        return export_translation(model, ckpt, tok, train, val, out_dir, **common)
    out_dir = _model_dir(models_dir(args) / CHAT_NAME, checkpoint)
    with torch.no_grad():
        torch_metrics = recipe.evaluate_model(model, tok, val, None, recipe.saved_config(ckpt), torch.device("cpu"), True)
    return export_chat(model, ckpt, tok, train, val, out_dir, torch_metrics, **common)


def _model_dir(out_dir: Path, checkpoint: Path) -> Path:
    """The model folder, with the tokenizer the checkpoint was trained with (beside it) copied in."""
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(checkpoint.parent / "tokenizer.json", out_dir / "tokenizer.json")
    return out_dir


# -- translation -------------------------------------------------------------------------------

def export_translation(model, ckpt: dict, tok, train, val, out_dir: Path, *, skip_card: bool = False,
                       command: str = "", sweep: list[list[Any]] | None = None) -> int:
    """A trained Seq2SeqTransformer -> out_dir: fp32 graphs checked token for token against torch, the INT8 graphs
    served, BLEU through them, manifest and card."""
    t_start = time.time()
    c, version_dir = model.config, out_dir / "1"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        enc32, dec32 = graphs.export_encoder(model, tmp / "encoder.onnx"), graphs.export_seq2seq_step(model, tmp / "decoder.onnx")
        ids = textgen.encode_batch(tok, val.src)
        parity = graphs.check_translator(
            model, enc32, dec32, [pad_right([ids[i] + [textgen.EOS_ID] for i in range(a, b)])
                                  for a, b in ((0, 1), (1, 9), (9, 41)) if b <= len(ids)], textgen.BOS_ID, textgen.EOS_ID, max_new=60)
        print(f"parity (cached ONNX vs uncached torch, greedy): {parity}", flush=True)
        hyp32, sec32 = onnx_translate(enc32, dec32, tok, val.src, c)
        version_dir.mkdir(parents=True, exist_ok=True)
        enc8 = quantize_int8(enc32, version_dir / "encoder.onnx")
        dec8 = quantize_int8(dec32, version_dir / "decoder.onnx")
        hyp8, sec8 = onnx_translate(enc8, dec8, tok, val.src, c)
        bleu32, bleu8 = bleu_report(hyp32, val.tgt), bleu_report(hyp8, val.tgt)
        sizes = {"fp32_bytes": file_size(enc32) + file_size(dec32), "int8_bytes": file_size(enc8) + file_size(dec8)}
        latency = {"fp32_greedy_sentence_ms": sentence_latency_ms(enc32, dec32, tok, val.src, c),
                   "int8_greedy_sentence_ms": sentence_latency_ms(enc8, dec8, tok, val.src, c)}
    copy = bleu_report(val.src, val.tgt)  # baseline: leave the English as it is
    metrics = {"val_bleu_greedy_int8": bleu8["bleu"], "val_bleu_greedy_fp32": bleu32["bleu"],
               "val_bleu_greedy_int8_ci95": bleu8["ci95"], "val_bleu_torch_greedy_at_selection": ckpt["best"]["val_bleu"],
               "baseline_copy_source_bleu": copy["bleu"], "sacrebleu_signature": bleu8["signature"],
               "val_n": len(val), "parity": parity, **sizes, **latency,
               "val_decode_seconds_batch64": {"fp32": round(sec32, 1), "int8": round(sec8, 1)}}
    params = {"source_language": "en", "target_language": "de", "bos_id": textgen.BOS_ID, "eos_id": textgen.EOS_ID,
              "pad_id": textgen.PAD_ID, "layers": c.decoder_layers, "heads": c.heads, "head_dim": c.head_dim,
              "vocab_size": c.vocab_size, "max_positions": c.max_positions, "max_input_tokens": 128,
              "max_new_tokens": 128, "default_beam_size": 4, "max_beam_size": 8,
              "length_penalty": 1.0}  # chosen on validation: scripts/eval_generation.py measures the grid
    provenance = _provenance(ckpt, command, {"export_wall_time_s": round(time.time() - t_start, 1),
                                             "train_pairs": len(train), "val_pairs": len(val)})
    manifest = {
        "name": TRANSLATION_NAME, "task": "translation", "priority": 10,
        "description": (f"Multi30k English->German: Transformer encoder-decoder ({c.encoder_layers}+{c.decoder_layers} "
                        f"layers, d{c.d_model}, joint BPE {c.vocab_size}), KV-cache decoder step, INT8 weights"),
        "graphs": {"encoder": "encoder.onnx", "decoder": "decoder.onnx"},
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        "tokenizer": "tokenizer.json",
        "preprocessing": {"tokenizer": "tokenizer.json (NFKC, Metaspace, BPE; joint en+de, train split only)",
                          "source": "ids + [eos]; longer than max_input_tokens is refused (422)", "target": "starts at bos, ends at eos"},
        "batching": {"max_batch_size": 32, "max_queue_delay_ms": 0, "max_queue_size": 256},
        "parameters": params, "provenance": provenance, "metrics": metrics,
    }
    cards.write_manifest(out_dir, manifest)
    if not skip_card:
        history = {"epochs": ckpt["history"]}
        cards.plot_history(history, out_dir / "training_curves.png",
                           [("train_loss", "val_loss"), ("val_bleu",)], f"{TRANSLATION_NAME}: training")
        samples = list(zip(val.src[:6], hyp8[:6], val.tgt[:6]))
        card = {"name": TRANSLATION_NAME, "metrics": metrics, "provenance": provenance,
                "sweep": sweep or [], "samples": samples}
        cards.write_card(out_dir, card, translation_readme(manifest, metrics, provenance, card, bleu8, bleu32))
    print(json.dumps({k: v for k, v in metrics.items() if k != "parity"}, indent=1))
    return 0


INT8_NOTE = ("INT8 and batching: dynamic quantisation scales each activation tensor by its own range per run, so the same\n"
             "prompt can come out a few tokens different depending on how the server batches its steps (with or without\n"
             "the cache, which other requests share the step); the fp32 graph matches torch token for token.\n")


def recreate(p: dict[str, Any]) -> str:
    command = p["training_command"] + (f"   # {p['training_command_note']}" if p.get("training_command_note") else "")
    if p.get("sweep_command"):
        command = p["sweep_command"] + "   # the sweep (on a GPU); the run kept was:\n" + command
    return cards.recreate_section({**p, "training_command": command})


def translation_readme(manifest, m, p, card, bleu8, bleu32) -> str:
    c = p["config"]
    sweep = cards.markdown_table(["run", "config", "params", "epochs", "best (torch greedy)", "at epoch"],
                                 card["sweep"]) if card["sweep"] else "(sweep summary not available)"
    samples = "\n".join(f"- EN: {s}\n  - model: {h}\n  - reference: {r}" for s, h, r in card["samples"])
    return f"""# {manifest['name']}

{manifest['description']}.

## Data
Multi30k task 1 (Flickr30K captions with crowd-sourced German translations; non-commercial research and
educational use, cite Elliott et al. 2016): `../shared/data/translation/`. Trained on the official train split
({p['train_pairs']:,} pairs), model selection and every figure here on the official validation split
({p['val_pairs']:,} pairs). The test splits were never used.

## Validation metrics (sacreBLEU, cased, detokenized output; `{m['sacrebleu_signature']}`)
| decoding, graphs | BLEU | 95% CI (bootstrap) |
|---|---|---|
| greedy, served INT8 graphs | **{bleu8['bleu']}** | {bleu8['ci95'][0]}-{bleu8['ci95'][1]} |
| greedy, fp32 graphs | {bleu32['bleu']} | {bleu32['ci95'][0]}-{bleu32['ci95'][1]} |
| baseline: copy the English source | {m['baseline_copy_source_bleu']} | |

Greedy and beam search through the HTTP API (what clients get; the server default is beam 4):
{{beam_section}}

Token-for-token check: greedy decoding through the exported graphs with the key/value cache gives the same
tokens as torch recomputing the whole prefix, on {m['parity']['batches']} batches (1, 8 and 32 sentences,
{m['parity']['steps']} steps), logits within {m['parity']['max_abs_logit_diff']:.2e}.

## Model
Pre-LayerNorm Transformer, {c['encoder_layers']} encoder + {c['decoder_layers']} decoder layers, d_model {c['d_model']},
{c['heads']} heads, feed-forward {c['ff']}, GELU, dropout {c['dropout']}, label smoothing {c['label_smoothing']}; one
BPE vocabulary of {manifest['parameters']['vocab_size']} for both languages, shared embeddings tied to the output
projection; sinusoidal positions. {p['params']:,} parameters.
Graphs: `encoder.onnx` (source ids -> every decoder layer's cross-attention keys/values) and `decoder.onnx`
(one step: new tokens + self-attention cache -> last logits + grown cache), dynamic INT8 weights
(onnxruntime.quantization, MatMul + Gather): {m['int8_bytes'] / 1e6:.1f} MB against {m['fp32_bytes'] / 1e6:.1f} MB fp32.
CPU latency, one sentence, greedy, median of 30 validation sentences (2 threads): INT8 {m['int8_greedy_sentence_ms']} ms,
fp32 {m['fp32_greedy_sentence_ms']} ms.

## Training
AdamW (0.9, 0.98), lr {c['lr']} with {c['warmup_steps']} warm-up steps then cosine to zero over the planned epochs,
batches of about {c['batch_tokens']} tokens, bf16 autocast, seed {p['seed']}; {p['epochs_run']} epochs in
{p['train_wall_time_s']} s on {p['device']} ({p['hardware']}); the checkpoint kept is the one with the best
validation greedy BLEU (epoch {p['best_epoch']}). It was chosen from this sweep (all runs in parallel on one GPU,
same data, seed and time budget; selection on the validation split):

{sweep}

## Samples (validation, INT8 greedy)
{samples}

## Limits
{INT8_NOTE}
Caption-domain English only (short descriptive sentences of images); long or out-of-domain text degrades fast.
The server refuses (422) a source longer than {manifest['parameters']['max_input_tokens']} tokens, its end-of-sentence
token included.

{recreate(p)}
"""


# -- chat -----------------------------------------------------------------------------------------

def onnx_lm_nll(decoder: Path, rows: list[list[int]], config) -> tuple[float, int]:
    """Total negative log-likelihood of each row's tokens after the first, stepping the graph with its cache."""
    sess = ort_session(decoder)
    total, count = 0.0, 0
    for chunk in batched(sorted(rows, key=len), 32):
        width = max(len(r) for r in chunk)
        ids = np.zeros((len(chunk), width), np.int64)
        mask = np.zeros((len(chunk), width), np.int64)
        for i, r in enumerate(chunk):
            ids[i, : len(r)], mask[i, : len(r)] = r, 1
        pk = pv = graphs.empty_past(config, len(chunk))
        for t in range(width - 1):
            feeds = {"input_ids": ids[:, t : t + 1], "position_ids": np.full((len(chunk), 1), t, np.int64),
                     "attention_mask": np.ones((len(chunk), t + 1), np.int64), "past_key": pk, "past_value": pv}
            logits, pk, pv = sess.run(None, feeds)
            logits = logits.astype(np.float64)
            logp = logits - logits.max(-1, keepdims=True)
            logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
            nxt = ids[:, t + 1]
            live = mask[:, t + 1] > 0
            total -= float(logp[np.arange(len(chunk)), nxt][live].sum())
            count += int(live.sum())
    return total, count


def unigram_ppl(train_rows: list[list[int]], val_rows: list[list[int]], vocab: int) -> float:
    counts = Counter(t for r in train_rows for t in r[1:])
    total = sum(counts.values()) + vocab
    nll = -sum(math.log((counts[t] + 1) / total) for r in val_rows for t in r[1:])
    return math.exp(nll / sum(len(r) - 1 for r in val_rows))


def export_chat(model, ckpt: dict, tok, train, val, out_dir: Path, torch_metrics: dict[str, float], *,
                skip_card: bool = False, command: str = "", sweep: list[list[Any]] | None = None) -> int:
    """A trained DecoderOnlyLM -> out_dir: the fp32 step graph checked against torch, the INT8 graph served, its
    perplexity on a validation subset beside ``torch_metrics`` (the recipe's full validation perplexity), card."""
    t_start = time.time()
    c, version_dir = model.config, out_dir / "1"
    window = ckpt["config"]["context"]
    val_rows = [w for d in val for w in textgen.windows(textgen.transcript_ids(tok, d), window, window)]
    train_rows = [textgen.transcript_ids(tok, d) for d in train]
    subset = val_rows[:200]  # stepping the graph token by token: a fixed subset of the validation dialogues
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dec32 = graphs.export_lm_step(model, tmp / "decoder.onnx")
        prompts = [np.asarray([r[:n]], np.int64) for r, n in ((val_rows[0], 12), (val_rows[1], 30), (val_rows[2], 5))]
        parity = graphs.check_lm(model, dec32, prompts, textgen.EOS_ID, max_new=40)
        print(f"parity (cached ONNX vs uncached torch, greedy): {parity}", flush=True)
        version_dir.mkdir(parents=True, exist_ok=True)
        dec8 = quantize_int8(dec32, version_dir / "decoder.onnx")
        nll32, n32 = onnx_lm_nll(dec32, subset, c)
        nll8, n8 = onnx_lm_nll(dec8, subset, c)
        sizes = {"fp32_bytes": file_size(dec32), "int8_bytes": file_size(dec8)}
    metrics = {"val_ppl": round(torch_metrics["val_ppl"], 2), "val_reply_ppl": round(torch_metrics["val_reply_ppl"], 2),
               "baseline_unigram_ppl": round(unigram_ppl(train_rows, val_rows, c.vocab_size), 1),
               "val_subset_ppl_onnx_fp32": round(math.exp(nll32 / n32), 2),
               "val_subset_ppl_onnx_int8": round(math.exp(nll8 / n8), 2), "val_subset_tokens": n8,
               "val_dialogues": len(val), "val_tokens_scored": sum(len(r) - 1 for r in val_rows),
               "parity": parity, **sizes}
    params = {"bos_id": textgen.BOS_ID, "eos_id": textgen.EOS_ID, "pad_id": textgen.PAD_ID,
              "role_ids": {"user": textgen.USER_ID, "assistant": textgen.ASSISTANT_ID},
              "layers": c.decoder_layers, "heads": c.heads, "head_dim": c.head_dim, "vocab_size": c.vocab_size,
              "max_positions": window, "max_context_tokens": window, "max_new_tokens": 128,
              "temperature": 0.8, "top_p": 0.9, "top_k": 50}
    provenance = _provenance(ckpt, command, {"export_wall_time_s": round(time.time() - t_start, 1),
                                             "train_dialogues": len(train), "val_dialogues": len(val),
                                             "license": "DailyDialog: CC BY-NC-SA 4.0 (non-commercial, share-alike)"})
    manifest = {
        "name": CHAT_NAME, "task": "chat", "priority": 10,
        "description": (f"DailyDialog chat: decoder-only Transformer ({c.decoder_layers} layers, d{c.d_model}, BPE "
                        f"{c.vocab_size}), KV-cache step graph, INT8 weights; CC BY-NC-SA 4.0 data"),
        "graphs": {"decoder": "decoder.onnx"},
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        "tokenizer": "tokenizer.json",
        "preprocessing": {"tokenizer": "tokenizer.json (NFKC, Metaspace, BPE; DailyDialog train turns, detokenized)",
                          "transcript": "[bos] + per message: role id + text ids + eos; then the assistant role id"},
        "batching": {"max_batch_size": 32, "max_queue_delay_ms": 0, "max_queue_size": 256},
        "parameters": params, "provenance": provenance, "metrics": metrics,
    }
    cards.write_manifest(out_dir, manifest)
    if not skip_card:
        cards.plot_history({"epochs": ckpt["history"]}, out_dir / "training_curves.png",
                           [("train_loss", "val_loss"), ("val_ppl", "val_reply_ppl")], f"{CHAT_NAME}: training")
        card = {"name": CHAT_NAME, "metrics": metrics, "provenance": provenance, "sweep": sweep or []}
        cards.write_card(out_dir, card, chat_readme(manifest, metrics, provenance, card))
    print(json.dumps({k: v for k, v in metrics.items() if k != "parity"}, indent=1))
    return 0


def chat_readme(manifest, m, p, card) -> str:
    c = p["config"]
    sweep = cards.markdown_table(["run", "config", "params", "epochs", "best", "at epoch"],
                                 card["sweep"]) if card["sweep"] else "(sweep summary not available)"
    return f"""# {manifest['name']}

{manifest['description']}.

**License: the training data, DailyDialog (Li et al. 2017), is CC BY-NC-SA 4.0: non-commercial use only, and
share-alike.** This model is trained on it; treat the weights under the same terms.

## Data
`../shared/data/chat/`: the official DailyDialog split; {p['train_dialogues']:,} train dialogues, model selection
and every figure here on the {p['val_dialogues']:,} validation dialogues (77 of them duplicate a train dialogue, a
known leak of the data set). The test split was never used. Turns are detokenized ("Say , Jim ." -> "Say, Jim.").
A dialogue is one transcript: `<s>` then, per turn, a role token (user first, turns alternating) + text + `</s>`.

## Validation metrics (per token, whole transcripts; windows of {c['context']} tokens)
| | perplexity |
|---|---|
| this model, all tokens (torch, fp32) | **{m['val_ppl']}** |
| this model, assistant turns only | {m['val_reply_ppl']} |
| baseline: unigram (train token frequencies, add-one) | {m['baseline_unigram_ppl']} |
| served INT8 graph, first 200 validation windows ({m['val_subset_tokens']:,} tokens) | {m['val_subset_ppl_onnx_int8']} |
| fp32 graph, same 200 windows | {m['val_subset_ppl_onnx_fp32']} |

Token-for-token check: greedy decoding through `decoder.onnx` with the key/value cache gives the same tokens as
torch recomputing the prefix ({m['parity']['steps']} steps, logits within {m['parity']['max_abs_logit_diff']:.2e}).

{{samples_section}}

## Model
Decoder-only pre-LayerNorm Transformer: {c['decoder_layers']} layers, d_model {c['d_model']}, {c['heads']} heads,
feed-forward {c['ff']}, dropout {c['dropout']}, BPE {manifest['parameters']['vocab_size']}, tied embeddings,
{p['params']:,} parameters; context {c['context']} tokens. Served graph: dynamic INT8 weights,
{m['int8_bytes'] / 1e6:.1f} MB (fp32 {m['fp32_bytes'] / 1e6:.1f} MB).

## Training
AdamW (0.9, 0.98), lr {c['lr']}, {c['warmup_steps']} warm-up steps then cosine, batches of about {c['batch_tokens']}
tokens, bf16 autocast, seed {p['seed']}; {p['epochs_run']} epochs in {p['train_wall_time_s']} s on {p['device']}
({p['hardware']}); kept: the epoch with the lowest validation loss (epoch {p['best_epoch']}). Chosen from:

{sweep}

## Limits
{INT8_NOTE}
A small model of everyday English small talk (the data come from English-learning websites): it makes things
up, has no knowledge beyond that, no safety tuning, and no memory past {c['context']} tokens. Not for advice of
any kind.

{recreate(p)}
"""

