"""Small CNN for 64x64 grayscale MRI slices with two heads: tumour logit and 4-way subtype logits."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TumorCNN(nn.Module):
    """Input: normalised float NCHW [N,1,64,64]. Output: (tumor_logit [N], subtype_logits [N,4])."""

    def __init__(self, widths: tuple[int, ...] = (24, 48, 96, 192), num_subtypes: int = 4, dropout: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for w in widths:
            layers += [conv_bn(cin, w), nn.MaxPool2d(2)]
            cin = w
        layers += [conv_bn(cin, cin)]
        self.trunk = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.tumor_head = nn.Linear(cin, 1)
        self.subtype_head = nn.Linear(cin, num_subtypes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x).mean(dim=(2, 3))
        h = self.dropout(h)
        return self.tumor_head(h).squeeze(1), self.subtype_head(h)
