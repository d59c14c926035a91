"""Pieces every recipe shares: seeding, threads, resumable checkpoints, the epoch loop, history, the one-cycle
schedule."""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def setup_torch(device: str = "cpu", threads: int | None = None) -> torch.device:
    torch.set_num_threads(threads or int(os.environ.get("NEUROSERVE_THREADS", "2")))
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but torch sees no CUDA device")
    return torch.device(device)


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """A generator that depends only on (seed, epoch, stream): resumed runs replay the same batches."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 101 + stream)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Atomic save: write beside, then rename (a killed run never leaves a torn checkpoint)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)


@dataclass
class History:
    """Per-epoch metrics, kept in the checkpoint and written as history.json beside it."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    wall_time_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "wall_time_s": self.wall_time_s}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "History":
        return cls(list(data.get("epochs", [])), float(data.get("wall_time_s", 0.0)))


def fit(
    *,
    epochs: int,
    run_dir: Path,
    resume: bool,
    get_state: Callable[[], dict[str, Any]],
    set_state: Callable[[dict[str, Any]], None],
    train_epoch: Callable[[int], dict[str, float]],
    evaluate: Callable[[int], dict[str, float]],
    meta: dict[str, Any],
    log: Callable[[str], None] = print,
) -> History:
    """Run epochs [start, epochs); save ``last.pt`` after each; resume from it when asked.

    ``get_state``/``set_state`` carry everything recipe-specific (model, optimiser, EMA...).
    """
    ckpt = run_dir / "last.pt"
    history = History()
    start = 0
    if resume and ckpt.exists():
        state = load_checkpoint(ckpt)
        set_state(state["recipe"])
        history = History.from_dict(state["history"])
        start = int(state["epoch"]) + 1
        log(f"resumed from {ckpt} at epoch {start}")
    elif resume:
        log(f"--resume: no checkpoint at {ckpt}, starting fresh")
    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        row: dict[str, float] = {"epoch": epoch + 1}
        row.update(train_epoch(epoch))
        t_train = time.perf_counter() - t0
        row.update(evaluate(epoch))
        row["epoch_time_s"] = time.perf_counter() - t0
        row["train_time_s"] = t_train
        history.epochs.append(row)
        history.wall_time_s += row["epoch_time_s"]
        log("epoch {:>3}/{} ".format(epoch + 1, epochs) + " ".join(
            f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items() if k != "epoch"))
        save_checkpoint(ckpt, {"epoch": epoch, "recipe": get_state(), "history": history.to_dict(), "meta": meta})
        (run_dir / "history.json").write_text(json.dumps(history.to_dict(), indent=2))
    return history


def one_cycle(opt: torch.optim.Optimizer, max_lr: float, total_steps: int, pct_start: float):
    """OneCycleLR that also works for a handful of steps (tiny test runs): >= 2 warm-up steps, pct <= 0.5."""
    total = max(int(total_steps), 4)
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=total,
                                               pct_start=min(0.5, max(pct_start, 2.0 / total)))


def run_fit(model: nn.Module, opt: torch.optim.Optimizer, sched, **fit_kwargs) -> History:
    """``fit`` with the usual (model, optimiser, scheduler) state, timed."""

    def get_state() -> dict:
        return {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}

    def set_state(st: dict) -> None:
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])

    started = time.time()
    history = fit(get_state=get_state, set_state=set_state, **fit_kwargs)
    print(f"finished in {time.time() - started:.0f} s ({history.wall_time_s:.0f} s of epochs over all sessions)")
    return history
