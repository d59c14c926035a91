"""torch modules: one file per architecture; ``count_parameters`` for every recipe and exporter."""

from torch import nn


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
