"""Daily closes of 36 large caps: last 60 closes -> closes 1..5 days ahead at quantiles 0.1/0.5/0.9.

    neuroserve-train train prices --epochs 8 --seed 0
    neuroserve-train export prices             # models/prices-lstm

Modelled in log returns scaled by the window's own volatility, so the graph is scale-free (any ticker,
any price level); the graph turns cumulative log-return quantiles back into prices.
Column: ``close`` (Yahoo split-adjusted, NOT dividend-adjusted): it is the price a caller sees and sends, and
``adj_close`` was adjusted with dividends known only at download time (2020), i.e. it leaks the future into
past prices. Dividend drops (~0.5-1% on ex-dates, a few per year) stay in the series as real price moves.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch
from torch import nn

from training.data import forecast as data
from training.nets.quantile import pinball_loss
from training.nets.sequence import PriceNet
from training.recipes.forecast import ForecastConfig, ForecastRecipe

HISTORY, HORIZON = 60, 5
COLUMN = "close"
CUT = np.datetime64("2017-10-02", "D")  # train split: fit before, calibration from here to 2018-06-29
VAL_FROM = np.datetime64("2018-07-02", "D")
Z80 = 1.2815515655446004


class PricesRecipe(ForecastRecipe):
    task = "prices"
    horizon = HORIZON
    default = ForecastConfig(model_name="prices-lstm", epochs=6, batch_size=256, lr=1e-3, hidden=32, layers=1,
                             dropout=0.1, weight_decay=1e-3)

    def load_windows(self, args: argparse.Namespace):
        root = self.data_dir(args) / "prices"
        train = data.read_prices(root / "train.csv", COLUMN)
        fit_w = data.price_windows(train, HISTORY, HORIZON, target_before=CUT)
        cal_w = data.price_windows(train, HISTORY, HORIZON, origin_from=CUT)
        val_path = root / "validation.csv"
        if val_path.exists():
            val_w = data.price_windows(data.concat_prices(train, data.read_prices(val_path, COLUMN)), HISTORY, HORIZON,
                                       origin_from=VAL_FROM)
        else:
            val_w = cal_w.take(np.arange(0))
        info = {"column": COLUMN, "describe": {"tickers": sorted(train), "column": COLUMN, "fit_until": str(CUT),
                                               "calibration_from": str(CUT), "validation_from": str(VAL_FROM)}}
        return fit_w, cal_w, val_w, info

    def build(self, cfg: ForecastConfig, info: dict[str, Any]) -> nn.Module:
        return PriceNet(cfg.hidden, cfg.layers, cfg.dropout, HORIZON)

    def loss(self, net, inputs, y):
        q, last, vol = net.cum_returns(inputs["closes"])
        target = torch.log(y) - last.unsqueeze(1)
        return pinball_loss(q / vol.unsqueeze(-1), target / vol)

    def baselines(self, val, info):
        last = val.inputs["closes"][:, -1:]
        return {"random_walk_last_close": np.repeat(last, HORIZON, axis=1)}
