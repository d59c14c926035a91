"""I-94 hourly traffic: last 168 hours + hour of week + the request's calendar -> next 24 hours at q 0.1/0.5/0.9.

    neuroserve-train train traffic --seed 0      # walk-forward folds over 2016-2017, then the served fit
    neuroserve-train export traffic              # models/traffic-lstm

The reported figure is walk-forward (rolling origin): for each two-month period from May 2016 to December 2017 a
model is trained on everything before it and scored on it against the hour-of-week profile of the same past. The
served model is then trained on all data up to the end of the validation split (2017-12-31); its conformal widening
is fitted on the folds' out-of-sample forecasts.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from training.data import forecast as data
from training.intervals import interval_report
from training.loop import epoch_generator, one_cycle, seed_everything, setup_torch
from training.nets.quantile import pinball_loss
from training.nets.sequence import TrafficCalendarNet, TrafficNet
from training.recipes.forecast import ForecastConfig, ForecastRecipe, mae

HISTORY, HORIZON = 168, 24
SCALE = 1000.0  # vehicles/hour per model unit
VAL_FROM = np.datetime64("2017-07-01T00", "h")  # first hour of the validation split
END = np.datetime64("2018-01-01T00", "h")  # the served model is fitted on windows whose targets end before this
FOLD_FIRST, FOLD_LAST, FOLD_MONTHS = "2016-05", "2017-11", 2  # walk-forward cut-offs (no strict windows Jan-Apr 2016)
T_975 = {n: v for n, v in [(2, 12.71), (3, 4.30), (4, 3.18), (5, 2.78), (6, 2.57), (7, 2.45), (8, 2.36), (9, 2.31),
                          (10, 2.26), (11, 2.23), (12, 2.20)]}  # Student t quantile by number of folds (df = n - 1)

# The recipe before this one (TrafficNet without calendar, strict windows only, 15 epochs, batch 64, lr 0.002:
# models/traffic-lstm at 83a8737), walked forward by this file's walk_forward() on the same folds:
#   neuroserve-train train traffic --set calendar=false --set max_gap=0 --set wf_epochs=15 --batch-size 64 \
#       --set lr=0.002 --set final=false --set threads=1 --checkpoint-dir /work/runs/before --quiet
# its walkforward.json (+ the command, + the old served graph's ratios on the 2017 folds) is kept beside the card.
BEFORE_RUN = "walkforward_before.json"


@dataclass
class TrafficConfig(ForecastConfig):
    calendar: bool = True  # the `calendar` input (holidays, time of year) and the holiday-aware net
    max_gap: int = 10  # fit windows may hold interpolated history holes up to this long (targets always observed)
    wf_epochs: int = 8  # epochs of each walk-forward fold's fit
    walk_forward: bool = True  # run the folds before the served fit
    final: bool = True  # train the served model after the folds


class TrafficRecipe(ForecastRecipe):
    task = "traffic"
    horizon = HORIZON
    default = TrafficConfig(model_name="traffic-lstm", epochs=8, batch_size=128, lr=3e-3, hidden=96, layers=1,
                            dropout=0.2, weight_decay=1e-3)

    # -- data -----------------------------------------------------------------------------------------
    def series(self, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
        """Train + validation splits as one hourly series (the test split is never read)."""
        root = self.data_dir(args) / "traffic"
        t, v = data.read_traffic(root / "train.csv")
        if (root / "validation.csv").exists():
            tv, vv = data.read_traffic(root / "validation.csv")
            t, v = np.concatenate([t, tv]), np.concatenate([v, vv])
        return t, v

    def windows(self, cfg: TrafficConfig, t: np.ndarray, v: np.ndarray) -> tuple[data.Windows, data.Windows]:
        """-> (fit windows: short history holes interpolated; evaluation windows: all 192 hours observed)."""
        fit = data.filled_traffic_windows(t, v, HISTORY, HORIZON, cfg.max_gap, target_before=END,
                                          calendar=cfg.calendar)
        return fit, data.traffic_windows(t, v, HISTORY, HORIZON, target_before=END, calendar=cfg.calendar)

    def load_windows(self, args: argparse.Namespace):
        """The served fit: every window before END; no held-out slice (the walk-forward folds are the evaluation)."""
        cfg = self.config(args)
        t, v = self.series(args)
        fit_w, eval_w = self.windows(cfg, t, v)
        empty = eval_w.take(np.arange(0))
        info = {"profile_fit": data.hour_of_week_profile(t, v).tolist(), "scale": SCALE, "calendar": cfg.calendar,
                "describe": {"hours": int(len(t)), "first_hour": str(t[0]), "fit_until": str(END),
                             "max_gap_filled": cfg.max_gap}}
        return fit_w, empty, empty, info

    def folds(self, fit_w: data.Windows, eval_w: data.Windows) -> list[data.Fold]:
        return data.walk_forward(fit_w, eval_w, data.month_cutoffs(FOLD_FIRST, FOLD_LAST, FOLD_MONTHS), END, HORIZON)

    # -- net --------------------------------------------------------------------------------------------
    def build(self, cfg: ForecastConfig, info: dict[str, Any]) -> nn.Module:
        net = TrafficCalendarNet if info.get("calendar") else TrafficNet
        return net(torch.tensor(info["profile_fit"]), info["scale"], cfg.hidden, cfg.layers, cfg.dropout)

    def loss(self, net, inputs, y):
        return pinball_loss(net(*inputs.values()) / SCALE, y / SCALE)

    def fit_quietly(self, cfg: TrafficConfig, info: dict[str, Any], fit_w: data.Windows, epochs: int,
                    seed: int) -> nn.Module:
        """One walk-forward fold's fit: the served recipe's optimiser and schedule, no checkpoints."""
        seed_everything(seed)
        net = self.build(cfg, info)
        n = len(fit_w)
        bs = min(cfg.batch_size, n)
        steps = math.ceil(n / bs)
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = one_cycle(opt, cfg.lr, steps * epochs, 0.15)
        x, y = self.tensors(fit_w), torch.from_numpy(fit_w.y)
        for epoch in range(epochs):
            self.train_steps(net, opt, sched, x, y, epoch_generator(seed, epoch), bs, range(steps), cfg.clip)
        return net.eval()

    # -- walk-forward -----------------------------------------------------------------------------------
    def walk_forward(self, args: argparse.Namespace, cfg: TrafficConfig) -> dict[str, Any]:
        """Fit and score every fold; writes walkforward.json + walkforward.npz (out-of-sample forecasts) to the run
        directory."""
        t, v = self.series(args)
        fit_w, eval_w = self.windows(cfg, t, v)
        out_dir = self.run_dir(args)
        out_dir.mkdir(parents=True, exist_ok=True)
        rows, qs, ys, base, fold_id, origin = [], [], [], [], [], []
        started = time.time()
        for k, fold in enumerate(self.folds(fit_w, eval_w)):
            fit_idx = fold.fit[-args.limit:] if args.limit else fold.fit  # --limit: the most recent windows
            if not len(fold.eval) or len(fit_idx) < 2:
                print(f"fold {fold.cut}: skipped ({len(fit_idx)} fit, {len(fold.eval)} evaluation windows)")
                continue
            past = t < fold.cut
            prof = data.hour_of_week_profile(t[past], v[past])
            info = {"profile_fit": prof.tolist(), "scale": SCALE, "calendar": cfg.calendar}
            t0 = time.time()
            net = self.fit_quietly(cfg, info, fit_w.take(fit_idx), cfg.wf_epochs, args.seed)
            ev = eval_w.take(fold.eval)
            q = self.predict(net, ev)
            b = data.profile_forecast(prof, ev.inputs["hour_of_week"], HISTORY, HORIZON)
            row = {"cut": str(fold.cut), "until": str(fold.until), "fit_windows": int(len(fit_idx)),
                   "eval_windows": int(len(ev)), "mae": mae(q[..., 1], ev.y), "profile_mae": mae(b, ev.y),
                   "coverage_raw": interval_report(q, ev.y)["coverage"], "fit_s": round(time.time() - t0, 1)}
            row["ratio"] = row["mae"] / row["profile_mae"]
            rows.append(row)
            print(f"fold {k} {row}", flush=True)
            qs.append(q), ys.append(ev.y), base.append(b), fold_id.append(np.full(len(ev), k)), origin.append(ev.origin)
        if not rows:
            raise SystemExit("walk-forward: no fold has both fit and evaluation windows")
        res = {"folds": rows, "config": asdict(cfg), "seed": args.seed, "wall_time_s": round(time.time() - started, 1),
               "summary": summarize(rows)}
        np.savez_compressed(out_dir / "walkforward.npz", q=np.concatenate(qs), y=np.concatenate(ys),
                            profile=np.concatenate(base), fold=np.concatenate(fold_id),
                            origin=np.concatenate(origin).astype(np.int64))
        (out_dir / "walkforward.json").write_text(json.dumps(res, indent=2))
        print(f"walk-forward: {res['summary']} in {res['wall_time_s']:.0f} s")
        return res

    def train(self, args: argparse.Namespace) -> int:
        cfg = self.config(args)
        setup_torch(args.device, cfg.threads or None)
        if cfg.walk_forward:
            self.walk_forward(args, cfg)
        return super().train(args) if cfg.final else 0

    def evaluate(self, args: argparse.Namespace) -> int:
        path = self.run_dir(args) / "walkforward.json"
        return self.report(args, json.loads(path.read_text())["summary"])


def widened(q: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """The band [q50 - f (q50 - q10), q50 + f (q90 - q50)] per horizon, as the graph's widening does."""
    f = np.asarray(factors, dtype=np.float32).reshape(1, -1)
    mid = q[..., 1]
    return np.stack([mid - f * (mid - q[..., 0]), mid, mid + f * (q[..., 2] - mid)], axis=-1)


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean, sd and a t interval of the per-fold MAE ratios (folds are the independent units)."""
    r = np.array([row["ratio"] for row in rows])
    n = len(r)
    sd = float(r.std(ddof=1)) if n > 1 else float("nan")
    half = T_975.get(n, 2.0) * sd / math.sqrt(n) if n > 1 else float("nan")
    return {"folds": n, "ratio_mean": float(r.mean()), "ratio_sd": sd,
            "ratio_mean_ci95": [float(r.mean() - half), float(r.mean() + half)],
            "ratio_min": float(r.min()), "ratio_max": float(r.max()),
            "mae_mean": float(np.mean([row["mae"] for row in rows])),
            "profile_mae_mean": float(np.mean([row["profile_mae"] for row in rows]))}
