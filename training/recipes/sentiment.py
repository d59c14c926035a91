"""SST-2 sentiment: word-level tokenizer (train split) + bidirectional RNN / GRU / LSTM.

    neuroserve-train train sentiment-lstm --epochs 6 --seed 0
    neuroserve-train export sentiment-lstm      # models/sentiment-lstm/{manifest.json,tokenizer.json,1/model.onnx}

The three registry entries differ only in the recurrent cell (and their default sizes/priority).
Optional word-embedding pretraining (skip-gram with negative sampling on the train text itself,
``training/nets/word2vec.py``) initialises the embedding table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from training import metrics
from training.config import config_from_checkpoint
from training.data import sentiment as data, textgen
from training.loop import epoch_generator, load_checkpoint, one_cycle, run_fit, seed_everything, setup_torch
from training.nets import count_parameters, word2vec
from training.nets.sequence import SentimentNet
from training.provenance import command_line, hardware
from training.recipes import get_recipe
from training.recipes.base import Recipe


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
    threads: int = 0  # 0: $NEUROSERVE_THREADS or 2
    # distillation (Tang et al. 2019): registry tasks whose checkpoints (same --checkpoint-dir) label the train rows
    # and augmented copies with soft labels (mean of their probabilities)
    teachers: tuple[str, ...] = ()
    distill_weight: float = 0.5  # train rows: (1-w) CE(gold) + w CE(teacher); augmented rows: CE(teacher) only
    augment_copies: int = 0  # augmented copies of each train row with >= augment_min_tokens tokens
    augment_min_tokens: int = 8
    # more copies of the long rows only: dev/test are full sentences (mean 19.5 words), train is mostly phrases
    # (mean 9.4); these copies follow the ones above, so the first augment_copies stay the same rows
    augment_long_copies: int = 0
    augment_long_min_tokens: int = 15


# config fields removed since, with the value under which an old checkpoint means what this code trains
RETIRED = {"lm_epochs": 0}  # bidirectional LM pretraining: never served (every manifest had lm_pretrain: null)


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


def augment(seqs: list[np.ndarray], cfg: SentimentConfig, vocab_freq: np.ndarray,
            rng: np.random.Generator) -> list[np.ndarray]:
    """Tang et al. (2019)-style noisy copies of the longer train rows: each token masked to [UNK] (p 0.1) or replaced
    by a unigram-sampled word (p 0.1), and with p 0.3 one span of 1-3 tokens dropped; ``augment_long_copies`` more of
    the rows with >= ``augment_long_min_tokens`` tokens."""
    p = vocab_freq / vocab_freq.sum()
    out = []
    for copy in range(cfg.augment_copies + cfg.augment_long_copies):
        min_tokens = cfg.augment_min_tokens if copy < cfg.augment_copies else cfg.augment_long_min_tokens
        for s in seqs:
            if len(s) < min_tokens:
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


def distillation_loss(logits: torch.Tensor, y: torch.Tensor, soft: torch.Tensor,
                      weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Train rows (y >= 0): (1 - weight) CE(gold) + weight CE(teacher); augmented rows (y = -1): CE(teacher). Also the
    labels to count accuracy against (the teachers' argmax on augmented rows)."""
    soft_loss = -(soft * F.log_softmax(logits, 1)).sum(1)
    has = y >= 0
    hard_loss = F.cross_entropy(logits, y.clamp(min=0), reduction="none")
    loss = torch.where(has, (1 - weight) * hard_loss + weight * soft_loss, soft_loss).mean()
    return loss, torch.where(has, y, soft.argmax(1))


def teacher_probs(teachers: tuple[str, ...], args: argparse.Namespace, tok,
                  seqs: list[np.ndarray]) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Mean softmax of the teacher checkpoints over ``seqs`` (ids of ``tok``): each teacher recipe's ``soft_labels``
    (another run of this recipe on the same tokenizer, or the fine-tuned Transformer reading the rows as text)."""
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
        texts["translation"] = textgen.read_pairs(path).src
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
    priority = 10
    # distilled from the fine-tuned Transformer (training/recipes/sentiment_teacher.py) on the train rows, 6 noisy
    # copies of each row of >= 6 tokens and 16 more of each row of >= 15 (88.07% against 87.04% without those)
    default = SentimentConfig(vocab_corpora=("translation", "chat"), teachers=("sentiment-minilm-teacher",),
                              augment_copies=6, augment_min_tokens=6, augment_long_copies=16, epochs=3)

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
        y = torch.as_tensor(train_set.y)
        model = self.build(cfg, vocab)
        pretrain = self.pretrain_embeddings(model, cfg, args, tok, train_set.texts) if cfg.pretrain_epochs else {}
        soft, distill = None, {}
        if cfg.teachers:
            aug, soft, distill = self.distillation_rows(cfg, args, tok, tr, train_set.y)
            tr = tr + aug
            y = torch.cat([y, torch.full((len(aug),), -1, dtype=y.dtype)])  # -1: no gold label, the teachers' only
        tr_len = np.asarray([len(s) for s in tr])
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
                    loss, yb = distillation_loss(logits, yb, soft[idx], cfg.distill_weight)
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
                "command": command_line(args.argv), "hardware": hardware(),
                "n_train": len(tr), "n_val": len(va), "vocab": vocab, "params": count_parameters(model),
                "limit": args.limit, "pretrain": pretrain, "distill": distill}
        run_fit(model, opt, sched, epochs=cfg.epochs, run_dir=self.run_dir(args), resume=args.resume,
                train_epoch=train_epoch, evaluate=evaluate, meta=meta)
        return 0

    def pretrain_embeddings(self, model: SentimentNet, cfg: SentimentConfig, args: argparse.Namespace, tok,
                            train_texts: list[str]) -> dict[str, Any]:
        """Skip-gram vectors (word2vec.py) on the unlabeled text copied into the embedding table; their summary."""
        t0 = time.time()
        corpus, sizes = unlabeled_corpus(self.data_dir(args), cfg.pretrain_corpora, train_texts, tok, cfg.max_tokens,
                                         args.limit)
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
            weights, pretrain = word2vec.pretrain_embeddings(corpus, model.emb.weight.shape[0], cfg.emb_dim,
                                                             cfg.pretrain_epochs, seed=args.seed, quiet=args.quiet)
            pretrain["corpora"] = sizes
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, weights=weights, summary=json.dumps(pretrain))
        with torch.no_grad():
            model.emb.weight.copy_(torch.from_numpy(weights))
            model.emb.weight[0].zero_()
        pretrain["wall_time_s"] = pretrain.get("seconds", round(time.time() - t0, 1))
        print(f"skip-gram pretraining: {pretrain}")
        return pretrain

    def distillation_rows(self, cfg: SentimentConfig, args: argparse.Namespace, tok, tr: list[np.ndarray],
                          y: np.ndarray) -> tuple[list[np.ndarray], torch.Tensor, dict[str, Any]]:
        """Noisy copies of the train rows, the teachers' soft labels for train + copies, and what to record."""
        t0 = time.time()
        freq = np.bincount(np.concatenate(tr), minlength=tok.get_vocab_size()).astype(np.float64)
        freq[:2] = 0
        aug = augment(tr, cfg, freq, np.random.default_rng(args.seed + 17))
        soft_np, teachers = teacher_probs(cfg.teachers, args, tok, tr + aug)
        distill = {"teachers": teachers, "augmented_rows": len(aug), "weight": cfg.distill_weight,
                   "teacher_train_acc": float((soft_np[: len(tr)].argmax(1) == y).mean()),
                   "seconds": round(time.time() - t0, 1)}
        print(f"distillation: {distill}")
        return aug, torch.from_numpy(soft_np), distill

    def load_checkpoint(self, path: Path):
        """(model, its tokenizer, config, checkpoint)."""
        from tokenizers import Tokenizer

        ckpt = load_checkpoint(path)
        meta = ckpt["meta"]
        cfg = config_from_checkpoint(self.default, meta["config"], retired=RETIRED)
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

    target = 0.88  # issue 15: validation >= 88% so that the test figure clears 87% with margin


class SentimentGRURecipe(SentimentRecipe):
    task = "sentiment-gru"
    priority = 5
    target = 0.87
    # the LSTM's vocabulary and distillation settings, taken as they stood (selection_history in exporters/sentiment.py)
    default = replace(SentimentRecipe.default, model_name="sentiment-gru", arch="gru")


class SentimentRNNRecipe(SentimentRecipe):
    task = "sentiment-rnn"
    priority = 0
    target = 0.80
    # the LSTM's vocabulary and distillation settings, taken as they stood; a vanilla RNN trains better at a lower lr
    default = replace(SentimentRecipe.default, model_name="sentiment-rnn", arch="rnn", lr=1e-3)
