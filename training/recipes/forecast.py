"""Shared flow of the quantile forecasters (traffic-lstm, prices-lstm).

Three time slices, no shuffling across time:
- fit: train-split windows whose targets end before ``cut`` -> gradient steps;
- calibration: train-split windows whose forecasts start at/after ``cut`` -> per-horizon conformal widening of the
  10-90% band (baked into the graph) and the inner-validation loss curve;
- validation: windows whose forecasts start in the validation split (their history may reach back into train) ->
  the reported figures only (never fitted or tuned on).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from training.config import config_from_checkpoint
from training.data.forecast import Windows
from training.intervals import interval_report
from training.loop import epoch_generator, load_checkpoint, one_cycle, run_fit, seed_everything, setup_torch
from training.nets import count_parameters
from training.provenance import command_line, hardware
from training.recipes.base import Recipe


@dataclass
class ForecastConfig:
    model_name: str = ""
    epochs: int = 12
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    hidden: int = 64
    layers: int = 1
    dropout: float = 0.1
    clip: float = 1.0
    threads: int = 0


def mae(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - y)))


class ForecastRecipe(Recipe):
    default = ForecastConfig()
    horizon = 0

    # -- what a subclass provides ------------------------------------------------------------------
    def load_windows(self, args: argparse.Namespace) -> tuple[Windows, Windows, Windows, dict[str, Any]]:
        """-> (fit, calibration, validation, data_info)."""
        raise NotImplementedError

    def build(self, cfg: ForecastConfig, info: dict[str, Any]) -> nn.Module:
        raise NotImplementedError

    def loss(self, net: nn.Module, inputs: dict[str, torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def baselines(self, val: Windows, info: dict[str, Any]) -> dict[str, np.ndarray]:
        """name -> point forecasts [N,H] (raw units) on the validation windows."""
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------------------
    @staticmethod
    def tensors(w: Windows) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(v) for k, v in w.inputs.items()}

    @torch.no_grad()
    def predict(self, net: nn.Module, w: Windows, batch: int = 1024) -> np.ndarray:
        net.eval()
        inp = self.tensors(w)
        outs = [net(*(v[i : i + batch] for v in inp.values())) for i in range(0, len(w), batch)]
        return torch.cat(outs).numpy() if outs else np.zeros((0, self.horizon, 3), np.float32)

    def train_steps(self, net: nn.Module, opt, sched, x: dict[str, torch.Tensor], y: torch.Tensor,
                    generator: torch.Generator, bs: int, batches, clip: float) -> tuple[float, float]:
        """One epoch: the rows shuffled by `generator`, one optimiser step per batch index in `batches` (a range,
        or a progress bar over it), gradients clipped to `clip`; returns (summed loss, rows seen)."""
        net.train()
        perm = torch.randperm(len(y), generator=generator)
        tot = seen = 0.0
        for i in batches:
            idx = perm[i * bs : (i + 1) * bs]
            loss = self.loss(net, {k: v[idx] for k, v in x.items()}, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), clip)
            opt.step()
            if sched.last_epoch < sched.total_steps - 1:
                sched.step()
            tot += float(loss.detach()) * len(idx)
            seen += len(idx)
        return tot, seen

    def train(self, args: argparse.Namespace) -> int:
        cfg = self.config(args)
        setup_torch(args.device, cfg.threads or None)
        seed_everything(args.seed)
        fit_w, cal_w, val_w, info = self.load_windows(args)
        if args.limit:
            fit_w = fit_w.take(np.arange(min(args.limit, len(fit_w))))
        net = self.build(cfg, info)
        n = len(fit_w)
        bs = min(cfg.batch_size, n)
        steps = math.ceil(n / bs)
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = one_cycle(opt, cfg.lr, steps * cfg.epochs, 0.15)
        fit_x, fit_y = self.tensors(fit_w), torch.from_numpy(fit_w.y)
        print(f"{cfg.model_name}: fit {n} windows, calibration {len(cal_w)}, validation {len(val_w)}, "
              f"params {count_parameters(net):,}, {hardware()}")

        def train_epoch(epoch: int) -> dict[str, float]:
            batches = tqdm(range(steps), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, mininterval=10,
                           disable=args.quiet)
            tot, seen = self.train_steps(net, opt, sched, fit_x, fit_y, epoch_generator(args.seed, epoch), bs, batches,
                                         cfg.clip)
            return {"train_loss": tot / seen, "lr": float(sched.get_last_lr()[0])}

        @torch.no_grad()
        def evaluate(epoch: int) -> dict[str, float]:
            net.eval()
            row = {}
            for tag, w in (("cal", cal_w), ("val", val_w)):
                if not len(w):
                    continue
                row[f"{tag}_loss"] = float(self.loss(net, self.tensors(w), torch.from_numpy(w.y)))
                q = self.predict(net, w)
                row[f"{tag}_mae"] = mae(q[..., 1], w.y)
                row[f"{tag}_coverage"] = interval_report(q, w.y)["coverage"]
            return row

        meta = {"task": self.task, "config": asdict(cfg), "seed": args.seed, "info": info,
                "command": command_line(args.argv), "hardware": hardware(),
                "n_fit": n, "n_cal": len(cal_w), "n_val": len(val_w), "params": count_parameters(net),
                "limit": args.limit}
        run_fit(net, opt, sched, epochs=cfg.epochs, run_dir=self.run_dir(args), resume=args.resume,
                train_epoch=train_epoch, evaluate=evaluate, meta=meta)
        return 0

    def load_checkpoint(self, path: Path) -> tuple[nn.Module, ForecastConfig, dict[str, Any]]:
        ckpt = load_checkpoint(path)
        cfg = config_from_checkpoint(self.default, ckpt["meta"]["config"])
        net = self.build(cfg, ckpt["meta"]["info"])
        net.load_state_dict(ckpt["recipe"]["model"])
        return net.eval(), cfg, ckpt

    def evaluate(self, args: argparse.Namespace) -> int:
        setup_torch(args.device)
        net, _, _ = self.load_trained(args)
        _, _, val_w, info = self.load_windows(args)
        q = self.predict(net, val_w)
        print({"val_mae_q50": mae(q[..., 1], val_w.y), **interval_report(q, val_w.y),
               **{f"baseline_{k}_mae": mae(v, val_w.y) for k, v in self.baselines(val_w, info).items()}})
        return 0
