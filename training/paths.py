"""Default locations: data, checkpoints and the models repository."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = REPO_ROOT / "models"


def default_data_dir() -> Path:
    """NEUROSERVE_DATA_DIR, else ../shared/data beside the repository."""
    env = os.environ.get("NEUROSERVE_DATA_DIR")
    if env:
        return Path(env)
    return REPO_ROOT.parent / "shared" / "data"


def default_checkpoint_dir() -> Path:
    """NEUROSERVE_CHECKPOINT_DIR, else ~/.cache/neuroserve/checkpoints (outside the repository)."""
    env = os.environ.get("NEUROSERVE_CHECKPOINT_DIR")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "neuroserve" / "checkpoints"


def models_dir(args) -> Path:
    """The models repository an export writes into: --out, else models/ of this checkout."""
    return Path(args.out) if getattr(args, "out", None) else MODELS_DIR
