"""Small CNN for 64x64 grayscale MRI slices with two heads: tumour logit and 4-way subtype logits."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn(cin: int, cout: int, instance_share: float = 0.0) -> nn.Sequential:
    norm = IBN(cout, instance_share) if instance_share > 0 else nn.BatchNorm2d(cout)
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), norm, nn.ReLU(inplace=True))


class IBN(nn.Module):
    """IBN-Net's mix (Pan et al. 2018): instance normalisation on the first share of the channels, batch
    normalisation on the rest. Instance-normalised channels forget each image's own contrast and brightness scale
    (what differs between scanners and sequences) while the batch-normalised ones keep what that scale says."""

    def __init__(self, channels: int, instance_share: float):
        super().__init__()
        self.split = max(1, int(round(channels * instance_share)))
        self.instance = nn.InstanceNorm2d(self.split, affine=True)
        self.batch = nn.BatchNorm2d(channels - self.split)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.split(x, [self.split, x.shape[1] - self.split], dim=1)
        return torch.cat([self.instance(a.contiguous()), self.batch(b.contiguous())], dim=1)


class TumorCNN(nn.Module):
    """Input: normalised float NCHW [N,1,64,64]. Output: (tumor_logit [N], subtype_logits [N,4])."""

    def __init__(self, widths: tuple[int, ...] = (24, 48, 96, 192), num_subtypes: int = 4, dropout: float = 0.2,
                 ibn_stages: int = 0):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for i, w in enumerate(widths):
            layers += [conv_bn(cin, w, 0.5 if i < ibn_stages else 0.0), nn.MaxPool2d(2)]
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
