"""Export of the binary risk models (fraud, deterioration): checkpoint -> ONNX + parity, the validation figures
through the exported graph (bootstrap CIs, the baselines on the same rows, the operating threshold chosen on
validation), manifest and card; PR and reliability plots. The task modules (exporters/fraud.py,
exporters/deterioration.py) add their card sections and call ``export_risk``."""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from training import cards
from training.metrics import (average_precision, brier, calibration_summary, compare, operating_point,
                              precision_recall_points, score_report, wilson)
from training.loop import setup_torch
from training.onnx_export import export_graph, parity_cases, run_onnx
from training.provenance import command_line, git_commit, training_command
from training.recipes.risk import BinaryRiskRecipe


def fmt(report: Mapping[str, Any], metric: str, digits: int = 3) -> str:
    lo, hi = report[f"{metric}_ci95"]
    return f"{report[metric]:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


def plot_pr(y: np.ndarray, curves: Mapping[str, np.ndarray], path: Path, title: str,
            point: tuple[float, float] | None = None) -> Path:
    plt = cards._plt()
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    for label, p in curves.items():
        precision, recall, _ = precision_recall_points(y, p)
        ax.step(np.r_[0, recall], np.r_[1, precision], where="post",
                label=f"{label} (AUPRC {average_precision(y, p):.3f})")
    if point is not None:
        ax.plot([point[0]], [point[1]], "ro", label="served threshold")
    ax.set_ylim(0, 1.02)
    return _finish(plt, fig, ax, path, title, "recall", "precision", "lower left")


def plot_reliability(y: np.ndarray, p: np.ndarray, path: Path, title: str, bins: int = 10) -> Path:
    """Observed rate against mean predicted risk per decile of predicted risk, with Wilson intervals."""
    plt = cards._plt()
    y, p = np.asarray(y), np.asarray(p)
    order = np.argsort(p, kind="mergesort")
    groups = np.array_split(order, bins)
    mean_p = [float(p[g].mean()) for g in groups]
    rate = [float(y[g].mean()) for g in groups]
    cis = [wilson(int(y[g].sum()), len(g)) for g in groups]
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8, label="perfect calibration")
    ax.errorbar(mean_p, rate, yerr=[[r - lo for r, (lo, _) in zip(rate, cis)], [hi - r for r, (_, hi) in zip(rate, cis)]],
                fmt="o-", ms=4, capsize=2, label=f"model (Brier {brier(y, p):.3f})")
    top = max(max(mean_p), max(hi for _, hi in cis)) * 1.05
    ax.set_xlim(0, min(1, top))
    ax.set_ylim(0, min(1, top))
    return _finish(plt, fig, ax, path, title, "mean predicted risk (decile of validation stays)",
                   "observed rate (95% Wilson CI)", "upper left")


def _finish(plt, fig, ax, path: Path, title: str, xlabel: str, ylabel: str, legend: str) -> Path:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc=legend)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def export_risk(recipe: BinaryRiskRecipe, args: argparse.Namespace, extra_card: Callable[..., dict],
                render: Callable[[str, dict], str]) -> int:
    """Export the recipe's checkpoint; ``extra_card(recipe, onnx_path, val, info, model_dir, skip_plots, scores,
    threshold)`` adds card fields and plots (``scores``: "model" and each baseline's validation scores), ``render(name,
    card)`` writes the README."""
    t_start = time.time()
    setup_torch(args.device)
    net, cfg, ckpt = recipe.load_trained(args)
    meta, info = ckpt["meta"], ckpt["meta"]["info"]
    name = cfg.model_name
    model_dir = recipe.models_dir(args) / name
    onnx_path = model_dir / "1" / "model.onnx"
    train, val, _ = recipe.load(args)

    inputs, outputs, dynamic = recipe.contract()
    rng = np.random.default_rng(1)
    example = {k: torch.from_numpy(v) for k, v in recipe.parity_feeds(val, 2, rng).items()}
    export_graph(net, example, onnx_path, [o["name"] for o in outputs], dynamic)
    parity = parity_cases(net, onnx_path, [recipe.parity_feeds(val, b, rng) for b in (1, 3, 64, 257)], atol=1e-5)
    print(f"exported {onnx_path} ({onnx_path.stat().st_size / 1e3:.1f} KB); parity {parity['max_abs_diff']:.2e}")

    p = run_onnx(onnx_path, val.inputs).astype(np.float64)
    res = score_report(val.y, p)
    threshold, rule = recipe.choose_threshold(val.y, p)
    res["operating_point"] = {**operating_point(val.y, p, threshold), "rule": rule}
    res["calibration"] = calibration_summary(val.y, p)
    base, scores = {}, {"model": p}
    for key, b in recipe.baselines(args, train, val, info).items():
        s = scores[key] = np.asarray(b["scores"], dtype=np.float64)
        metrics = b.get("metrics", ("auroc", "auprc", "recall_at_95_precision"))
        base[key] = {"note": b["note"], **score_report(val.y, s, metrics),
                     **compare(val.y, p, s, b.get("compare", "auprc"))}
    res["baselines"] = base
    print({k: v for k, v in res.items() if k != "baselines"})
    for key, b in base.items():
        print(key, {k: v for k, v in b.items() if k != "note"})

    history = ckpt["history"]
    provenance = {
        "training_command": training_command(meta), "export_command": command_line(getattr(args, "argv", None)),
        "seed": meta["seed"], "epochs": len(history["epochs"]), "train_wall_time_s": round(history["wall_time_s"], 1),
        "hardware": meta["hardware"], "git_commit": git_commit(), "params": meta["params"],
        "onnx_bytes": onnx_path.stat().st_size, "train_rows": meta["n_train"], "validation_rows": len(val),
        "framework": f"torch {torch.__version__}",
    }
    extra = extra_card(recipe, onnx_path, val, info, model_dir, args.skip_card, scores, threshold)
    manifest_extra = recipe.manifest_extra(cfg, info)
    manifest_extra.setdefault("parameters", {})["threshold"] = round(threshold, 6)
    cards.write_manifest(model_dir, {
        "name": name, "task": recipe.task_family, "inputs": inputs, "outputs": outputs, "provenance": provenance,
        "metrics": {"val_auroc": res["auroc"], "val_auroc_ci95": res["auroc_ci95"], "val_auprc": res["auprc"],
                    "val_auprc_ci95": res["auprc_ci95"], "val_brier": res["brier"], "val_rows": len(val),
                    **{f"baseline_{k}_auroc": v["auroc"] for k, v in base.items()},
                    **{f"baseline_{k}_auprc": v["auprc"] for k, v in base.items() if "auprc" in v}},
        **manifest_extra,
    })
    if not args.skip_card:
        cards.plot_history(history, model_dir / "training_curves.png",
                           [("train_loss", "val_loss"), ("val_auroc", "val_auprc")], f"{name} training")
        card = {"name": name, "task": recipe.task_family, "description": manifest_extra.get("description", ""),
                "metrics": res, "parity": parity, "provenance": provenance, "config": asdict(cfg),
                "history": history, **extra}
        cards.write_card(model_dir, card, render(name, card))
    print(f"export finished in {time.time() - t_start:.0f} s")
    return 0


def run_footer(p: dict[str, Any]) -> str:
    """Card lines on seed, wall time, hardware, size, and the commands that recreate the model."""
    return (f"- Seed {p['seed']}; training wall time {p['train_wall_time_s']:.1f} s on {p['hardware']} (2 shared cores).\n"
            f"  {p['params']:,} parameters; ONNX {p['onnx_bytes'] / 1e3:.1f} KB. Git commit at export: "
            f"{p['git_commit'] or 'n/a'}.\n\n" + cards.recreate_section({**p, "notes": None}))
