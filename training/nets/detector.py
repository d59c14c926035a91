"""A small anchor-free one-stage detector (TTFNet / CenterNet style) for letterboxed RGB pictures.

Backbone: conv-BN-ReLU stages down to stride 32 (depthwise-separable blocks where the maps are small, to keep the
weights under ~250k parameters); a top-down path (nearest upsampling + 1x1 laterals) back to stride 4; two heads
on the stride-4 grid: a class heatmap (sigmoid, one map per class) and the distances from each cell centre to the
four sides of its box (ReLU x ``reg_base`` pixels).

``DetectorGraph`` is what is exported: uint8 NHWC in, the decoding inside the graph: heatmap peaks (3x3 max-pool,
non-peaks set to 0) and every cell's box in input pixels. The server keeps the (cell, class) pairs above a
threshold and runs NMS per class (service/detection.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.nets.preprocess import Normalize

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def conv_bn(cin: int, cout: int, stride: int = 1, k: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def sep_conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """Depthwise 3x3 then pointwise 1x1, each with BN and ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                         nn.ReLU(inplace=True), conv_bn(cin, cout, k=1))


class Detector(nn.Module):
    """Normalised float NCHW [N, 3, S, S] (S divisible by 32) -> (heatmap logits [N, C, S/4, S/4],
    side distances [N, 4, S/4, S/4] in pixels)."""

    stride = 4

    def __init__(self, num_classes: int = 4, width: int = 16, neck: int = 48, head: int = 32, reg_base: float = 16.0):
        super().__init__()
        w = width
        self.stem = conv_bn(3, w, 2)  # /2
        self.c2 = conv_bn(w, 2 * w, 2)  # /4
        self.c3 = nn.Sequential(conv_bn(2 * w, 4 * w, 2), conv_bn(4 * w, 4 * w))  # /8
        self.c4 = nn.Sequential(conv_bn(4 * w, 6 * w, 2), sep_conv(6 * w, 6 * w))  # /16
        self.c5 = nn.Sequential(sep_conv(6 * w, 6 * w, 2), sep_conv(6 * w, 6 * w))  # /32
        self.lat5, self.lat4 = conv_bn(6 * w, neck, k=1), conv_bn(6 * w, neck, k=1)
        self.lat3, self.lat2 = conv_bn(4 * w, neck, k=1), conv_bn(2 * w, head, k=1)
        self.smooth4, self.smooth3 = conv_bn(neck, neck), conv_bn(neck, neck)
        self.down3 = conv_bn(neck, head)
        self.head = conv_bn(head, head)  # shared by the two 1x1 outputs (the stride-4 maps dominate the cost)
        self.hm_head, self.reg_head = nn.Conv2d(head, num_classes, 1), nn.Conv2d(head, 4, 1)
        self.reg_base = reg_base
        nn.init.constant_(self.hm_head.bias, -4.6)  # prior 0.01: the focal loss starts near its optimum
        nn.init.constant_(self.reg_head.bias, 1.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c2 = self.c2(self.stem(x))
        c3 = self.c3(c2)
        c4 = self.c4(c3)
        c5 = self.c5(c4)
        up = lambda t: F.interpolate(t, scale_factor=2.0, mode="nearest")  # noqa: E731
        p4 = self.smooth4(self.lat4(c4) + up(self.lat5(c5)))
        p3 = self.smooth3(self.lat3(c3) + up(p4))
        p2 = self.head(self.lat2(c2) + up(self.down3(p3)))
        return self.hm_head(p2), F.relu(self.reg_head(p2)) * self.reg_base


def cell_centres(grid: int, stride: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """x and y of every cell centre in input pixels, each [grid, grid]."""
    c = (torch.arange(grid, dtype=torch.float32, device=device) + 0.5) * stride
    return c.view(1, -1).expand(grid, grid), c.view(-1, 1).expand(grid, grid)


def decode_boxes(dist: torch.Tensor, stride: int) -> torch.Tensor:
    """Side distances [N, 4, G, G] -> boxes [N, 4, G, G] (x_min, y_min, x_max, y_max) in input pixels."""
    cx, cy = cell_centres(dist.shape[-1], stride, dist.device)
    return torch.stack([cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]], 1)


class DetectorGraph(nn.Module):
    """The exported graph: ``images`` uint8 [N, S, S, 3] (letterboxed RGB) -> ``boxes`` [N, G*G, 4] (input pixels)
    and ``scores`` [N, G*G, C] (sigmoid heatmap, 0 except at 3x3 peaks)."""

    def __init__(self, net: Detector):
        super().__init__()
        self.norm = Normalize(MEAN, STD)
        self.net = net

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, dist = self.net(self.norm(images))
        heat = torch.sigmoid(logits)
        peaks = heat * (F.max_pool2d(heat, 3, 1, 1) == heat).to(heat.dtype)
        boxes = decode_boxes(dist, self.net.stride).flatten(2).transpose(1, 2)
        return boxes, peaks.flatten(2).transpose(1, 2)
