"""neuroserve-train export detection: models/roadsign-detector.

Checkpoint -> ONNX (weights stored as fp16, arithmetic fp32; decoding inside the graph: heatmap peaks and boxes)
-> parity with torch -> validation through the exported graph with the server's own letterbox / NMS / mapping back
(service/detection.py) -> COCO-style AP with bootstrap intervals (training/detection_eval.py), the baseline run's
figures on the same pictures, the served score threshold chosen on validation -> manifest, card, plots.

    neuroserve-train export detection [--set baseline_checkpoint=PATH]   # PATH: the no-augmentation run's last.pt
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnx
import torch

from service.detection import PAD_VALUE, postprocess
from training import cards, detection_eval
from training.data import detection as data
from training.loop import setup_torch
from training.metrics import n_boot
from training.nets import count_parameters
from training.onnx_export import (benchmark, export_onnx, ort_session, parity_cases, round_weights_to_fp16,
                                  store_weights_fp16)
from training.provenance import command_line, git_commit, training_command
from training.nets.detector import Detector
from training.recipes.detection import DetectionConfig, DetectionRecipe, evaluate_pictures

MAX_SIDE = 1024  # the longest side the server accepts (letterboxed down to the model's size)
MAX_DETECTIONS = 100
GRID_PICTURES = 8


def fix_output_dims(path: Path, dims: dict[str, tuple[int, ...]]) -> None:
    """The legacy exporter names every output axis after the batch as a symbol; write the fixed sizes (the server's
    load-time check reads them: service/tasks/detection.py)."""
    model = onnx.load(str(path))
    for out in model.graph.output:
        for axis, size in enumerate(dims.get(out.name, ()), start=1):
            out.type.tensor_type.shape.dim[axis].dim_value = size
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def run_graph(path: Path, pics: Sequence[data.Picture], size: int, batch: int = 16):
    """(boxes, scores, scales) of the exported graph for letterboxed pictures."""
    sess = ort_session(path)
    boxes, scores, scales = [], [], []
    for i in range(0, len(pics), batch):
        canv = [data.letterboxed(p, size) for p in pics[i:i + batch]]
        b, s = sess.run(None, {"images": np.stack([c[0] for c in canv])})
        boxes.append(b), scores.append(s), scales.extend(c[2] for c in canv)
    return np.concatenate(boxes), np.concatenate(scores), scales


def detections(pics, boxes, scores, scales, cfg: DetectionConfig, threshold: float, max_det: int):
    out = []
    for p, b, s, sc in zip(pics, boxes, scores, scales):
        d = postprocess(b, s, scale=sc, height=p.image.shape[0], width=p.image.shape[1], score_threshold=threshold,
                        max_detections=max_det, iou_threshold=cfg.iou_threshold)
        out.append((d.boxes, d.scores, d.labels))
    return out


def choose_threshold(m: detection_eval.Matched) -> dict[str, float]:
    """The score threshold with the best F1 at IoU 0.5 over all classes' detections (validation)."""
    s = np.concatenate(m.scores)
    tp = np.concatenate([t[:, 0] for t in m.tp]).astype(np.float64)
    npos = sum(int(p.sum()) for p in m.positives)
    recall, precision = detection_eval.pr_curve(s, tp, npos)  # along descending scores
    s = s[np.argsort(-s, kind="stable")]
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    i = int(np.argmax(f1))
    return {"threshold": round(float(s[i]), 4), "f1": float(f1[i]), "precision": float(precision[i]),
            "recall": float(recall[i])}


def plot_pr(m: detection_eval.Matched, classes: Sequence[str], path: Path, title: str) -> Path:
    plt = cards._plt()
    fig, ax = plt.subplots(figsize=(5.0, 4.4))
    table = detection_eval.ap_table(m)
    for c, name in enumerate(classes):
        r, p = detection_eval.pr_curve(m.scores[c], m.tp[c][:, 0], float(m.positives[c].sum()))
        ax.plot(np.r_[0, r], np.r_[1, p], label=f"{name} (AP50 {table[c, 0]:.3f})")
    ax.set_xlim(0, 1), ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall"), ax.set_ylabel("precision"), ax.set_title(title)
    ax.grid(alpha=0.3), ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_grid(pics: Sequence[data.Picture], preds, classes: Sequence[str], path: Path, title: str) -> Path:
    """Validation pictures with true boxes (dashed white) and predicted boxes (coloured, with label and score)."""
    plt = cards._plt()
    colours = ["tab:blue", "tab:orange", "tab:red", "tab:green"]
    cols = 4
    rows = int(np.ceil(len(pics) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.7 * rows), squeeze=False)
    for ax, pic, (boxes, scores, labels) in zip(axes.flat, pics, preds):
        ax.imshow(pic.image)
        for (x0, y0, x1, y1) in pic.boxes:
            ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ls="--", lw=1.2, ec="white"))
        for (x0, y0, x1, y1), s, k in zip(boxes, scores, labels):
            ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=1.6, ec=colours[k % 4]))
            ax.text(x0, max(y0 - 2, 6), f"{classes[k]} {s:.2f}", fontsize=6, color="white",
                    bbox={"facecolor": colours[k % 4], "pad": 0.5, "lw": 0})
        ax.set_title(pic.name, fontsize=7)
        ax.axis("off")
    for ax in list(axes.flat)[len(pics):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80, pil_kwargs={"quality": 70, "optimize": True})  # JPEG: photos (models/ is near 80 MB)
    plt.close(fig)
    return path


def latency(path: Path, pics: Sequence[data.Picture], cfg: DetectionConfig, threshold: float,
            repeats: int = 50) -> dict[str, float]:
    """Batch-1 medians: the graph alone (onnx_export.benchmark) and letterbox + graph + NMS/mapping of one picture."""
    canv = np.stack([data.letterboxed(p, cfg.size)[0] for p in pics[:8]])
    out = benchmark(path, canv, batches=(1,), threads=2, repeats=repeats)
    sess = ort_session(path)
    times = []
    for i in range(repeats):
        p = pics[i % len(pics)]
        t0 = time.perf_counter()
        c, _, scale = data.letterboxed(p, cfg.size)
        b, s = sess.run(None, {"images": c[None]})
        postprocess(b[0], s[0], scale=scale, height=p.image.shape[0], width=p.image.shape[1],
                    score_threshold=threshold, max_detections=MAX_DETECTIONS, iou_threshold=cfg.iou_threshold)
        times.append((time.perf_counter() - t0) * 1000)
    out["end_to_end_batch1_median_ms"] = round(float(np.median(times[5:])), 3)
    return out


def export_detection(graph, cfg: DetectionConfig, ckpt: dict[str, Any], models_root: Path, data_dir: Path, *,
                     command: str, baseline: tuple[Any, DetectionConfig, dict] | None = None,
                     skip_card: bool = False, note: str | None = None) -> Path:
    meta, history = ckpt["meta"], ckpt["history"]
    model_dir = models_root / cfg.model_name
    onnx_path = model_dir / "1" / "model.onnx"
    val = data.read_split(data_dir / "detection", "val", meta.get("limit"))
    round_weights_to_fp16(graph)
    example = torch.from_numpy(np.stack([data.letterboxed(p, cfg.size)[0] for p in val[:2]]))
    export_onnx(graph, example, onnx_path, "images", ["boxes", "scores"], dynamo=False)
    store_weights_fp16(onnx_path)
    g = cfg.size // Detector.stride
    fix_output_dims(onnx_path, {"boxes": (g * g, 4), "scores": (g * g, len(data.CLASSES))})
    canv = np.stack([data.letterboxed(p, cfg.size)[0] for p in val[:16]])
    # Boxes are in pixels, distances up to ~400 px: ORT's fused convolutions differ from torch by up to ~0.03 px
    # there. Scores: where two neighbouring cells nearly tie, the 3x3 peak test can pick the other one (seen: 5 cells
    # of 3 x 6,400 x 4, scores <= 0.014). The validation figures below are computed on the ONNX graph itself.
    parity = parity_cases(graph, onnx_path, [{"images": canv[:b]} for b in (1, 3, 16)], atol=0.05, rtol=1e-3)
    size_bytes = onnx_path.stat().st_size
    print(f"exported {onnx_path} ({size_bytes / 1e3:.1f} KB); parity {parity['max_abs_diff']:.2e}")

    boxes, scores, scales = run_graph(onnx_path, val, cfg.size)
    truths = [(p.boxes, p.labels) for p in val]
    m = detection_eval.match(detections(val, boxes, scores, scales, cfg, cfg.eval_score_threshold,
                                        cfg.eval_max_detections), truths, len(data.CLASSES))
    res = detection_eval.summary(m, data.CLASSES, n_boot=n_boot(), seed=0)
    op = choose_threshold(m)
    res["operating_point"] = op
    print({k: res[k] for k in ("map50", "map50_ci95", "map", "map_ci95")}, op)
    base = None
    if baseline is not None:
        bgraph, bcfg, bckpt = baseline
        bm = evaluate_pictures(bgraph, val, bcfg)
        bsum = detection_eval.summary(bm, data.CLASSES, n_boot=n_boot(), seed=0)
        base = {**{k: bsum[k] for k in ("map50", "map50_ci95", "map", "map_ci95", "per_class")},
                "epochs": len(bckpt["history"]["epochs"]), "train_wall_time_s": round(bckpt["history"]["wall_time_s"], 1),
                "training_command": training_command(bckpt["meta"]), "config": asdict(bcfg)}
        print("baseline", {k: base[k] for k in ("map50", "map")})
    lat = latency(onnx_path, val, cfg, op["threshold"])
    provenance = {
        "training_command": training_command(meta), "export_command": command, "seed": meta["seed"],
        "epochs": len(history["epochs"]), "train_wall_time_s": round(history["wall_time_s"], 1),
        "hardware": meta["hardware"], "git_commit": git_commit(), "params": count_parameters(graph),
        "onnx_bytes": size_bytes, "train_pictures": meta["train_pictures"], "validation_pictures": len(val),
        "framework": f"torch {torch.__version__}", "notes": note,
    }
    description = ("Road-sign detector (crosswalk, speed limit, stop, traffic light): a small anchor-free CNN "
                   "(TTFNet/CenterNet style) trained from scratch; decoding in the graph, per-class NMS in the server")
    cards.write_manifest(model_dir, {
        "name": cfg.model_name, "task": "object-detection", "description": description,
        "inputs": [{"name": "images", "datatype": "UINT8", "shape": [-1, cfg.size, cfg.size, 3]}],
        "outputs": [{"name": "boxes", "datatype": "FP32", "shape": [-1, g * g, 4]},
                    {"name": "scores", "datatype": "FP32", "shape": [-1, g * g, len(data.CLASSES)]}],
        "labels": list(data.CLASSES),
        "preprocessing": {"letterbox": cfg.size, "resize": "bilinear", "placement": "top-left", "pad_value": PAD_VALUE,
                          "color": "RGB", "max_side": MAX_SIDE,
                          "in_graph": "x/255, (x - 0.5) / 0.25; heatmap peaks (3x3 max-pool) and boxes decoded"},
        "batching": {"max_batch_size": 16, "max_queue_delay_ms": 2},
        "parameters": {"score_threshold": op["threshold"], "iou_threshold": cfg.iou_threshold,
                       "max_detections": MAX_DETECTIONS, "max_side": MAX_SIDE},
        "provenance": provenance,
        "metrics": {"val_map50": res["map50"], "val_map50_ci95": res["map50_ci95"], "val_map": res["map"],
                    "val_map_ci95": res["map_ci95"],
                    **{f"val_ap50_{k}": v["ap50"] for k, v in res["per_class"].items()},
                    "val_pictures": len(val), "latency_batch1_ms": lat["batch1_median_ms"],
                    **({"baseline_no_augmentation_map50": base["map50"]} if base else {})},
    })
    if not skip_card:
        cards.plot_history(history, model_dir / "training_curves.png",
                           [("loss", "heat_loss", "box_loss"), ("val_map50", "val_map")], f"{cfg.model_name} training")
        plot_pr(m, data.CLASSES, model_dir / "precision_recall.png", f"{cfg.model_name}: validation, IoU 0.5")
        pick = np.linspace(0, len(val) - 1, min(GRID_PICTURES, len(val))).astype(int)
        shown = detections([val[i] for i in pick], boxes[pick], scores[pick], [scales[i] for i in pick], cfg,
                           op["threshold"], MAX_DETECTIONS)
        plot_grid([val[i] for i in pick], shown, data.CLASSES, model_dir / "validation_grid.jpg",
                  f"validation (every ~{len(val) // len(pick)}th picture): dashed white = true, coloured = "
                  f"predicted at score >= {op['threshold']}")
        card = {"name": cfg.model_name, "task": "object-detection", "description": description, "metrics": res,
                "baseline": base, "latency": lat, "parity": parity, "provenance": provenance, "config": asdict(cfg),
                "history": history, "parameters": {"score_threshold": op["threshold"],
                                                   "iou_threshold": cfg.iou_threshold, "max_side": MAX_SIDE}}
        cards.write_card(model_dir, card, render(card))
    return model_dir


def main(args: argparse.Namespace) -> int:
    t0 = time.time()
    setup_torch(args.device)
    recipe = DetectionRecipe()
    graph, cfg, ckpt = recipe.load_trained(args)
    wanted = recipe.config(args)
    baseline = recipe.load_checkpoint(Path(wanted.baseline_checkpoint)) if wanted.baseline_checkpoint else None
    export_detection(graph, cfg, ckpt, recipe.models_dir(args), recipe.data_dir(args),
                     command=command_line(getattr(args, "argv", None)), baseline=baseline, skip_card=args.skip_card,
                     note=getattr(args, "note", None))
    print(f"export finished in {time.time() - t0:.0f} s")
    return 0


def _ci(v: dict, key: str) -> str:
    lo, hi = v[f"{key}_ci95"]
    return f"{v[key]:.3f} ({lo:.3f}-{hi:.3f})"


def render(card: dict[str, Any]) -> str:
    m, p, c, lat, base, op = (card["metrics"], card["provenance"], card["config"], card["latency"], card["baseline"],
                              card["metrics"]["operating_point"])
    goal = 0.80
    met = m["map50"] >= goal
    worst = min(m["per_class"].items(), key=lambda kv: kv[1]["ap50"])
    rows = "\n".join(f"| {k} | {v['boxes']} | {_ci(v, 'ap50')} | {v['ap']:.3f} |" for k, v in m["per_class"].items())
    if base:
        base_text = (f"**Baseline: the same net without augmentation** (letterboxed pictures as they are: no scale "
                     f"jitter, crops, flips or colour jitter), a shorter run: {base['epochs']} epochs "
                     f"({base['train_wall_time_s'] / 60:.0f} min, one thread, run beside the main one), "
                     f"`{base['training_command']}`. Validation mAP@0.5 {_ci(base, 'map50')}, mAP@[.5:.95] "
                     f"{_ci(base, 'map')}. It had fewer epochs than the served model, so the gap mixes the effect of "
                     f"augmentation with that of training longer.")
    else:
        base_text = "No baseline run was given to this export."
    g = c["size"] // Detector.stride
    return f"""# {card['name']} (model card)

{card['description']}.

## I/O contract
- input `images` UINT8 [-1, {c['size']}, {c['size']}, 3]: RGB pictures letterboxed to {c['size']}x{c['size']}
  (resized bilinearly so that the longer side is {c['size']}, placed at the top-left corner, grey {PAD_VALUE} elsewhere).
- outputs `boxes` FP32 [-1, {g * g}, 4]: for each cell of the {g}x{g} stride-4 grid, its box (x_min, y_min, x_max,
  y_max) in letterboxed pixels; `scores` FP32 [-1, {g * g}, 4]: per class the sigmoid heatmap at that cell, 0 where the
  cell is not a 3x3 local maximum (the peak extraction is in the graph).
- The server (`POST /v1/images/detect`, service/tasks/detection.py with service/detection.py) letterboxes any picture
  up to {card['parameters']['max_side']} px on its longer side, keeps (cell, class) pairs with score >= the threshold
  (default **{op['threshold']}**, below), runs greedy NMS **per class at IoU > {c['iou_threshold']}**, sorts by score,
  keeps `max_detections` and maps boxes back to the pixels of the picture as sent (divide by the letterbox scale,
  clip to the picture). OIP `/v2/models/{card['name']}/infer` returns the raw graph outputs.
- Weights stored as fp16 in the file (arithmetic fp32): {p['onnx_bytes'] / 1e3:.0f} KB. torch vs onnxruntime max
  |diff| {card['parity']['max_abs_diff']:.1e} (boxes in pixels, scores; validation pictures, batch 1/3/16; a near-tie
  of neighbouring cells can move a low peak). The figures below are computed through the ONNX graph.

## Data
`shared/data/detection/` (Road Sign Detection, Larxel 2020, CC0): train {p['train_pictures']} pictures, validation
{p['validation_pictures']} pictures ({sum(v['boxes'] for v in m['per_class'].values())} boxes). Pictures are at most
320 px on the longer side. The test split was not used.

## Validation metrics (95% bootstrap CIs, {m['bootstrap_resamples']:,} resamples of the validation pictures)
COCO-style AP (101-point interpolated, greedy matching in score order), detections with score >=
{c['eval_score_threshold']} (at most {c['eval_max_detections']} per picture), after the served NMS.

- **mAP@0.5: {_ci(m, 'map50')}**. Goal >= {goal:.2f}: **{('met' if m['map50_ci95'][0] >= goal else 'met on the point estimate only') if met else
    f'NOT met (short by {goal - m["map50"]:.3f})'}**{
    ' (the interval reaches below it)' if met and m['map50_ci95'][0] < goal else ''}.
- mAP@[.5:.95]: {_ci(m, 'map')}.
- The weakest class is **{worst[0]}** (AP@0.5 {worst[1]['ap50']:.3f} on {worst[1]['boxes']} boxes).{
    ' What was tried: the note under "Recreate".' if p.get('notes') else ''}

| class | validation boxes | AP@0.5 (95% CI) | AP@[.5:.95] |
|---|---|---|---|
{rows}

{base_text}

**Served score threshold {op['threshold']}**: the best F1 at IoU 0.5 over all validation detections (precision
{op['precision']:.3f}, recall {op['recall']:.3f}, F1 {op['f1']:.3f}); requests may set `score_threshold`.

![precision-recall](precision_recall.png)

![validation pictures](validation_grid.jpg)

## Latency (batch 1, this CPU)
Graph alone {lat['batch1_median_ms']:.1f} ms median ({lat['threads']} ORT threads); letterbox + graph + NMS and
mapping of one picture {lat['end_to_end_batch1_median_ms']:.1f} ms median. Measured on 2 cores shared with other
jobs (a training run beside it): noisy, take them as an upper bound.

## Training
![training curves](training_curves.png)

- A {p['params']:,}-parameter CNN: conv-BN-ReLU stem and stages to stride 32 (depthwise-separable where the maps are
  small), a top-down path (nearest upsampling + 1x1 laterals) back to stride 4, a shared 3x3 conv and two 1x1
  heads: class heatmap (CenterNet focal loss, Gaussian targets with sigma = 0.54 x side / 6) and the four distances
  to the box sides (TTFNet's Gaussian-weighted GIoU loss, weight {c['box_loss_weight']}).
- Augmentation: scale jitter x[{c['scale_min']}, {c['scale_max']}] of the letterboxed size, {c['crop']}x{c['crop']} crops
  that keep every box whole when they can (else one chosen box; boxes cut below 40% of their area dropped),
  horizontal flips only for pictures whose boxes are all crosswalk signs or traffic lights (speed-limit digits and
  the STOP text are not mirror-safe), brightness/contrast/saturation x[{1 - c['colour']:.2f}, {1 + c['colour']:.2f}].
  No mosaic (not tried).
- AdamW lr {c['lr']} one-cycle, weight decay {c['weight_decay']}, batch {c['batch_size']}, {p['epochs']} epochs,
  gradient clip 10; the last epoch is served (no selection on validation).
- Seed {p['seed']}; training wall time {p['train_wall_time_s'] / 60:.1f} min on {p['hardware']} (2 cores shared with
  other training jobs). Git commit at export: {p['git_commit'] or 'n/a'}.

## Caveats
- 130 validation pictures, 31/120/14/21 boxes per class: the stop-sign and traffic-light APs rest on a few boxes
  (wide intervals). Many pictures are bursts of one scene (kept within one split by the data's README).
- Trained on pictures of at most 320 px: small signs in large photos are shrunk by the letterbox and may be missed.
- Not a safety component: a demonstration detector trained in under an hour on a CPU.

{cards.recreate_section(p)}
"""
