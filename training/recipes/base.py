"""The interface every task recipe implements: ``train`` and ``evaluate`` (CLI subcommands, ``prepare`` where a
task has a raw source to convert), and loading what ``train`` saved. Exporting is the exporters' job
(``training/exporters/``): a recipe never imports one."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from training import paths
from training.config import config_from_args


class Recipe:
    task: str = ""
    default: Any = None  # the config dataclass with the recipe's defaults
    batch_field: str = "batch_size"  # the config field --batch-size sets
    checkpoint_name: str = "last.pt"  # what ``train`` leaves in run_dir and ``evaluate``/export read by default

    # -- CLI subcommands ---------------------------------------------------------------
    def prepare(self, args: argparse.Namespace) -> int:
        raise SystemExit(f"prepare is not implemented for {self.task}")

    def train(self, args: argparse.Namespace) -> int:
        raise NotImplementedError

    def evaluate(self, args: argparse.Namespace) -> int:
        raise NotImplementedError

    def export(self, args: argparse.Namespace) -> int:
        """Reached only for a task with no exporter in ``training.exporters.EXPORTERS`` (the sentiment teacher says
        why it has none)."""
        raise SystemExit(f"export is not implemented for {self.task}")

    # -- shared helpers ----------------------------------------------------------------
    def config(self, args: argparse.Namespace):
        """The default config with --epochs, --batch-size and every --set key=value (e.g. --set norm=fg_z)."""
        return config_from_args(self.default, args, self.batch_field)

    def data_dir(self, args: argparse.Namespace) -> Path:
        return Path(args.data_dir) if args.data_dir else paths.default_data_dir()

    def run_dir(self, args: argparse.Namespace) -> Path:
        root = Path(args.checkpoint_dir) if args.checkpoint_dir else paths.default_checkpoint_dir()
        return root / self.task

    def checkpoint_path(self, args: argparse.Namespace) -> Path:
        """--checkpoint, else the run's ``checkpoint_name``."""
        if getattr(args, "checkpoint", None):
            return Path(args.checkpoint)
        return self.run_dir(args) / self.checkpoint_name

    def load_trained(self, args: argparse.Namespace):
        """What ``load_checkpoint`` returns for --checkpoint (or the run's own)."""
        return self.load_checkpoint(self.checkpoint_path(args))

    def load_checkpoint(self, path: Path):
        """The trained net (eval mode) and what else the recipe needs from the checkpoint at ``path``."""
        raise NotImplementedError

    def models_dir(self, args: argparse.Namespace) -> Path:
        """--out, else models/ (training.paths.models_dir): what an exporter's main writes into."""
        return paths.models_dir(args)

    def report(self, args: argparse.Namespace, result: dict[str, Any]) -> int:
        """evaluate's answer: the metrics as JSON on stdout, and in --out when given."""
        text = json.dumps(result, indent=2)
        if args.out:
            Path(args.out).write_text(text)
        print(text)
        return 0
