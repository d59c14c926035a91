"""What the binary risk recipes (fraud, deterioration) share: minibatch BCE training with resumable checkpoints,
evaluation, ONNX export with a parity check, the operating threshold chosen on validation, manifest and card.

A subclass says where the rows come from (``load``), what net reads them (``build``), the graph's I/O
(``contract``), the baselines it must beat and how its card reads (``render``).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from training import cards
from training.exporters import risk as card_tools
from training.config import config_from_args
from training.loop import epoch_generator, load_checkpoint, one_cycle, run_fit, seed_everything, setup_torch
from training.metrics import auroc, average_precision
from training.nets.sequence import count_parameters
from training.onnx_export import export_graph, parity_cases, run_onnx
from training.provenance import command_line, git_commit, hardware, training_command
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

    def extra_card(self, net: nn.Module, onnx_path: Path, val: Rows, info: dict, model_dir: Path,
                   skip_plots: bool, scores: dict[str, np.ndarray], threshold: float) -> dict[str, Any]:
        """More card fields and plots; ``scores`` holds the served model's ("model") and each baseline's
        validation scores."""
        return {}

    def manifest_extra(self, cfg: RiskConfig, info: dict[str, Any]) -> dict[str, Any]:
        return {}

    def render(self, name: str, card: dict[str, Any]) -> str:
        raise NotImplementedError

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
        return self.report(args, card_tools.score_report(val.y, self.predict(net, val)))

    def parity_feeds(self, val: Rows, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        idx = rng.choice(len(val), size=batch, replace=batch > len(val))
        return val.take(idx).inputs

    def export(self, args: argparse.Namespace) -> int:
        t_start = time.time()
        setup_torch(args.device)
        net, cfg, ckpt = self.load_trained(args)
        meta, info = ckpt["meta"], ckpt["meta"]["info"]
        name = cfg.model_name
        model_dir = self.models_dir(args) / name
        onnx_path = model_dir / "1" / "model.onnx"
        train, val, _ = self.load(args)

        inputs, outputs, dynamic = self.contract()
        rng = np.random.default_rng(1)
        example = {k: torch.from_numpy(v) for k, v in self.parity_feeds(val, 2, rng).items()}
        export_graph(net, example, onnx_path, [o["name"] for o in outputs], dynamic)
        parity = parity_cases(net, onnx_path, [self.parity_feeds(val, b, rng) for b in (1, 3, 64, 257)], atol=1e-5)
        print(f"exported {onnx_path} ({onnx_path.stat().st_size / 1e3:.1f} KB); parity {parity['max_abs_diff']:.2e}")

        p = run_onnx(onnx_path, val.inputs).astype(np.float64)
        res = card_tools.score_report(val.y, p)
        threshold, rule = self.choose_threshold(val.y, p)
        res["operating_point"] = {**card_tools.operating_point(val.y, p, threshold), "rule": rule}
        res["calibration"] = card_tools.calibration_summary(val.y, p)
        base, scores = {}, {"model": p}
        for key, b in self.baselines(args, train, val, info).items():
            s = scores[key] = np.asarray(b["scores"], dtype=np.float64)
            metrics = b.get("metrics", ("auroc", "auprc", "recall_at_95_precision"))
            base[key] = {"note": b["note"], **card_tools.score_report(val.y, s, metrics),
                         **card_tools.compare(val.y, p, s, b.get("compare", "auprc"))}
        res["baselines"] = base
        print({k: v for k, v in res.items() if k != "baselines"})
        for key, b in base.items():
            print(key, {k: v for k, v in b.items() if k != "note"})

        history = ckpt["history"]
        provenance = {
            "training_command": training_command(meta), "export_command": command_line(getattr(args, "argv", None)),
            "seed": meta["seed"], "epochs": len(history["epochs"]), "train_wall_time_s": round(history["wall_time_s"], 1),
            "hardware": meta["hardware"], "git_commit": git_commit(), "params": meta["params"],
            "onnx_bytes": onnx_path.stat().st_size, "train_rows": meta["n_train"], "validation_rows": len(val),
            "framework": f"torch {torch.__version__}",
        }
        extra = self.extra_card(net, onnx_path, val, info, model_dir, args.skip_card, scores, threshold)
        manifest_extra = self.manifest_extra(cfg, info)
        manifest_extra.setdefault("parameters", {})["threshold"] = round(threshold, 6)
        cards.write_manifest(model_dir, {
            "name": name, "task": self.task_family, "inputs": inputs, "outputs": outputs, "provenance": provenance,
            "metrics": {"val_auroc": res["auroc"], "val_auroc_ci95": res["auroc_ci95"], "val_auprc": res["auprc"],
                        "val_auprc_ci95": res["auprc_ci95"], "val_brier": res["brier"], "val_rows": len(val),
                        **{f"baseline_{k}_auroc": v["auroc"] for k, v in base.items()},
                        **{f"baseline_{k}_auprc": v["auprc"] for k, v in base.items() if "auprc" in v}},
            **manifest_extra,
        })
        if not args.skip_card:
            cards.plot_history(history, model_dir / "training_curves.png",
                               [("train_loss", "val_loss"), ("val_auroc", "val_auprc")], f"{name} training")
            card = {"name": name, "task": self.task_family, "description": manifest_extra.get("description", ""),
                    "metrics": res, "parity": parity, "provenance": provenance, "config": asdict(cfg),
                    "history": history, **extra}
            cards.write_card(model_dir, card, self.render(name, card))
        print(f"export finished in {time.time() - t_start:.0f} s")
        return 0


def run_footer(p: dict[str, Any]) -> str:
    """Card lines on seed, wall time, hardware, size, and the commands that recreate the model."""
    return (f"- Seed {p['seed']}; training wall time {p['train_wall_time_s']:.1f} s on {p['hardware']} (2 shared cores).\n"
            f"  {p['params']:,} parameters; ONNX {p['onnx_bytes'] / 1e3:.1f} KB. Git commit at export: "
            f"{p['git_commit'] or 'n/a'}.\n\n" + cards.recreate_section({**p, "notes": None}))
