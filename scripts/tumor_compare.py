"""Compare tumor-cnn checkpoints, and the mean-logit ensembles of two or more of them, the way the served model is
chosen: AUROC (mirror test-time augmentation, as the exported graph does) on the official validation split and on
tumor_external_val, the specificity left at the screening points (sensitivity >= 0.97 on validation, >= 0.90
outside, point estimates), and the served one-threshold rule (the exporter's screening_threshold: both sensitivity goals
at the lower end of their 95% intervals).

    .venv/bin/python -m scripts.tumor_compare CKPT [CKPT ...] [--data-dir ../shared/data] [--no-ensembles]

tumor_external_val is for validation and model selection only: nothing here trains on it.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np


def main() -> int:
    from training import metrics
    from training.data import tumor as data
    from training.exporters.tumor import MIN_EXTERNAL_SENSITIVITY, MIN_SENSITIVITY, screening_threshold
    from training.loop import setup_torch
    from training.recipes.tumor import TumorRecipe, predict_images

    from training.paths import default_data_dir

    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--data-dir", type=Path, default=default_data_dir(),
                    help="NEUROSERVE_DATA_DIR, else ../shared/data")
    ap.add_argument("--no-ensembles", action="store_true")
    args = ap.parse_args()
    setup_torch("cpu")
    _, val = data.load_splits(args.data_dir)
    ext = data.load_external(args.data_dir)
    if ext is None:
        raise SystemExit(f"no tumor_external_val under {args.data_dir}")
    recipe = TumorRecipe()

    def logits(path: Path) -> tuple[np.ndarray, np.ndarray]:
        model, ckpt = recipe.load_checkpoint(path)
        return tuple(predict_images(model, ckpt["meta"], s.x)[0] for s in (val, ext))

    def row(v: np.ndarray, e: np.ndarray) -> str:
        yv, ye = val.y.astype(bool), ext.y.astype(bool)
        t_val = metrics.threshold_for_sensitivity(val.y, v, MIN_SENSITIVITY)
        t_ext = metrics.threshold_for_sensitivity(ext.y, e, MIN_EXTERNAL_SENSITIVITY)
        t = screening_threshold(val.y, v, ext.y, e)[0]  # the exporter's one-threshold rule
        figures = {"val_auroc": metrics.auroc(val.y, v), "ext_auroc": metrics.auroc(ext.y, e),
                   "val_spec@sens97": (v[~yv] < t_val).mean(), "ext_spec@sens90": (e[~ye] < t_ext).mean(),
                   "rule_val_sens": (v[yv] >= t).mean(), "rule_val_spec": (v[~yv] < t).mean(),
                   "rule_ext_sens": (e[ye] >= t).mean(), "rule_ext_spec": (e[~ye] < t).mean()}
        return " ".join(f"{k}={float(x):.3f}" for k, x in figures.items())

    scores = {path: logits(path) for path in args.checkpoints}
    for path, (v, e) in scores.items():
        print(row(v, e), path)
    if not args.no_ensembles:
        for size in range(2, len(scores) + 1):
            for combo in itertools.combinations(scores, size):
                v = np.mean([scores[p][0] for p in combo], axis=0)
                e = np.mean([scores[p][1] for p in combo], axis=0)
                print(row(v, e), "ensemble of", " + ".join(str(p) for p in combo))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
