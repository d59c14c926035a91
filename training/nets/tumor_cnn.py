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


class TumorPatchCNN(nn.Module):
    """A tumour detector that can only look locally: a shallow trunk (receptive field 24 px of 64) gives a tumour
    logit per 4x4-pixel cell of a 16x16 map, and the image logit is the mean of the top-k cells (multiple-instance
    pooling). It cannot use the head's framing, size or global contrast, which differ by source; only what a
    lesion looks like next to the tissue around it. Same inputs and outputs as TumorCNN."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128), num_subtypes: int = 4, dropout: float = 0.2,
                 top_k: int = 4):
        super().__init__()
        w1, w2, w3 = widths[:3]
        self.trunk = nn.Sequential(conv_bn(1, w1), conv_bn(w1, w1), nn.MaxPool2d(2),
                                   conv_bn(w1, w2), conv_bn(w2, w2), nn.MaxPool2d(2), conv_bn(w2, w3),
                                   nn.Conv2d(w3, w3, 1, bias=False), nn.BatchNorm2d(w3), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout2d(dropout)
        self.cell_head = nn.Conv2d(w3, 1, 1)
        self.subtype_head = nn.Linear(w3, num_subtypes)
        self.top_k = top_k

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.dropout(self.trunk(x))
        cells = self.cell_head(f).flatten(1)
        tumor = cells.topk(self.top_k, dim=1).values.mean(dim=1)
        return tumor, self.subtype_head(f.mean(dim=(2, 3)))
