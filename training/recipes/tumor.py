"""Tumour-detection recipe: small two-head CNN on 64x64 grayscale MRI slices.

Imbalance (~9% no tumour) is handled with class-balanced loss weights on both heads, plus
augmentation (mirror, small rotation/scale/shift, brightness/contrast/gamma jitter). The binary
head is calibrated (Platt scaling fitted on validation) and the threshold picked on validation
at export time (``exporters/tumor.py``).
"""

from __future__ import annotations

import argparse
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
from training.data import tumor as data
from training.data.mri_augment import ForegroundNorm, strong_augment
from training.data.tumor_groups import area_groups, balanced_weights, source_groups
from training.loop import epoch_generator, fit, load_checkpoint, seed_everything, setup_torch
from training.nets import count_parameters
from training.nets.tumor_cnn import TumorCNN
from training.provenance import command_line, hardware
from training.recipes.base import Recipe


@dataclass
class TumorConfig:
    model_name: str = "tumor-cnn"
    widths: tuple[int, ...] = (24, 48, 96, 192)
    epochs: int = 20
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 5e-4
    dropout: float = 0.2
    subtype_loss_weight: float = 0.5
    rotate_deg: float = 10.0
    scale: float = 0.1
    shift: float = 0.06
    # "global": (x/255 - train mean) / train std (the first served model); "fg_z" / "fg_scale": per-image
    # standardisation over the foreground (training/data/mri_augment.py ForegroundNorm), also inside the graph
    norm: str = "global"
    # "light": mirror, small affine, gamma/contrast/brightness; "strong": mri_augment.strong_augment (skull strip,
    # zoom out, contrast curves, bias field, blur, noise)
    aug: str = "light"
    scale_min: float = 0.65
    scale_max: float = 1.15
    skull_p: float = 0.5
    remap_p: float = 0.5
    bias_p: float = 0.5
    blur_p: float = 0.3
    noise_p: float = 0.3
    gamma_max: float = 1.7
    curve_p: float = 0.0  # probability of a random non-monotone intensity curve (mri_augment.random_curve)
    # warm start: an exported tumor-cnn ONNX of the same widths (its net.* initialisers, e.g. the previously served
    # model from git); empty = from scratch
    init_onnx: str = ""
    # images drawn (without replacement, fresh each epoch) per epoch; 0 = the whole training set. Short epochs let
    # a contended CPU fine-tune in small, evaluated steps
    epoch_images: int = 0
    invert_p: float = 0.0  # strong aug: probability of inverting the intensities inside the head (mri_augment.invert)
    # "uniform": each epoch a permutation, class-weighted loss; "group": draw (with replacement) so that every
    # (acquisition group, class) cell weighs the same (training/data/tumor_groups.py), unweighted loss; "area": the same
    # with head-area quantile bins as the groups (makes head size uninformative)
    sampler: str = "uniform"
    groups: int = 6
    weight_cap: float = 8.0
    # group-aware validation (scripts/tumor_group_cv.py): leave this acquisition group (source_groups of the train
    # split into `groups` clusters, seed 0) out of training; -1 = train on every row
    holdout_group: int = -1


def to_float(x_uint8: np.ndarray | torch.Tensor, mean: float, std: float, norm: str = "global") -> torch.Tensor:
    """uint8 NHWC [N,64,64,1] -> normalised float NCHW, as the exported graph does."""
    x = torch.as_tensor(x_uint8).permute(0, 3, 1, 2).float() / 255.0
    return normalise01(x, mean, std, norm)


def normalise01(x01: torch.Tensor, mean: float, std: float, norm: str = "global") -> torch.Tensor:
    """float NCHW in [0,1] -> the network's input (global mean/std, or per-image foreground standardisation)."""
    if norm == "global":
        return (x01 - mean) / std
    return ForegroundNorm(norm)(x01)


def train_augment(x01: torch.Tensor, cfg: TumorConfig, gen: torch.Generator) -> torch.Tensor:
    if cfg.aug == "light":
        return augment(x01, cfg, gen)
    if cfg.aug == "strong":
        return strong_augment(x01, gen, rotate_deg=cfg.rotate_deg, scale_min=cfg.scale_min, scale_max=cfg.scale_max,
                              shift=cfg.shift, skull_p=cfg.skull_p, remap_p=cfg.remap_p, bias_p=cfg.bias_p,
                              blur_p=cfg.blur_p, noise_p=cfg.noise_p, gamma_max=cfg.gamma_max,
                              curve_p=cfg.curve_p, invert_p=cfg.invert_p)
    raise SystemExit(f"tumor: unknown aug {cfg.aug!r} (light, strong)")


def augment(x01: torch.Tensor, cfg: TumorConfig, gen: torch.Generator) -> torch.Tensor:
    """x01: float [B,1,H,W] in [0,1]. Mirror, affine (rotation/scale/shift) and intensity jitter."""
    b = len(x01)
    u = lambda *shape: torch.rand(*shape, generator=gen)  # noqa: E731
    flip = u(b) < 0.5
    x01 = torch.where(flip.view(-1, 1, 1, 1), x01.flip(-1), x01)
    angle = (u(b) * 2 - 1) * math.radians(cfg.rotate_deg)
    scale = 1 + (u(b) * 2 - 1) * cfg.scale
    tx, ty = (u(b) * 2 - 1) * cfg.shift * 2, (u(b) * 2 - 1) * cfg.shift * 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x01.shape), align_corners=False)
    x01 = F.grid_sample(x01, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    gamma = torch.exp((u(b) * 2 - 1) * math.log(1.3)).view(-1, 1, 1, 1)
    contrast = (1 + (u(b) * 2 - 1) * 0.2).view(-1, 1, 1, 1)
    bright = ((u(b) * 2 - 1) * 0.08).view(-1, 1, 1, 1)
    return (x01.clamp(0, 1) ** gamma * contrast + bright).clamp(0, 1)


def without_group(train_set: data.TumorSet, groups: int, holdout: int) -> data.TumorSet:
    """The train split without one acquisition group (``source_groups(train_set.x, groups, seed=0)``), for
    group-aware validation: the left-out rows are scored by a model that never saw their source."""
    if not 0 <= holdout < groups:
        raise SystemExit(f"tumor: holdout_group {holdout} is not one of the {groups} groups (0..{groups - 1})")
    keep = source_groups(train_set.x, groups, seed=0) != holdout
    print(f"holdout_group {holdout}: training on {int(keep.sum())} of {len(keep)} train rows")
    return data.TumorSet(train_set.x[keep], train_set.y[keep], train_set.subtype[keep], train_set.source_path[keep])


def load_onnx_weights(model: TumorCNN, path: str) -> int:
    """Copy the ``net.*`` initialisers of an exported tumor-cnn graph (TumorExport) into ``model``; returns how many
    tensors were loaded (all of the state dict but BN's num_batches_tracked, else it raises)."""
    import onnx
    from onnx import numpy_helper

    inits = {t.name[4:]: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer if t.name.startswith("net.")}
    state = model.state_dict()
    wanted = [k for k in state if not k.endswith("num_batches_tracked")]
    missing = [k for k in wanted if k not in inits or tuple(inits[k].shape) != tuple(state[k].shape)]
    if missing:
        raise SystemExit(f"--set init_onnx={path}: no matching tensors for {missing[:4]}... (same widths?)")
    model.load_state_dict({k: torch.from_numpy(inits[k].copy()) if k in inits else v for k, v in state.items()})
    return len(wanted)


def class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights, scaled so the average sample weight is 1."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    w = len(labels) / (n_classes * np.maximum(counts, 1))
    return torch.tensor(w, dtype=torch.float32)


@torch.no_grad()
def predict(model: TumorCNN, x: torch.Tensor, tta: bool = True, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    device = next(model.parameters()).device
    tl, sl = [], []
    for i in range(0, len(x), batch):
        xb = x[i : i + batch].to(device)
        t, s = model(xb)
        if tta:
            t2, s2 = model(xb.flip(-1))
            t, s = 0.5 * (t + t2), 0.5 * (s + s2)
        tl.append(t.cpu())
        sl.append(s.cpu())
    return torch.cat(tl).numpy(), torch.cat(sl).numpy()


def predict_images(model: TumorCNN, meta: dict[str, Any], x_uint8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A trained checkpoint's (tumour logits, subtype logits) on uint8 NHWC images: its own normalisation (``meta``
    of the checkpoint) and mirror TTA, as the exported graph computes them before calibration."""
    return predict(model, to_float(x_uint8, meta["mean"], meta["std"], meta["config"].get("norm", "global")))


class TumorRecipe(Recipe):
    task = "tumor"
    default = TumorConfig()

    def build(self, cfg: TumorConfig) -> TumorCNN:
        return TumorCNN(tuple(cfg.widths), dropout=cfg.dropout)

    def prepare(self, args: argparse.Namespace) -> int:
        if not args.source:
            raise SystemExit("prepare tumor needs --source <folder with one sub-folder per class>")
        out = Path(args.out) if args.out else Path("tumor.npz")
        path = data.prepare_from_folder(Path(args.source), out)
        s = data.load_npz(path)
        print(f"wrote {path}: x {s.x.shape}, subtypes {np.bincount(s.subtype, minlength=4).tolist()} ({', '.join(data.LABELS)})")
        return 0

    def train(self, args: argparse.Namespace) -> int:
        cfg = self.config(args)
        device = setup_torch(args.device)
        seed_everything(args.seed)
        train_set, val_set = data.load_splits(self.data_dir(args), args.limit)
        if cfg.holdout_group >= 0:
            train_set = without_group(train_set, cfg.groups, cfg.holdout_group)
        mean = float(train_set.x.mean() / 255.0)
        std = float(train_set.x.std() / 255.0)
        ext = data.load_external(self.data_dir(args))  # logged for model selection only, never trained on
        x_ext = to_float(ext.x, mean, std, cfg.norm) if ext is not None else None
        x01 = torch.as_tensor(train_set.x).permute(0, 3, 1, 2).float() / 255.0
        y = torch.as_tensor(train_set.y).float()
        sub = torch.as_tensor(train_set.subtype)
        x_val = to_float(val_set.x, mean, std, cfg.norm)
        n = len(y)
        bs = min(cfg.batch_size, n)
        per_epoch = min(cfg.epoch_images, n) if cfg.epoch_images > 0 else n
        steps = math.ceil(per_epoch / bs)
        w_bin = class_weights(train_set.y, 2).to(device)
        w_sub = class_weights(train_set.subtype, 4).to(device)
        sample_w = None
        if cfg.sampler in ("group", "area"):
            grp = (source_groups(train_set.x, cfg.groups, seed=0) if cfg.sampler == "group"
                   else area_groups(train_set.x, cfg.groups))
            sample_w = torch.as_tensor(balanced_weights(grp, train_set.y, cfg.weight_cap))
            w_bin = torch.ones(2, device=device)  # the sampler balances the classes (within groups) already
            w_sub = torch.ones(4, device=device)
            cells = [(int((grp == g).sum()), int(((grp == g) & (train_set.y == 0)).sum())) for g in range(cfg.groups)]
            print(f"{cfg.sampler} sampler: (group size, no tumour) {cells}")
        elif cfg.sampler != "uniform":
            raise SystemExit(f"tumor: unknown sampler {cfg.sampler!r} (uniform, group, area)")

        model = self.build(cfg)
        if cfg.init_onnx:
            print(f"warm start: {load_onnx_weights(model, cfg.init_onnx)} tensors from {cfg.init_onnx}")
        model = model.to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps * cfg.epochs, pct_start=0.2)
        print(f"tumor: train {n} ({int((train_set.y == 0).sum())} no tumour), val {len(val_set.y)}, "
              f"params {count_parameters(model):,}, class weights {w_bin.tolist()} / {w_sub.tolist()}, {hardware()}"
              + (f", {torch.cuda.get_device_name()}" if device.type == "cuda" else ""))

        def train_epoch(epoch: int) -> dict[str, float]:
            model.train()
            gen = epoch_generator(args.seed, epoch)
            if sample_w is not None:
                perm = torch.multinomial(sample_w, per_epoch, replacement=True, generator=gen)
            else:
                perm = torch.randperm(n, generator=gen)[:per_epoch]
            tot = seen = 0.0
            bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, mininterval=5,
                       disable=args.quiet)
            for i in bar:
                idx = perm[i * bs : (i + 1) * bs]
                xb = normalise01(train_augment(x01[idx], cfg, gen), mean, std, cfg.norm)
                yb, sb = y[idx].to(device), sub[idx].to(device)
                t_logit, s_logit = model(xb.to(device))
                loss_bin = (F.binary_cross_entropy_with_logits(t_logit, yb, reduction="none") * w_bin[yb.long()]).mean()
                loss_sub = F.cross_entropy(s_logit, sb, weight=w_sub)
                loss = loss_bin + cfg.subtype_loss_weight * loss_sub
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                tot += float(loss.detach()) * len(idx)
                seen += len(idx)
                bar.set_postfix(loss=f"{tot / seen:.4f}")
            return {"train_loss": tot / seen, "lr": float(sched.get_last_lr()[0])}

        def evaluate(epoch: int) -> dict[str, float]:
            t, s = predict(model, x_val, tta=False)
            p = 1 / (1 + np.exp(-t))
            pred = p >= 0.5
            yv = val_set.y.astype(bool)
            sens = float(pred[yv].mean()) if yv.any() else float("nan")
            spec = float((~pred[~yv]).mean()) if (~yv).any() else float("nan")
            val_loss = float(F.binary_cross_entropy_with_logits(torch.tensor(t), torch.tensor(val_set.y).float()))
            row = {"val_loss": val_loss, "val_auroc": metrics.auroc(val_set.y, t), "val_sens@0.5": sens,
                   "val_spec@0.5": spec, "val_subtype_acc": float((s.argmax(1) == val_set.subtype).mean())}
            if x_ext is not None and ((epoch + 1) % 2 == 0 or epoch + 1 == cfg.epochs):  # every 2nd epoch (CPU)
                te, _ = predict(model, x_ext, tta=False)
                ye = ext.y.astype(bool)
                thr = metrics.threshold_for_sensitivity(val_set.y, t, 0.97)
                row.update({"ext_auroc": metrics.auroc(ext.y, te), "ext_sens@0.5": float((te[ye] >= 0).mean()),
                            "ext_spec@0.5": float((te[~ye] < 0).mean()), "ext_sens@val97": float((te[ye] >= thr).mean()),
                            "ext_spec@val97": float((te[~ye] < thr).mean())})
            return row

        def get_state() -> dict[str, Any]:
            return {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}

        def set_state(st: dict[str, Any]) -> None:
            model.load_state_dict(st["model"])
            opt.load_state_dict(st["opt"])
            sched.load_state_dict(st["sched"])

        meta = {"task": self.task, "config": asdict(cfg), "seed": args.seed,
                "command": command_line(args.argv),
                "hardware": hardware() + (f", {torch.cuda.get_device_name()}" if device.type == "cuda" else ""),
                "n_train": n, "params": count_parameters(model), "limit": args.limit, "mean": mean, "std": std}
        t0 = time.time()
        history = fit(epochs=cfg.epochs, run_dir=self.run_dir(args), resume=args.resume, get_state=get_state,
                      set_state=set_state, train_epoch=train_epoch, evaluate=evaluate, meta=meta)
        print(f"done in {time.time() - t0:.0f} s ({history.wall_time_s:.0f} s over all sessions)")
        return 0

    def load_checkpoint(self, path: Path) -> tuple[TumorCNN, dict[str, Any]]:
        ckpt = load_checkpoint(path)
        # checkpoints from before the norm/aug fields were trained with the global mean/std and light augmentation
        cfg = config_from_checkpoint(replace(self.default, norm="global", aug="light"), ckpt["meta"]["config"])
        model = self.build(cfg)
        model.load_state_dict(ckpt["recipe"]["model"])
        return model.eval(), ckpt

    def evaluate(self, args: argparse.Namespace) -> int:
        setup_torch(args.device)
        model, ckpt = self.load_trained(args)
        meta = ckpt["meta"]
        _, val_set = data.load_splits(self.data_dir(args), meta.get("limit"))
        t, s = predict_images(model, meta, val_set.x)
        return self.report(args, {
            "auroc": metrics.auroc(val_set.y, t),
            "auroc_ci95": metrics.bootstrap_ci(metrics.auroc, val_set.y, t, n_boot=500, stratify=val_set.y),
            "subtype_accuracy": metrics.accuracy_with_ci(s.argmax(1), val_set.subtype)})
