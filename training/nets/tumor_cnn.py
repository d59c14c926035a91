"""Small CNN for 64x64 grayscale MRI slices with two heads: tumour logit and 4-way subtype logits."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TumorCNN(nn.Module):
    """Input: normalised float NCHW [N,1,64,64]. Output: (tumor_logit [N], subtype_logits [N,4])."""

    def __init__(self, widths: tuple[int, ...] = (24, 48, 96, 192), num_subtypes: int = 4, dropout: float = 0.2,
                 mirror_difference: bool = False):
        super().__init__()
        # mirror_difference: a second input channel |x - mirror(x)|. Normal anatomy is close to left-right symmetric in
        # axial and coronal slices while a tumour is a one-sided mass, so this cue does not depend on the scanner's
        # contrast the way raw intensities do
        self.mirror_difference = mirror_difference
        layers: list[nn.Module] = []
        cin = 2 if mirror_difference else 1
        for w in widths:
            layers += [conv_bn(cin, w), nn.MaxPool2d(2)]
            cin = w
        layers += [conv_bn(cin, cin)]
        self.trunk = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.tumor_head = nn.Linear(cin, 1)
        self.subtype_head = nn.Linear(cin, num_subtypes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mirror_difference:
            x = torch.cat([x, (x - x.flip(-1)).abs()], dim=1)
        h = self.trunk(x).mean(dim=(2, 3))
        h = self.dropout(h)
        return self.tumor_head(h).squeeze(1), self.subtype_head(h)
