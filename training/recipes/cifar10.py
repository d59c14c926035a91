"""CIFAR-10 recipe, airbench94-style (Keller Jordan's airbench), on CPU or CUDA.

- split: a seeded stratified 5,000-image validation set carved from the 50k train images; the
  served model never sees it.
- net: 2x2 patch-whitening stem + conv-pool-BN-GELU groups (``nets/airbench.py``).
- optimiser: SGD Nesterov, summed label-smoothed (0.2) cross-entropy, warm-up then linear decay,
  BN biases at 64x the learning rate, whitening bias trained for the first epochs only,
  lookahead (EMA pull-back every 5 steps from epoch 3 on, weights reset to the EMA after every epoch),
  alternating flip (one random flip mask, the whole set mirrored on odd epochs) + 2 px reflect-translate.
- optional bf16 autocast (``amp``, CPU or CUDA): weights, optimiser and BN statistics stay fp32.
- airbench96-class options: ``depth=3`` (a third conv and a residual per group), ``cutout`` (a zeroed square
  per image per epoch), wider ``widths``, ``translate=4``.
- CUDA: the training set lives on the GPU (augmented there), cudnn autotuning, channels_last; ``compile``
  wraps the training forward in ``torch.compile`` (off by default: it costs start-up time on a fresh machine).
  ``--time-budget S`` times a few throw-away steps first and cuts ``epochs`` to what fits in S seconds
  (the schedule is then planned for those epochs).
- ``data_file``: the npz under ``<data-dir>/cifar10/`` to train from, ``train.npz`` or a JPEG pack
  (``neuroserve-train prepare cifar10 --source train.npz --out train_jpeg.npz``). ``evaluate`` and ``export``
  always score the validation split on ``train.npz`` itself.
- export: test-time augmentation (``tta_level``: 1 = mirror, 2 = mirror x {0, +1, -1 px} translate,
  as airbench94) and softmax baked into the ONNX graph.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training import metrics
from training.config import config_from_checkpoint
from training.data import cifar10 as data
from training.loop import epoch_generator, fit, load_checkpoint, seed_everything, setup_torch
from training.nets import count_parameters
from training.nets.airbench import AirbenchNet
from training.provenance import command_line, hardware
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
    lookahead_start_epochs: int = 3
    tta_level: int = 2  # 0 none, 1 mirror, 2 mirror + 1 px translate (airbench94's level 2)
    amp: bool = False  # bf16 autocast for the training forward/backward (about 2x faster on AVX512-BF16 CPUs)
    depth: int = 2  # convs per group: 2 (airbench94/95) or 3 with a residual (airbench96)
    cutout: int = 0  # side of the square zeroed in each training image per epoch (airbench96: 12); 0 = off
    compile: bool = False  # torch.compile the training forward (CUDA runs; start-up costs tens of seconds)
    data_file: str = "train.npz"  # under <data-dir>/cifar10/: train.npz or a JPEG pack (train only)


def to_float(x_uint8_nhwc: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> normalised float NCHW (channels_last memory), exactly as the exported graph does."""
    x = torch.as_tensor(x_uint8_nhwc)
    mean = torch.tensor(data.MEAN).view(1, 3, 1, 1)
    std = torch.tensor(data.STD).view(1, 3, 1, 1)
    x = x.permute(0, 3, 1, 2).float().div(255.0)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def augment(x: torch.Tensor, flip: torch.Tensor, translate: int, gen: torch.Generator, cutout: int = 0) -> torch.Tensor:
    """Flip the rows where ``flip`` is true, then shift each image by up to ``translate`` px (reflect pad), then
    zero a random ``cutout`` x ``cutout`` square inside each image (airbench96). ``x`` may live on the GPU; the
    random draws come from ``gen`` on the CPU, so a run's augmentation does not depend on the device."""
    out = x.clone()
    flip = flip.to(x.device)
    if flip.any():
        out[flip] = out[flip].flip(-1)
    if translate > 0:
        n, _, h, w = out.shape
        span = 2 * translate + 1
        dy = torch.randint(0, span, (n,), generator=gen).to(x.device)
        dx = torch.randint(0, span, (n,), generator=gen).to(x.device)
        for start in range(0, n, 5000):  # in chunks: the padded copy stays small
            sl = slice(start, min(n, start + 5000))
            padded = F.pad(out[sl], (translate,) * 4, mode="reflect")
            sdy, sdx = dy[sl], dx[sl]
            chunk = out[sl]
            if x.device.type == "cuda":  # one gather instead of span**2 masked copies (each a host sync); same values
                rows = (sdy.view(-1, 1) + torch.arange(h, device=x.device)).view(-1, 1, h, 1)
                cols = (sdx.view(-1, 1) + torch.arange(w, device=x.device)).view(-1, 1, 1, w)
                batch = torch.arange(len(chunk), device=x.device).view(-1, 1, 1, 1)
                chan = torch.arange(chunk.shape[1], device=x.device).view(1, -1, 1, 1)
                chunk.copy_(padded[batch, chan, rows, cols])
                continue
            for i in range(span):
                for j in range(span):
                    m = (sdy == i) & (sdx == j)
                    if m.any():
                        chunk[m] = padded[m, :, i : i + h, j : j + w]
    if cutout > 0:
        n, _, h, w = out.shape
        y0 = torch.randint(0, h - cutout + 1, (n,), generator=gen).to(x.device)
        x0 = torch.randint(0, w - cutout + 1, (n,), generator=gen).to(x.device)
        rows = torch.arange(h, device=x.device).view(1, 1, h, 1) - y0.view(-1, 1, 1, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, 1, w) - x0.view(-1, 1, 1, 1)
        out.masked_fill_((rows >= 0) & (rows < cutout) & (cols >= 0) & (cols < cutout), 0.0)
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


def tta_logits(model: nn.Module, x: torch.Tensor, level: int) -> torch.Tensor:
    """airbench94's test-time augmentation on normalised NCHW images, as one batched forward pass.

    level 0: the image; 1: mean of the image and its mirror; 2: half of level 1 plus a quarter each of
    level 1 on the image shifted by one pixel up-left and down-right (1 px reflect padding). The exported
    graph calls this same function, so the served model computes exactly what was evaluated.
    """
    if level <= 0:
        return model(x)
    views = [x, x.flip(-1)]
    weights = [0.5, 0.5]
    if level >= 2:
        h, w = x.shape[-2:]
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        up_left, down_right = padded[:, :, :h, :w], padded[:, :, 2:, 2:]
        views += [up_left, up_left.flip(-1), down_right, down_right.flip(-1)]
        weights = [0.25, 0.25, 0.125, 0.125, 0.125, 0.125]
    logits = model(torch.cat(views))
    logits = logits.reshape(len(views), -1, logits.shape[-1])
    # the weights follow the logits' device (a CPU constant here broke every CUDA run's final TTA evaluation)
    return (logits * torch.tensor(weights, dtype=logits.dtype, device=logits.device).view(-1, 1, 1)).sum(0)


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, tta: int = 1, batch_size: int = 1000) -> torch.Tensor:
    model.eval()
    views = {0: 1, 1: 2}.get(tta, 6)
    step = max(1, batch_size // views)
    outs = [tta_logits(model, x[start : start + step], tta) for start in range(0, len(x), step)]
    return torch.cat(outs) if outs else torch.zeros(0, 10, device=x.device)


def predictions_by_tta(model: nn.Module, x: torch.Tensor, levels=(0, 1, 2)) -> dict[int, np.ndarray]:
    """Predicted classes at each test-time-augmentation level (evaluate, and the export's ensemble table)."""
    return {level: predict_logits(model, x, tta=level).argmax(1).cpu().numpy() for level in levels}


class Cifar10Recipe(Recipe):
    task = "cifar10"
    default = CifarConfig()

    def build(self, cfg: CifarConfig) -> AirbenchNet:
        return AirbenchNet(cfg.widths, bn_momentum=cfg.bn_momentum, scaling=cfg.scaling, depth=cfg.depth).to(
            memory_format=torch.channels_last)

    # -- prepare -----------------------------------------------------------------------
    def prepare(self, args: argparse.Namespace) -> int:
        if not args.source:
            raise SystemExit("prepare cifar10 needs --source cifar-10-python.tar.gz (or a train.npz, for a JPEG pack)")
        if str(args.source).endswith(".npz"):  # train.npz -> the compact JPEG pack a GPU machine reads
            if not args.out:
                raise SystemExit("prepare cifar10 --source train.npz needs --out PACK.npz")
            t0 = time.time()
            x, y = data.load_npz(Path(args.source))
            stats = data.write_jpeg_pack(x, y, Path(args.out))
            x2, y2 = data.load_npz(Path(args.out))
            stats["roundtrip_exact"] = bool(np.array_equal(x, x2) and np.array_equal(y, y2))
            stats["seconds"] = round(time.time() - t0, 1)
            print(f"wrote {args.out}: {json.dumps(stats)}")
            return 0 if stats["roundtrip_exact"] else 1
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
        cuda = device.type == "cuda"
        if cuda:
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        t_load = time.time()
        train_split, val_split = data.load_splits(self.data_dir(args), cfg.val_size, cfg.split_seed, args.limit,
                                                  file=cfg.data_file)
        print(f"data: {cfg.data_file}, {len(train_split.y)} + {len(val_split.y)} images in {time.time() - t_load:.1f} s",
              flush=True)
        # on CUDA the whole training set sits on the GPU and is augmented there (no host round trips per batch)
        x_train = to_float(train_split.x).to(device)
        y_train = torch.as_tensor(train_split.y).to(device)
        x_val = to_float(val_split.x).to(device)
        y_val = torch.as_tensor(val_split.y).to(device)
        n = len(x_train)
        batch_size = min(cfg.batch_size, n)
        steps_per_epoch = n // batch_size

        model = self.build(cfg)
        model.init_whitening(x_train[:5000].cpu())
        model.to(device)
        forward = torch.compile(model) if cfg.compile else model

        def amp() -> torch.autocast:
            return torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp)

        loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing, reduction="none")
        budget = float(getattr(args, "time_budget", None) or 0)
        planned = {}
        if budget:
            epoch_s = estimate_epoch_seconds(model, amp, loss_fn, x_train, y_train, batch_size,
                                             steps_per_epoch, cfg, n_val=len(x_val))
            fitting = max(1, int(budget / epoch_s))
            planned = {"time_budget_s": budget, "estimated_epoch_s": round(epoch_s, 3), "asked_epochs": cfg.epochs}
            if fitting < cfg.epochs:
                cfg = replace(cfg, epochs=fitting)
            print(f"time budget {budget:.0f} s: {epoch_s:.2f} s per epoch estimated -> {cfg.epochs} epochs", flush=True)
        total_steps = steps_per_epoch * cfg.epochs
        print(f"{self.task}: train {n}, val {len(x_val)}, params {count_parameters(model):,}, "
              f"{steps_per_epoch} steps/epoch x {cfg.epochs} epochs, batch {batch_size}, {hardware(device)}", flush=True)

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
        # airbench94: the lookahead state is created at the first update step of epoch 3 (a copy of the
        # weights then); before that training runs without it.
        lookahead: dict[str, Lookahead | None] = {"state": None}
        state = {"step": 0}

        def train_epoch(epoch: int) -> dict[str, float]:
            model.train()
            model.whiten.bias.requires_grad = epoch < cfg.whiten_bias_epochs
            gen = epoch_generator(args.seed, epoch)
            # alternating flip (airbench): one random mask for the whole run, every image mirrored on odd epochs
            base_flip = torch.rand(n, generator=epoch_generator(args.seed, 0, stream=1)) < 0.5
            flip = base_flip ^ bool(epoch % 2)
            x_aug = augment(x_train, flip, cfg.translate, gen, cfg.cutout)
            perm = torch.randperm(n, generator=gen).to(device)
            tot_loss = torch.zeros((), device=device)
            tot_correct = torch.zeros((), device=device)
            seen = 0
            bar = progress(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=args.quiet)
            for i in bar:
                idx = perm[i * batch_size : (i + 1) * batch_size]
                xb, yb = x_aug[idx], y_train[idx]
                with amp():
                    out = forward(xb)
                loss = loss_fn(out.float(), yb).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                state["step"] += 1
                step = state["step"]
                if epoch >= cfg.lookahead_start_epochs and step % cfg.lookahead_every == 0:
                    if lookahead["state"] is None:
                        lookahead["state"] = Lookahead(model)
                    else:
                        lookahead["state"].update(model, decay=float(alpha[step]))
                tot_loss += loss.detach()
                tot_correct += (out.argmax(1) == yb).sum()
                seen += len(yb)
                if not args.quiet and not cuda:  # a host sync per step: only on the CPU, where it costs nothing
                    bar.set_postfix(loss=f"{float(tot_loss) / seen:.3f}", acc=f"{float(tot_correct) / seen:.3f}")
            if lookahead["state"] is not None:
                lookahead["state"].update(model, decay=1.0)  # after every epoch: weights = the lookahead average
            return {"train_loss": float(tot_loss) / max(seen, 1), "train_acc": float(tot_correct) / max(seen, 1),
                    "lr": float(sched.get_last_lr()[1])}

        def evaluate(epoch: int) -> dict[str, float]:
            logits = predict_logits(model, x_val, tta=0)
            row = {"val_loss": float(F.cross_entropy(logits, y_val)),
                   "val_acc": float((logits.argmax(1) == y_val).float().mean())}
            if epoch == cfg.epochs - 1:  # TTA costs 2-6 passes: only for the final weights
                for level in sorted({1, cfg.tta_level} - {0}):
                    logits_tta = predict_logits(model, x_val, tta=level)
                    acc = float((logits_tta.argmax(1) == y_val).float().mean())
                    row["val_acc_tta" if level == cfg.tta_level else f"val_acc_tta{level}"] = acc
            return row

        def get_state() -> dict[str, Any]:
            la = lookahead["state"]
            return {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "lookahead": la.ema if la is not None else None, "step": state["step"]}

        def set_state(s: dict[str, Any]) -> None:
            model.load_state_dict(s["model"])
            opt.load_state_dict(s["opt"])
            sched.load_state_dict(s["sched"])
            if s["lookahead"] is not None:
                lookahead["state"] = Lookahead(model)
                lookahead["state"].ema = s["lookahead"]
            state["step"] = s["step"]

        meta = {"task": self.task, "config": asdict(cfg), "seed": args.seed, "command": command_line(args.argv),
                "hardware": hardware(device), "val_index": val_split.index.tolist(), "n_train": n,
                "params": count_parameters(model), "limit": args.limit, **planned}
        run_dir = self.run_dir(args)
        t0 = time.time()
        history = fit(epochs=cfg.epochs, run_dir=run_dir, resume=args.resume, get_state=get_state,
                      set_state=set_state, train_epoch=train_epoch, evaluate=evaluate, meta=meta)
        print(f"done in {time.time() - t0:.0f} s this session ({history.wall_time_s:.0f} s over all sessions); "
              f"checkpoint {run_dir / 'last.pt'}")
        return 0

    # -- evaluate ----------------------------------------------------------------------
    def load_checkpoint(self, path: Path) -> tuple[AirbenchNet, dict[str, Any]]:
        ckpt = load_checkpoint(path)
        cfg = config_from_checkpoint(self.default, ckpt["meta"]["config"])
        cfg.widths = tuple(cfg.widths)
        model = self.build(cfg)
        model.load_state_dict(ckpt["recipe"]["model"])  # fp16-stored weights (gpu_cifar_collect.py) load as fp32
        model.eval()
        return model, ckpt

    def evaluate(self, args: argparse.Namespace) -> int:
        setup_torch(args.device)
        model, ckpt = self.load_trained(args)
        cfg = ckpt["meta"]["config"]
        _, val_split = data.load_splits(self.data_dir(args), cfg["val_size"], cfg["split_seed"], ckpt["meta"].get("limit"))
        x_val = to_float(val_split.x)
        return self.report(args, {f"tta{level}": metrics.accuracy_with_ci(pred, val_split.y)
                                  for level, pred in predictions_by_tta(model, x_val).items()})


class Cifar10SmallRecipe(Cifar10Recipe):
    """A narrower, shorter-trained variant for fast CPU serving."""

    task = "cifar10-small"
    default = CifarConfig(model_name="cifar10-small", widths=(32, 96, 128), epochs=10, tta_level=1)


def progress(iterable, desc: str, disable: bool):
    """tqdm's bar where tqdm is installed; the plain iterable otherwise (or when ``disable``)."""
    if disable:
        return _NoBar(iterable)
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar(iterable)
    return tqdm(iterable, desc=desc, leave=False, mininterval=5)


class _NoBar:
    def __init__(self, iterable):
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable)

    def set_postfix(self, **_: object) -> None:
        pass


def estimate_epoch_seconds(model: nn.Module, amp, loss_fn, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                           steps_per_epoch: int, cfg: CifarConfig, n_val: int, warmup: int = 3, timed: int = 8) -> float:
    """Seconds one epoch will take (augmentation + steps + a validation pass), from a few training steps on a
    throw-away copy of the model and optimiser (the real run's weights and random streams are untouched)."""
    import copy

    def sync() -> None:
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)

    probe = copy.deepcopy(model)
    fwd = probe  # eager even when the run compiles: compiling twice costs more than it tells (a conservative estimate)
    opt = torch.optim.SGD([p for p in probe.parameters() if p.requires_grad], lr=1e-6, momentum=0.9, nesterov=True)
    gen = torch.Generator().manual_seed(12345)
    sync()
    t0 = time.perf_counter()
    augment(x, torch.rand(len(x), generator=gen) < 0.5, cfg.translate, gen, cfg.cutout)
    sync()
    t_aug = time.perf_counter() - t0
    probe.train()
    t_steps = 0.0
    for i in range(warmup + timed):
        idx = torch.randint(0, len(x), (batch_size,), generator=gen).to(x.device)
        if i == warmup:
            sync()
            t0 = time.perf_counter()
        with amp():
            out = fwd(x[idx])
        loss = loss_fn(out.float(), y[idx]).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync()
    t_steps = (time.perf_counter() - t0) / timed
    del probe, opt
    # a validation pass: forward only (about a third of a step per image), six views on the last epoch (averaged in)
    t_val = t_steps / 3 * n_val / batch_size * 2
    return 1.1 * (t_aug + t_steps * steps_per_epoch + t_val)
