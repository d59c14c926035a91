"""CIFAR-10 recipe, airbench94-style (Keller Jordan's airbench), on CPU or CUDA.

- split: a seeded stratified 5,000-image validation set carved from the 50k train images; the
  served model never sees it.
- net: 2x2 patch-whitening stem + conv-pool-BN-GELU groups (``nets/airbench.py``).
- optimiser: SGD Nesterov, summed label-smoothed (0.2) cross-entropy, warm-up then linear decay,
  BN biases at 64x the learning rate, whitening bias trained for the first epochs only,
  lookahead (EMA pull-back every 5 steps), flip (alternating per epoch) + 2 px reflect-translate.
- export: flip test-time augmentation and softmax baked into the ONNX graph.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from training.data import cifar10 as data
from training.loop import epoch_generator, fit, hardware, load_checkpoint, seed_everything, setup_torch
from training.nets.airbench import AirbenchNet, count_parameters
from training.recipes.base import Recipe


@dataclass
class CifarConfig:
    model_name: str = "cifar10-resnet"
    widths: tuple[int, int, int] = (64, 256, 256)
    epochs: int = 10
    batch_size: int = 1024
    lr: float = 11.5  # per 1024 examples (airbench units)
    momentum: float = 0.85
    weight_decay: float = 0.0153
    bias_scaler: float = 64.0
    label_smoothing: float = 0.2
    whiten_bias_epochs: int = 3
    translate: int = 2
    bn_momentum: float = 0.6
    scaling: float = 1 / 9
    warmup_frac: float = 0.23
    val_size: int = 5000
    split_seed: int = 0
    lookahead_every: int = 5


def to_float(x_uint8_nhwc: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> normalised float NCHW (channels_last memory), exactly as the exported graph does."""
    x = torch.as_tensor(x_uint8_nhwc)
    mean = torch.tensor(data.MEAN).view(1, 3, 1, 1)
    std = torch.tensor(data.STD).view(1, 3, 1, 1)
    x = x.permute(0, 3, 1, 2).float().div(255.0)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def augment(x: torch.Tensor, flip: torch.Tensor, translate: int, gen: torch.Generator) -> torch.Tensor:
    """Flip the rows where ``flip`` is true, then shift each image by up to ``translate`` px (reflect pad)."""
    out = x.clone()
    if flip.any():
        out[flip] = out[flip].flip(-1)
    if translate > 0:
        n, _, h, w = out.shape
        span = 2 * translate + 1
        dy = torch.randint(0, span, (n,), generator=gen)
        dx = torch.randint(0, span, (n,), generator=gen)
        for start in range(0, n, 5000):  # in chunks: the padded copy stays small
            sl = slice(start, min(n, start + 5000))
            padded = F.pad(out[sl], (translate,) * 4, mode="reflect")
            sdy, sdx = dy[sl], dx[sl]
            chunk = out[sl]
            for i in range(span):
                for j in range(span):
                    m = (sdy == i) & (sdx == j)
                    if m.any():
                        chunk[m] = padded[m, :, i : i + h, j : j + w]
    return out.contiguous(memory_format=torch.channels_last)


class Lookahead:
    def __init__(self, model: nn.Module):
        self.ema = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float) -> None:
        for (k, ema), net in zip(self.ema.items(), model.state_dict().values()):
            if net.dtype.is_floating_point:
                ema.lerp_(net, 1 - decay)
                net.copy_(ema)


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, tta: int = 1, batch_size: int = 1000) -> torch.Tensor:
    model.eval()
    outs = []
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size]
        logits = model(xb)
        if tta >= 1:
            logits = 0.5 * (logits + model(xb.flip(-1)))
        outs.append(logits)
    return torch.cat(outs) if outs else torch.zeros(0, 10)


class Cifar10Recipe(Recipe):
    task = "cifar10"
    data_subdir = "cifar10"
    default = CifarConfig()

    def config(self, args: argparse.Namespace) -> CifarConfig:
        cfg = CifarConfig(**asdict(self.default))
        if getattr(args, "epochs", None):
            cfg.epochs = args.epochs
        if getattr(args, "batch_size", None):
            cfg.batch_size = args.batch_size
        return cfg

    def build(self, cfg: CifarConfig) -> AirbenchNet:
        return AirbenchNet(cfg.widths, bn_momentum=cfg.bn_momentum, scaling=cfg.scaling).to(
            memory_format=torch.channels_last)

    # -- prepare -----------------------------------------------------------------------
    def prepare(self, args: argparse.Namespace) -> int:
        if not args.source:
            raise SystemExit("prepare cifar10 needs --source cifar-10-python.tar.gz")
        out = Path(args.out) if args.out else self.data_dir(args) / "cifar10" / "train.npz"
        path = data.prepare_from_tarball(Path(args.source), out)
        x, y = data.load_npz(path)
        print(f"wrote {path}: x {x.shape} {x.dtype}, y {y.shape}, classes {np.bincount(y).tolist()}")
        return 0

    # -- train -------------------------------------------------------------------------
    def train(self, args: argparse.Namespace) -> int:
        cfg = self.config(args)
        device = setup_torch(args.device)
        seed_everything(args.seed)
        train_split, val_split = data.load_splits(self.data_dir(args), cfg.val_size, cfg.split_seed, args.limit)
        x_train = to_float(train_split.x)
        y_train = torch.as_tensor(train_split.y)
        x_val = to_float(val_split.x).to(device)
        y_val = torch.as_tensor(val_split.y).to(device)
        n = len(x_train)
        batch_size = min(cfg.batch_size, n)
        steps_per_epoch = n // batch_size
        total_steps = steps_per_epoch * cfg.epochs

        model = self.build(cfg)
        model.init_whitening(x_train[:5000])
        model.to(device)
        print(f"{self.task}: train {n}, val {len(x_val)}, params {count_parameters(model):,}, "
              f"{steps_per_epoch} steps/epoch x {cfg.epochs} epochs, batch {batch_size}, {hardware()}")

        kilostep = 1024 * (1 + 1 / (1 - cfg.momentum))
        lr = cfg.lr / kilostep
        wd = cfg.weight_decay * batch_size / kilostep
        lr_bias = lr * cfg.bias_scaler
        norm_biases = [p for k, p in model.named_parameters() if "norm" in k and p.requires_grad]
        others = [p for k, p in model.named_parameters() if "norm" not in k and p.requires_grad]
        opt = torch.optim.SGD([dict(params=norm_biases, lr=lr_bias, weight_decay=wd / lr_bias),
                               dict(params=others, lr=lr, weight_decay=wd / lr)],
                              momentum=cfg.momentum, nesterov=True)
        warmup = int(total_steps * cfg.warmup_frac)

        def lr_factor(step: int) -> float:
            if step < warmup:
                f = step / max(1, warmup)
                return 0.2 * (1 - f) + 1.0 * f
            f = (step - warmup) / max(1, total_steps - warmup)
            return 1.0 * (1 - f) + 0.07 * f

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
        alpha = 0.95**5 * (torch.arange(total_steps + 1) / max(1, total_steps)) ** 3
        lookahead = Lookahead(model)
        loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing, reduction="none")
        state = {"step": 0}

        def train_epoch(epoch: int) -> dict[str, float]:
            model.train()
            model.whiten.bias.requires_grad = epoch < cfg.whiten_bias_epochs
            gen = epoch_generator(args.seed, epoch)
            base_flip = torch.rand(n, generator=epoch_generator(args.seed, epoch // 2, stream=1)) < 0.5
            flip = base_flip ^ bool(epoch % 2)  # alternating flip: each image seen both ways
            x_aug = augment(x_train, flip, cfg.translate, gen)
            perm = torch.randperm(n, generator=gen)
            tot_loss = tot_correct = seen = 0.0
            bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                       mininterval=5, disable=args.quiet)
            for i in bar:
                idx = perm[i * batch_size : (i + 1) * batch_size]
                xb, yb = x_aug[idx].to(device), y_train[idx].to(device)
                out = model(xb)
                loss = loss_fn(out, yb).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                state["step"] += 1
                step = state["step"]
                if step % cfg.lookahead_every == 0:
                    lookahead.update(model, decay=float(alpha[step]))
                tot_loss += float(loss.detach())
                tot_correct += float((out.argmax(1) == yb).sum())
                seen += len(yb)
                bar.set_postfix(loss=f"{tot_loss / seen:.3f}", acc=f"{tot_correct / seen:.3f}")
            if epoch == cfg.epochs - 1:
                lookahead.update(model, decay=1.0)  # final weights = the lookahead average
            return {"train_loss": tot_loss / max(seen, 1), "train_acc": tot_correct / max(seen, 1),
                    "lr": float(sched.get_last_lr()[1])}

        def evaluate(epoch: int) -> dict[str, float]:
            logits = predict_logits(model, x_val, tta=0)
            row = {"val_loss": float(F.cross_entropy(logits, y_val)),
                   "val_acc": float((logits.argmax(1) == y_val).float().mean())}
            if epoch == cfg.epochs - 1:  # TTA doubles the cost: only for the final weights
                logits_tta = predict_logits(model, x_val, tta=1)
                row["val_acc_tta"] = float((logits_tta.argmax(1) == y_val).float().mean())
            return row

        def get_state() -> dict[str, Any]:
            return {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "lookahead": lookahead.ema, "step": state["step"]}

        def set_state(s: dict[str, Any]) -> None:
            model.load_state_dict(s["model"])
            opt.load_state_dict(s["opt"])
            sched.load_state_dict(s["sched"])
            lookahead.ema = s["lookahead"]
            state["step"] = s["step"]

        meta = {"task": self.task, "config": asdict(cfg), "seed": args.seed, "command": command_line(),
                "hardware": hardware(), "val_index": val_split.index.tolist(), "n_train": n,
                "params": count_parameters(model), "limit": args.limit}
        run_dir = self.run_dir(args)
        t0 = time.time()
        history = fit(epochs=cfg.epochs, run_dir=run_dir, resume=args.resume, get_state=get_state,
                      set_state=set_state, train_epoch=train_epoch, evaluate=evaluate, meta=meta)
        print(f"done in {time.time() - t0:.0f} s this session ({history.wall_time_s:.0f} s over all sessions); "
              f"checkpoint {run_dir / 'last.pt'}")
        return 0

    # -- evaluate ----------------------------------------------------------------------
    def load_trained(self, args: argparse.Namespace) -> tuple[AirbenchNet, dict[str, Any]]:
        path = Path(args.checkpoint) if args.checkpoint else self.run_dir(args) / "last.pt"
        ckpt = load_checkpoint(path)
        cfg = CifarConfig(**{**asdict(self.default), **ckpt["meta"]["config"]})
        cfg.widths = tuple(cfg.widths)
        model = self.build(cfg)
        model.load_state_dict(ckpt["recipe"]["model"])
        model.eval()
        return model, ckpt

    def evaluate(self, args: argparse.Namespace) -> int:
        from training import metrics

        setup_torch(args.device)
        model, ckpt = self.load_trained(args)
        cfg = ckpt["meta"]["config"]
        _, val_split = data.load_splits(self.data_dir(args), cfg["val_size"], cfg["split_seed"], ckpt["meta"].get("limit"))
        x_val = to_float(val_split.x)
        result = {}
        for tta in (0, 1):
            pred = predict_logits(model, x_val, tta=tta).argmax(1).numpy()
            result[f"tta{tta}"] = metrics.accuracy_with_ci(pred, val_split.y)
        print(json.dumps(result, indent=2))
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=2))
        return 0

    # -- export ------------------------------------------------------------------------
    def export(self, args: argparse.Namespace) -> int:
        from training.exporters.cifar10 import export_cifar

        return export_cifar(self, args)


class Cifar10SmallRecipe(Cifar10Recipe):
    """A narrower, shorter-trained variant for fast CPU serving."""

    task = "cifar10-small"
    default = CifarConfig(model_name="cifar10-small", widths=(32, 96, 128), epochs=10)


def command_line() -> str:
    """How this process was started, as one shell line (``python -m training`` shown as ``neuroserve-train``)."""
    return shlex.join(["neuroserve-train", *sys.argv[1:]])
