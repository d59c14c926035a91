"""I-94 hourly traffic: last 168 hours + hour of week -> next 24 hours at quantiles 0.1/0.5/0.9.

    neuroserve-train train traffic --epochs 12 --seed 0
    neuroserve-train export traffic            # models/traffic-lstm
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from training.data import forecast as data
from training.nets.sequence import TrafficNet
from training.recipes.forecast import ForecastConfig, ForecastRecipe, fmt_ci, run_footer
from training.seqtools import pinball_loss, plot_forecasts

HISTORY, HORIZON = 168, 24
CUT = np.datetime64("2017-01-01T00", "h")  # train split: fit before, calibration from here to 2017-06-30
VAL_FROM = np.datetime64("2017-07-01T00", "h")
SCALE = 1000.0  # vehicles/hour per model unit


class TrafficRecipe(ForecastRecipe):
    task = "traffic"
    task_family = "traffic-forecast"
    data_subdir = "traffic"
    horizon = HORIZON
    parity_atol = 1e-4 * SCALE  # 1e-4 in model units (thousands of vehicles/hour)
    default = ForecastConfig(model_name="traffic-lstm", epochs=15, batch_size=64, lr=2e-3, hidden=96, layers=1,
                             dropout=0.2, weight_decay=1e-3)

    def load_windows(self, args: argparse.Namespace):
        root = self.data_dir(args) / "traffic"
        t, v = data.read_traffic(root / "train.csv")
        fit_w = data.traffic_windows(t, v, HISTORY, HORIZON, target_before=CUT)
        cal_w = data.traffic_windows(t, v, HISTORY, HORIZON, origin_from=CUT)
        val_path = root / "validation.csv"
        if val_path.exists():
            tv, vv = data.read_traffic(val_path)
            val_w = data.traffic_windows(np.concatenate([t, tv]), np.concatenate([v, vv]), HISTORY, HORIZON,
                                         origin_from=VAL_FROM)
        else:
            val_w = cal_w.take(np.arange(0))
        fit_mask = t < CUT
        info = {"profile_fit": data.hour_of_week_profile(t[fit_mask], v[fit_mask]).tolist(),
                "profile_train": data.hour_of_week_profile(t, v).tolist(), "scale": SCALE,
                "describe": {"train_hours": int(len(t)), "fit_until": str(CUT), "calibration_from": str(CUT),
                             "validation_from": str(VAL_FROM)}}
        return fit_w, cal_w, val_w, info

    def build(self, cfg: ForecastConfig, info: dict[str, Any]) -> nn.Module:
        return TrafficNet(torch.tensor(info["profile_fit"]), info["scale"], cfg.hidden, cfg.layers, cfg.dropout)

    def loss(self, net, inputs, y):
        return pinball_loss(net(inputs["history"], inputs["hour_of_week"]) / SCALE, y / SCALE)

    def baselines(self, val, info):
        prof = np.asarray(info["profile_train"], dtype=np.float32)
        return {"seasonal_naive_last_week": data.seasonal_naive(val.inputs["history"], HORIZON),
                "hour_of_week_mean_train": data.profile_forecast(prof, val.inputs["hour_of_week"], HISTORY, HORIZON)}

    def contract(self):
        inputs = [{"name": "history", "datatype": "FP32", "shape": [-1, HISTORY]},
                  {"name": "hour_of_week", "datatype": "INT64", "shape": [-1]}]
        outputs = [{"name": "quantiles", "datatype": "FP32", "shape": [-1, HORIZON, 3]}]
        dynamic = {"history": {0: "batch"}, "hour_of_week": {0: "batch"}, "quantiles": {0: "batch"}}
        return inputs, outputs, dynamic

    def parity_inputs(self, rng, batch, val):
        if len(val):
            return super().parity_inputs(rng, batch, val)
        return {"history": rng.uniform(0, 7000, size=(batch, HISTORY)).astype(np.float32),
                "hour_of_week": rng.integers(0, 168, size=batch).astype(np.int64)}

    def manifest_extra(self, cfg, info):
        return {"description": "I-94 westbound hourly traffic volume: next 24 h at quantiles 0.1/0.5/0.9 from the last "
                               "168 h (LSTM over 7 daily steps, hour-of-week profile and calendar in the graph)",
                "preprocessing": {"history": "raw hourly traffic_volume (vehicles/hour), oldest first, 168 consecutive "
                                             "hours, no gaps", "hour_of_week": "of history[0]; Monday 00:00 = 0 ... "
                                             "Sunday 23:00 = 167, local time",
                                  "in_graph": "scaling, calendar sin/cos features, train hour-of-week mean profile, "
                                              "monotone quantiles, conformal widening"},
                "batching": {"max_batch_size": 64, "max_queue_delay_ms": 0},
                "parameters": {"interval": 0.8, "history_hours": HISTORY, "horizon": HORIZON,
                               "quantiles": [0.1, 0.5, 0.9]}}

    def plot(self, q, val, point, path: Path, name: str) -> None:
        rng = np.random.default_rng(0)
        idx = np.sort(rng.choice(len(val), size=min(6, len(val)), replace=False))
        plot_forecasts(val.inputs["history"][idx], val.y[idx], q[idx], path, f"{name}: validation forecasts",
                       titles=[f"forecast from {val.origin[i]}" for i in idx],
                       baseline=point["hour_of_week_mean_train"][idx], baseline_label="hour-of-week mean",
                       history_tail=48)

    def render(self, name: str, card: dict[str, Any]) -> str:
        m, p, c, cal = card["metrics"], card["provenance"], card["config"], card["calibration"]
        b = m["baselines"]
        best = min(b, key=lambda k: b[k]["mae"])
        ratio = b[best]["model_mae_ratio"]
        cov_ok = 0.75 <= m["coverage"] <= 0.85
        return f"""# {name} (model card)

{card['description']}.

## I/O contract
- inputs: `history` FP32 [-1, 168] raw hourly volumes (vehicles/hour, as in the CSV), 168 consecutive hours, oldest
  first; `hour_of_week` INT64 [-1]: hour of week of `history[0]` (Monday 00:00 = 0 ... Sunday 23:00 = 167, local time).
- output: `quantiles` FP32 [-1, 24, 3]: volume forecasts for hours 1..24 after the history at quantiles 0.1, 0.5, 0.9
  (monotone by construction: median +/- softplus increments).
- In the graph: scaling (/1000), calendar features (sin/cos of hour of week and hour of day, from `hour_of_week` +
  arange), the hour-of-week mean profile of the fit slice (a constant), and the conformal widening factors.
  torch vs onnxruntime parity: max |diff| {card['parity']['max_abs_diff']:.1e} vehicles/hour, max relative
  {card['parity']['max_rel_diff']:.1e} (limit 1e-4 in model units = 0.1 vehicles/hour, + 1e-5 x |value|: float32 spacing at 5,000 is
  5e-4; batch 1/3/64/257).
- Weather and holiday columns are not used: the server cannot supply them.

## Data and split (by time, no shuffling)
- `shared/data/traffic/` (UCI Metro Interstate Traffic Volume). Missing hours are not filled: windows of 168 + 24
  hours are taken only where all 192 hours are consecutive.
- fit: train-split windows whose targets end before {CUT} ({p['fit_windows']} windows, stride 1 h);
  calibration: train-split windows forecasting from {CUT} to 2017-06-30 ({p['calibration_windows']});
  validation: windows whose first forecast hour is in the validation split (2017-07-01..2017-12-31; history may reach
  back into June 2017): {p['validation_windows']} windows. Test split not used.
- CIs: percentile bootstrap over whole weeks of forecast origins (overlapping windows are not independent).

## Validation metrics
- **q50 MAE {fmt_ci(m['q50_mae'], m['q50_mae_ci95'])} vehicles/hour** over {p['validation_windows']} windows x 24 hours.
- **80% interval coverage {fmt_ci(m['coverage'], m['coverage_ci95'], 3)}** (target 0.75-0.85: {'met' if cov_ok else 'NOT met'});
  mean width {m['mean_width']:.0f} vehicles/hour; mean pinball loss {m['pinball']:.1f}.
- Conformal widening (per horizon, fitted on the calibration slice of train, not on validation): factors
  {cal['factors'][0]:.2f}..{max(cal['factors']):.2f}; calibration-slice coverage {cal['coverage_before']:.3f} -> {cal['coverage_after']:.3f}.
- MAE by horizon (h=1..24): {', '.join(f'{v:.0f}' for v in m['mae_by_horizon'])}.
- Coverage by horizon: {', '.join(f'{v:.2f}' for v in m['coverage_by_horizon'])}.

## Baselines (same validation windows)
| forecast | MAE (95% CI) | model MAE / baseline (95% CI) |
|---|---|---|
""" + "\n".join(f"| {k} | {fmt_ci(v['mae'], v['mae_ci95'])} | {fmt_ci(v['model_mae_ratio'], v['model_mae_ratio_ci95'], 3)} |"
                for k, v in b.items()) + f"""

Target: q50 MAE at least 15% below the better baseline ({best}): ratio {ratio:.3f} -> **{'met' if ratio <= 0.85 else 'NOT met'}**.
The hour-of-week mean uses the whole train split; seasonal naive = the same hour one week earlier (history[h-1]).

![forecasts](forecasts.png)

## Training
![training curves](training_curves.png)

- Net: LSTM (hidden {c['hidden']}, {c['layers']} layer) over 7 daily steps (24 scaled volumes + the profile at those hours
  + calendar of the day start), then an MLP on [last state, same day last week, last 24 h, profile for the next 24 h,
  calendar] -> 24 x 3 (median as a correction of the profile, softplus spreads). {p['params']:,} parameters.
- Pinball loss on quantiles 0.1/0.5/0.9 (volumes / 1000); AdamW lr {c['lr']} one-cycle, weight decay {c['weight_decay']},
  dropout {c['dropout']}, batch {c['batch_size']}, {p['epochs']} epochs; the last epoch is served (no early stopping).
{run_footer(p)}

## Limitations
- One station (I-94 westbound, ATR 301), 2012-2017; other roads have other levels and profiles.
- Holidays, weather, incidents and events are not inputs: those days carry the largest errors.
- Needs 168 consecutive hours; the caller must fill or refuse gaps. Not evaluated on the held-out test split (2018).
- Only {p['fit_windows']} overlapping fit windows (gaps in the data): the model has seen a limited number of distinct weeks.
"""
