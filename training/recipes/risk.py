"""What the binary risk recipes (fraud, deterioration) share: minibatch BCE training with resumable checkpoints and
evaluation. A subclass says where the rows come from (``load``), what net reads them (``build``), the graph's I/O
(``contract``), the baselines it must beat and how the operating threshold is chosen on validation; the export
(exporters/risk.py) reads all of these.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from training.config import config_from_args
from training.loop import epoch_generator, load_checkpoint, one_cycle, run_fit, seed_everything, setup_torch
from training.metrics import auroc, average_precision, score_report
from training.nets import count_parameters
from training.provenance import command_line, hardware
from training.recipes.base import Recipe


@dataclass
class Rows:
    """Named model inputs (arrays with the batch first) and labels."""

    inputs: dict[str, np.ndarray]
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def take(self, idx: np.ndarray) -> "Rows":
        return Rows({k: v[idx] for k, v in self.inputs.items()}, self.y[idx])


@dataclass
class RiskConfig:
    model_name: str = ""
    epochs: int = 60
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-3
    hidden: int = 32
    dropout: float = 0.1
    clip: float = 1.0
    threads: int = 1


class BinaryRiskRecipe(Recipe):
    task_family = ""
    output_name = "probability"
    default = RiskConfig()

    # -- what a subclass provides -------------------------------------------------------------------
    def load(self, args: argparse.Namespace) -> tuple[Rows, Rows, dict[str, Any]]:
        raise NotImplementedError

    def build(self, cfg: RiskConfig, info: dict[str, Any]) -> nn.Module:
        """A module with ``logits(*inputs)`` (training) and ``forward(*inputs)``, inputs in ``load``'s order, -> probability [batch]."""
        raise NotImplementedError

    def contract(self) -> tuple[list[dict], list[dict], dict[str, dict[int, str]]]:
        raise NotImplementedError

    def augment(self, inputs: dict[str, torch.Tensor], gen: torch.Generator, cfg: RiskConfig) -> dict[str, torch.Tensor]:
        return inputs

    def baselines(self, args: argparse.Namespace, train: Rows, val: Rows, info: dict) -> dict[str, dict[str, Any]]:
        """{name: {"scores": validation scores, "note": how it was made}}."""
        return {}

    def choose_threshold(self, y: np.ndarray, p: np.ndarray) -> tuple[float, str]:
        raise NotImplementedError

    def manifest_extra(self, cfg: RiskConfig, info: dict[str, Any]) -> dict[str, Any]:
        return {}

    # -- shared -------------------------------------------------------------------------------------
    def config(self, args: argparse.Namespace) -> RiskConfig:
        return config_from_args(self.default, args)

    @staticmethod
    def tensors(rows: Rows) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in rows.inputs.items()}

    @torch.no_grad()
    def predict(self, net: nn.Module, rows: Rows, batch: int = 1024) -> np.ndarray:
        net.eval()
        x = self.tensors(rows)
        out = [net(*(v[i : i + batch] for v in x.values())) for i in range(0, len(rows), batch)]
        return torch.cat(out).numpy() if out else np.zeros(0, np.float32)

    def train(self, args: argparse.Namespace) -> int:
        cfg = self.config(args)
        setup_torch(args.device, cfg.threads or None)
        seed_everything(args.seed)
        train, val, info = self.load(args)
        if args.limit:
            train = train.take(np.arange(min(args.limit, len(train))))
        net = self.build(cfg, info)
        bs = min(cfg.batch_size, len(train))
        steps = math.ceil(len(train) / bs)
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = one_cycle(opt, cfg.lr, steps * cfg.epochs, 0.15)
        x, y = self.tensors(train), torch.from_numpy(train.y.astype(np.float32))
        print(f"{cfg.model_name}: train {len(train)} rows ({int(train.y.sum())} positive), validation {len(val)}, "
              f"params {count_parameters(net):,}, {hardware()}", flush=True)

        def train_epoch(epoch: int) -> dict[str, float]:
            net.train()
            gen = epoch_generator(args.seed, epoch)
            order = torch.randperm(len(train), generator=gen)
            total = 0.0
            for i in range(0, len(train), bs):
                idx = order[i : i + bs]
                inputs = self.augment({k: v[idx] for k, v in x.items()}, gen, cfg)
                loss = nn.functional.binary_cross_entropy_with_logits(net.logits(*inputs.values()), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), cfg.clip)
                opt.step()
                if sched.last_epoch < sched.total_steps - 1:
                    sched.step()
                total += float(loss.detach()) * len(idx)
            return {"train_loss": total / len(train), "lr": float(sched.get_last_lr()[0])}

        def evaluate(epoch: int) -> dict[str, float]:
            if not len(val):
                return {}
            p = self.predict(net, val).astype(np.float64)
            eps = 1e-7
            loss = -np.mean(val.y * np.log(p + eps) + (1 - val.y) * np.log(1 - p + eps))
            return {"val_loss": float(loss), "val_auroc": auroc(val.y, p), "val_auprc": average_precision(val.y, p)}

        meta = {"task": self.task, "config": asdict(cfg), "seed": args.seed, "info": info,
                "command": command_line(getattr(args, "argv", None)), "hardware": hardware(),
                "n_train": len(train), "n_val": len(val), "params": count_parameters(net), "limit": args.limit}
        run_fit(net, opt, sched, epochs=cfg.epochs, run_dir=self.run_dir(args), resume=args.resume,
                train_epoch=train_epoch, evaluate=evaluate, meta=meta)
        return 0

    def load_trained(self, args: argparse.Namespace) -> tuple[nn.Module, RiskConfig, dict[str, Any]]:
        path = Path(args.checkpoint) if args.checkpoint else self.run_dir(args) / "last.pt"
        ckpt = load_checkpoint(path)
        cfg = type(self.default)(**{**asdict(self.default), **ckpt["meta"]["config"]})
        net = self.build(cfg, ckpt["meta"]["info"])
        net.load_state_dict(ckpt["recipe"]["model"])
        return net.eval(), cfg, ckpt

    def evaluate(self, args: argparse.Namespace) -> int:
        setup_torch(args.device)
        net, _, _ = self.load_trained(args)
        _, val, _ = self.load(args)
        return self.report(args, score_report(val.y, self.predict(net, val)))

    def parity_feeds(self, val: Rows, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        idx = rng.choice(len(val), size=batch, replace=batch > len(val))
        return val.take(idx).inputs
