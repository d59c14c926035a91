"""What a model card records about how its model was made: the command lines that ran, the git commit, the
hardware. The CLI passes its own argv (``args.argv``), so a run started from Python records what it was given."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

# free text or a flag that only says how a run was continued: not part of the command that recreates the model
_DROP_WITH_VALUE = ("--note",)
_DROP = ("--resume",)


def command_line(argv: Sequence[str] | None = None) -> str:
    """``neuroserve-train <argv>`` as one shell line (default: this process's arguments), without --note and
    --resume. Recipes store it in the checkpoint as the training command; exporters record it as the export's."""
    argv = list(sys.argv[1:] if argv is None else argv)
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in _DROP_WITH_VALUE:
            skip = True
            continue
        if a in _DROP or any(a.startswith(f"{d}=") for d in _DROP_WITH_VALUE):
            continue
        out.append(a)
    return shlex.join(["neuroserve-train", *out])


def training_command(meta: dict[str, Any]) -> str:
    """The training command a checkpoint recorded (checkpoints before command_line() kept a --resume)."""
    return meta["command"].replace(" --resume", "")


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def hardware(device=None) -> str:
    """CPU model, torch threads and version; the GPU first when ``device`` is a CUDA device."""
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
