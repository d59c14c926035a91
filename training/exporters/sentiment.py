"""Export the SST-2 sentiment models (sentiment-rnn / -gru / -lstm): the graph takes token ids + lengths, the
tokenizer.json beside it; accuracy is measured through tokenizer.json + the graph, the path the server runs.

    neuroserve-train export sentiment-lstm      # models/sentiment-lstm/{manifest.json,tokenizer.json,1/model.onnx}
"""

from __future__ import annotations

import argparse
import re
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from training import cards, metrics
from training.data import sentiment as data
from training.loop import setup_torch
from training.nets.sequence import SentimentExport, SentimentNet
from training.onnx_export import (export_graph, parity_cases, round_weights_to_fp16, run_onnx,
                                  store_weights_fp16)
from training.paths import models_dir
from training.provenance import command_line, git_commit, training_command
from training.recipes import get_recipe
from training.recipes.sentiment import SentimentConfig
from training.recipes.sentiment_teacher import base_model_label


def bow_baseline(train_seqs: list[np.ndarray], y: np.ndarray, val_seqs: list[np.ndarray], vocab: int,
                 epochs: int = 3, seed: int = 0) -> np.ndarray:
    """Bag-of-words logistic regression (EmbeddingBag mean -> 1 logit), trained on the same train split."""
    g = torch.Generator().manual_seed(seed)
    model = torch.nn.EmbeddingBag(vocab, 1, mode="sum", padding_idx=0)
    torch.nn.init.zeros_(model.weight)
    bias = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([*model.parameters(), bias], lr=0.02)
    yt = torch.as_tensor(y, dtype=torch.float32)
    for _ in range(epochs):
        perm = torch.randperm(len(train_seqs), generator=g).numpy()
        for i in range(0, len(perm), 256):
            idx = perm[i : i + 256]
            ids, _ = data.pad_batch([train_seqs[j] for j in idx])
            logit = model(torch.from_numpy(ids)).squeeze(1) + bias
            loss = F.binary_cross_entropy_with_logits(logit, yt[idx]) + 1e-6 * model.weight.pow(2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        ids, _ = data.pad_batch(val_seqs)
        return (model(torch.from_numpy(ids)).squeeze(1) + bias).numpy()


def main(args: argparse.Namespace) -> int:
    """``neuroserve-train export sentiment-rnn|gru|lstm``: the CLI's arguments -> ``export_sentiment``."""
    setup_torch(args.device)
    recipe = get_recipe(args.task)
    model, tok, cfg, ckpt = recipe.load_trained(args)
    return export_sentiment(model, tok, cfg, ckpt, models_dir(args), recipe.data_dir(args), priority=recipe.priority,
                            target=recipe.target, seed=args.seed, skip_card=args.skip_card,
                            command=command_line(args.argv), fp16_weights=args.fp16_weights)


def export_sentiment(model: SentimentNet, tok, cfg: SentimentConfig, ckpt: dict[str, Any], models_root: Path,
                     data_dir: Path, *, priority: int = 0, target: float = 0.87, seed: int = 0, skip_card: bool = False,
                     command: str = "", fp16_weights: bool = False) -> int:
    """A trained SentimentNet, its tokenizer, config and checkpoint -> models_root/<model_name>/: the graph (token ids
    + lengths in), parity, accuracy through tokenizer.json + the graph (the served path), baselines, manifest, card.
    ``fp16_weights``: the large weights (the embedding above all) rounded to fp16 and stored so, computed in fp32:
    about half the file; every figure is measured on the rounded weights."""
    t_start = time.time()
    meta = ckpt["meta"]
    name = cfg.model_name
    model_dir = models_root / name
    onnx_path = model_dir / "1" / "model.onnx"
    train_set, val_set = data.load_splits(data_dir, meta.get("limit"))
    vocab = meta["vocab"]

    if fp16_weights:  # before anything is measured
        round_weights_to_fp16(model)
    wrapper = SentimentExport(model).eval()
    rng = np.random.default_rng(1)
    example = {"input_ids": torch.randint(2, vocab, (2, 7)), "lengths": torch.tensor([7, 4])}
    export_graph(wrapper, example, onnx_path, ["probabilities"],
                 {"input_ids": {0: "batch", 1: "seq"}, "lengths": {0: "batch"}, "probabilities": {0: "batch"}})
    if fp16_weights:
        store_weights_fp16(onnx_path)
    cases = []
    for b in (1, 3, 64):
        for t in (1, 9, 40):
            lengths = rng.integers(1, t + 1, size=b).astype(np.int64)
            lengths[0] = t
            ids = rng.integers(2, vocab, size=(b, t)).astype(np.int64) * (np.arange(t)[None] < lengths[:, None])
            cases.append({"input_ids": ids, "lengths": lengths})
    parity = parity_cases(wrapper, onnx_path, cases)
    print(f"exported {onnx_path} ({onnx_path.stat().st_size / 1e6:.2f} MB); parity {parity['max_abs_diff']:.2e}")
    tok_path = model_dir / "tokenizer.json"
    tok.save(str(tok_path))

    # validation through the exact serving path: tokenizer.json -> ids -> ONNX
    served = Tokenizer.from_file(str(tok_path))
    va = data.encode(served, val_set.texts, cfg.max_tokens)
    ids, lengths = data.pad_batch(va)
    probs = run_onnx(onnx_path, {"input_ids": ids, "lengths": lengths})
    ids7, _ = data.pad_batch(va, extra=7)
    probs7 = run_onnx(onnx_path, {"input_ids": ids7, "lengths": lengths})
    pad_diff = float(np.abs(probs - probs7).max())
    pred = probs.argmax(1)
    yv = val_set.y
    acc = metrics.accuracy_with_ci(pred, yv)
    acc_boot = metrics.bootstrap_ci(lambda p, t: float((p == t).mean()), pred, yv, n_boot=2000)
    cm = metrics.confusion_matrix(yv, pred, 2)
    nll = float(-np.mean(np.log(np.clip(probs[np.arange(len(yv)), yv], 1e-12, 1))))
    ece = metrics.expected_calibration_error(yv, probs[:, 1])
    tr = data.encode(served, train_set.texts, cfg.max_tokens)
    bow = bow_baseline(tr, train_set.y, va, vocab, seed=seed)
    bow_pred = (bow > 0).astype(np.int64)
    majority = int(np.bincount(train_set.y).argmax())
    baselines = {
        "majority_class_of_train": {"label": data.LABELS[majority],
                                    "accuracy": metrics.accuracy_with_ci(np.full_like(yv, majority), yv)},
        "bag_of_words_logistic": {"accuracy": metrics.accuracy_with_ci(bow_pred, yv),
                                  "accuracy_bootstrap_ci95": metrics.bootstrap_ci(
                                      lambda p, t: float((p == t).mean()), bow_pred, yv, n_boot=2000)},
    }
    print(f"val accuracy {cards.fmt_prop(acc)} (bootstrap {acc_boot}); padding diff {pad_diff:.2e}; "
          f"baselines: BoW {cards.fmt_prop(baselines['bag_of_words_logistic']['accuracy'])}")

    history = ckpt["history"]
    train_cmd = training_command(meta)
    dist_meta = meta.get("distill") or {}
    total_s = (history["wall_time_s"] + (meta.get("pretrain") or {}).get("seconds", 0.0)
               + dist_meta.get("seconds", 0.0)
               + sum(t["train_wall_time_s"] for t in dist_meta.get("teachers", [])))
    provenance = {
        "training_command": train_cmd, "export_command": command,
        # without this machine's --checkpoint-dir: the teachers and the student must share one (the default)
        "recreate": [re.sub(r" --checkpoint-dir \S+", "", cmd) for cmd in
                     [*(t["command"] for t in (meta.get("distill") or {}).get("teachers", [])), train_cmd,
                      command]],
        "seed": meta["seed"], "epochs": len(history["epochs"]), "train_wall_time_s": round(history["wall_time_s"], 1),
        "total_compute_s": round(total_s, 1), "tokenizer_note": meta.get("tokenizer_note"), "fp16_weights": fp16_weights,
        "pretrain": meta.get("pretrain") or None, "distill": meta.get("distill") or None,
        "hardware": meta["hardware"], "git_commit": git_commit(),
        "params": meta["params"], "vocab": vocab,
        "vocab_train_split": (data.build_tokenizer(train_set.texts, cfg.min_frequency).get_vocab_size()
                              if cfg.vocab_corpora else vocab),
        "onnx_bytes": onnx_path.stat().st_size,
        "train_examples": len(train_set.texts), "validation_examples": int(len(yv)), "framework": f"torch {torch.__version__}",
    }
    metric_block = {"accuracy": acc, "accuracy_bootstrap_ci95": acc_boot, "nll": nll, "ece": ece,
                    "confusion": cm.tolist(), "baselines": baselines, "parity_max_abs_diff": parity["max_abs_diff"],
                    "padding_invariance_max_abs_diff": pad_diff}
    description = (f"SST-2 binary sentiment: word-level tokenizer + {'bidirectional ' if cfg.bidirectional else ''}"
                   f"{cfg.arch.upper()} (hidden {cfg.hidden}), masked max+mean pooling")
    cards.write_manifest(model_dir, {
        "name": name, "task": "text-sentiment", "description": description, "priority": priority,
        "inputs": [{"name": "input_ids", "datatype": "INT64", "shape": [-1, -1]},
                   {"name": "lengths", "datatype": "INT64", "shape": [-1]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}],
        "labels": data.LABELS, "tokenizer": "tokenizer.json",
        "preprocessing": {"tokenizer": "tokenizer.json (normalizer: NFKC, lowercase, PTB-style clitics/quotes; "
                                       "WordLevel vocabulary of the SST-2 train split)",
                          "pad_id": 0, "unk_id": 1, "truncate": "first max_tokens ids",
                          "lengths": "number of ids per row after truncation"},
        "batching": {"max_batch_size": 64, "max_queue_delay_ms": 0, "pad_inputs": {"input_ids": 0}},
        "parameters": {"max_tokens": cfg.max_tokens},
        "provenance": provenance,
        "metrics": {"val_accuracy": acc["value"], "val_accuracy_ci95": acc["ci95"],
                    "val_accuracy_bootstrap_ci95": acc_boot, "val_n": int(len(yv)),
                    "baseline_bow_accuracy": baselines["bag_of_words_logistic"]["accuracy"]["value"]},
    })
    if not skip_card:
        cards.plot_history(history, model_dir / "training_curves.png",
                           [("train_loss", "val_loss"), ("train_acc", "val_acc")], f"{name} training")
        cards.plot_confusion(cm, data.LABELS, model_dir / "confusion_matrix.png",
                             f"{name}: validation (n={len(yv)})")
        card = {"name": name, "task": "text-sentiment", "description": description, "metrics": metric_block,
                "provenance": provenance, "config": asdict(cfg), "history": history}
        cards.write_card(model_dir, card, render_readme(name, description, card, target))
    print(f"export finished in {time.time() - t_start:.0f} s")
    return 0


def describe_teacher(t: dict[str, Any]) -> str:
    if not t.get("base_model"):
        return "a recurrent net of this recipe on the same tokenizer"
    return (f"a {t.get('params') or 0:,}-parameter pretrained Transformer encoder, {base_model_label(t['base_model'])}, "
            f"fine-tuned on the SST-2 train split for {t.get('epochs')} epochs in {t['train_wall_time_s'] / 60:.0f} min; "
            f"it reads each student row as the row's words joined by spaces")


# The card's account of the design choices made on validation (disclosed selection): the steps every sentiment cell
# shares, then the ones that concern sentiment-lstm only (its distillation and noisy copies)
SELECTION_COMMON = (
    '  the validation accuracy of earlier runs (same seed, 4 epochs each): random-init RNN 79.5% -> skip-gram initialisation\n'
    '  for all three cells (LSTM 83.8%, GRU 83.5%, RNN 81.8%) -> LSTM distilled from the LSTM+GRU pair 84.3% -> the same\n'
    '  with bidirectional LM pretraining first 84.6% -> (after that normalizer fix) vocabulary extended with the words of\n'
    '  the unlabeled translation/chat text')
LSTM_STEPS = (
    ': skip-gram LSTM 85.32% (served until this model) -> the same LSTM distilled\n'
    '  from a fine-tuned pretrained Transformer with 3 noisy copies per row, 4 epochs: 86.81% -> 6 copies and 3 epochs\n'
    "  (chosen after seeing that 86.81%; the teacher's settings were fixed before any result): 87.39%, served until\n"
    '  2026-12-04 -> this model: the same plus 16 noisy copies of each row of >= 15 tokens (dev and test are full\n'
    '  sentences, mean 19.5 words; train rows average 9.4), 88.07%. That last choice was made on validation between two\n'
    '  runs completed the same day with the retrained teacher (90.14% again): without the long copies 87.04%, with them\n'
    '  88.07% (a third run, 8 long copies, was stopped unfinished); the first of its 3 epochs ran beside another\n'
    '  training run, so its wall time below is inflated.')


# the GRU and RNN cells as served before they were distilled too: validation accuracy, and whether that cell had been
# retrained on the extended vocabulary (the RNN kept the SST-2 words until its distillation took the LSTM's)
UNDISTILLED = {"sentiment-gru": ("85.09%", True), "sentiment-rnn": ("82.11%", False)}


def selection_history(name: str, extended_vocab: bool, distilled: bool) -> str:
    """sentiment-lstm's own steps; the GRU and RNN cells were retrained with no further change until 2026-12-05, then
    distilled with the LSTM's final settings as they stood (no run of their own compared)."""
    if name == "sentiment-lstm":
        return SELECTION_COMMON + LSTM_STEPS
    before, vocab_before = UNDISTILLED.get(name, ("n/a", extended_vocab))
    # a distilled cell's history is its undistilled predecessor's (whose vocabulary the config no longer shows)
    retrained_on_extended = vocab_before if distilled else extended_vocab
    text = SELECTION_COMMON + (", with which this cell was retrained (adopted before the result was known)"
                               if retrained_on_extended else " (this cell kept the SST-2 words only)")
    if not distilled:
        return text + "; the later\n  steps (distillation, noisy copies) concern sentiment-lstm only."
    return text + (f":\n  {before}, served until 2026-12-05 -> this model: distilled from the LSTM's teacher with the\n"
                   "  LSTM's final settings (its vocabulary, 6 noisy copies of each row of >= 6 tokens, 16 more of each row\n"
                   "  of >= 15 tokens, 3 epochs), applied to this cell as they stood: no run of its own was compared or chosen\n"
                   "  between.")


def render_readme(name: str, description: str, card: dict[str, Any], target: float) -> str:
    m, p, c = card["metrics"], card["provenance"], card["config"]
    base = m["baselines"]
    cm = m["confusion"]
    acc = m["accuracy"]["value"]
    pre = p.get("pretrain")
    dist = p.get("distill")
    distill_txt = (
        "Distillation: soft labels = mean probabilities of the teachers "
        + ", ".join(f"`{t['task']}` ({describe_teacher(t)}; last-epoch validation accuracy "
                    f"{100 * t['val_acc_last_epoch']:.2f}%)" for t in dist["teachers"])
        + f" on every train row and on {dist['augmented_rows']:,} augmented copies ({c['augment_copies']} of each train row "
        f"with >= {c['augment_min_tokens']} tokens"
        + (f", then {c['augment_long_copies']} more of each row with >= {c['augment_long_min_tokens']} tokens, as dev and test "
           f"are full sentences while most train rows are short phrases" if c.get('augment_long_copies') else "")
        + f"; tokens masked to [UNK] or swapped for a random word with p 0.1 each, one "
        f"span of 1-3 tokens dropped with p 0.3; Tang et al. 2019). Loss on train rows (1 - {dist['weight']}) x CE(gold) + "
        f"{dist['weight']} x CE(teacher); on augmented rows CE(teacher). The teachers' commands come first above; their "
        f"checkpoints must sit in the same `--checkpoint-dir`."
        if dist else "")
    pre_txt = (f"Embeddings initialised by skip-gram (negative sampling) pretraining on unlabeled text "
               f"({', '.join(f'{k[:-7]} {v:,} tokens' for k, v in (pre.get('corpora') or {}).items() if k.endswith('_tokens'))}; "
               f"{pre.get('epochs')} epochs, window {pre.get('window')}, {pre.get('negatives')} "
               f"negatives, {pre.get('wall_time_s')} s): the SST-2 train text without labels plus the English sides of "
               f"the shared translation (Multi30k captions) and chat (DailyDialog) train splits."
               if pre else "Embeddings randomly initialised (no pretrained vectors are available offline).")
    vocab_txt = (f", then {p['vocab'] - p['vocab_train_split']:,} more seen >= {c['vocab_min_frequency']} times in the "
                 f"unlabeled {' and '.join(c['vocab_corpora'])} train text (these get pretrained vectors, not [UNK])"
                 if c.get("vocab_corpora") else "")
    knowledge_txt = (
        "Its knowledge of English beyond\n  the ~2.2M tokens of the skip-gram text comes only through the teacher's soft "
        "labels on SST-2 phrases.\n- The teacher starts from weights pretrained elsewhere (all-MiniLM-L6-v2, trained on "
        "a billion sentence pairs of\n  public web text); their biases can pass to this model through its labels. The "
        "teacher itself is not served."
        if dist else
        "No large-corpus pretrained vectors\n  exist offline here: the skip-gram vectors come from ~2.2M tokens only, likely "
        "the main reason the published\n  GloVe-based LSTM figures (85-88%) are not reached.")
    tok_note = ("\n- Tokenizer fix after training: GLUE dev writes PTB escapes (`-lrb-`, `-rrb-`, `\\/`) where train writes `(`, `)`, "
                "`/`; the normalizer now maps them to the train form. The vocabulary and every train/pretraining id are "
                "unchanged (verified), so the weights are exactly what the current code trains; the per-epoch validation "
                "accuracy in the curves was measured with the old normalizer." if p.get("tokenizer_note") else "")
    return f"""# {name} (model card)

{description}.

## I/O contract
- Tokenizer: `tokenizer.json` (Hugging Face `tokenizers`). Its normalizer maps real text to the SST-2 training form
  (NFKC, lowercase, PTB-style splitting: `It's GREAT!!` -> `it 's great ! !`, `don't` -> `do n't`, curly quotes
  and double quotes -> `` `` `` / `''`). The server runs `encode_batch(texts)`, takes `.ids` and truncates to
  `parameters.max_tokens` = {c['max_tokens']}. Pad id 0, unknown id 1; vocabulary {p['vocab']:,} words: the {p.get('vocab_train_split', p['vocab']):,} of the
  SST-2 train split{vocab_txt}.
- inputs: `input_ids` INT64 [-1, -1] (right-padded with 0), `lengths` INT64 [-1] (ids per row).
- output: `probabilities` FP32 [-1, 2], softmax over [negative, positive].
- Padding invariance: the net reads only the first `lengths` ids of each row (forward cell causal, backward cell run
  on the row reversed within its length, masked pooling). Checked on the exported ONNX over the whole validation set
  at padded length L vs L+7: max |diff| {m['padding_invariance_max_abs_diff']:.1e}.
- torch vs onnxruntime parity at export: max |diff| {m['parity_max_abs_diff']:.1e} (limit 1e-4; batch 1/3/64 x length 1/9/40).

## Data and split
- `shared/data/sentiment/` (GLUE SST-2): train {p['train_examples']:,} phrases and sentences, validation = GLUE dev,
  {p['validation_examples']} full sentences. Official test split not used. No early stopping or epoch picking: the last
  epoch's weights are served. Model selection on validation, disclosed: the design changes were adopted after seeing
{selection_history(name, bool(c.get('vocab_corpora')), bool(dist))}
  With 872 sentences these steps are within noise of each other; the figures below are slightly optimistic.
  (The step figures were measured before the normalizer mapped GLUE dev's PTB escapes `-lrb-`, `-rrb-`, `\\/` to the
  train form.){tok_note}

## Validation metrics (n = {p['validation_examples']}, through tokenizer.json + ONNX, i.e. the served path)
- **accuracy {cards.fmt_prop(m['accuracy'])}**; percentile bootstrap 95% CI
  {100 * m['accuracy_bootstrap_ci95'][0]:.2f}-{100 * m['accuracy_bootstrap_ci95'][1]:.2f}%.
  Target >= {100 * target:.0f}%: **{'met' if acc >= target else 'NOT met'}**.
- log-loss {m['nll']:.4f}; ECE (10 bins, P(positive)) {m['ece']:.4f}.
- confusion (rows true negative/positive, columns predicted): {cm}.

![confusion matrix](confusion_matrix.png)

## Baselines (same split, same tokenizer)
- majority class of train ({base['majority_class_of_train']['label']}): {cards.fmt_prop(base['majority_class_of_train']['accuracy'])}
- bag-of-words logistic regression (train split, 3 epochs Adam): {cards.fmt_prop(base['bag_of_words_logistic']['accuracy'])}

## Training
![training curves](training_curves.png)

- Embedding {c['emb_dim']} -> {'bidirectional ' if c['bidirectional'] else ''}{c['arch'].upper()} hidden {c['hidden']}
  -> masked max+mean pooling -> MLP -> 2 logits; dropout {c['dropout']} (embeddings {c['emb_dropout']}).
  {p['params']:,} parameters. {pre_txt}
- AdamW lr {c['lr']} (one-cycle), weight decay {c['weight_decay']}, batch {c['batch_size']} (length-bucketed), gradient
  clipping {c['clip']}, {p['epochs']} epochs, cross-entropy on all train phrases{' (+ distillation, below)' if dist else ''}.
- Seed {p['seed']}; training wall time {p['train_wall_time_s'] / 60:.1f} min ({p['train_wall_time_s']:.0f} s incl. validation
  passes); all steps together (skip-gram, {"teachers' training and labelling, " if dist else ''}training):
  {p.get('total_compute_s', p['train_wall_time_s']) / 60:.1f} min, on {p['hardware']} (2 cores shared with other training runs).
  ONNX size {p['onnx_bytes'] / 1e6:.2f} MB{' (the large weights rounded to fp16 and stored so, computed in fp32; every figure here is of those weights)' if p.get('fp16_weights') else ''}. Git commit at export: {p['git_commit'] or 'n/a'}.

## Recreate
```
""" + "\n".join(p["recreate"]) + f"""
```
(`--checkpoint-dir` defaults to `~/.cache/neuroserve/checkpoints`; data from `$NEUROSERVE_DATA_DIR` or `../shared/data`.)
{distill_txt}

## Limitations
- Trained on short movie-review phrases; other domains (products, tweets, sarcasm) will do worse. English only.
- Words outside the train vocabulary map to one unknown id; no subword handling. {knowledge_txt}
- Binary only (no neutral class): neutral text still gets a confident-looking label.
- Accuracy on 872 validation sentences has a +/-3 point 95% interval; differences smaller than that between the
  RNN/GRU/LSTM variants are not significant.
"""
