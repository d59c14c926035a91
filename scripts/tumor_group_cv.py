"""Group-aware validation of the tumor recipe: leave one acquisition group out at a time.

The training split mixes public collections whose file names do not say which; ``source_groups`` clusters it on image
statistics (framing, background, tissue brightness and histogram) into acquisition groups. For each group this trains
the recipe (same command as the served model, plus ``--set holdout_group=G``) on the other groups only, then scores
the left-out group with mirror test-time augmentation, as the served graph does:

- AUROC per left-out group (where it holds both classes) and pooled over all left-out rows;
- sensitivity and specificity on the left-out group at the threshold that model gets on the official validation
  split (sensitivity >= 0.97 there): how well a threshold set on the sources one trained on carries to a new one.

    .venv/bin/python -m scripts.tumor_group_cv --work-dir /tmp/tumor-gcv [--epochs 20] [--seed 0] [--groups 6]
        [--jobs 2] [--out result.json]

Trainings run ``--jobs`` at a time, one torch thread each; a finished group's checkpoint is reused on a rerun.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def train_all(args: argparse.Namespace) -> None:
    pending = [g for g in range(args.groups) if not (args.work_dir / f"g{g}" / "tumor" / "last.pt").exists()
               or not (args.work_dir / f"g{g}.done").exists()]
    running: list[tuple[int, subprocess.Popen]] = []
    env = {**os.environ, "NEUROSERVE_THREADS": "1"}
    while pending or running:
        while pending and len(running) < args.jobs:
            g = pending.pop(0)
            cmd = [sys.executable, "-m", "training", "train", "tumor", "--epochs", str(args.epochs), "--seed",
                   str(args.seed), "--set", f"holdout_group={g}", "--set", f"groups={args.groups}",
                   "--checkpoint-dir", str(args.work_dir / f"g{g}"), "--quiet", *args.data_args]
            log = open(args.work_dir / f"g{g}.log", "w")
            print(f"group {g}: {' '.join(cmd[1:])}", flush=True)
            running.append((g, subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)))
        time.sleep(2)
        for g, proc in list(running):
            if proc.poll() is not None:
                running.remove((g, proc))
                if proc.returncode != 0:
                    for _, other in running:  # no orphans left writing checkpoints a rerun would start again
                        other.terminate()
                        other.wait()
                    raise SystemExit(f"group {g} failed (exit {proc.returncode}): see {args.work_dir / f'g{g}.log'}")
                (args.work_dir / f"g{g}.done").write_text("ok\n")
                print(f"group {g}: trained", flush=True)


def main() -> int:
    from training import metrics
    from training.data import tumor as data
    from training.data.tumor_groups import source_groups
    from training.exporters.tumor import MIN_SENSITIVITY
    from training.loop import setup_torch
    from training.paths import default_data_dir
    from training.recipes.tumor import TumorRecipe, predict_images

    ap = argparse.ArgumentParser()
    ap.add_argument("--work-dir", type=Path, required=True, help="checkpoints and logs, one folder per group")
    ap.add_argument("--data-dir", type=Path)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--groups", type=int, default=6)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    args.data_args = ["--data-dir", str(args.data_dir)] if args.data_dir else []
    train_all(args)

    setup_torch("cpu")
    data_dir = args.data_dir or default_data_dir()
    train_set, val_set = data.load_splits(data_dir)
    groups = source_groups(train_set.x, args.groups, seed=0)
    recipe = TumorRecipe()
    folds, pooled_y, pooled_score = [], [], []
    for g in range(args.groups):
        model, ckpt = recipe.load_checkpoint(args.work_dir / f"g{g}" / "tumor" / "last.pt")
        meta = ckpt["meta"]
        if meta["config"].get("holdout_group") != g:
            raise SystemExit(f"{args.work_dir / f'g{g}'}: that checkpoint did not leave group {g} out")
        rows = groups == g
        t_out, _ = predict_images(model, meta, train_set.x[rows])
        t_val, _ = predict_images(model, meta, val_set.x)
        y = train_set.y[rows]
        threshold = metrics.threshold_for_sensitivity(val_set.y, t_val, MIN_SENSITIVITY)
        fold = {"group": g, "n": int(rows.sum()), "no_tumour": int((y == 0).sum()),
                "trained_on": int(meta["n_train"]), "val_auroc": metrics.auroc(val_set.y, t_val),
                "auroc": metrics.auroc(y, t_out) if 0 < y.sum() < len(y) else None,
                **metrics.binary_report(y, t_out, threshold)}
        folds.append(fold)
        pooled_y.append(y)
        pooled_score.append(t_out)
    y_all, s_all = np.concatenate(pooled_y), np.concatenate(pooled_score)
    result = {"command": " ".join(["python -m scripts.tumor_group_cv", *sys.argv[1:]]), "epochs": args.epochs, "seed": args.seed, "groups": args.groups,
              "pooled_auroc": metrics.auroc(y_all, s_all),
              "pooled_auroc_ci95": metrics.bootstrap_ci(metrics.auroc, y_all, s_all, n_boot=1000, stratify=y_all),
              "folds": folds}
    text = json.dumps(result, indent=2, default=float)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
