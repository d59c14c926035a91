"""A small MLP for tabular rows, with its input scaling inside the module (so the ONNX graph takes raw rows)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class ScaledMLP(nn.Module):
    """Raw rows [batch, F] -> fraud probability [batch].

    In the module (hence in the graph): log1p on the columns named by ``log_columns`` (Amount: heavy-tailed,
    >= 0), then (x - mean) / std with the training split's statistics, then MLP -> logit -> sigmoid.
    ``logits`` gives the pre-sigmoid score (training uses it with BCE-with-logits).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], log_columns: Sequence[int] = (),
                 hidden: Sequence[int] = (64, 32), dropout: float = 0.2):
        super().__init__()
        features = len(mean)
        log_mask = torch.zeros(features)
        log_mask[list(log_columns)] = 1.0
        self.register_buffer("log_mask", log_mask)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("inv_std", 1.0 / torch.tensor(std, dtype=torch.float32))
        layers: list[nn.Module] = []
        width = features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.GELU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def scale(self, rows: torch.Tensor) -> torch.Tensor:
        # log1p(|x|) * sign keeps the graph finite for any float input (the server refuses negative Amounts anyway)
        logged = torch.sign(rows) * torch.log1p(torch.abs(rows))
        x = self.log_mask * logged + (1 - self.log_mask) * rows
        return (x - self.mean) * self.inv_std

    def logits(self, rows: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.scale(rows)).squeeze(-1)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(rows))
