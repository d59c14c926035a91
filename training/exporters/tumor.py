"""Export tumor-cnn: calibration (Platt / temperature, fitted on validation) baked into the graph,
threshold for sensitivity >= 0.97 chosen on validation, metrics with CIs, ROC/confusion plots, card."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from training import cards, metrics
from training.data import tumor as data
from training.data.mri_augment import ForegroundNorm
from training.data.tumor_groups import outside_head_stats
from training.nets import count_parameters
from training.nets.preprocess import Normalize
from training.nets.tumor_cnn import TumorCNN
from training.onnx_export import benchmark, export_onnx, file_size, ort_session, parity_check, random_images
from training.paths import models_dir
from training.provenance import command_line, git_commit, training_command
from training.recipes.tumor import TumorRecipe, predict_images

MIN_SENSITIVITY = 0.97
MIN_EXTERNAL_SENSITIVITY = 0.90  # screening floor on the out-of-source set (tumor_external_val), issue 15
# The model this recipe replaced (global mean/std normalisation, light augmentation; served until commit 491dab0),
# measured with this exporter's own code (onnx_scores + training.metrics) at its own
# threshold; Wilson intervals for proportions, stratified bootstrap (2000) for AUROC.
BEFORE = {
    "model_onnx_sha256": "1e02faa6a8a28e0fe3e39d99e816987573f7667c4496a1adda49828b6f457aa7", "git_commit": "491dab0",
    "threshold": 0.8881891965866089,
    "validation": {"n": 579, "auroc": 0.9833, "auroc_ci95": [0.9655, 0.9958],
                   "sensitivity": {"value": 0.9716, "ci95": [0.9537, 0.9827], "k": 513, "n": 528},
                   "specificity": {"value": 0.9412, "ci95": [0.8408, 0.9798], "k": 48, "n": 51}},
    "external": {"n": 1398, "auroc": 0.8525, "auroc_ci95": [0.8333, 0.8718],
                 "sensitivity": {"value": 0.2923, "ci95": [0.2582, 0.3289], "k": 185, "n": 633},
                 "specificity": {"value": 0.9869, "ci95": [0.9761, 0.9929], "k": 755, "n": 765}},
}
# The same weights with the first issue-15 screening threshold (point estimates of sensitivity; served from commit
# ff38958 until 16881cb asked the goals of the intervals' lower ends).
BEFORE_SCREENING = {
    "git_commit": "ff38958", "threshold": 0.3616236746311188,
    "validation": {"auroc": 0.9833, "auroc_ci95": [0.9655, 0.9958],
                   "sensitivity": {"value": 0.9924, "ci95": [0.9807, 0.9971], "k": 524, "n": 528},
                   "specificity": {"value": 0.8039, "ci95": [0.6754, 0.8898], "k": 41, "n": 51}},
    "external": {"auroc": 0.8525, "auroc_ci95": [0.8333, 0.8718],
                 "sensitivity": {"value": 0.9005, "ci95": [0.8747, 0.9214], "k": 570, "n": 633},
                 "specificity": {"value": 0.5556, "ci95": [0.5202, 0.5904], "k": 425, "n": 765}},
}
INPUT = [{"name": "images", "datatype": "UINT8", "shape": [-1, 64, 64, 1]}]
OUTPUTS = [{"name": "tumor_probability", "datatype": "FP32", "shape": [-1]},
           {"name": "subtype_probabilities", "datatype": "FP32", "shape": [-1, 4]}]


class PerImageNormalize(nn.Module):
    """uint8 NHWC -> float NCHW in [0,1] -> ForegroundNorm (per-image standardisation over the foreground)."""

    def __init__(self, mode: str):
        super().__init__()
        self.norm = ForegroundNorm(mode)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.norm(images.permute(0, 3, 1, 2).to(torch.float32) / 255.0)


class TumorExport(nn.Module):
    """uint8 NHWC [N,64,64,1] -> (calibrated P(tumour) [N], subtype probabilities [N,4]); mirror TTA."""

    def __init__(self, net: nn.Module, mean: float, std: float, a: float, b: float, temperature: float,
                 norm: str = "global"):
        super().__init__()
        self.normalize = Normalize([mean], [std]) if norm == "global" else PerImageNormalize(norm)
        self.net = net
        self.register_buffer("a", torch.tensor(a, dtype=torch.float32))
        self.register_buffer("b", torch.tensor(b, dtype=torch.float32))
        self.register_buffer("inv_t", torch.tensor(1.0 / temperature, dtype=torch.float32))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.normalize(images)
        t1, s1 = self.net(x)
        t2, s2 = self.net(torch.flip(x, dims=[3]))
        t, s = 0.5 * (t1 + t2), 0.5 * (s1 + s2)
        return torch.sigmoid(self.a * t + self.b), torch.softmax(s * self.inv_t, dim=1)


def screening_threshold(y_val: np.ndarray, p_val: np.ndarray, y_ext: np.ndarray | None = None,
                        p_ext: np.ndarray | None = None) -> tuple[float, float, float | None]:
    """One threshold for both sets, screening first: the highest one at which sensitivity is >= MIN_SENSITIVITY on
    the official validation set and, where the out-of-source set is given, >= MIN_EXTERNAL_SENSITIVITY on it, each
    at its 95% Wilson lower bound: the goal is shown despite the sampling error of these few hundred tumours, not
    met by a point estimate that a new sample would miss half the time. (A harder source is a separate risk this
    does not measure; issue 15's scorer found fewer tumours on its source than tumor_external_val shows.)
    Returns (threshold, the validation-only threshold, the external-only threshold or None)."""
    t_val = metrics.threshold_for_sensitivity_bound(y_val, p_val, MIN_SENSITIVITY)
    if y_ext is None or p_ext is None:
        return t_val, t_val, None
    t_ext = metrics.threshold_for_sensitivity_bound(y_ext, p_ext, MIN_EXTERNAL_SENSITIVITY)
    return min(t_val, t_ext), t_val, t_ext


def onnx_scores(sess, x: np.ndarray, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    outs = [sess.run(None, {"images": x[i : i + batch]}) for i in range(0, len(x), batch)]
    return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])


def external_block(y: np.ndarray, p: np.ndarray, threshold: float, threshold_val: float,
                   threshold_ext: float) -> dict[str, Any]:
    """Figures on tumor_external_val: AUROC (stratified bootstrap CI) and Wilson intervals at the thresholds."""
    return {"n": int(len(y)), "n_tumor": int(y.sum()), "auroc": metrics.auroc(y, p),
            "auroc_ci95": metrics.bootstrap_ci(metrics.auroc, y, p, n_boot=2000, stratify=y),
            "at_threshold": metrics.binary_report(y, p, threshold),
            "at_val_threshold": metrics.binary_report(y, p, threshold_val),
            "threshold_for_external_sensitivity": threshold_ext}


def in_graph_text(norm: str) -> str:
    if norm == "global":
        first = "x/255, (x - mean)/std, NHWC->NCHW"
    else:
        first = (f"NHWC->NCHW, x/255, per-image {norm} standardisation over pixels > "
                 f"{ForegroundNorm(norm).threshold} (training/data/mri_augment.py ForegroundNorm; mean/std unused)")
    return first + ", mirror TTA, Platt-calibrated sigmoid, temperature-scaled softmax"


def kept_manifest_fields(model_dir, sess) -> dict[str, Any]:
    """Fields of an existing manifest that this exporter does not write (e.g. another tool's), kept on re-export.
    An ``ood`` profile is kept only when the new graph still has the output it reads (else it must be refitted)."""
    import json

    path = model_dir / "manifest.json"
    if not path.exists():
        return {}
    old = json.loads(path.read_text())
    ours = {"name", "task", "description", "inputs", "outputs", "labels", "preprocessing", "batching", "priority",
            "parameters", "provenance", "metrics"}
    kept = {k: v for k, v in old.items() if k not in ours}
    ood = kept.get("ood")
    if ood is not None and ood.get("output", "ood_features") not in {o.name for o in sess.get_outputs()}:
        print(f"note: dropping the manifest's ood profile: the new graph has no output {ood.get('output')!r}; "
              "re-run the OOD command for this model")
        kept.pop("ood")
    return kept


def fit_platt(logit: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Minimise the binary log-loss of sigmoid(a * logit + b) (LBFGS, from a=1, b=0)."""
    z = torch.tensor(logit, dtype=torch.float64)
    t = torch.tensor(y, dtype=torch.float64)
    params = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([params], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(params[0] * z + params[1], t)
        loss.backward()
        return loss

    opt.step(closure)
    a, b = params.detach().tolist()
    return float(a), float(b)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    z = torch.tensor(logits, dtype=torch.float64)
    t = torch.tensor(y, dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(z / log_t.exp(), t)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def cross_fitted(logit: np.ndarray, y: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Honest estimates on validation: 2-fold (stratified) cross-fitting of calibration AND threshold.

    Fit Platt + pick the threshold on one half, measure on the other, and swap."""
    rng = np.random.default_rng(seed)
    folds = np.zeros(len(y), dtype=int)
    for c in (0, 1):
        idx = rng.permutation(np.flatnonzero(y == c))
        folds[idx[: len(idx) // 2]] = 1
    probs = np.zeros(len(y))
    preds = np.zeros(len(y), dtype=bool)
    for k in (0, 1):
        fit_m, test_m = folds != k, folds == k
        a, b = fit_platt(logit[fit_m], y[fit_m])
        p_fit = sigmoid(a * logit[fit_m] + b)
        thr = metrics.threshold_for_sensitivity(y[fit_m], p_fit, MIN_SENSITIVITY)
        probs[test_m] = sigmoid(a * logit[test_m] + b)
        preds[test_m] = probs[test_m] >= thr
    yb = y.astype(bool)
    return {
        "sensitivity": metrics.proportion(int((preds & yb).sum()), int(yb.sum())),
        "specificity": metrics.proportion(int((~preds & ~yb).sum()), int((~yb).sum())),
        "ece": metrics.expected_calibration_error(y, probs),
        "brier": float(np.mean((probs - y) ** 2)),
    }


def logistic_baseline(features_train: np.ndarray, y_train: np.ndarray, features_val: np.ndarray) -> np.ndarray:
    """Class-balanced L2 logistic regression (LBFGS); returns validation scores."""
    mu, sd = features_train.mean(0), features_train.std(0) + 1e-6
    xt = torch.tensor((features_train - mu) / sd, dtype=torch.float64)
    xv = torch.tensor((features_val - mu) / sd, dtype=torch.float64)
    t = torch.tensor(y_train, dtype=torch.float64)
    w_pos = len(y_train) / (2 * max(y_train.sum(), 1))
    w_neg = len(y_train) / (2 * max((1 - y_train).sum(), 1))
    sample_w = torch.where(t > 0, torch.tensor(w_pos, dtype=torch.float64), torch.tensor(w_neg, dtype=torch.float64))
    w = torch.zeros(xt.shape[1] + 1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=0.5, max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        z = xt @ w[:-1] + w[-1]
        loss = (nn.functional.binary_cross_entropy_with_logits(z, t, reduction="none") * sample_w).mean() + 1e-3 * (w[:-1] ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return (xv @ w[:-1] + w[-1]).numpy()


def boosted_baseline(features_train: np.ndarray, y_train: np.ndarray, *features_eval: np.ndarray) -> list[np.ndarray]:
    """Class-balanced gradient-boosted trees (seeded); returns P(tumour) for each evaluation set."""
    from sklearn.ensemble import HistGradientBoostingClassifier  # training-side only, as the fraud baselines

    clf = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, class_weight="balanced", random_state=0)
    clf.fit(features_train, y_train)
    return [clf.predict_proba(f)[:, 1] for f in features_eval]


def thumbnails(x: np.ndarray, size: int = 16) -> np.ndarray:
    f = x[..., 0].astype(np.float32) / 255
    k = f.shape[1] // size
    return f.reshape(len(f), size, k, size, k).mean((2, 4)).reshape(len(f), -1)


def intensity_stats(x: np.ndarray) -> np.ndarray:
    f = x[..., 0].reshape(len(x), -1).astype(np.float32) / 255
    return np.stack([f.mean(1), f.std(1), *np.percentile(f, [10, 50, 90, 99], axis=1), (f < 0.02).mean(1)], 1)


def main(args: argparse.Namespace) -> int:
    """``neuroserve-train export tumor``: the CLI's arguments -> ``export_tumor``."""
    recipe = TumorRecipe()
    model, ckpt = recipe.load_trained(args)
    group_cv = json.loads(args.group_cv.read_text()) if args.group_cv else None
    return export_tumor(model, ckpt, models_dir(args), recipe.data_dir(args), note=args.note,
                        skip_card=args.skip_card, command=command_line(args.argv), group_cv=group_cv)


def export_tumor(model: TumorCNN, ckpt: dict[str, Any], models_root: Path, data_dir: Path, *,
                 note: str | None = None, skip_card: bool = False, command: str = "",
                 group_cv: dict[str, Any] | None = None) -> int:
    """A trained TumorCNN and its checkpoint -> models_root/<model_name>/: Platt/temperature calibration on
    validation, the graph, parity, the screening threshold, validation and out-of-source figures, manifest, card."""
    torch.set_num_threads(2)
    t_start = time.time()
    meta = ckpt["meta"]
    cfg = meta["config"]
    name = cfg["model_name"]
    model_dir = models_root / name
    onnx_path = model_dir / "1" / "model.onnx"
    train_set, val_set = data.load_splits(data_dir, meta.get("limit"))
    y, sub = val_set.y, val_set.subtype

    # calibration on validation (torch logits with the same mirror TTA as the graph)
    norm = cfg.get("norm", "global")
    t_logit, s_logit = predict_images(model, meta, val_set.x)
    a, b = fit_platt(t_logit, y)
    temperature = fit_temperature(s_logit, sub)
    print(f"Platt a={a:.4f} b={b:.4f}; subtype temperature {temperature:.4f}")

    wrapper = TumorExport(model, meta["mean"], meta["std"], a, b, temperature, norm).eval()
    export_onnx(wrapper, torch.from_numpy(random_images((64, 64, 1))(2)), onnx_path, "images",
                ["tumor_probability", "subtype_probabilities"])
    parity = parity_check(wrapper, onnx_path, random_images((64, 64, 1), seed=1))
    print(f"exported {onnx_path} ({file_size(onnx_path) / 1e6:.2f} MB); parity {parity}")

    sess = ort_session(onnx_path)
    p, ps = onnx_scores(sess, val_set.x)
    ext = data.load_external(data_dir)
    external = None
    p_ext = onnx_scores(sess, ext.x)[0] if ext is not None else None
    threshold, threshold_val, threshold_ext = screening_threshold(y, p, ext.y if ext is not None else None, p_ext)
    if ext is not None:
        external = external_block(ext.y, p_ext, threshold, threshold_val, threshold_ext)
        print(f"external: AUROC {external['auroc']:.4f} {external['auroc_ci95']}; at {threshold:.4f}: "
              f"sens {cards.fmt_prop(external['at_threshold']['sensitivity'])}, "
              f"spec {cards.fmt_prop(external['at_threshold']['specificity'])}; "
              f"val-only threshold {threshold_val:.4f}: ext sens {cards.fmt_prop(external['at_val_threshold']['sensitivity'])}")
    report = metrics.binary_report(y, p, threshold)
    report_val_only = metrics.binary_report(y, p, threshold_val)
    auc = metrics.auroc(y, p)
    auc_ci = metrics.bootstrap_ci(metrics.auroc, y, p, n_boot=2000, stratify=y)
    fpr, tpr, _ = metrics.roc_curve(y, p)
    raw_p = sigmoid(t_logit)
    calib = {"ece_before": metrics.expected_calibration_error(y, raw_p), "ece_after": metrics.expected_calibration_error(y, p),
             "brier_before": float(np.mean((raw_p - y) ** 2)), "brier_after": float(np.mean((p - y) ** 2)),
             "platt_a": a, "platt_b": b, "subtype_temperature": temperature}
    honest = cross_fitted(t_logit, y)
    # sensitivity per tumour subtype on validation (the subtypes come mostly from different source collections)
    per_subtype = {data.LABELS[k]: metrics.proportion(int((p[sub == k] >= threshold).sum()), int((sub == k).sum()))
                   for k in (1, 2, 3) if (sub == k).any()}
    sub_pred = ps.argmax(1)
    sub_acc = metrics.accuracy_with_ci(sub_pred, sub)
    sub_cm = metrics.confusion_matrix(sub, sub_pred, 4)
    sub_bal = float(np.mean([sub_cm[i, i] / max(sub_cm[i].sum(), 1) for i in range(4)]))
    # baselines, measured on the same split
    base_pix = logistic_baseline(thumbnails(train_set.x), train_set.y, thumbnails(val_set.x))
    base_int = logistic_baseline(intensity_stats(train_set.x), train_set.y, intensity_stats(val_set.x))
    # the sharper shortcut probe: trees on pixels that show no part of the head (padding, background noise)
    probe_sets = [outside_head_stats(val_set.x)] + ([outside_head_stats(ext.x)] if ext is not None else [])
    base_out, *base_out_ext = boosted_baseline(outside_head_stats(train_set.x), train_set.y, *probe_sets)
    baselines = {
        "always_tumor": {"sensitivity": 1.0, "specificity": 0.0, "auroc": 0.5},
        "logistic_16x16_pixels": {"auroc": metrics.auroc(y, base_pix),
                                  "auroc_ci95": metrics.bootstrap_ci(metrics.auroc, y, base_pix, n_boot=1000, stratify=y),
                                  "specificity_at_sens97": metrics.binary_report(
                                      y, base_pix, metrics.threshold_for_sensitivity(y, base_pix, MIN_SENSITIVITY))["specificity"]},
        "logistic_intensity_stats": {"auroc": metrics.auroc(y, base_int),
                                     "auroc_ci95": metrics.bootstrap_ci(metrics.auroc, y, base_int, n_boot=1000, stratify=y)},
        "boosted_outside_head": {"auroc": metrics.auroc(y, base_out),
                                 "auroc_ci95": metrics.bootstrap_ci(metrics.auroc, y, base_out, n_boot=1000, stratify=y),
                                 **({"external_auroc": metrics.auroc(ext.y, base_out_ext[0])} if ext is not None else {})},
    }
    latency = benchmark(onnx_path, val_set.x[:64])
    print(f"AUROC {auc:.4f} {auc_ci}; threshold {threshold:.4f}: sens {cards.fmt_prop(report['sensitivity'])}, "
          f"spec {cards.fmt_prop(report['specificity'])}; cross-fitted {honest}; subtype {cards.fmt_prop(sub_acc)}; "
          f"baselines {baselines}; latency {latency}")

    history = ckpt["history"]
    provenance = {
        "training_command": training_command(meta), "export_command": command,
        "seed": meta["seed"], "epochs": len(history["epochs"]), "train_wall_time_s": round(history["wall_time_s"], 1),
        "hardware": meta["hardware"], "git_commit": git_commit(), "params": count_parameters(model),
        "onnx_bytes": file_size(onnx_path), "train_images": meta["n_train"], "validation_images": int(len(y)),
        "framework": f"torch {torch.__version__}",
    }
    if note:
        provenance["notes"] = note
    metric_block = {
        "external": external, "val_sensitivity_by_subtype": per_subtype, "at_val_only_threshold": report_val_only, "threshold_val_only": threshold_val,
        "before": BEFORE,
        # the first screening threshold's row only when this export differs from it (other weights or another
        # threshold); re-exporting those weights with that threshold would print the same figures twice
        **({} if round(auc, 4) == BEFORE_SCREENING["validation"]["auroc"]
           and abs(threshold - BEFORE_SCREENING["threshold"]) < 1e-9 else {"before_screening": BEFORE_SCREENING}),
        "auroc": auc, "auroc_ci95": auc_ci, "at_threshold": report, "cross_fitted_2fold": honest,
        "calibration": calib, "subtype_accuracy": sub_acc, "subtype_balanced_accuracy": sub_bal,
        "subtype_confusion": sub_cm.tolist(), "baselines": baselines, "parity_max_abs_diff": parity["max_abs_diff"],
        "latency_ms": latency,
        **({"group_cv": group_cv} if group_cv else {}),
    }
    description = ("Two-head CNN on 64x64 grayscale brain MRI slices: calibrated P(tumour) and tumour subtype"
                   + ("; per-image intensity standardisation in the graph, trained for robustness to the scanner/source"
                      if norm != "global" else ""))
    cards.write_manifest(model_dir, {**kept_manifest_fields(model_dir, sess),
        "name": name, "task": "tumor-detection", "description": description, "inputs": INPUT, "outputs": OUTPUTS,
        "labels": data.LABELS,
        "preprocessing": {"layout": "NHWC", "dtype": "uint8", "height": 64, "width": 64, "channels": 1,
                          "color": "L", "grayscale": "PIL convert('L')", "pad_to_square": True, "pad_value": 0,
                          "resize": "lanczos", "range": [0, 255],
                          "in_graph": in_graph_text(norm), "mean": meta["mean"], "std": meta["std"]},
        "batching": {"max_batch_size": 64, "max_queue_delay_ms": 0},
        "priority": 10,
        "parameters": {"threshold": threshold, "min_sensitivity": MIN_SENSITIVITY,
                       **({"min_external_sensitivity": MIN_EXTERNAL_SENSITIVITY} if external else {}),
                       "sensitivity_goal_at": "wilson 95% lower bound"},
        "provenance": provenance,
        "metrics": {"val_auroc": auc, "val_auroc_ci95": auc_ci,
                    "val_sensitivity": report["sensitivity"]["value"], "val_sensitivity_ci95": report["sensitivity"]["ci95"],
                    "val_specificity": report["specificity"]["value"], "val_specificity_ci95": report["specificity"]["ci95"],
                    "val_subtype_accuracy": sub_acc["value"], "val_n": int(len(y)),
                    **({"external_auroc": external["auroc"], "external_auroc_ci95": external["auroc_ci95"],
                        "external_sensitivity": external["at_threshold"]["sensitivity"]["value"],
                        "external_sensitivity_ci95": external["at_threshold"]["sensitivity"]["ci95"],
                        "external_specificity": external["at_threshold"]["specificity"]["value"],
                        "external_specificity_ci95": external["at_threshold"]["specificity"]["ci95"],
                        "external_n": external["n"]} if external else {})},
    })
    if not skip_card:
        cards.plot_history(history, model_dir / "training_curves.png",
                           [("train_loss", "val_loss"), ("val_auroc", "val_sens@0.5", "val_spec@0.5", "val_subtype_acc"),
                            ("ext_auroc", "ext_sens@val97", "ext_spec@val97")],
                           f"{name} training")
        c = report["confusion"]
        cards.plot_confusion(np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]]), ["no tumour", "tumour"],
                             model_dir / "confusion_matrix.png", f"threshold {threshold:.3f} (n={len(y)})")
        cards.plot_confusion(sub_cm, data.LABELS, model_dir / "subtype_confusion_matrix.png", "subtype head (argmax)")
        spec_v, sens_v = report["specificity"]["value"], report["sensitivity"]["value"]
        cards.plot_roc(fpr, tpr, auc, model_dir / "roc.png", f"{name}: validation ROC", point=(1 - spec_v, sens_v))
        if external:
            fpr_e, tpr_e, _ = metrics.roc_curve(ext.y, p_ext)
            re_ = external["at_threshold"]
            cards.plot_roc(fpr_e, tpr_e, external["auroc"], model_dir / "roc_external.png",
                           f"{name}: tumor_external_val ROC",
                           point=(1 - re_["specificity"]["value"], re_["sensitivity"]["value"]))
        card = {"name": name, "task": "tumor-detection", "description": description, "metrics": metric_block,
                "provenance": provenance, "config": cfg, "threshold": threshold, "history": history,
                "not_a_medical_device": True}
        cards.write_card(model_dir, card, render_readme(name, description, card))
    print(f"export finished in {time.time() - t_start:.0f} s")
    return 0


def _before_after_rows(m: dict[str, Any], threshold: float) -> list[list[str]]:
    pct = lambda d: f"{100 * d['value']:.1f}% ({100 * d['ci95'][0]:.1f}-{100 * d['ci95'][1]:.1f})"  # noqa: E731
    frac = lambda d: f"{d['k']}/{d['n']}"  # noqa: E731
    auc = lambda v, c: f"{v:.4f} ({c[0]:.4f}-{c[1]:.4f})"  # noqa: E731
    b, r, e = m["before"], m["at_threshold"], m["external"]
    b2 = m.get("before_screening")
    rows = [["official validation (579)", "before", f"{b['threshold']:.4f}", auc(b["validation"]["auroc"], b["validation"]["auroc_ci95"]),
             pct(b["validation"]["sensitivity"]) + " " + frac(b["validation"]["sensitivity"]),
             pct(b["validation"]["specificity"]) + " " + frac(b["validation"]["specificity"])]]
    if b2:
        rows += [["official validation (579)", f"before, screening threshold ({b2['git_commit']})", f"{b2['threshold']:.4f}",
                  auc(b2["validation"]["auroc"], b2["validation"]["auroc_ci95"]),
                  pct(b2["validation"]["sensitivity"]) + " " + frac(b2["validation"]["sensitivity"]),
                  pct(b2["validation"]["specificity"]) + " " + frac(b2["validation"]["specificity"])]]
    rows += [["official validation (579)", "**after**", f"{threshold:.4f}", auc(m["auroc"], m["auroc_ci95"]),
             pct(r["sensitivity"]) + " " + frac(r["sensitivity"]), pct(r["specificity"]) + " " + frac(r["specificity"])]]
    if e:
        ea = e["at_threshold"]
        rows += [["tumor_external_val (1,398)", "before", f"{b['threshold']:.4f}", auc(b["external"]["auroc"], b["external"]["auroc_ci95"]),
                  pct(b["external"]["sensitivity"]) + " " + frac(b["external"]["sensitivity"]),
                  pct(b["external"]["specificity"]) + " " + frac(b["external"]["specificity"])]]
        if b2:
            rows += [["tumor_external_val (1,398)", f"before, screening threshold ({b2['git_commit']})", f"{b2['threshold']:.4f}",
                      auc(b2["external"]["auroc"], b2["external"]["auroc_ci95"]),
                      pct(b2["external"]["sensitivity"]) + " " + frac(b2["external"]["sensitivity"]),
                      pct(b2["external"]["specificity"]) + " " + frac(b2["external"]["specificity"])]]
        rows += [["tumor_external_val (1,398)", "**after**", f"{threshold:.4f}", auc(e["auroc"], e["auroc_ci95"]),
                  pct(ea["sensitivity"]) + " " + frac(ea["sensitivity"]), pct(ea["specificity"]) + " " + frac(ea["specificity"])]]
    return rows


def group_cv_section(m: dict[str, Any]) -> str:
    """The card section for scripts/tumor_group_cv.py's result (empty without one)."""
    g = m.get("group_cv")
    if not g:
        return ""
    rows = []
    for f in g["folds"]:
        auc = f"{f['auroc']:.3f}" if f.get("auroc") is not None else "n/a (one class)"
        rows.append([str(f["group"]), f"{f['n']} ({f['no_tumour']})", str(f["trained_on"]), f"{f['val_auroc']:.3f}", auc,
                     f"{cards.fmt_prop(f['sensitivity'], 1)}", f"{cards.fmt_prop(f['specificity'], 1)}"])
    table = cards.markdown_table(["left-out group", "rows (no tumour)", "trained on", "official validation AUROC",
                                  "left-out AUROC", "left-out sensitivity", "left-out specificity"], rows)
    lo, hi = g["pooled_auroc_ci95"]
    missed = [f for f in g["folds"] if f["sensitivity"]["value"] < MIN_EXTERNAL_SENSITIVITY]
    missed_txt = ("- Left-out groups where that threshold finds fewer than "
                  f"{100 * MIN_EXTERNAL_SENSITIVITY:.0f}% of the tumours: "
                  + "; ".join(f"group {f['group']} ({f['sensitivity']['k']}/{f['sensitivity']['n']})" for f in missed)
                  + ".\n" if missed else "")
    return f"""
## Group-aware validation: one acquisition group left out (`scripts/tumor_group_cv.py`)
The training split mixes public collections whose file names do not say which; `training/data/tumor_groups.py`
`source_groups` clusters it on image statistics (framing, background, tissue brightness and histogram) into
{g['groups']} acquisition groups. The recipe was trained {g['groups']} more times (this model's settings, seed {g['seed']},
{g['epochs']} epochs), each time without one group, and scored on the rows of the group it never saw (mirror TTA).
Sensitivity and specificity are at the threshold each of those models gets on the official validation split
(sensitivity >= 0.97 there): how a threshold set on known sources carries to an unseen one.
- **pooled AUROC over all left-out rows {g['pooled_auroc']:.4f}** (95% CI {lo:.4f}-{hi:.4f}), against {m['auroc']:.4f} on the
  official validation split, whose sources the model trained on.
{missed_txt}
{table}

Command: `{g['command']}`.
"""


def outside_head_probe(base: dict[str, Any]) -> str:
    """The card line for the probe that sees no part of the head (empty for a card exported before it existed)."""
    b = base.get("boosted_outside_head")
    if not b:
        return ""
    ext = (f" (tumor_external_val: {b['external_auroc']:.4f}, where skull-stripping makes the empty rows a measure of "
           "brain size)" if "external_auroc" in b else "")
    lo, hi = b["auroc_ci95"]
    return f"""- **shortcut probe that never sees the head**: gradient-boosted trees on 5 statistics of the pixels outside the
  head silhouette grown by 3 px (share of padding rows and columns; mean, std and 99th percentile of the background;
  `training/data/tumor_groups.py` `outside_head_stats`): **AUROC {b['auroc']:.4f}** (CI {lo:.4f}-{hi:.4f}){ext}.
  The official split's labels are largely predictable from the acquisition alone, so its AUROC says little about
  tumour detection on a new source; the out-of-source table is the figure to read.
"""


def render_readme(name: str, description: str, card: dict[str, Any]) -> str:
    m, p, cfg = card["metrics"], card["provenance"], card["config"]
    r = m["at_threshold"]
    c = r["confusion"]
    h = m["cross_fitted_2fold"]
    cal = m["calibration"]
    base = m["baselines"]
    e = m.get("external")
    norm = cfg.get("norm", "global")
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    ci = lambda lo_hi: f"{lo_hi[0]:.4f}-{lo_hi[1]:.4f}"  # noqa: E731
    ok = lambda cond: "met" if cond else "**NOT met**"  # noqa: E731
    table = cards.markdown_table(["set", "model", "threshold", "AUROC (95% CI)", "sensitivity (95% CI)", "specificity (95% CI)"],
                                 _before_after_rows(m, card["threshold"]))
    goals = (f"official validation: sensitivity >= 0.97 {ok(r['sensitivity']['value'] >= 0.97)}, specificity >= 0.90 "
             f"{ok(r['specificity']['value'] >= 0.90)}, AUROC >= 0.98 {ok(m['auroc'] >= 0.98)}")
    if e:
        ea = e["at_threshold"]
        goals += (f"; tumor_external_val: sensitivity >= 0.90 {ok(ea['sensitivity']['value'] >= 0.90)}, specificity >= 0.80 "
                  f"{ok(ea['specificity']['value'] >= 0.80)} (point estimates, one threshold for both)")
        lower_ok = r["sensitivity"]["ci95"][0] >= MIN_SENSITIVITY and ea["sensitivity"]["ci95"][0] >= MIN_EXTERNAL_SENSITIVITY
        goals += ("; both sensitivity goals also hold at the lower end of their 95% intervals" if lower_ok else "")
    if norm == "global":
        graph = "uint8 -> float, /255, (x - mean)/std, NHWC -> NCHW"
    else:
        graph = (f"uint8 -> float, NHWC -> NCHW, /255, per-image standardisation `{norm}` over the foreground (pixels > 0.04, "
                 "i.e. above ~10/255): z = (x - mean_fg)/std_fg clipped to [-3, 3], background set to -3 "
                 "(`training/data/mri_augment.py` `ForegroundNorm`; the manifest's mean/std are unused)")
    thr_rule = (f"the highest threshold with sensitivity >= {MIN_SENSITIVITY} on the official validation set **and** >= "
                f"{MIN_EXTERNAL_SENSITIVITY} on tumor_external_val, each at the lower end of its 95% Wilson interval, not "
                "only at the point estimate (screening: sensitivity first, shown despite the sampling error of these sets; "
                "specificity is what is left; a source harder than tumor_external_val is a risk this does not measure)"
                if e else f"the highest threshold whose sensitivity on validation is >= {MIN_SENSITIVITY} at the lower "
                          "end of its 95% Wilson interval")
    ext_section = ""
    norm_src = "the normalisation is per image" if norm != "global" else "the normalisation uses the training split's mean/std"
    logged_ext = any("ext_auroc" in row for row in card["history"]["epochs"])
    if e:
        ea, ev = e["at_threshold"], e["at_val_threshold"]
        rv = m["at_val_only_threshold"]
        ec = ea["confusion"]
        ext_section = f"""
## Out-of-source validation: tumor_external_val (n = {e['n']}: {e['n_tumor']} tumour, {e['n'] - e['n_tumor']} no tumour)
`shared/data/tumor_external_val/` (see its README): skull-stripped axial FLAIR-like slices from another collection
(Bohaju, Kaggle; probably BraTS). **Never trained on and no statistics fitted on it** ({norm_src}).
**It was used for model selection** (which variant to ship, see Training) **and for the threshold** (rule above), so the
figures below are optimistic: they are not an independent estimate of performance on a new source.
- AUROC {e['auroc']:.4f} (95% stratified bootstrap CI {ci(e['auroc_ci95'])}); this does not depend on the threshold.
- At the served threshold {card['threshold']:.4f}: sensitivity {cards.fmt_prop(ea['sensitivity'], 1)}, specificity
  {cards.fmt_prop(ea['specificity'], 1)}; TN {ec['tn']}, FP {ec['fp']}, FN {ec['fn']}, TP {ec['tp']} (Wilson 95%).
- With the threshold chosen on the official validation set alone ({m['threshold_val_only']:.4f}, sensitivity >= 0.97 there at its lower bound;
  validation sensitivity {cards.fmt_prop(rv['sensitivity'], 1)}, specificity {cards.fmt_prop(rv['specificity'], 1)}):
  tumor_external_val sensitivity {cards.fmt_prop(ev['sensitivity'], 1)}, specificity {cards.fmt_prop(ev['specificity'], 1)}.
- The data's README warns that its no-tumour slices are mostly near the top of the head or at the cerebellum, so its
  specificity partly measures brain size/shape; its sensitivity is the figure to trust.

![external ROC](roc_external.png)
"""
    subtypes = ", ".join(f"{k} {cards.fmt_prop(v, 1)}" for k, v in m.get("val_sensitivity_by_subtype", {}).items())
    warm = (f"warm-started from the previously served tumor-cnn graph (`{cfg['init_onnx']}`: "
            "`git show 491dab0:models/tumor-cnn/1/model.onnx`, sha256 1e02faa6...; trained by the recipe's earlier "
            "command with global normalisation and light augmentation), then fine-tuned" if cfg.get("init_onnx") else "from scratch")
    aug = ("strong, acquisition-robust (`training/data/mri_augment.py` `strong_augment`), per image: skull stripping "
           f"(p {cfg.get('skull_p')}: black out all but the thresholded, filled head silhouette eroded by 2-7 px), mirror, "
           f"rotation +/-{cfg['rotate_deg']} deg, zoom {cfg.get('scale_min')}-{cfg.get('scale_max')} (mostly out), shift "
           f"+/-{cfg['shift']}, a random increasing piecewise-linear contrast curve (p {cfg.get('remap_p')}; never an inversion), "
           f"gamma 1/{cfg.get('gamma_max')}-{cfg.get('gamma_max')}, contrast +/-25%, brightness on tissue +/-0.08, smooth "
           f"multiplicative bias field (p {cfg.get('bias_p')}), gaussian blur sigma 0.3-1.0 (p {cfg.get('blur_p')}), "
           f"gaussian noise sigma <= 0.04 (p {cfg.get('noise_p')})"
           + (f", a random non-monotone intensity curve (p {cfg.get('curve_p')})" if cfg.get("curve_p") else "")
           + (f", intensity inversion inside the head (p {cfg.get('invert_p')}; T1-like <-> T2-like)" if cfg.get("invert_p") else "")
           if cfg.get("aug") == "strong" else "light (mirror, +/-10 deg rotation, +/-10% scale, shifts, gamma/contrast/brightness jitter)")
    if cfg.get("sampler") == "group":
        sampling = (f"Sampling: source-group balanced (`training/data/tumor_groups.py`): the training images are clustered into "
                    f"{cfg.get('groups')} acquisition groups by image statistics (padding, background share, tissue brightness "
                    "and histogram; the file names do not name the three source collections), and each epoch draws "
                    f"{p.get('train_images', 'all')} images with replacement so that every (group, class) cell weighs the same (per-image "
                    f"weight capped at {cfg.get('weight_cap')}x the mean): no-tumour scans that look like the tumour sources and "
                    "tumour scans that look like the no-tumour sources count more, so the source says less about the label.")
        loss_words = f"BCE + {cfg['subtype_loss_weight']} x CE (unweighted: the sampler balances the classes)"
    elif cfg.get("sampler") == "area":
        sampling = (f"Sampling: head-area balanced (`training/data/tumor_groups.py` `area_groups`): {cfg.get('groups')} quantile "
                    "bins of the filled head silhouette's area, each (bin, class) cell drawn with the same total weight "
                    f"(per-image weight capped at {cfg.get('weight_cap')}x the mean), so head size says nothing about the label.")
        loss_words = f"BCE + {cfg['subtype_loss_weight']} x CE (unweighted: the sampler balances the classes)"
    else:
        sampling = "Sampling: a fresh permutation each epoch; inverse-frequency class weights in the loss."
        loss_words = f"weighted BCE + {cfg['subtype_loss_weight']} x weighted CE"
    selection = card.get("selection_note", "")
    ext_log = ("- The training log records tumor_external_val figures every 2nd epoch (`ext_*` in the curves); they were "
               "read, never trained on. " + selection) if logged_ext else ""
    if norm == "global" and cfg.get("aug", "light") == "light" and not cfg.get("init_onnx"):
        changed = ("**The weights are unchanged** (the same network, trained by the same command); only the decision "
                   "threshold changed, to the screening rule below. No retrained variant beat these weights on "
                   "tumor_external_val (see Training), so this is the best honest model found in the time available.")
        b2 = m.get("before_screening")
        if b2:
            before_sens, before_spec = b2["external"]["sensitivity"], b2["external"]["specificity"]
            after_ext = m["external"]["at_threshold"]
            changed += (f" The first screening threshold ({b2['threshold']:.4f}, served from {b2['git_commit']}) met "
                        f"the external sensitivity goal only at its point estimate: {100 * before_sens['value']:.1f}%, "
                        f"95% CI from {100 * before_sens['ci95'][0]:.1f}%. The rule now asks it of the interval's lower "
                        f"end, which gives {card['threshold']:.4f}: external sensitivity "
                        f"{100 * after_ext['sensitivity']['value']:.1f}%, at the cost of more false alarms (external "
                        f"specificity {100 * before_spec['value']:.1f}% -> {100 * after_ext['specificity']['value']:.1f}%).")
    else:
        changed = (f"This one uses `{norm}` input normalisation inside the graph and was "
                   f"{'fine-tuned' if cfg.get('init_onnx') else 'trained from scratch'} with {cfg.get('aug')} augmentation"
                   + (" and source-group balanced sampling" if cfg.get("sampler") == "group" else "") + " (see Training).")
    shortcut = ("Per-image standardisation and the augmentation reduce, but do not remove, the room for source cues; see the "
                "intensity probe." if norm != "global" else
                "The model very likely uses the source/sequence: on skull-stripped FLAIR from elsewhere its tumour "
                "probabilities sit low (hence the low screening threshold), and fine-tuning with acquisition augmentation "
                "made that worse, not better (see the note under Recreate).")
    return f"""# {name} (model card)

> **NOT a medical device.** A demonstration model trained on a small public dataset with known biases.
> It must not be used to diagnose, screen or triage anyone.

{description}.

## What changed (issue 15: hold up on scans from another source)
The previous model (global mean/std, light augmentation) found 29% of the tumours of tumor_external_val at its threshold.
{changed} Before and after, measured with the same code (the exporter's `onnx_scores` + `training/metrics.py`) at each
model's own served threshold:

{table}

Goals (issue 15): {goals}.

## I/O contract
- input `images`: UINT8 [-1, 64, 64, 1], one grayscale MRI slice per row, NHWC, prepared like the training data:
  8-bit grayscale (Pillow `convert('L')`), padded to a centred square with black, resized to 64x64 with Lanczos
  (the service does this for any uploaded image, from the manifest's `preprocessing`).
- output `tumor_probability`: FP32 [-1], calibrated probability that the slice shows a tumour
  (Platt scaling `sigmoid(a*logit + b)`, a={cal['platt_a']:.4f}, b={cal['platt_b']:.4f}, fitted on the official validation
  set, inside the graph; calibrated for that set's mix, not for another source's).
- output `subtype_probabilities`: FP32 [-1, 4], softmax over none, glioma, meningioma, pituitary (second head of
  the same network; temperature {cal['subtype_temperature']:.3f} fitted on validation).
- Decision rule: tumour if `tumor_probability >= {card['threshold']:.6f}` (manifest `parameters.threshold`): {thr_rule}.
- In the graph: {graph}; mirror test-time augmentation (logits averaged), calibration. torch vs onnxruntime parity at
  export: max |diff| {m['parity_max_abs_diff']:.2e} (limit 1e-4, batch 1, 3, 64).

## Data and split
- `shared/data/tumor/` (see its README): 64x64 grayscale slices from Nickparvar's Brain Tumor MRI Dataset after
  near-duplicate removal (incl. mirrored/rotated copies). Train {p['train_images']} images (285 no tumour, 9%),
  validation {p['validation_images']} (51 no tumour), split by near-duplicate group by the data's authors.
  The held-out test split was not available here; nothing was tuned on it.
- `shared/data/tumor_external_val/`: validation and model selection only (see below).
- Imbalance handled deliberately: inverse-frequency class weights on both heads (binary and subtype).

## Official validation metrics (n = {p['validation_images']}: {c['tp'] + c['fn']} tumour, {c['tn'] + c['fp']} no tumour)
- **AUROC {m['auroc']:.4f}** (95% stratified bootstrap CI {ci(m['auroc_ci95'])}).
- At the threshold {card['threshold']:.4f}:
  - **sensitivity {cards.fmt_prop(r['sensitivity'], 1)}**; by subtype: {subtypes}
  - **specificity {cards.fmt_prop(r['specificity'], 1)}** (51 no-tumour images: uncertain by several points either way)
  - balanced accuracy {pct(r['balanced_accuracy'])}; PPV {cards.fmt_prop(r['ppv'], 1)}; NPV {cards.fmt_prop(r['npv'], 1)}
  - confusion: TN {c['tn']}, FP {c['fp']}, FN {c['fn']}, TP {c['tp']} (intervals: Wilson 95%)
- The threshold and the calibration were fitted on the sets that measure them, so these figures are optimistic. A 2-fold
  cross-fitted estimate on validation alone (Platt + a sensitivity >= 0.97 threshold fitted on one half, measured on the
  other, both ways): sensitivity {cards.fmt_prop(h['sensitivity'], 1)}, specificity {cards.fmt_prop(h['specificity'], 1)},
  ECE {h['ece']:.4f}.
- Calibration (10-bin ECE on validation): {cal['ece_before']:.4f} raw -> {cal['ece_after']:.4f} calibrated
  (in-sample); Brier {cal['brier_before']:.4f} -> {cal['brier_after']:.4f}.
- Subtype head: accuracy {cards.fmt_prop(m['subtype_accuracy'], 1)}, balanced accuracy {pct(m['subtype_balanced_accuracy'])}.

![ROC](roc.png) ![confusion matrix](confusion_matrix.png) ![subtype confusion](subtype_confusion_matrix.png)
{ext_section}{group_cv_section(m)}
## Baselines beaten (measured on the official validation split)
- the previous tumor-cnn: see the before/after table (it is the baseline that matters here).
- always "tumour": sensitivity 100%, specificity 0%, AUROC 0.5.
- class-balanced logistic regression on 16x16 pixel thumbnails: AUROC {base['logistic_16x16_pixels']['auroc']:.4f}
  (CI {ci(base['logistic_16x16_pixels']['auroc_ci95'])}), specificity at sensitivity >= 97%:
  {cards.fmt_prop(base['logistic_16x16_pixels']['specificity_at_sens97'], 1)}.
- shortcut probe: logistic regression on 7 global intensity statistics (mean, std, percentiles, fraction of black
  pixels) alone: AUROC {base['logistic_intensity_stats']['auroc']:.4f} (CI {ci(base['logistic_intensity_stats']['auroc_ci95'])}).
  A high value here means that much of the task can be solved from acquisition/source differences, not anatomy.
{outside_head_probe(base)}
## Training
![training curves](training_curves.png)

- Net (`training/nets/tumor_cnn.py`): 5 conv3x3-BN-ReLU stages (widths {cfg['widths']}, max-pool
  between), global average pool, dropout {cfg['dropout']}, two linear heads. {p['params']:,} parameters.
- Weights: {warm} for {p['epochs']} epochs.
- Augmentation: {aug}.
- {sampling}
- AdamW (lr {cfg['lr']}, weight decay {cfg['weight_decay']}), one-cycle schedule, batch {cfg['batch_size']},
  loss = {loss_words}. The last epoch's weights are served (no early stopping).
{ext_log}
- Seed {p['seed']}; training wall time {p['train_wall_time_s'] / 60:.1f} min ({p['train_wall_time_s']:.0f} s, validation
  passes included) on {p['hardware']}. ONNX size {p['onnx_bytes'] / 1e6:.2f} MB. Latency (ORT CPU, 2 threads, median):
  batch 1 {m['latency_ms']['batch1_median_ms']} ms, batch 64 {m['latency_ms']['batch64_median_ms']} ms (shared 2-core machine).
- Git commit at export: {p['git_commit'] or 'n/a'}.

{cards.recreate_section(p)}
(`--checkpoint-dir` defaults to `~/.cache/neuroserve/checkpoints`; data from `$NEUROSERVE_DATA_DIR` or `../shared/data`,
which must hold `tumor/` and, for the external figures and the threshold rule, `tumor_external_val/`.)

## Limitations and known biases of the data
- **Source shortcut.** No-tumour and tumour slices mostly come from different collections and MRI sequences. Looked
  at, 64 randomly drawn training slices of each class: all 64 tumour slices are T1 with contrast (axial, coronal and
  sagittal); the no-tumour ones are a mix of axial T2, FLAIR and T1 without contrast, from Br35H. The training data
  has no FLAIR or T2 tumour to learn from, and the shortcut probe that never sees the head (Baselines) reaches most
  of the model's official-split AUROC. {shortcut}
- **One external source only.** tumor_external_val is one collection (skull-stripped FLAIR), and it was used for
  selection and the threshold; another hospital, scanner or sequence may do worse. A fresh, untouched external set is
  needed for an unbiased figure.
- **Patient leakage.** No patient IDs: slices of the same patient can sit in both train and validation (and several
  slices of one patient remain in tumor_external_val), which inflates the figures.
- **Mislabels.** The SARTAJ part of the source is reported to contain mislabelled images.
- **Small minority class.** Only 285 / 51 no-tumour images in train / validation: specificity is estimated from 51 cases.
- 2D single slices at 64x64 only; no 3D context, no localisation, no other pathologies (a non-tumour lesion is
  out of scope and may be called either way). Subtype output is only meaningful when a tumour is present.
- Not validated on the held-out test split, nor prospectively, nor across demographics. **Not a medical device.**
"""
