"""Generation recipes: the Multi30k en->de Transformer translator and the DailyDialog chat LM.

Training is time-boxed as well as epoch-capped (``--time-budget``): after the first epoch the run
fixes how many epochs fit and lays its cosine schedule over exactly those, so a GPU run and a CPU run
of the same command both end with a fully decayed learning rate. The best checkpoint by the
validation metric (BLEU for translation, loss for chat) is kept as ``best.pt``.

    neuroserve-train train translation --device cuda --time-budget 240
    neuroserve-train export translation            # models/translate-en-de
    neuroserve-train train chat --device cuda --time-budget 240
    neuroserve-train export chat                   # models/chat-dailydialog
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from training.config import config_from_checkpoint
from training.data import textgen
from training.loop import load_checkpoint, save_checkpoint, seed_everything, setup_torch
from training.nets.transformer import (DecoderOnlyLM, Seq2SeqTransformer, TransformerConfig, causal_allowed,
                                       positions_from_mask)
from training.provenance import command_line, hardware
from training.recipes.base import Recipe


@dataclasses.dataclass
class GenConfig(TransformerConfig):
    """The net's fields (TransformerConfig: vocab_size, d_model, heads, layers, ff, dropout, ...) and training's."""

    model_name: str = ""
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 400
    label_smoothing: float = 0.1
    batch_tokens: int = 4096
    epochs: int = 60
    max_len: int = 128
    context: int = 256  # chat window
    eval_every: int = 2


def token_batches(lengths: list[int], batch_tokens: int, gen: random.Random, max_rows: int = 512) -> list[list[int]]:
    """Length-bucketed batches of about ``batch_tokens`` padded tokens, in a shuffled order."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], gen.random()))
    batches, cur, cur_max = [], [], 0
    for i in order:
        m = max(cur_max, lengths[i])
        if cur and (m * (len(cur) + 1) > batch_tokens or len(cur) >= max_rows):
            batches.append(cur)
            cur, m = [], lengths[i]
        cur.append(i)
        cur_max = m
    if cur:
        batches.append(cur)
    gen.shuffle(batches)
    return batches


def pad(rows: list[list[int]], value: int = textgen.PAD_ID) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def cosine_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1 + math.cos(math.pi * progress))


class GenerationRecipe(Recipe):
    default = GenConfig(dropout=0.3)
    checkpoint_name = "best.pt"  # the best epoch by the validation metric
    batch_field = "batch_tokens"  # --batch-size counts tokens per batch
    best_metric = ""  # key in the eval row; higher is better unless lower_is_better
    lower_is_better = False

    def transformer_config(self, cfg: GenConfig) -> TransformerConfig:
        net = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(TransformerConfig)}
        return TransformerConfig(**{**net, "max_positions": max(cfg.max_positions, cfg.context)})

    # -- task hooks ----------------------------------------------------------------------------
    def tokenizer_texts(self, train) -> list[str]:
        raise NotImplementedError

    def load(self, args):
        raise NotImplementedError

    def encode(self, tok, split, cfg: GenConfig) -> list:
        raise NotImplementedError

    def build(self, tcfg: TransformerConfig) -> torch.nn.Module:
        raise NotImplementedError

    def batch_loss(self, model, rows: list, cfg: GenConfig, device) -> tuple[torch.Tensor, int]:
        raise NotImplementedError

    def evaluate_model(self, model, tok, val_split, val_rows, cfg: GenConfig, device, full: bool) -> dict[str, float]:
        raise NotImplementedError

    def lengths(self, rows: list) -> list[int]:
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------------
    def tokenizer(self, args: argparse.Namespace, cfg: GenConfig, train):
        path = self.run_dir(args) / "tokenizer.json"
        if path.exists():
            return textgen.load_tokenizer(path)
        specials = textgen.SPECIALS + (textgen.CHAT_ROLES if self.task == "chat" else [])
        tok = textgen.train_bpe(self.tokenizer_texts(train), cfg.vocab_size, specials)
        path.parent.mkdir(parents=True, exist_ok=True)
        tok.save(str(path))
        return tok

    def train(self, args: argparse.Namespace) -> int:
        cfg = self.config(args)
        device = setup_torch(args.device)
        seed_everything(args.seed)
        run_dir = self.run_dir(args)
        run_dir.mkdir(parents=True, exist_ok=True)
        train_split, val_split = self.load(args)
        tok = self.tokenizer(args, cfg, train_split)
        cfg = dataclasses.replace(cfg, vocab_size=tok.get_vocab_size())
        train_rows, val_rows = self.encode(tok, train_split, cfg), self.encode(tok, val_split, cfg)
        tcfg = self.transformer_config(cfg)
        model = self.build(tcfg).to(device)
        params = sum(p.numel() for p in model.parameters())
        decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "tokens" not in n]
        no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "tokens" not in n)]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98), eps=1e-9)
        budget = float(getattr(args, "time_budget", None) or 0)
        print(f"{self.task}: train {len(train_rows)} val {len(val_rows)} params {params:,} vocab {cfg.vocab_size} "
              f"config {json.dumps(dataclasses.asdict(cfg))} budget {budget or 'none'} s, {hardware()}", flush=True)
        lens = self.lengths(train_rows)
        planned_epochs, step, history, best = cfg.epochs, 0, [], None
        steps_per_epoch = len(token_batches(lens, cfg.batch_tokens, random.Random(0)))
        started = time.time()
        amp = device.type == "cuda"
        for epoch in range(cfg.epochs):
            if epoch >= planned_epochs:
                break
            model.train()
            t0 = time.time()
            total_loss, total_tok = torch.zeros((), device=device), 0
            for batch in token_batches(lens, cfg.batch_tokens, random.Random(args.seed * 1000 + epoch)):
                for g in opt.param_groups:
                    g["lr"] = cfg.lr * cosine_factor(step, cfg.warmup_steps, planned_epochs * steps_per_epoch)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    loss, ntok = self.batch_loss(model, [train_rows[i] for i in batch], cfg, device)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                step += 1
                total_loss += loss.detach().float() * ntok
                total_tok += ntok
            epoch_time = time.time() - t0
            if budget and epoch <= 1:
                # planned from the second epoch: the first one pays for start-up (CUDA init, allocator warm-up)
                left = budget - (time.time() - started)
                planned_epochs = max(epoch + 1, min(cfg.epochs, epoch + 1 + int(left / max(epoch_time, 1e-3))))
                print(f"epoch time {epoch_time:.1f} s: planning {planned_epochs} epochs within {budget:.0f} s", flush=True)
            last = epoch == planned_epochs - 1
            row = {"epoch": epoch + 1, "train_loss": float(total_loss) / max(total_tok, 1), "lr": opt.param_groups[0]["lr"],
                   "epoch_time_s": epoch_time}
            if last or (epoch + 1) % cfg.eval_every == 0:
                row.update(self.evaluate_model(model, tok, val_split, val_rows, cfg, device, full=True))
            else:
                row.update(self.evaluate_model(model, tok, val_split, val_rows, cfg, device, full=False))
            history.append(row)
            print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
            state = {"config": dataclasses.asdict(cfg), "transformer": tcfg.to_dict(), "epoch": epoch,
                     "history": history, "seed": args.seed, "command": command_line(args.argv), "params": params, "task": self.task,
                     "planned_epochs": planned_epochs, "hardware": hardware(), "device": str(device),
                     "train_wall_time_s": time.time() - started,
                     "model": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
            save_checkpoint(run_dir / "last.pt", state)
            score = row.get(self.best_metric)
            if score is not None and (best is None or (score < best if self.lower_is_better else score > best)):
                best = score
                save_checkpoint(run_dir / "best.pt", {**state, "best": {self.best_metric: score, "epoch": epoch + 1}})
        (run_dir / "history.json").write_text(json.dumps(history, indent=2))
        print(f"done in {time.time() - started:.0f} s; best {self.best_metric}={best}", flush=True)
        return 0

    def load_checkpoint(self, path: Path):
        """(model, checkpoint, the tokenizer it was trained with: the tokenizer.json beside the checkpoint)."""
        ckpt = load_checkpoint(path)
        for i in range(1, int(ckpt.get("shards", 1))):  # packed by scripts/gpu_pick_best.py
            ckpt["model"].update(load_checkpoint(path.with_name(f"{path.stem}.shard{i}.pt")))
        tcfg = TransformerConfig(**ckpt["transformer"])
        model = self.build(tcfg)
        model.load_state_dict({k: v.float() for k, v in ckpt["model"].items()})
        return model.eval(), ckpt, textgen.load_tokenizer(path.parent / "tokenizer.json")

    def saved_config(self, ckpt: dict) -> GenConfig:
        return config_from_checkpoint(self.default, ckpt["config"])

    def evaluate(self, args: argparse.Namespace) -> int:
        model, ckpt, tok = self.load_trained(args)
        device = setup_torch(args.device)
        cfg = self.saved_config(ckpt)
        _, val_split = self.load(args)
        return self.report(args, self.evaluate_model(model.to(device), tok, val_split,
                                                     self.encode(tok, val_split, cfg), cfg, device, full=True))


# -- translation ---------------------------------------------------------------------------------

@torch.no_grad()
def greedy_translate(model: Seq2SeqTransformer, tok, texts: list[str], device, max_new: int = 100,
                     batch: int = 200) -> list[str]:
    """Batched greedy decoding in torch (prefix recomputed; used for validation BLEU during training)."""
    model.eval()
    out: list[str] = []
    ids = textgen.encode_batch(tok, texts)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    results: dict[int, str] = {}
    for start in range(0, len(order), batch):
        idx = order[start : start + batch]
        src = pad([ids[i][:127] + [textgen.EOS_ID] for i in idx]).to(device)
        memory, src_mask = model.encode(src)
        cross_k, cross_v = model.cross_kv(memory)
        tokens = torch.full((len(idx), 1), textgen.BOS_ID, dtype=torch.long, device=device)
        done = torch.zeros(len(idx), dtype=torch.bool, device=device)
        for _ in range(min(max_new, src.shape[1] * 2 + 10)):
            mask = torch.ones_like(tokens)
            x = model.embed(tokens, positions_from_mask(mask))
            h, _, _ = model.decoder(x, causal_allowed(mask, tokens.shape[1]), cross_k=cross_k, cross_v=cross_v,
                                    cross_allowed=(src_mask > 0)[:, None, None, :])
            nxt = model.embed.logits(h[:, -1]).argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, textgen.PAD_ID), nxt)
            tokens = torch.cat([tokens, nxt[:, None]], 1)
            done |= nxt == textgen.EOS_ID
            if bool(done.all()):
                break
        for row, i in zip(tokens.tolist(), idx):
            row = row[1:]
            if textgen.EOS_ID in row:
                row = row[: row.index(textgen.EOS_ID)]
            results[i] = tok.decode([t for t in row if t != textgen.PAD_ID])
    out = [results[i] for i in range(len(texts))]
    return out


def bleu(hyps: list[str], refs: list[str]) -> float:
    import sacrebleu

    return float(sacrebleu.corpus_bleu(hyps, [refs]).score)


class TranslationRecipe(GenerationRecipe):
    task = "translation"
    default = GenConfig(model_name="translate-en-de", dropout=0.3)
    best_metric = "val_bleu"

    def load(self, args):
        return textgen.load_translation(self.data_dir(args), getattr(args, "limit", None))

    def tokenizer_texts(self, train) -> list[str]:
        return train.src + train.tgt

    def encode(self, tok, split, cfg: GenConfig) -> list:
        src, tgt = textgen.encode_batch(tok, split.src), textgen.encode_batch(tok, split.tgt)
        return [(s[: cfg.max_len - 1] + [textgen.EOS_ID], t[: cfg.max_len - 1]) for s, t in zip(src, tgt)]

    def lengths(self, rows: list) -> list[int]:
        return [max(len(s), len(t) + 1) for s, t in rows]

    def build(self, tcfg: TransformerConfig) -> torch.nn.Module:
        return Seq2SeqTransformer(tcfg)

    def batch_loss(self, model, rows, cfg, device):
        src = pad([s for s, _ in rows]).to(device, non_blocking=True)
        tgt_in = pad([[textgen.BOS_ID] + t for _, t in rows]).to(device, non_blocking=True)
        tgt_out = pad([t + [textgen.EOS_ID] for _, t in rows]).to(device, non_blocking=True)
        logits = model(src, tgt_in)
        loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), tgt_out.view(-1),
                               ignore_index=textgen.PAD_ID, label_smoothing=cfg.label_smoothing)
        return loss, int((tgt_out != textgen.PAD_ID).sum())

    @torch.no_grad()
    def evaluate_model(self, model, tok, val_split, val_rows, cfg, device, full: bool) -> dict[str, float]:
        model.eval()
        total, ntok = 0.0, 0
        for start in range(0, len(val_rows), 256):
            rows = val_rows[start : start + 256]
            src = pad([s for s, _ in rows]).to(device)
            tgt_in = pad([[textgen.BOS_ID] + t for _, t in rows]).to(device)
            tgt_out = pad([t + [textgen.EOS_ID] for _, t in rows]).to(device)
            logits = model(src, tgt_in).float()
            total += float(F.cross_entropy(logits.view(-1, logits.shape[-1]), tgt_out.view(-1),
                                           ignore_index=textgen.PAD_ID, reduction="sum"))
            ntok += int((tgt_out != textgen.PAD_ID).sum())
        row = {"val_loss": total / max(ntok, 1), "val_ppl": math.exp(min(50.0, total / max(ntok, 1)))}
        if full:
            hyps = greedy_translate(model, tok, val_split.src, device)
            row["val_bleu"] = bleu(hyps, val_split.tgt)
        return row


# -- chat ------------------------------------------------------------------------------------------

class ChatRecipe(GenerationRecipe):
    task = "chat"
    default = GenConfig(model_name="chat-dailydialog", encoder_layers=0, decoder_layers=4, dropout=0.2,
                        lr=1e-3, batch_tokens=16384, epochs=40, label_smoothing=0.0, eval_every=1)
    best_metric = "val_loss"
    lower_is_better = True

    def load(self, args):
        return textgen.load_chat(self.data_dir(args), getattr(args, "limit", None))

    def tokenizer_texts(self, train) -> list[str]:
        return [t for d in train for t in d]

    def encode(self, tok, split, cfg: GenConfig) -> list:
        rows = []
        for d in split:
            rows += textgen.windows(textgen.transcript_ids(tok, d), cfg.context, cfg.context // 2)
        return rows

    def lengths(self, rows: list) -> list[int]:
        return [len(r) for r in rows]

    def build(self, tcfg: TransformerConfig) -> torch.nn.Module:
        return DecoderOnlyLM(tcfg)

    def batch_loss(self, model, rows, cfg, device):
        ids = pad(rows).to(device, non_blocking=True)
        mask = (ids != textgen.PAD_ID).long()
        logits = model(ids[:, :-1], mask[:, :-1])
        target = ids[:, 1:]
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1),
                               ignore_index=textgen.PAD_ID, label_smoothing=cfg.label_smoothing)
        return loss, int((target != textgen.PAD_ID).sum())

    @torch.no_grad()
    def evaluate_model(self, model, tok, val_split, val_rows, cfg, device, full: bool) -> dict[str, float]:
        """Per-token perplexity on the validation dialogues (whole transcripts, all turns; and replies only)."""
        model.eval()
        rows = []
        for d in val_split:  # non-overlapping windows: every token scored once
            rows += textgen.windows(textgen.transcript_ids(tok, d), cfg.context, cfg.context)
        total = reply_total = 0.0
        ntok = reply_tok = 0
        for start in range(0, len(rows), 128):
            ids = pad(rows[start : start + 128]).to(device)
            mask = (ids != textgen.PAD_ID).long()
            logits = model(ids[:, :-1], mask[:, :-1]).float()
            target = ids[:, 1:]
            nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                  ignore_index=textgen.PAD_ID, reduction="none").view(target.shape)
            total += float(nll.sum())
            ntok += int((target != textgen.PAD_ID).sum())
            in_reply = reply_mask(ids)[:, 1:]
            reply_total += float((nll * in_reply).sum())
            reply_tok += int(in_reply.sum())
        loss = total / max(ntok, 1)
        return {"val_loss": loss, "val_ppl": math.exp(min(50.0, loss)),
                "val_reply_ppl": math.exp(min(50.0, reply_total / max(reply_tok, 1)))}


def reply_mask(ids: torch.Tensor) -> torch.Tensor:
    """1 for tokens inside an assistant turn (its text and its end-of-turn), else 0."""
    is_role = (ids == textgen.USER_ID) | (ids == textgen.ASSISTANT_ID)
    role_marks = torch.where(is_role, ids, torch.zeros_like(ids))
    # carry the last role token forward: cummax over positions of role tokens
    pos = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
    last_role_pos = torch.where(is_role, pos, torch.zeros_like(pos)).cummax(1).values
    current_role = role_marks.gather(1, last_role_pos)
    return ((current_role == textgen.ASSISTANT_ID) & ~is_role & (ids != textgen.PAD_ID)).float()
