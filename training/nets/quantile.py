"""Quantile heads for the forecasters: the pinball loss and a monotone (q10 <= q50 <= q90) output."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from training.intervals import QUANTILES


def pinball_loss(pred: torch.Tensor, target: torch.Tensor, quantiles: Sequence[float] = QUANTILES) -> torch.Tensor:
    """pred [B,H,Q], target [B,H] -> mean pinball loss over B, H, Q."""
    q = torch.tensor(quantiles, dtype=pred.dtype, device=pred.device).view(1, 1, -1)
    err = target.unsqueeze(-1) - pred
    return torch.maximum(q * err, (q - 1) * err).mean()


def monotone_quantiles(raw: torch.Tensor, scale: torch.Tensor | float = 1.0) -> torch.Tensor:
    """raw [..., 3] -> (q10, q50, q90) with q10 <= q50 <= q90: median +/- softplus increments.

    ``scale`` multiplies the increments (conformal widening baked into the graph).
    """
    mid = raw[..., 1]
    lo = mid - nn.functional.softplus(raw[..., 0]) * scale
    hi = mid + nn.functional.softplus(raw[..., 2]) * scale
    return torch.stack([lo, mid, hi], dim=-1)
