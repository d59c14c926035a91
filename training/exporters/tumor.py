"""Export tumor-cnn: calibration (Platt / temperature, fitted on validation) baked into the graph,
threshold for sensitivity >= 0.97 chosen on validation, metrics with CIs, ROC/confusion plots, card."""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from training import cards, metrics
from training.data import tumor as data
from training.export import Normalize, benchmark, export_onnx, file_size, ort_session, parity_check, random_images
from training.loop import export_command, git_commit
from training.nets.airbench import count_parameters
from training.recipes.tumor import predict, to_float

MIN_SENSITIVITY = 0.97
INPUT = [{"name": "images", "datatype": "UINT8", "shape": [-1, 64, 64, 1]}]
OUTPUTS = [{"name": "tumor_probability", "datatype": "FP32", "shape": [-1]},
           {"name": "subtype_probabilities", "datatype": "FP32", "shape": [-1, 4]}]


class TumorExport(nn.Module):
    """uint8 NHWC [N,64,64,1] -> (calibrated P(tumour) [N], subtype probabilities [N,4]); mirror TTA."""

    def __init__(self, net: nn.Module, mean: float, std: float, a: float, b: float, temperature: float):
        super().__init__()
        self.normalize = Normalize([mean], [std])
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


def thumbnails(x: np.ndarray, size: int = 16) -> np.ndarray:
    f = x[..., 0].astype(np.float32) / 255
    k = f.shape[1] // size
    return f.reshape(len(f), size, k, size, k).mean((2, 4)).reshape(len(f), -1)


def intensity_stats(x: np.ndarray) -> np.ndarray:
    f = x[..., 0].reshape(len(x), -1).astype(np.float32) / 255
    return np.stack([f.mean(1), f.std(1), *np.percentile(f, [10, 50, 90, 99], axis=1), (f < 0.02).mean(1)], 1)


def export_tumor(recipe, args: argparse.Namespace) -> int:
    torch.set_num_threads(2)
    t_start = time.time()
    model, ckpt = recipe.load_trained(args)
    meta = ckpt["meta"]
    cfg = meta["config"]
    name = cfg["model_name"]
    model_dir = recipe.models_dir(args) / name
    onnx_path = model_dir / "1" / "model.onnx"
    train_set, val_set = data.load_splits(recipe.data_dir(args), meta.get("limit"))
    y, sub = val_set.y, val_set.subtype

    # calibration on validation (torch logits with the same mirror TTA as the graph)
    t_logit, s_logit = predict(model, to_float(val_set.x, meta["mean"], meta["std"]), tta=True)
    a, b = fit_platt(t_logit, y)
    temperature = fit_temperature(s_logit, sub)
    print(f"Platt a={a:.4f} b={b:.4f}; subtype temperature {temperature:.4f}")

    wrapper = TumorExport(model, meta["mean"], meta["std"], a, b, temperature).eval()
    export_onnx(wrapper, torch.from_numpy(random_images((64, 64, 1))(2)), onnx_path, "images",
                ["tumor_probability", "subtype_probabilities"])
    parity = parity_check(wrapper, onnx_path, random_images((64, 64, 1), seed=1))
    print(f"exported {onnx_path} ({file_size(onnx_path) / 1e6:.2f} MB); parity {parity}")

    sess = ort_session(onnx_path)
    outs = [sess.run(None, {"images": val_set.x[i : i + 256]}) for i in range(0, len(y), 256)]
    p = np.concatenate([o[0] for o in outs])
    ps = np.concatenate([o[1] for o in outs])
    threshold = metrics.threshold_for_sensitivity(y, p, MIN_SENSITIVITY)
    report = metrics.binary_report(y, p, threshold)
    auc = metrics.auroc(y, p)
    auc_ci = metrics.bootstrap_ci(metrics.auroc, y, p, n_boot=2000, stratify=y)
    fpr, tpr, _ = metrics.roc_curve(y, p)
    raw_p = sigmoid(t_logit)
    calib = {"ece_before": metrics.expected_calibration_error(y, raw_p), "ece_after": metrics.expected_calibration_error(y, p),
             "brier_before": float(np.mean((raw_p - y) ** 2)), "brier_after": float(np.mean((p - y) ** 2)),
             "platt_a": a, "platt_b": b, "subtype_temperature": temperature}
    honest = cross_fitted(t_logit, y)
    sub_pred = ps.argmax(1)
    sub_acc = metrics.accuracy_with_ci(sub_pred, sub)
    sub_cm = metrics.confusion_matrix(sub, sub_pred, 4)
    sub_bal = float(np.mean([sub_cm[i, i] / max(sub_cm[i].sum(), 1) for i in range(4)]))
    # baselines, measured on the same split
    base_pix = logistic_baseline(thumbnails(train_set.x), train_set.y, thumbnails(val_set.x))
    base_int = logistic_baseline(intensity_stats(train_set.x), train_set.y, intensity_stats(val_set.x))
    baselines = {
        "always_tumor": {"sensitivity": 1.0, "specificity": 0.0, "auroc": 0.5},
        "logistic_16x16_pixels": {"auroc": metrics.auroc(y, base_pix),
                                  "auroc_ci95": metrics.bootstrap_ci(metrics.auroc, y, base_pix, n_boot=1000, stratify=y),
                                  "specificity_at_sens97": metrics.binary_report(
                                      y, base_pix, metrics.threshold_for_sensitivity(y, base_pix, MIN_SENSITIVITY))["specificity"]},
        "logistic_intensity_stats": {"auroc": metrics.auroc(y, base_int),
                                     "auroc_ci95": metrics.bootstrap_ci(metrics.auroc, y, base_int, n_boot=1000, stratify=y)},
    }
    latency = benchmark(onnx_path, val_set.x[:64])
    print(f"AUROC {auc:.4f} {auc_ci}; threshold {threshold:.4f}: sens {cards.fmt_prop(report['sensitivity'])}, "
          f"spec {cards.fmt_prop(report['specificity'])}; cross-fitted {honest}; subtype {cards.fmt_prop(sub_acc)}; "
          f"baselines {baselines}; latency {latency}")

    history = ckpt["history"]
    provenance = {
        "training_command": meta["command"].replace(" --resume", ""), "export_command": export_command(),
        "seed": meta["seed"], "epochs": len(history["epochs"]), "train_wall_time_s": round(history["wall_time_s"], 1),
        "hardware": meta["hardware"], "git_commit": git_commit(), "params": count_parameters(model),
        "onnx_bytes": file_size(onnx_path), "train_images": meta["n_train"], "validation_images": int(len(y)),
        "framework": f"torch {torch.__version__}",
    }
    if getattr(args, "note", None):
        provenance["notes"] = args.note
    metric_block = {
        "auroc": auc, "auroc_ci95": auc_ci, "at_threshold": report, "cross_fitted_2fold": honest,
        "calibration": calib, "subtype_accuracy": sub_acc, "subtype_balanced_accuracy": sub_bal,
        "subtype_confusion": sub_cm.tolist(), "baselines": baselines, "parity_max_abs_diff": parity["max_abs_diff"],
        "latency_ms": latency,
    }
    description = "Two-head CNN on 64x64 grayscale brain MRI slices: calibrated P(tumour) and tumour subtype"
    cards.write_manifest(model_dir, {
        "name": name, "task": "tumor-detection", "description": description, "inputs": INPUT, "outputs": OUTPUTS,
        "labels": data.LABELS,
        "preprocessing": {"layout": "NHWC", "dtype": "uint8", "height": 64, "width": 64, "channels": 1,
                          "color": "L", "grayscale": "PIL convert('L')", "pad_to_square": True, "pad_value": 0,
                          "resize": "lanczos", "range": [0, 255],
                          "in_graph": "x/255, (x - mean)/std, NHWC->NCHW, mirror TTA, Platt-calibrated sigmoid, "
                                      "temperature-scaled softmax", "mean": meta["mean"], "std": meta["std"]},
        "batching": {"max_batch_size": 64, "max_queue_delay_ms": 0},
        "priority": 10,
        "parameters": {"threshold": threshold, "min_sensitivity": MIN_SENSITIVITY},
        "provenance": provenance,
        "metrics": {"val_auroc": auc, "val_auroc_ci95": auc_ci,
                    "val_sensitivity": report["sensitivity"]["value"], "val_sensitivity_ci95": report["sensitivity"]["ci95"],
                    "val_specificity": report["specificity"]["value"], "val_specificity_ci95": report["specificity"]["ci95"],
                    "val_subtype_accuracy": sub_acc["value"], "val_n": int(len(y))},
    })
    if not args.skip_card:
        cards.plot_history(history, model_dir / "training_curves.png",
                           [("train_loss", "val_loss"), ("val_auroc", "val_sens@0.5", "val_spec@0.5", "val_subtype_acc")],
                           f"{name} training")
        c = report["confusion"]
        cards.plot_confusion(np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]]), ["no tumour", "tumour"],
                             model_dir / "confusion_matrix.png", f"threshold {threshold:.3f} (n={len(y)})")
        cards.plot_confusion(sub_cm, data.LABELS, model_dir / "subtype_confusion_matrix.png", "subtype head (argmax)")
        spec_v, sens_v = report["specificity"]["value"], report["sensitivity"]["value"]
        cards.plot_roc(fpr, tpr, auc, model_dir / "roc.png", f"{name}: validation ROC", point=(1 - spec_v, sens_v))
        card = {"name": name, "task": "tumor-detection", "description": description, "metrics": metric_block,
                "provenance": provenance, "config": cfg, "threshold": threshold, "history": history,
                "not_a_medical_device": True}
        cards.write_card(model_dir, card, render_readme(name, description, card))
    print(f"export finished in {time.time() - t_start:.0f} s")
    return 0


def render_readme(name: str, description: str, card: dict[str, Any]) -> str:
    m, p = card["metrics"], card["provenance"]
    r = m["at_threshold"]
    c = r["confusion"]
    h = m["cross_fitted_2fold"]
    cal = m["calibration"]
    base = m["baselines"]
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    ci = lambda lo_hi: f"{lo_hi[0]:.4f}-{lo_hi[1]:.4f}"  # noqa: E731
    spec_ok = r["specificity"]["value"] >= 0.90
    auc_ok = m["auroc"] >= 0.98
    return f"""# {name} (model card)

> **NOT a medical device.** A demonstration model trained on a small public dataset with known biases.
> It must not be used to diagnose, screen or triage anyone.

{description}.

## I/O contract
- input `images`: UINT8 [-1, 64, 64, 1], one grayscale MRI slice per row, NHWC, prepared like the training data:
  8-bit grayscale (Pillow `convert('L')`), padded to a centred square with black, resized to 64x64 with Lanczos.
- output `tumor_probability`: FP32 [-1], calibrated probability that the slice shows a tumour
  (Platt scaling `sigmoid(a*logit + b)`, a={cal['platt_a']:.4f}, b={cal['platt_b']:.4f}, fitted on validation, inside the graph).
- output `subtype_probabilities`: FP32 [-1, 4], softmax over none, glioma, meningioma, pituitary (second head of
  the same network; temperature {cal['subtype_temperature']:.3f} fitted on validation).
- Decision rule: tumour if `tumor_probability >= {card['threshold']:.6f}` (manifest `parameters.threshold`), chosen on
  validation as the highest threshold with sensitivity >= {MIN_SENSITIVITY}.
- In the graph: uint8 -> float, /255, (x - mean)/std, NHWC -> NCHW, mirror test-time augmentation (logits averaged),
  calibration. torch vs onnxruntime parity at export: max |diff| {m['parity_max_abs_diff']:.2e} (limit 1e-4, batch 1, 3, 64).

## Data and split
- `shared/data/tumor/` (see its README): 64x64 grayscale slices from Nickparvar's Brain Tumor MRI Dataset after
  near-duplicate removal (incl. mirrored/rotated copies). Train {p['train_images']} images (285 no tumour, 9%),
  validation {p['validation_images']} (51 no tumour), split by near-duplicate group by the data's authors.
  The held-out test split was not available here; nothing was tuned on it.
- Imbalance handled deliberately: inverse-frequency class weights on both heads (binary and subtype), and
  augmentation (mirror, +/-10 deg rotation, +/-10% scale, shifts, gamma/contrast/brightness jitter).

## Validation metrics (n = {p['validation_images']}: {c['tp'] + c['fn']} tumour, {c['tn'] + c['fp']} no tumour)
- **AUROC {m['auroc']:.4f}** (95% stratified bootstrap CI {ci(m['auroc_ci95'])}). Target >= 0.98: {('met by the point estimate (the interval reaches down to ' + format(m['auroc_ci95'][0], '.4f') + ')') if auc_ok else 'NOT met'}.
- At the threshold {card['threshold']:.4f}:
  - **sensitivity {cards.fmt_prop(r['sensitivity'], 1)}**
  - **specificity {cards.fmt_prop(r['specificity'], 1)}** (target >= 90%: {('met by the point estimate; the interval reaches down to ' + format(100 * r['specificity']['ci95'][0], '.1f') + '%') if spec_ok else 'NOT met'})
  - balanced accuracy {pct(r['balanced_accuracy'])}; PPV {cards.fmt_prop(r['ppv'], 1)}; NPV {cards.fmt_prop(r['npv'], 1)}
  - confusion: TN {c['tn']}, FP {c['fp']}, FN {c['fn']}, TP {c['tp']} (intervals: Wilson 95%)
- The threshold and the calibration were fitted on the same validation set that measures them, so the figures above
  are optimistic. A 2-fold cross-fitted estimate (fit calibration + threshold on one half of validation, measure on
  the other, both ways): sensitivity {cards.fmt_prop(h['sensitivity'], 1)}, specificity {cards.fmt_prop(h['specificity'], 1)},
  ECE {h['ece']:.4f}. With only 51 no-tumour images, specificity is uncertain by several points either way.
- Calibration (10-bin ECE on validation): {cal['ece_before']:.4f} raw -> {cal['ece_after']:.4f} calibrated
  (in-sample); Brier {cal['brier_before']:.4f} -> {cal['brier_after']:.4f}.
- Subtype head: accuracy {cards.fmt_prop(m['subtype_accuracy'], 1)}, balanced accuracy {pct(m['subtype_balanced_accuracy'])}.

![ROC](roc.png) ![confusion matrix](confusion_matrix.png) ![subtype confusion](subtype_confusion_matrix.png)

## Baselines beaten (measured on the same split)
- always "tumour": sensitivity 100%, specificity 0%, AUROC 0.5.
- class-balanced logistic regression on 16x16 pixel thumbnails: AUROC {base['logistic_16x16_pixels']['auroc']:.4f}
  (CI {ci(base['logistic_16x16_pixels']['auroc_ci95'])}), specificity at sensitivity >= 97%:
  {cards.fmt_prop(base['logistic_16x16_pixels']['specificity_at_sens97'], 1)}.
- shortcut probe: logistic regression on 7 global intensity statistics (mean, std, percentiles, fraction of black
  pixels) alone: AUROC {base['logistic_intensity_stats']['auroc']:.4f} (CI {ci(base['logistic_intensity_stats']['auroc_ci95'])}).
  A high value here means that much of the task can be solved from acquisition/source differences, not anatomy.

## Training
![training curves](training_curves.png)

- Net (`training/nets/tumor_cnn.py`): 5 conv3x3-BN-ReLU stages (widths {card['config']['widths']}, max-pool
  between), global average pool, dropout {card['config']['dropout']}, two linear heads. {p['params']:,} parameters.
- AdamW (lr {card['config']['lr']}, weight decay {card['config']['weight_decay']}), one-cycle schedule, batch
  {card['config']['batch_size']}, {p['epochs']} epochs, loss = weighted BCE + {card['config']['subtype_loss_weight']} x weighted CE.
  The last epoch's weights are served (no early stopping on validation).
- Seed {p['seed']}; training wall time {p['train_wall_time_s'] / 60:.1f} min ({p['train_wall_time_s']:.0f} s, validation
  passes included) on {p['hardware']}. ONNX size {p['onnx_bytes'] / 1e6:.2f} MB. Latency (ORT CPU, 2 threads, median):
  batch 1 {m['latency_ms']['batch1_median_ms']} ms, batch 64 {m['latency_ms']['batch64_median_ms']} ms (shared 2-core machine).
- Git commit at export: {p['git_commit'] or 'n/a'}.

{cards.recreate_section(p)}
(`--checkpoint-dir` defaults to `~/.cache/neuroserve/checkpoints`; data from `$NEUROSERVE_DATA_DIR` or `../shared/data`.)

## Limitations and known biases of the data
- **Source shortcut.** No-tumour and tumour slices mostly come from different collections and MRI sequences (many
  no-tumour slices are axial T2/FLAIR from Br35H; many tumour slices are T1 contrast-enhanced from figshare). The model
  may be detecting the source or sequence rather than a tumour; see the intensity-statistics probe above. Expect much
  worse behaviour on scans from other hospitals, scanners or sequences.
- **Patient leakage.** No patient IDs: slices of the same patient (figshare: 233 patients) can sit in both train and
  validation, which inflates validation figures.
- **Mislabels.** The SARTAJ part of the source is reported to contain mislabelled images.
- **Small minority class.** Only 285 / 51 no-tumour images in train / validation: specificity is estimated from 51 cases.
- 2D single slices at 64x64 only; no 3D context, no localisation, no other pathologies (a non-tumour lesion is
  out of scope and may be called either way). Subtype output is only meaningful when a tumour is present.
- Not validated on the held-out test split, nor prospectively, nor across demographics. **Not a medical device.**
"""
