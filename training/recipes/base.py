"""The interface every task recipe implements (one method per CLI subcommand)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from training.paths import MODELS_DIR, default_checkpoint_dir, default_data_dir


class Recipe:
    task: str = ""
    data_subdir: str = ""

    # -- CLI subcommands ---------------------------------------------------------------
    def prepare(self, args: argparse.Namespace) -> int:
        raise SystemExit(f"prepare is not implemented for {self.task}")

    def train(self, args: argparse.Namespace) -> int:
        raise NotImplementedError

    def evaluate(self, args: argparse.Namespace) -> int:
        raise NotImplementedError

    def export(self, args: argparse.Namespace) -> int:
        raise NotImplementedError

    # -- shared helpers ----------------------------------------------------------------
    def data_dir(self, args: argparse.Namespace) -> Path:
        return Path(args.data_dir) if args.data_dir else default_data_dir()

    def run_dir(self, args: argparse.Namespace) -> Path:
        root = Path(args.checkpoint_dir) if args.checkpoint_dir else default_checkpoint_dir()
        return root / self.task

    def models_dir(self, args: argparse.Namespace) -> Path:
        return Path(args.out) if args.out else MODELS_DIR

    def report(self, args: argparse.Namespace, result: dict) -> int:
        """evaluate's answer: the metrics as JSON on stdout, and in --out when given."""
        text = json.dumps(result, indent=2)
        if args.out:
            Path(args.out).write_text(text)
        print(text)
        return 0
