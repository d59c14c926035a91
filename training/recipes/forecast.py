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
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from training import cards
from training.data.forecast import Windows
from training.loop import epoch_generator, git_commit, hardware, load_checkpoint, seed_everything, setup_torch
from training.nets.sequence import count_parameters
from training.recipes.base import Recipe
from training.seqtools import (QUANTILES, block_bootstrap_ci, config_from_args, export_command, export_graph,
                               interval_report, one_cycle, parity_cases, run_fit, run_onnx, widening_factors)


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
    task_family = ""
    horizon = 0
    parity_atol = 1e-4  # in output units; + 1e-5 x |value| (float32 spacing grows with the value)

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

    def contract(self) -> tuple[list[dict], list[dict], dict[str, dict[int, str]]]:
        raise NotImplementedError

    def parity_inputs(self, rng: np.random.Generator, batch: int, val: Windows) -> dict[str, np.ndarray]:
        idx = rng.integers(0, len(val), size=batch)
        return {k: v[idx] for k, v in val.inputs.items()}

    def manifest_extra(self, cfg: ForecastConfig, info: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def extra_metrics(self, q: np.ndarray, val: Windows, point: dict[str, np.ndarray]) -> dict[str, Any]:
        return {}

    def render(self, name: str, card: dict[str, Any]) -> str:
        raise NotImplementedError

    def plot(self, q: np.ndarray, val: Windows, point: dict[str, np.ndarray], path: Path, name: str) -> None:
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------------------
    def config(self, args: argparse.Namespace) -> ForecastConfig:
        return config_from_args(self.default, args)

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
                "command": shlex.join(["neuroserve-train", *sys.argv[1:]]), "hardware": hardware(),
                "n_fit": n, "n_cal": len(cal_w), "n_val": len(val_w), "params": count_parameters(net),
                "limit": args.limit}
        run_fit(net, opt, sched, epochs=cfg.epochs, run_dir=self.run_dir(args), resume=args.resume,
                train_epoch=train_epoch, evaluate=evaluate, meta=meta)
        return 0

    def load_trained(self, args: argparse.Namespace) -> tuple[nn.Module, ForecastConfig, dict[str, Any]]:
        path = Path(args.checkpoint) if args.checkpoint else self.run_dir(args) / "last.pt"
        ckpt = load_checkpoint(path)
        cfg = type(self.default)(**{**asdict(self.default), **ckpt["meta"]["config"]})
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

    def export(self, args: argparse.Namespace) -> int:
        t_start = time.time()
        setup_torch(args.device)
        net, cfg, ckpt = self.load_trained(args)
        meta = ckpt["meta"]
        info = meta["info"]
        name = cfg.model_name
        model_dir = self.models_dir(args) / name
        onnx_path = model_dir / "1" / "model.onnx"
        _, cal_w, val_w, _ = self.load_windows(args)

        # conformal widening of the band, fitted on the calibration slice of TRAIN
        q_cal_raw = self.predict(net, cal_w)
        widen = widening_factors(q_cal_raw, cal_w.y, target=0.8)
        net.widen.copy_(torch.as_tensor(widen, dtype=torch.float32))
        q_cal = self.predict(net, cal_w)
        calib = {"factors": widen.round(3).tolist(), "n_windows": len(cal_w),
                 "coverage_before": interval_report(q_cal_raw, cal_w.y)["coverage"],
                 "coverage_after": interval_report(q_cal, cal_w.y)["coverage"]}
        print(f"conformal widening on the calibration slice: {calib}")

        inputs, outputs, dynamic = self.contract()
        rng = np.random.default_rng(1)
        example = {k: torch.from_numpy(v) for k, v in self.parity_inputs(rng, 2, val_w).items()}
        export_graph(net, example, onnx_path, [o["name"] for o in outputs], dynamic)
        parity = parity_cases(net, onnx_path, [self.parity_inputs(rng, b, val_w) for b in (1, 3, 64, 257)],
                              atol=self.parity_atol, rtol=1e-5)
        print(f"exported {onnx_path} ({onnx_path.stat().st_size / 1e6:.2f} MB); parity {parity['max_abs_diff']:.2e}")

        q = run_onnx(onnx_path, val_w.inputs)
        y, g = val_w.y, val_w.group
        point = self.baselines(val_w, info)
        res = {"q50_mae": mae(q[..., 1], y),
               "q50_mae_ci95": block_bootstrap_ci(mae, g, q[..., 1], y),
               **interval_report(q, y)}
        res["coverage_ci95"] = block_bootstrap_ci(lambda a, b: interval_report(a, b)["coverage"], g, q, y)
        res["coverage_by_horizon"] = ((y >= q[..., 0]) & (y <= q[..., 2])).mean(0).round(4).tolist()
        res["mae_by_horizon"] = np.abs(q[..., 1] - y).mean(0).round(4).tolist()
        res["monotone"] = bool(np.all(q[..., 0] <= q[..., 1]) and np.all(q[..., 1] <= q[..., 2]))
        base = {}
        for k, p in point.items():
            base[k] = {"mae": mae(p, y), "mae_ci95": block_bootstrap_ci(mae, g, p, y),
                       "model_mae_ratio": res["q50_mae"] / mae(p, y),
                       "model_mae_ratio_ci95": block_bootstrap_ci(lambda a, b, c: mae(a, c) / mae(b, c), g,
                                                                  q[..., 1], p, y)}
        res["baselines"] = base
        res.update(self.extra_metrics(q, val_w, point))
        print({k: v for k, v in res.items() if k not in ("coverage_by_horizon", "mae_by_horizon")})

        history = ckpt["history"]
        train_cmd = meta["command"].replace(" --resume", "")
        provenance = {
            "training_command": train_cmd, "export_command": export_command(train_cmd, self.task),
            "seed": meta["seed"], "epochs": len(history["epochs"]), "train_wall_time_s": round(history["wall_time_s"], 1),
            "hardware": meta["hardware"], "git_commit": git_commit(), "params": meta["params"],
            "onnx_bytes": onnx_path.stat().st_size, "fit_windows": meta["n_fit"], "calibration_windows": meta["n_cal"],
            "validation_windows": len(val_w), "framework": f"torch {torch.__version__}", "data": info.get("describe"),
        }
        extra = self.manifest_extra(cfg, info)
        cards.write_manifest(model_dir, {
            "name": name, "task": self.task_family, "inputs": inputs, "outputs": outputs,
            "labels": ["q10", "q50", "q90"], "provenance": provenance,
            "metrics": {"val_q50_mae": res["q50_mae"], "val_q50_mae_ci95": res["q50_mae_ci95"],
                        "val_coverage_80": res["coverage"], "val_coverage_80_ci95": res["coverage_ci95"],
                        "val_windows": len(val_w),
                        **{f"baseline_{k}_mae": v["mae"] for k, v in base.items()}},
            **extra,
        })
        if not args.skip_card:
            cards.plot_history(history, model_dir / "training_curves.png",
                               [("train_loss", "cal_loss", "val_loss"), ("cal_mae", "val_mae"),
                                ("cal_coverage", "val_coverage")], f"{name} training (pinball loss, MAE, coverage)")
            self.plot(q, val_w, point, model_dir / "forecasts.png", name)
            card = {"name": name, "task": self.task_family, "description": extra.get("description", ""),
                    "metrics": res, "calibration": calib, "parity": parity, "provenance": provenance,
                    "config": asdict(cfg), "history": history, "quantiles": list(QUANTILES)}
            cards.write_card(model_dir, card, self.render(name, card))
        print(f"export finished in {time.time() - t_start:.0f} s")
        return 0


def fmt_ci(v: float, ci: list[float], digits: int = 1) -> str:
    return f"{v:.{digits}f} (95% CI {ci[0]:.{digits}f}-{ci[1]:.{digits}f})"


def run_footer(p: dict[str, Any]) -> str:
    """Card lines on seed, wall time, hardware, size, and the commands that recreate the model."""
    return (f"- Seed {p['seed']}; training wall time {p['train_wall_time_s'] / 60:.1f} min on {p['hardware']} (shared 2 cores).\n"
            f"  ONNX size {p['onnx_bytes'] / 1e6:.2f} MB. Git commit at export: {p['git_commit'] or 'n/a'}.\n\n"
            f"## Recreate\n```\n{p['training_command']}\n{p['export_command']}\n```")
