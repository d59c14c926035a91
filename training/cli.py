"""``neuroserve-train`` / ``python -m training``: prepare, train, evaluate and export models.

    neuroserve-train train cifar10 --epochs 10 --seed 0
    neuroserve-train evaluate cifar10
    neuroserve-train export cifar10            # writes models/cifar10-resnet and models/cifar10-int8
    neuroserve-train prepare tumor --source Training/ --out /tmp/tumor/train.npz
    neuroserve-train ood tumor-cnn             # out-of-distribution profile of a committed model
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training import ood
from training.exporters import get_exporter
from training.recipes import REGISTRY, get_recipe

COMMANDS = {
    "prepare": "convert a raw source (tarball / image folder tree) into the npz the readers expect",
    "train": "train a model; checkpoints each epoch under --checkpoint-dir/<task>/last.pt",
    "evaluate": "validation metrics (with confidence intervals) of the last checkpoint",
    "export": "ONNX export with preprocessing baked in + parity check + manifest + model card",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neuroserve-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("task", choices=sorted(REGISTRY), help="task to run")
        p.add_argument("--data-dir", help="root holding <task>/ data (default: $NEUROSERVE_DATA_DIR or ../shared/data)")
        p.add_argument("--epochs", type=int, help="number of epochs (default: the recipe's)")
        p.add_argument("--batch-size", type=int, help="batch size (default: the recipe's)")
        p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
        p.add_argument("--out", help="prepare: output npz; export: models root (default models/); "
                                     "evaluate: write metrics JSON here")
        p.add_argument("--checkpoint-dir", help="default: $NEUROSERVE_CHECKPOINT_DIR or ~/.cache/neuroserve/checkpoints")
        p.add_argument("--checkpoint", help="evaluate/export: a checkpoint file (default <checkpoint-dir>/<task>/last.pt)")
        p.add_argument("--resume", action="store_true", help="train: continue from the last checkpoint")
        p.add_argument("--source", help="prepare: the raw source (tarball or folder tree)")
        p.add_argument("--limit", type=int, help="train on the first N images only (smoke tests)")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.add_argument("--note", help="export: a provenance note for the card (e.g. how the run was interrupted)")
        p.add_argument("--group-cv", type=Path,
                       help="export (tumor): the --out JSON of scripts/tumor_group_cv.py, for the card's group-aware "
                            "validation section")
        p.add_argument("--ensemble", nargs="+", metavar="CHECKPOINT",
                       help="export (cifar10): more trained checkpoints of the same task and split; the graph "
                            "averages their logits with the main checkpoint's")
        p.add_argument("--tta", type=int, choices=[0, 1, 2],
                       help="export (cifar10): the test-time augmentation baked into the graph, instead of the "
                            "recipe's (0 none, 1 mirror, 2 mirror x 1 px shifts)")
        p.add_argument("--fp16-weights", action="store_true",
                       help="export (cifar10, sentiment-*): store the large weights as fp16 (rounded first; computed "
                            "in fp32): half the file")
        p.add_argument("--keep-int8", action="store_true",
                       help="export (cifar10): leave the committed cifar10-int8 as it is (no re-quantisation; the "
                            "card lists it with its own card's accuracy), e.g. when a larger net's INT8 copy would "
                            "not fit models/'s size budget")
        p.add_argument("--int8-from-served", action="store_true",
                       help="export (cifar10): re-quantise cifar10-int8 from the committed cifar10-resnet graph "
                            "(no checkpoint needed); then run `neuroserve-train ood cifar10-int8`")
        p.add_argument("--skip-card", action="store_true", help="export: ONNX + manifest only (no plots/card)")
        p.add_argument("--time-budget", type=float, help="train: seconds of training; epochs are planned to fit "
                                                        "(generation recipes)")
        p.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="train: override a field of the recipe's config dataclass (typed by its default), repeatable")
    ood_help = ("out-of-distribution profile of a committed model: adds the ood_features output, writes the profile, "
                "manifest/card sections (training/ood.py)")
    ood.add_arguments(sub.add_parser("ood", help=ood_help, description=ood_help))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # what the checkpoint and the card record as the command that ran (training.provenance)
    if args.command == "ood":
        return ood.main(args)
    if args.command == "export" and (exporter := get_exporter(args.task)) is not None:
        return int(exporter(args) or 0)
    return int(getattr(get_recipe(args.task), args.command)(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
