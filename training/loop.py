"""Pieces every recipe shares: seeding, threads, resumable checkpoints, the epoch loop, history."""

from __future__ import annotations

import json
import os
import platform
import random
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch


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


def hardware(device: torch.device | str | None = None) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {torch.get_num_threads()} torch threads ({os.cpu_count()} CPUs visible), torch {torch.__version__}"
    if device is not None and torch.device(device).type == "cuda":
        text = f"{torch.cuda.get_device_name(torch.device(device))} (CUDA {torch.version.cuda}); {text}"
    return text


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def export_command() -> str:
    """This export's command line, without the free-text --note."""
    import shlex
    import sys

    argv, out, skip = sys.argv[1:], [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--note":
            skip = True
            continue
        if not a.startswith("--note="):
            out.append(a)
    return shlex.join(["neuroserve-train", *out])


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
