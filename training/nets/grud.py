"""A GRU over hourly bins of irregular measurements, GRU-D style (Che et al. 2018, "Recurrent Neural Networks for
Multivariate Time Series with Missing Values"): the input carries values, masks and time since the last
observation, and a carried-forward value decays towards the variable's mean (0 after standardisation) with a
learnt per-variable rate as it ages."""

from __future__ import annotations

import torch
from torch import nn


class DecayGRU(nn.Module):
    """(values, masks, deltas [B, T, P], statics [B, S], hours [B]) -> risk [B].

    ``hours`` (1..T) is how many bins the stay has so far: the answer reads the GRU state after bin hours - 1, so
    a stay in progress is scored on what has been observed (the bins after it do not matter: the GRU is causal).
    """

    def __init__(self, variables: int, statics: int, hidden: int = 64, dropout: float = 0.2):
        super().__init__()
        self.decay = nn.Linear(variables, variables)  # GRU-D input decay: gamma = exp(-relu(W delta + b)), W diagonal
        self.register_buffer("diag", torch.eye(variables))
        self.gru = nn.GRU(3 * variables, hidden, batch_first=True)
        self.head = nn.Sequential(nn.Linear(hidden + statics, hidden // 2), nn.GELU(), nn.Dropout(dropout),
                                  nn.Linear(hidden // 2, 1))
        self.dropout = nn.Dropout(dropout)

    def logits(self, values: torch.Tensor, masks: torch.Tensor, deltas: torch.Tensor, statics: torch.Tensor,
               hours: torch.Tensor) -> torch.Tensor:
        gamma = torch.exp(-torch.relu(nn.functional.linear(deltas, self.decay.weight * self.diag, self.decay.bias)))
        x = masks * values + (1 - masks) * gamma * values
        out, _ = self.gru(self.dropout(torch.cat([x, masks, deltas], dim=-1)))
        idx = (hours.clamp(1, out.shape[1]) - 1).view(-1, 1, 1).expand(-1, 1, out.shape[2])
        last = out.gather(1, idx).squeeze(1)
        return self.head(torch.cat([last, statics], dim=-1)).squeeze(-1)

    def forward(self, values, masks, deltas, statics, hours):
        return torch.sigmoid(self.logits(values, masks, deltas, statics, hours))
