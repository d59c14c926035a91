"""The options every scripts/*_http_check.py shares: where the data and the models are, and where the result goes."""

from __future__ import annotations

import argparse
from pathlib import Path

from training.paths import MODELS_DIR, default_data_dir


def http_check_parser() -> argparse.ArgumentParser:
    """An ArgumentParser with --data-dir, --models and --out; each check adds its own options to it."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", type=Path, default=default_data_dir(), help="NEUROSERVE_DATA_DIR, else ../shared/data")
    ap.add_argument("--models", type=Path, default=MODELS_DIR)
    ap.add_argument("--out", type=Path, help="also write the result (JSON) here")
    return ap
