"""SST-2 sentiment: word-level tokenizer (train split) + bidirectional RNN / GRU / LSTM.

    neuroserve-train train sentiment-lstm --epochs 6 --seed 0
    neuroserve-train export sentiment-lstm      # models/sentiment-lstm/{manifest.json,tokenizer.json,1/model.onnx}

The three registry entries differ only in the recurrent cell (and their default sizes/priority).
Optional word-embedding pretraining (skip-gram with negative sampling on the train text itself,
``training/nets/word2vec.py``) initialises the embedding table.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import re
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from training import cards, metrics
from training.data import sentiment as data
from training.loop import epoch_generator, git_commit, hardware, load_checkpoint, seed_everything, setup_torch
from training.nets.sequence import SentimentExport, SentimentNet, count_parameters
from training.recipes.base import Recipe
from training.seqtools import (config_from_args, export_command, export_graph, one_cycle, parity_cases, run_fit,
                               run_onnx)


@dataclass
class SentimentConfig:
    model_name: str = "sentiment-lstm"
    arch: str = "lstm"
    emb_dim: int = 128
    hidden: int = 128
    bidirectional: bool = True
    dropout: float = 0.3
    emb_dropout: float = 0.1
    epochs: int = 4
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    clip: float = 1.0
    min_frequency: int = 1
    max_tokens: int = data.MAX_TOKENS
    pretrain_epochs: int = 8  # skip-gram epochs on unlabeled text before training (0 = random embeddings)
    # unlabeled text for the skip-gram: the SST-2 train text itself (labels unused) + English sides of other
    # shared train splits ("translation": Multi30k captions, "chat": DailyDialog turns)
    pretrain_corpora: tuple[str, ...] = ("sentiment", "translation", "chat")
    # words of these unlabeled train splits (>= vocab_min_frequency times) join the vocabulary after the SST-2 words
    # (same ids for those): dev words unseen in SST-2 train get pretrained vectors instead of [UNK]
    vocab_corpora: tuple[str, ...] = ()
    vocab_min_frequency: int = 3
    lm_epochs: int = 0  # bidirectional LM pretraining of embedding + cells on the same unlabeled text (0 = none)
    threads: int = 0  # 0: $NEUROSERVE_THREADS or 2
    # distillation (Tang et al. 2019): registry tasks whose checkpoints (same --checkpoint-dir) label the train rows
    # and augmented copies with soft labels (mean of their probabilities)
    teachers: tuple[str, ...] = ()
    distill_weight: float = 0.5  # train rows: (1-w) CE(gold) + w CE(teacher); augmented rows: CE(teacher) only
    augment_copies: int = 0  # augmented copies of each train row with >= augment_min_tokens tokens
    augment_min_tokens: int = 8


@torch.no_grad()
def predict_logits(net: SentimentNet, seqs: list[np.ndarray], batch: int = 256) -> np.ndarray:
    net.eval()
    order = np.argsort([len(s) for s in seqs], kind="stable")
    out = np.zeros((len(seqs), 2), dtype=np.float32)
    for i in range(0, len(seqs), batch):
        idx = order[i : i + batch]
        ids, lengths = data.pad_batch([seqs[j] for j in idx])
        out[idx] = net(torch.from_numpy(ids), torch.from_numpy(lengths)).numpy()
    return out


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


def augment(seqs: list[np.ndarray], cfg: SentimentConfig, vocab_freq: np.ndarray,
            rng: np.random.Generator) -> list[np.ndarray]:
    """Tang et al. (2019)-style noisy copies of the longer train rows: each token masked to [UNK] (p 0.1) or replaced
    by a unigram-sampled word (p 0.1), and with p 0.3 one span of 1-3 tokens dropped."""
    p = vocab_freq / vocab_freq.sum()
    out = []
    for _ in range(cfg.augment_copies):
        for s in seqs:
            if len(s) < cfg.augment_min_tokens:
                continue
            s = s.copy()
            u = rng.random(len(s))
            s[u < 0.1] = 1
            swap = (u >= 0.1) & (u < 0.2)
            s[swap] = rng.choice(len(p), size=int(swap.sum()), p=p)
            if rng.random() < 0.3:
                k = int(rng.integers(1, 4))
                i = int(rng.integers(0, len(s) - k))
                s = np.concatenate([s[:i], s[i + k :]])
            out.append(s)
    return out


def teacher_probs(teachers: tuple[str, ...], args: argparse.Namespace, tok,
                  seqs: list[np.ndarray]) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Mean softmax of the teacher checkpoints over ``seqs`` (ids of ``tok``): each teacher recipe's ``soft_labels``
    (another run of this recipe on the same tokenizer, or the fine-tuned Transformer reading the rows as text)."""
    from training.recipes import get_recipe

    probs, info = [], []
    for task in teachers:
        p, ckpt = get_recipe(task).soft_labels(argparse.Namespace(**{**vars(args), "checkpoint": None}), tok, seqs)
        probs.append(p)
        last = ckpt["history"]["epochs"][-1]
        info.append({"task": task, "command": ckpt["meta"]["command"], "val_acc_last_epoch": last.get("val_acc"),
                     "train_wall_time_s": round(ckpt["history"]["wall_time_s"], 1), "params": ckpt["meta"].get("params"),
                     "epochs": len(ckpt["history"]["epochs"]),
                     "base_model": ckpt["meta"].get("base_model_path") or ckpt["meta"]["config"].get("base_model")})
    return np.mean(probs, axis=0).astype(np.float32), info


def unlabeled_texts(data_dir: Path, corpora: tuple[str, ...], train_texts: list[str],
                    limit: int | None = None) -> dict[str, list[str]]:
    """Unlabeled text by source (train splits only); missing sources are skipped."""
    texts: dict[str, list[str]] = {}
    if "sentiment" in corpora:
        texts["sentiment"] = sorted(set(train_texts))
    path = Path(data_dir) / "translation" / "train.tsv"
    if "translation" in corpora and path.exists():
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            next(reader)
            texts["translation"] = [row[0] for row in reader]
    path = Path(data_dir) / "chat" / "train.jsonl"
    if "chat" in corpora and path.exists():
        with open(path, encoding="utf-8") as f:
            texts["chat"] = [t for line in f if line.strip() for t in json.loads(line)["turns"]]
    return {name: tx[:limit] if limit else tx for name, tx in texts.items()}


def unlabeled_corpus(data_dir: Path, corpora: tuple[str, ...], train_texts: list[str], tok, max_tokens: int,
                     limit: int | None = None) -> tuple[list[np.ndarray], dict[str, int]]:
    """Token-id sequences of the unlabeled text, and its size per source."""
    seqs, sizes = [], {}
    for name, tx in unlabeled_texts(data_dir, corpora, train_texts, limit).items():
        enc = data.encode(tok, tx, max_tokens)
        seqs += enc
        sizes[f"{name}_texts"] = len(tx)
        sizes[f"{name}_tokens"] = int(sum(len(e) for e in enc))
    return seqs, sizes


class SentimentRecipe(Recipe):
    task = "sentiment-lstm"
    data_subdir = "sentiment"
    priority = 10
    # distilled from the fine-tuned Transformer (training/recipes/sentiment_teacher.py) on the train rows and 6 noisy
    # copies of each row of >= 6 tokens
    default = SentimentConfig(vocab_corpora=("translation", "chat"), teachers=("sentiment-minilm-teacher",),
                              augment_copies=6, augment_min_tokens=6, epochs=3)

    def config(self, args: argparse.Namespace) -> SentimentConfig:
        return config_from_args(self.default, args)

    def build(self, cfg: SentimentConfig, vocab: int) -> SentimentNet:
        return SentimentNet(vocab, cfg.arch, cfg.emb_dim, cfg.hidden, cfg.bidirectional, cfg.dropout, cfg.emb_dropout)

    def train(self, args: argparse.Namespace) -> int:
        cfg = self.config(args)
        setup_torch(args.device, cfg.threads or None)
        seed_everything(args.seed)
        train_set, val_set = data.load_splits(self.data_dir(args), args.limit)
        extra = None
        if cfg.vocab_corpora:
            extra = [t for tx in unlabeled_texts(self.data_dir(args), cfg.vocab_corpora, [], args.limit).values()
                     for t in tx]
        tok = data.build_tokenizer(train_set.texts, cfg.min_frequency, extra, cfg.vocab_min_frequency)
        vocab = tok.get_vocab_size()
        tr = data.encode(tok, train_set.texts, cfg.max_tokens)
        va = data.encode(tok, val_set.texts, cfg.max_tokens)
        tr_len = np.asarray([len(s) for s in tr])
        y = torch.as_tensor(train_set.y)
        model = self.build(cfg, vocab)
        pretrain = {}
        if cfg.pretrain_epochs:
            from training.nets.word2vec import pretrain_embeddings

            t0 = time.time()
            corpus, sizes = unlabeled_corpus(self.data_dir(args), cfg.pretrain_corpora, train_set.texts, tok,
                                             cfg.max_tokens, args.limit)
            # the vectors depend only on (vocabulary, corpus, dim, epochs, seed): cached beside the runs, shared by
            # the three cells
            key = hashlib.sha256(json.dumps([tok.to_str(), sizes, cfg.emb_dim, cfg.pretrain_epochs, args.seed],
                                            sort_keys=True).encode()).hexdigest()[:16]
            cache = self.run_dir(args).parent / f"skipgram-{key}.npz"
            if cache.exists():
                z = np.load(cache, allow_pickle=False)
                weights, pretrain = z["weights"], json.loads(str(z["summary"]))
                print(f"skip-gram vectors from cache {cache}")
            else:
                weights, pretrain = pretrain_embeddings(corpus, vocab, cfg.emb_dim, cfg.pretrain_epochs,
                                                        seed=args.seed, quiet=args.quiet)
                pretrain["corpora"] = sizes
                cache.parent.mkdir(parents=True, exist_ok=True)
                np.savez(cache, weights=weights, summary=json.dumps(pretrain))
            with torch.no_grad():
                model.emb.weight.copy_(torch.from_numpy(weights))
                model.emb.weight[0].zero_()
            pretrain["wall_time_s"] = pretrain.get("seconds", round(time.time() - t0, 1))
            print(f"skip-gram pretraining: {pretrain}")
        lm = {}
        if cfg.lm_epochs:
            from training.nets.lm_pretrain import pretrain_lm

            corpus, sizes = unlabeled_corpus(self.data_dir(args), cfg.pretrain_corpora, train_set.texts, tok,
                                             cfg.max_tokens, args.limit)
            key = hashlib.sha256(json.dumps([tok.to_str(), sizes, cfg.arch, cfg.emb_dim, cfg.hidden,
                                             cfg.pretrain_epochs, cfg.lm_epochs, args.seed],
                                            sort_keys=True).encode()).hexdigest()[:16]
            cache = self.run_dir(args).parent / f"lm-{key}.pt"
            if cache.exists():
                st = torch.load(cache, weights_only=False)
                model.load_state_dict(st["state"], strict=False)
                lm = st["summary"]
                print(f"LM-pretrained cells from cache {cache}")
            else:
                lm = pretrain_lm(model, corpus, cfg.lm_epochs, seed=args.seed, quiet=args.quiet)
                lm["corpora"] = sizes
                state = {k: v for k, v in model.state_dict().items() if k.startswith(("emb.", "fwd.", "bwd."))}
                cache.parent.mkdir(parents=True, exist_ok=True)
                torch.save({"state": state, "summary": lm}, cache)
            print(f"LM pretraining: {lm}")
        soft = None
        distill: dict[str, Any] = {}
        if cfg.teachers:
            t0 = time.time()
            freq = np.bincount(np.concatenate(tr), minlength=vocab).astype(np.float64)
            freq[:2] = 0
            aug = augment(tr, cfg, freq, np.random.default_rng(args.seed + 17))
            soft_np, teachers = teacher_probs(cfg.teachers, args, tok, tr + aug)
            soft = torch.from_numpy(soft_np)
            distill = {"teachers": teachers, "augmented_rows": len(aug), "weight": cfg.distill_weight,
                       "teacher_train_acc": float((soft_np[: len(tr)].argmax(1) == train_set.y).mean()),
                       "seconds": round(time.time() - t0, 1)}
            tr = tr + aug
            tr_len = np.asarray([len(s) for s in tr])
            y = torch.cat([y, torch.full((len(aug),), -1, dtype=y.dtype)])
            print(f"distillation: {distill}")
        steps = math.ceil(len(tr) / cfg.batch_size)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = one_cycle(opt, cfg.lr, steps * cfg.epochs, 0.1)
        print(f"{cfg.model_name}: train {len(tr)}, val {len(va)}, vocab {vocab}, params {count_parameters(model):,}, "
              f"{hardware()}")

        def train_epoch(epoch: int) -> dict[str, float]:
            model.train()
            rng = np.random.default_rng(int(epoch_generator(args.seed, epoch).initial_seed()))
            batches = data.length_batches(tr_len, cfg.batch_size, rng)
            tot = correct = seen = 0.0
            bar = tqdm(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, mininterval=10, disable=args.quiet)
            for idx in bar:
                ids, lengths = data.pad_batch([tr[j] for j in idx])
                logits = model(torch.from_numpy(ids), torch.from_numpy(lengths))
                yb = y[idx]
                if soft is None:
                    loss = F.cross_entropy(logits, yb)
                else:
                    sb = soft[idx]
                    soft_loss = -(sb * F.log_softmax(logits, 1)).sum(1)
                    has = yb >= 0
                    hard_loss = F.cross_entropy(logits, yb.clamp(min=0), reduction="none")
                    w = cfg.distill_weight
                    loss = torch.where(has, (1 - w) * hard_loss + w * soft_loss, soft_loss).mean()
                    yb = torch.where(has, yb, sb.argmax(1))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
                opt.step()
                if sched.last_epoch < sched.total_steps - 1:
                    sched.step()
                tot += float(loss.detach()) * len(idx)
                correct += float((logits.argmax(1) == yb).sum())
                seen += len(idx)
                bar.set_postfix(loss=f"{tot / seen:.4f}", acc=f"{correct / seen:.3f}")
            return {"train_loss": tot / seen, "train_acc": correct / seen, "lr": float(sched.get_last_lr()[0])}

        def evaluate(epoch: int) -> dict[str, float]:
            logits = predict_logits(model, va)
            val_loss = float(F.cross_entropy(torch.from_numpy(logits), torch.as_tensor(val_set.y)))
            return {"val_loss": val_loss, "val_acc": float((logits.argmax(1) == val_set.y).mean())}

        meta = {"task": self.task, "config": asdict(cfg), "seed": args.seed, "tokenizer": tok.to_str(),
                "command": shlex.join(["neuroserve-train", *sys.argv[1:]]), "hardware": hardware(),
                "n_train": len(tr), "n_val": len(va), "vocab": vocab, "params": count_parameters(model),
                "limit": args.limit, "pretrain": pretrain, "lm_pretrain": lm, "distill": distill}
        run_fit(model, opt, sched, epochs=cfg.epochs, run_dir=self.run_dir(args), resume=args.resume,
                train_epoch=train_epoch, evaluate=evaluate, meta=meta)
        return 0

    def load_trained(self, args: argparse.Namespace):
        from tokenizers import Tokenizer

        path = Path(args.checkpoint) if args.checkpoint else self.run_dir(args) / "last.pt"
        ckpt = load_checkpoint(path)
        meta = ckpt["meta"]
        cfg = SentimentConfig(**{**asdict(self.default), **meta["config"]})
        model = self.build(cfg, meta["vocab"])
        model.load_state_dict(ckpt["recipe"]["model"])
        return model.eval(), Tokenizer.from_str(meta["tokenizer"]), cfg, ckpt

    def soft_labels(self, args: argparse.Namespace, student_tokenizer, seqs: list[np.ndarray]):
        """As a teacher of another run: P(negative, positive) for its rows (ids of the same tokenizer), and the
        checkpoint."""
        net, _, _, ckpt = self.load_trained(args)
        if ckpt["meta"]["tokenizer"] != student_tokenizer.to_str():
            raise SystemExit(f"teacher {self.task}: its tokenizer differs from this run's (other data or min_frequency)")
        return torch.softmax(torch.from_numpy(predict_logits(net, seqs)), 1).numpy(), ckpt

    def evaluate(self, args: argparse.Namespace) -> int:
        setup_torch(args.device)
        model, tok, cfg, ckpt = self.load_trained(args)
        _, val_set = data.load_splits(self.data_dir(args), ckpt["meta"].get("limit"))
        pred = predict_logits(model, data.encode(tok, val_set.texts, cfg.max_tokens)).argmax(1)
        return self.report(args, {"accuracy": metrics.accuracy_with_ci(pred, val_set.y)})

    def export(self, args: argparse.Namespace) -> int:
        t_start = time.time()
        setup_torch(args.device)
        model, tok, cfg, ckpt = self.load_trained(args)
        meta = ckpt["meta"]
        name = cfg.model_name
        model_dir = self.models_dir(args) / name
        onnx_path = model_dir / "1" / "model.onnx"
        train_set, val_set = data.load_splits(self.data_dir(args), meta.get("limit"))
        vocab = meta["vocab"]

        wrapper = SentimentExport(model).eval()
        rng = np.random.default_rng(1)
        example = {"input_ids": torch.randint(2, vocab, (2, 7)), "lengths": torch.tensor([7, 4])}
        export_graph(wrapper, example, onnx_path, ["probabilities"],
                     {"input_ids": {0: "batch", 1: "seq"}, "lengths": {0: "batch"}, "probabilities": {0: "batch"}})
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
        from tokenizers import Tokenizer

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
        bow = bow_baseline(tr, train_set.y, va, vocab, seed=args.seed)
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
        train_cmd = meta["command"].replace(" --resume", "")
        dist_meta = meta.get("distill") or {}
        total_s = (history["wall_time_s"] + (meta.get("pretrain") or {}).get("seconds", 0.0)
                   + (meta.get("lm_pretrain") or {}).get("seconds", 0.0) + dist_meta.get("seconds", 0.0)
                   + sum(t["train_wall_time_s"] for t in dist_meta.get("teachers", [])))
        provenance = {
            "training_command": train_cmd, "export_command": export_command(train_cmd, self.task),
            # without this machine's --checkpoint-dir: the teachers and the student must share one (the default)
            "recreate": [re.sub(r" --checkpoint-dir \S+", "", cmd) for cmd in
                         [*(t["command"] for t in (meta.get("distill") or {}).get("teachers", [])), train_cmd,
                          export_command(train_cmd, self.task)]],
            "seed": meta["seed"], "epochs": len(history["epochs"]), "train_wall_time_s": round(history["wall_time_s"], 1),
            "total_compute_s": round(total_s, 1), "tokenizer_note": meta.get("tokenizer_note"),
            "pretrain": meta.get("pretrain") or None, "lm_pretrain": meta.get("lm_pretrain") or None, "distill": meta.get("distill") or None, "hardware": meta["hardware"], "git_commit": git_commit(),
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
            "name": name, "task": "text-sentiment", "description": description, "priority": self.priority,
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
        if not args.skip_card:
            cards.plot_history(history, model_dir / "training_curves.png",
                               [("train_loss", "val_loss"), ("train_acc", "val_acc")], f"{name} training")
            cards.plot_confusion(cm, data.LABELS, model_dir / "confusion_matrix.png",
                                 f"{name}: validation (n={len(yv)})")
            card = {"name": name, "task": "text-sentiment", "description": description, "metrics": metric_block,
                    "provenance": provenance, "config": asdict(cfg), "history": history}
            cards.write_card(model_dir, card, render_readme(name, description, card, self.target))
        print(f"export finished in {time.time() - t_start:.0f} s")
        return 0

    target = 0.87


def describe_teacher(t: dict[str, Any]) -> str:
    if not t.get("base_model"):
        return "a recurrent net of this recipe on the same tokenizer"
    from training.recipes.sentiment_teacher import base_model_label

    return (f"a {t.get('params') or 0:,}-parameter pretrained Transformer encoder, {base_model_label(t['base_model'])}, "
            f"fine-tuned on the SST-2 train split for {t.get('epochs')} epochs in {t['train_wall_time_s'] / 60:.0f} min; "
            f"it reads each student row as the row's words joined by spaces")


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
        + f" on every train row and on {dist['augmented_rows']:,} augmented copies of the train rows with >= "
        f"{c['augment_min_tokens']} tokens (tokens masked to [UNK] or swapped for a random word with p 0.1 each, one "
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
    lm = p.get("lm_pretrain")
    vocab_txt = (f", then {p['vocab'] - p['vocab_train_split']:,} more seen >= {c['vocab_min_frequency']} times in the "
                 f"unlabeled {' and '.join(c['vocab_corpora'])} train text (these get pretrained vectors, not [UNK])"
                 if c.get("vocab_corpora") else "")
    tok_note = ("\n- Tokenizer fix after training: GLUE dev writes PTB escapes (`-lrb-`, `-rrb-`, `\\/`) where train writes `(`, `)`, "
                "`/`; the normalizer now maps them to the train form. The vocabulary and every train/pretraining id are "
                "unchanged (verified), so the weights are exactly what the current code trains; the per-epoch validation "
                "accuracy in the curves was measured with the old normalizer." if p.get("tokenizer_note") else "")
    if lm:
        pre_txt += (f" Then bidirectional language-model pretraining of the embedding and both cells on the same unlabeled "
                    f"text (forward cell predicts the next token, backward cell the previous one; negative sampling, "
                    f"{lm['negatives']} negatives; {lm['epochs']} epochs over {lm['tokens']:,} tokens, "
                    f"{lm['seconds']:.0f} s; losses {lm['loss_by_epoch']}).")
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
  the validation accuracy of earlier runs (same seed, 4 epochs each): random-init RNN 79.5% -> skip-gram initialisation
  for all three cells (LSTM 83.8%, GRU 83.5%, RNN 81.8%) -> LSTM distilled from the LSTM+GRU pair 84.3% -> the same
  with bidirectional LM pretraining first 84.6% -> (after that normalizer fix) vocabulary extended with the words of
  the unlabeled translation/chat text: skip-gram LSTM 85.32% (served until this model) -> the same LSTM distilled
  from a fine-tuned pretrained Transformer with 3 noisy copies per row, 4 epochs: 86.81% -> this model, 6 copies and
  3 epochs (chosen after seeing that 86.81%; the teacher's settings were fixed before any result).
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
  passes); all steps together (skip-gram, LM pretraining, teachers' training and labelling, training):
  {p.get('total_compute_s', p['train_wall_time_s']) / 60:.1f} min, on {p['hardware']} (2 cores shared with other training runs).
  ONNX size {p['onnx_bytes'] / 1e6:.2f} MB. Git commit at export: {p['git_commit'] or 'n/a'}.

## Recreate
```
""" + "\n".join(p["recreate"]) + f"""
```
(`--checkpoint-dir` defaults to `~/.cache/neuroserve/checkpoints`; data from `$NEUROSERVE_DATA_DIR` or `../shared/data`.)
{distill_txt}

## Limitations
- Trained on short movie-review phrases; other domains (products, tweets, sarcasm) will do worse. English only.
- Words outside the train vocabulary map to one unknown id; no subword handling. Its knowledge of English beyond
  the ~2.2M tokens of the skip-gram text comes only through the teacher's soft labels on SST-2 phrases.
- The teacher starts from weights pretrained elsewhere (all-MiniLM-L6-v2, trained on a billion sentence pairs of
  public web text); their biases can pass to this model through its labels. The teacher itself is not served.
- Binary only (no neutral class): neutral text still gets a confident-looking label.
- Accuracy on 872 validation sentences has a +/-3 point 95% interval; differences smaller than that between the
  RNN/GRU/LSTM variants are not significant.
"""


class SentimentGRURecipe(SentimentRecipe):
    task = "sentiment-gru"
    priority = 5
    default = SentimentConfig(model_name="sentiment-gru", arch="gru", vocab_corpora=("translation", "chat"))


class SentimentRNNRecipe(SentimentRecipe):
    task = "sentiment-rnn"
    priority = 0
    target = 0.80
    default = SentimentConfig(model_name="sentiment-rnn", arch="rnn", lr=1e-3)
