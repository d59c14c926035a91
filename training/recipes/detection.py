"""Road-sign detection recipe: a small TTFNet/CenterNet-style detector trained from scratch on the 613 training
pictures of ``shared/data/detection/``.

    neuroserve-train train detection --seed 0
    neuroserve-train export detection        # models/roadsign-detector

Training samples are ``crop`` x ``crop`` pieces of the picture letterboxed to ``size`` with scale jitter
(training/data/detection.py: box-keeping crops, flips only for mirror-safe classes), plus colour jitter on the batch;
the loss is the CenterNet focal loss on the class heatmap plus TTFNet's Gaussian-weighted GIoU loss on the boxes.
Validation: the pictures letterboxed to ``size`` exactly as the server does, decoded and NMS'd by
service/detection.py, scored by training/detection_eval.py (COCO-style AP).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from service.detection import postprocess
from training import detection_eval
from training.config import config_from_checkpoint
from training.data import detection as data
from training.loop import epoch_generator, load_checkpoint, one_cycle, run_fit, seed_everything, setup_torch
from training.nets import count_parameters
from training.nets.detector import Detector, DetectorGraph, decode_boxes
from training.provenance import command_line, hardware
from training.recipes.base import Recipe


@dataclass
class DetectionConfig:
    model_name: str = "roadsign-detector"
    size: int = 320  # served input: letterboxed size x size
    crop: int = 256  # training sample side (pieces of the jittered letterboxed picture)
    width: int = 16
    neck: int = 48
    head: int = 32
    epochs: int = 70
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 5e-4
    box_loss_weight: float = 5.0
    augment: bool = True  # False: the baseline (letterboxed pictures as they are, no jitter/crop/flip/colour)
    scale_min: float = 0.6
    scale_max: float = 1.4
    flip: bool = True
    colour: float = 0.25  # brightness/contrast/saturation factors drawn from [1 - colour, 1 + colour]
    iou_threshold: float = 0.5  # per-class NMS
    eval_score_threshold: float = 0.01  # evaluation keeps everything above this (the served default is the card's)
    eval_max_detections: int = 100
    baseline_checkpoint: str = ""  # export only: the no-augmentation run's checkpoint, scored beside it in the card


def colour_jitter(x: torch.Tensor, amount: float, gen: torch.Generator) -> torch.Tensor:
    """x float [B, 3, H, W] in [0, 1]: brightness, contrast and saturation scaled by factors in [1-a, 1+a]."""
    if amount <= 0:
        return x
    b = len(x)
    f = lambda: (1 + (torch.rand(b, 1, 1, 1, generator=gen) * 2 - 1) * amount)  # noqa: E731
    x = x * f()
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * f() + mean
    grey = x.mean(1, keepdim=True)
    return ((x - grey) * f() + grey).clamp(0, 1)


def focal_loss(logits: torch.Tensor, heat: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, summed and divided by the number of centres (cells where heat == 1)."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = heat.eq(1).float()
    pos_loss = torch.log(p) * (1 - p) ** 2 * pos
    neg_loss = torch.log(1 - p) * p ** 2 * (1 - heat) ** 4 * (1 - pos)
    return -(pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1)


def giou_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted mean of 1 - GIoU over cells; pred/target [M, 4] (x_min, y_min, x_max, y_max), weight [M]."""
    if weight.sum() <= 0:
        return pred.sum() * 0
    lt, rb = torch.max(pred[:, :2], target[:, :2]), torch.min(pred[:, 2:], target[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    area = lambda b: (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)  # noqa: E731
    union = area(pred) + area(target) - inter
    iou = inter / union.clamp(min=1e-6)
    hull = (torch.max(pred[:, 2:], target[:, 2:]) - torch.min(pred[:, :2], target[:, :2])).clamp(min=0).prod(1)
    giou = iou - (hull - union) / hull.clamp(min=1e-6)
    return ((1 - giou) * weight).sum() / weight.sum()


def make_batch(pics: list[data.Picture], cfg: DetectionConfig, rng: np.random.Generator, augment: bool):
    """uint8 images [B, S, S, 3] and the targets (heatmap, boxes, weights) as tensors."""
    imgs, hms, regs, wts = [], [], [], []
    for pic in pics:
        if augment:
            img, boxes, labels = data.augment(pic, cfg.size, cfg.crop, rng, scale_min=cfg.scale_min,
                                              scale_max=cfg.scale_max, flip=cfg.flip)
            side = cfg.crop
        else:
            img, boxes, _ = data.letterboxed(pic, cfg.size)
            labels, side = pic.labels, cfg.size
        hm, reg, wt = data.targets(boxes, labels, side, Detector.stride, len(data.CLASSES))
        imgs.append(img), hms.append(hm), regs.append(reg), wts.append(wt)
    return tuple(torch.from_numpy(np.stack(a)) for a in (imgs, hms, regs, wts))


@torch.no_grad()
def predict(graph: DetectorGraph, pics: list[data.Picture], cfg: DetectionConfig, score_threshold: float,
            max_detections: int, batch: int = 32):
    """Detections per picture in its own pixels, through the same letterbox/decoding/NMS as the server."""
    graph.eval()
    out = []
    for i in range(0, len(pics), batch):
        chunk = pics[i:i + batch]
        canv = [data.letterboxed(p, cfg.size) for p in chunk]
        boxes, scores = graph(torch.from_numpy(np.stack([c[0] for c in canv])))
        for p, (_, _, scale), b, s in zip(chunk, canv, boxes.numpy(), scores.numpy()):
            d = postprocess(b, s, scale=scale, height=p.image.shape[0], width=p.image.shape[1],
                            score_threshold=score_threshold, max_detections=max_detections,
                            iou_threshold=cfg.iou_threshold)
            out.append((d.boxes, d.scores, d.labels))
    return out


def evaluate_pictures(graph: DetectorGraph, pics: list[data.Picture], cfg: DetectionConfig) -> detection_eval.Matched:
    preds = predict(graph, pics, cfg, cfg.eval_score_threshold, cfg.eval_max_detections)
    return detection_eval.match(preds, [(p.boxes, p.labels) for p in pics], len(data.CLASSES))


class DetectionRecipe(Recipe):
    task = "detection"
    default = DetectionConfig()

    def splits(self, args: argparse.Namespace) -> tuple[list[data.Picture], list[data.Picture]]:
        root = self.data_dir(args) / "detection"
        limit = getattr(args, "limit", None)
        return data.read_split(root, "train", limit), data.read_split(root, "val", limit)

    def build(self, cfg: DetectionConfig) -> Detector:
        return Detector(len(data.CLASSES), cfg.width, cfg.neck, cfg.head)

    def train(self, args: argparse.Namespace) -> int:
        cfg = self.config(args)
        seed_everything(args.seed)
        setup_torch(args.device)
        train_set, val_set = self.splits(args)
        net = self.build(cfg).to(memory_format=torch.channels_last)
        graph = DetectorGraph(net)
        print(f"detector: {count_parameters(net):,} parameters; train {len(train_set)} / val {len(val_set)} pictures")
        steps = max(1, len(train_set) // cfg.batch_size)
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = one_cycle(opt, cfg.lr, steps * cfg.epochs, 0.15)

        def train_epoch(epoch: int) -> dict[str, float]:
            net.train()
            gen = epoch_generator(args.seed, epoch)
            rng = np.random.default_rng([args.seed, epoch])
            order = torch.randperm(len(train_set), generator=gen).tolist()
            sums = {"loss": 0.0, "heat_loss": 0.0, "box_loss": 0.0}
            for s in range(steps):
                imgs, hm, reg, wt = make_batch([train_set[i] for i in order[s * cfg.batch_size:(s + 1) * cfg.batch_size]],
                                               cfg, rng, cfg.augment)
                x = imgs.permute(0, 3, 1, 2).float() / 255.0
                if cfg.augment:
                    x = colour_jitter(x, cfg.colour, gen)
                x = ((x - graph.norm.mean) * graph.norm.inv_std).contiguous(memory_format=torch.channels_last)
                logits, dist = net(x)
                heat_loss = focal_loss(logits, hm)
                pred = decode_boxes(dist, Detector.stride).permute(0, 2, 3, 1).reshape(-1, 4)
                box_loss = giou_loss(pred, reg.permute(0, 2, 3, 1).reshape(-1, 4), wt.reshape(-1))
                loss = heat_loss + cfg.box_loss_weight * box_loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
                opt.step()
                sched.step()
                for k, v in (("loss", loss), ("heat_loss", heat_loss), ("box_loss", box_loss)):
                    sums[k] += v.item() / steps
            return sums

        def evaluate(epoch: int) -> dict[str, float]:
            t0 = time.perf_counter()
            m = evaluate_pictures(graph, val_set, cfg)
            table = detection_eval.ap_table(m)
            return {"val_map50": float(np.nanmean(table[:, 0])), "val_map": float(np.nanmean(table)),
                    "eval_s": time.perf_counter() - t0}

        meta = {"task": self.task, "config": asdict(cfg), "seed": args.seed, "classes": list(data.CLASSES),
                "command": command_line(args.argv), "hardware": hardware(args.device), "limit": args.limit,
                "train_pictures": len(train_set), "val_pictures": len(val_set)}
        run_fit(net, opt, sched, epochs=cfg.epochs, run_dir=self.run_dir(args), resume=args.resume,
                train_epoch=train_epoch, evaluate=evaluate, meta=meta)
        return 0

    def load_checkpoint(self, path: Path) -> tuple[DetectorGraph, DetectionConfig, dict[str, Any]]:
        ckpt = load_checkpoint(path)
        cfg = config_from_checkpoint(self.default, ckpt["meta"]["config"])
        net = self.build(cfg)
        net.load_state_dict(ckpt["recipe"]["model"])
        graph = DetectorGraph(net).eval()
        return graph, cfg, ckpt

    def evaluate(self, args: argparse.Namespace) -> int:
        graph, cfg, ckpt = self.load_trained(args)
        _, val_set = self.splits(args)
        m = evaluate_pictures(graph, val_set, cfg)
        return self.report(args, detection_eval.summary(m, data.CLASSES, n_boot=200, seed=args.seed))
