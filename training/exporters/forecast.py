"""The shared export of the quantile forecasters (traffic-lstm, prices-lstm): conformal widening of the 10-90%
band baked into the graph, parity, validation figures through the graph with block-bootstrap CIs, manifest, card.

A task subclasses ``ForecastExporter`` with its I/O contract, manifest fields, extra metrics, card and plots.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from training import cards
from training.data.forecast import Windows
from training.intervals import QUANTILES, block_bootstrap_ci, interval_report, widening_factors
from training.loop import setup_torch
from training.onnx_export import export_graph, parity_cases, run_onnx
from training.paths import models_dir
from training.provenance import command_line, git_commit, training_command
from training.recipes.forecast import ForecastConfig, ForecastRecipe, mae


class ForecastExporter:
    task_family = ""  # the manifest's task
    parity_atol = 1e-4  # in output units; + 1e-5 x |value| (float32 spacing grows with the value)

    def __init__(self, recipe: ForecastRecipe):
        self.recipe = recipe

    # -- what a subclass provides ------------------------------------------------------------------
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
    def write_graph(self, net: nn.Module, onnx_path: Path, outputs: list[dict], dynamic: dict[str, dict[int, str]],
                    windows: Windows) -> dict[str, Any]:
        """Export ``net`` and check it against torch at batch 1/3/64/257 of inputs drawn from ``windows``."""
        rng = np.random.default_rng(1)
        example = {k: torch.from_numpy(v) for k, v in self.parity_inputs(rng, 2, windows).items()}
        export_graph(net, example, onnx_path, [o["name"] for o in outputs], dynamic)
        parity = parity_cases(net, onnx_path, [self.parity_inputs(rng, b, windows) for b in (1, 3, 64, 257)],
                              atol=self.parity_atol, rtol=1e-5)
        print(f"exported {onnx_path} ({onnx_path.stat().st_size / 1e6:.2f} MB); parity {parity['max_abs_diff']:.2e}")
        return parity

    def main(self, args: argparse.Namespace) -> int:
        """``neuroserve-train export <task>``: the trained net and the calibration / validation windows ->
        ``export``."""
        setup_torch(args.device)
        net, cfg, ckpt = self.recipe.load_trained(args)
        _, cal_w, val_w, _ = self.recipe.load_windows(args)
        return self.export(net, cfg, ckpt, models_dir(args), cal_w, val_w, skip_card=args.skip_card,
                           command=command_line(args.argv))

    def export(self, net: nn.Module, cfg: ForecastConfig, ckpt: dict[str, Any], models_root: Path, cal_w: Windows,
               val_w: Windows, *, skip_card: bool = False, command: str = "") -> int:
        """Conformal widening fitted on ``cal_w`` and baked in, the graph, parity, figures on ``val_w`` through the
        graph with block-bootstrap CIs against the recipe's baselines, manifest and card."""
        t_start = time.time()
        meta = ckpt["meta"]
        info = meta["info"]
        name = cfg.model_name
        model_dir = models_root / name
        onnx_path = model_dir / "1" / "model.onnx"

        # conformal widening of the band, fitted on the calibration slice of TRAIN
        q_cal_raw = self.recipe.predict(net, cal_w)
        widen = widening_factors(q_cal_raw, cal_w.y, target=0.8)
        net.widen.copy_(torch.as_tensor(widen, dtype=torch.float32))
        q_cal = self.recipe.predict(net, cal_w)
        calib = {"factors": widen.round(3).tolist(), "n_windows": len(cal_w),
                 "coverage_before": interval_report(q_cal_raw, cal_w.y)["coverage"],
                 "coverage_after": interval_report(q_cal, cal_w.y)["coverage"]}
        print(f"conformal widening on the calibration slice: {calib}")

        inputs, outputs, dynamic = self.contract()
        parity = self.write_graph(net, onnx_path, outputs, dynamic, val_w)

        q = run_onnx(onnx_path, val_w.inputs)
        y, g = val_w.y, val_w.group
        point = self.recipe.baselines(val_w, info)
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
        provenance = {
            "training_command": training_command(meta), "export_command": command,
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
        if not skip_card:
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
