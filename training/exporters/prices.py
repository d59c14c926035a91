"""Export prices-lstm: the shared forecaster export (exporters/forecast.py) with the price contract (60 raw closes
in, closes 1..5 days ahead out), direction accuracy and the random-walk comparison on the card.

    neuroserve-train export prices             # models/prices-lstm
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from training.cards import plot_forecasts
from training.exporters.forecast import ForecastExporter, fmt_ci, run_footer
from training.intervals import block_bootstrap_ci
from training.recipes.prices import COLUMN, CUT, HISTORY, HORIZON, Z80, PricesRecipe


def direction_accuracy(point: np.ndarray, last: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.sign(point - last) == np.sign(y - last)))


class PricesExporter(ForecastExporter):
    task_family = "price-forecast"

    def contract(self):
        inputs = [{"name": "closes", "datatype": "FP32", "shape": [-1, HISTORY]}]
        outputs = [{"name": "quantiles", "datatype": "FP32", "shape": [-1, HORIZON, 3]}]
        return inputs, outputs, {"closes": {0: "batch"}, "quantiles": {0: "batch"}}

    def parity_inputs(self, rng, batch, val):
        if len(val):
            return super().parity_inputs(rng, batch, val)
        steps = rng.normal(0, 0.015, size=(batch, HISTORY)).cumsum(1)
        return {"closes": (rng.uniform(10, 500, size=(batch, 1)) * np.exp(steps)).astype(np.float32)}

    def extra_metrics(self, q, val, point):
        closes = val.inputs["closes"].astype(np.float64)
        last = closes[:, -1:]
        y, g = val.y.astype(np.float64), val.group
        q50 = q[..., 1].astype(np.float64)
        up_share = float(np.mean(y > last))
        r = np.diff(np.log(closes), axis=1)
        sigma = np.sqrt((r ** 2).mean(1, keepdims=True))
        h = np.sqrt(np.arange(1, HORIZON + 1))[None]
        gauss = np.stack([last * np.exp(-Z80 * sigma * h), np.repeat(last, HORIZON, 1), last * np.exp(Z80 * sigma * h)], -1)
        gauss_cov = float(np.mean((y >= gauss[..., 0]) & (y <= gauss[..., 2])))
        # scale-free error: MAE of log price (= relative error), comparable across tickers
        log_mae = float(np.mean(np.abs(np.log(q50) - np.log(y))))
        rw_log_mae = float(np.mean(np.abs(np.log(last) - np.log(y))))
        return {
            "direction_accuracy": direction_accuracy(q50, last, y),
            "direction_accuracy_ci95": block_bootstrap_ci(direction_accuracy, g, q50, np.repeat(last, HORIZON, 1), y),
            "up_share": up_share,
            "up_share_ci95": block_bootstrap_ci(lambda a, b: float(np.mean(a > b)), g, y, np.repeat(last, HORIZON, 1)),
            "predicted_up_share": float(np.mean(q50 > last)),
            "log_mae": log_mae, "random_walk_log_mae": rw_log_mae,
            "log_mae_ratio_ci95": block_bootstrap_ci(
                lambda a, b, c: float(np.mean(np.abs(np.log(a) - np.log(c))) / np.mean(np.abs(np.log(b) - np.log(c)))),
                g, q50, np.repeat(last, HORIZON, 1), y),
            "gaussian_rw_interval": {"coverage": gauss_cov, "mean_width": float(np.mean(gauss[..., 2] - gauss[..., 0]))},
            "tickers": len(set(val.label)),
        }

    def manifest_extra(self, cfg, info):
        return {"description": "Daily close forecasts for days 1..5 at quantiles 0.1/0.5/0.9 from the last 60 closes "
                               "(LSTM on volatility-scaled log returns; scale-free, any ticker)",
                "preprocessing": {"closes": f"raw positive daily closes (split-adjusted '{COLUMN}'), oldest first, "
                                            "60 consecutive trading days",
                                  "in_graph": "log returns, window-volatility scaling, cumulative log-return "
                                              "quantiles -> last_close * exp(q), conformal widening"},
                "batching": {"max_batch_size": 64, "max_queue_delay_ms": 0},
                "parameters": {"interval": 0.8, "history_days": HISTORY, "horizon": HORIZON,
                               "quantiles": [0.1, 0.5, 0.9]}}

    def plot(self, q, val, point, path: Path, name: str) -> None:
        rng = np.random.default_rng(0)
        idx = np.sort(rng.choice(len(val), size=min(6, len(val)), replace=False))
        plot_forecasts(val.inputs["closes"][idx], val.y[idx], q[idx], path, f"{name}: validation forecasts",
                       titles=[f"{val.label[i]} from {val.origin[i]}" for i in idx],
                       baseline=point["random_walk_last_close"][idx], baseline_label="random walk", history_tail=30)

    def render(self, name: str, card: dict[str, Any]) -> str:
        m, p, c, cal = card["metrics"], card["provenance"], card["config"], card["calibration"]
        rw = m["baselines"]["random_walk_last_close"]
        cov_ok = 0.75 <= m["coverage"] <= 0.85
        return f"""# {name} (model card)

{card['description']}.

> Not investment advice. Daily stock returns are close to unpredictable: the median forecast is essentially the
> last close plus a small drift, and the interval is about as good as a Gaussian random-walk interval (below).

## I/O contract
- input: `closes` FP32 [-1, 60]: raw positive daily closes of one instrument, oldest first, 60 consecutive trading days.
- output: `quantiles` FP32 [-1, 5, 3]: PRICE forecasts for trading days 1..5 after the last close at quantiles 0.1,
  0.5, 0.9 (monotone in the quantile axis by construction).
- In the graph: log returns, division by the window's own volatility (RMS log return), LSTM, cumulative log-return
  quantiles in volatility units, conformal widening, `last_close * exp(q)`. Any price level and any ticker.
  torch vs onnxruntime parity: max |diff| {card['parity']['max_abs_diff']:.1e} dollars, max relative
  {card['parity']['max_rel_diff']:.1e} (limit 1e-4 + 1e-5 x |value|; batch 1/3/64/257).

## Data and split (by time, the same calendar cut for every ticker)
- `shared/data/prices/`: 36 large-cap S&P 500 stocks, daily, Yahoo via pandas-datareader. Column `{COLUMN}`
  (split-adjusted, not dividend-adjusted): the price callers see and send; `adj_close` was dividend-adjusted as of the
  2020 download, i.e. with information from after each date (a look-ahead), so it was not used.
- fit: windows whose 5 target days end before {CUT} ({p['fit_windows']:,} windows, stride 1 day, all tickers);
  calibration: train-split windows forecasting from {CUT} to 2018-06-29 ({p['calibration_windows']:,});
  validation: windows whose first forecast day is in the validation split (2018-07-02..2019-02-28; history may reach
  back into train): {p['validation_windows']:,} windows ({m['tickers']} tickers). Test split not used.
- CIs: percentile bootstrap over whole weeks of forecast origins (all tickers of a week together: the windows overlap
  in time and stocks move together).

## Validation metrics
- **q50 MAE {fmt_ci(m['q50_mae'], m['q50_mae_ci95'], 3)} dollars** vs **random walk (last close) {fmt_ci(rw['mae'], rw['mae_ci95'], 3)}**:
  ratio **{fmt_ci(rw['model_mae_ratio'], rw['model_mae_ratio_ci95'], 4)}** (target <= 1.0:
  {'met' if rw['model_mae_ratio'] <= 1.0 else 'NOT met'}). Scale-free (MAE of log price): {m['log_mae']:.5f} vs {m['random_walk_log_mae']:.5f},
  ratio CI {m['log_mae_ratio_ci95'][0]:.4f}-{m['log_mae_ratio_ci95'][1]:.4f}.
- **Direction accuracy {fmt_ci(m['direction_accuracy'], m['direction_accuracy_ci95'], 3)}** vs the up-day share of the
  targets {fmt_ci(m['up_share'], m['up_share_ci95'], 3)} (= the accuracy of always predicting "up"). The model predicts
  "up" for {100 * m['predicted_up_share']:.1f}% of window-days.
- **80% interval coverage {fmt_ci(m['coverage'], m['coverage_ci95'], 3)}** (target 0.75-0.85: {'met' if cov_ok else 'NOT met'});
  mean width {m['mean_width']:.2f} dollars. Baseline Gaussian random-walk interval (last close x exp(+/-1.28 sigma sqrt(h)),
  sigma from the same 60-day window): coverage {m['gaussian_rw_interval']['coverage']:.3f}, mean width
  {m['gaussian_rw_interval']['mean_width']:.2f}.
- Conformal widening (per horizon, fitted on the calibration slice of train): factors {', '.join(f'{v:.2f}' for v in cal['factors'])};
  calibration-slice coverage {cal['coverage_before']:.3f} -> {cal['coverage_after']:.3f}.
- MAE by horizon (days 1..5): {', '.join(f'{v:.3f}' for v in m['mae_by_horizon'])}; coverage by horizon:
  {', '.join(f'{v:.3f}' for v in m['coverage_by_horizon'])}.
- The validation period (2018-07..2019-02) includes the Q4-2018 market decline, a different regime from the
  2017-10..2018-06 calibration slice; the intervals were not refitted for it.

![forecasts](forecasts.png)

## Training
![training curves](training_curves.png)

- Net: LSTM (hidden {c['hidden']}) over the 59 volatility-scaled log returns (+ log volatility), MLP head on [last state,
  20-day / 60-day volatility ratio, 5-day momentum, log volatility] -> 5 x 3 cumulative log-return quantiles in
  volatility units. {p['params']:,} parameters.
- Pinball loss (quantiles 0.1/0.5/0.9) in volatility units; AdamW lr {c['lr']} one-cycle, weight decay
  {c['weight_decay']}, batch {c['batch_size']}, {p['epochs']} epochs; last epoch served.
{run_footer(p)}

## Limitations
- 36 hand-picked large caps that survived to 2020 (survivorship bias); 2015-2018 fit period. Small caps, crypto,
  FX, other regimes are untested.
- No volume, no market/sector context, no news: the median cannot beat the random walk in any useful way.
- Dividend ex-dates appear as small drops in `close`; stock splits must already be adjusted in the input (a raw
  unadjusted split in the window looks like a crash).
- Not evaluated on the held-out test split (2019-03..2020-01).
"""


def main(args: argparse.Namespace) -> int:
    return PricesExporter(PricesRecipe()).main(args)
