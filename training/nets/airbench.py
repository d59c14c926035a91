"""Airbench-style CIFAR CNN (after Keller Jordan's airbench94).

2x2 patch-whitening conv stem (frozen weights initialised from the eigenvectors of the
training patches' covariance), then three conv-pool-BN-GELU groups, max-pool, linear head.
``depth=3`` gives each group a third conv and a residual around the second and third (airbench96's group).
"""

from __future__ import annotations

import torch
from torch import nn


class BatchNorm(nn.BatchNorm2d):
    def __init__(self, num_features: int, momentum: float = 0.6, eps: float = 1e-12):
        super().__init__(num_features, eps=eps, momentum=1 - momentum)
        self.weight.requires_grad = False  # scale fixed at 1; only the bias learns


class Conv(nn.Conv2d):
    def __init__(self, cin: int, cout: int, kernel_size: int = 3, padding: int | str = "same", bias: bool = False):
        super().__init__(cin, cout, kernel_size=kernel_size, padding=padding, bias=bias)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.bias is not None:
            self.bias.data.zero_()
        w = self.weight.data
        torch.nn.init.dirac_(w[: w.size(1)])


class ConvGroup(nn.Module):
    def __init__(self, cin: int, cout: int, bn_momentum: float, depth: int = 2):
        super().__init__()
        if depth not in (2, 3):
            raise ValueError(f"ConvGroup depth must be 2 or 3, got {depth}")
        self.conv1 = Conv(cin, cout)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = BatchNorm(cout, bn_momentum)
        self.conv2 = Conv(cout, cout)
        self.norm2 = BatchNorm(cout, bn_momentum)
        if depth == 3:
            self.conv3 = Conv(cout, cout)
            self.norm3 = BatchNorm(cout, bn_momentum)
        self.depth = depth
        self.activ = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activ(self.norm1(self.pool(self.conv1(x))))
        if self.depth == 2:
            return self.activ(self.norm2(self.conv2(x)))
        x0 = x
        x = self.activ(self.norm2(self.conv2(x)))
        x = self.activ(self.norm3(self.conv3(x)))
        return x + x0


class AirbenchNet(nn.Module):
    """Input: normalised float NCHW [N,3,32,32]; output: logits [N,num_classes]."""

    def __init__(self, widths: tuple[int, int, int] = (64, 256, 256), num_classes: int = 10,
                 bn_momentum: float = 0.6, scaling: float = 1 / 9, whiten_kernel: int = 2, depth: int = 2):
        super().__init__()
        whiten_width = 2 * 3 * whiten_kernel**2
        self.whiten = nn.Conv2d(3, whiten_width, kernel_size=whiten_kernel, padding=0, bias=True)
        self.whiten.weight.requires_grad = False
        self.whiten.bias.data.zero_()
        self.act = nn.GELU()
        self.block1 = ConvGroup(whiten_width, widths[0], bn_momentum, depth)
        self.block2 = ConvGroup(widths[0], widths[1], bn_momentum, depth)
        self.block3 = ConvGroup(widths[1], widths[2], bn_momentum, depth)
        self.pool = nn.MaxPool2d(3)
        self.head = nn.Linear(widths[2], num_classes, bias=False)
        self.scaling = scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.whiten(x))
        x = self.block3(self.block2(self.block1(x)))
        x = self.pool(x).flatten(1)
        return self.head(x) * self.scaling

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """images: normalised float NCHW. Sets the stem to +/- the scaled patch-covariance eigenvectors."""
        k = self.whiten.kernel_size
        c = images.shape[1]
        patches = images.unfold(2, k[0], 1).unfold(3, k[1], 1).transpose(1, 3).reshape(-1, c, k[0], k[1]).double()
        flat = patches.reshape(len(patches), -1)
        cov = flat.T @ flat / len(flat)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov)
        eigenvalues = eigenvalues.flip(0).view(-1, 1, 1, 1)
        eigenvectors = eigenvectors.T.reshape(c * k[0] * k[1], c, k[0], k[1]).flip(0)
        scaled = eigenvectors / torch.sqrt(eigenvalues + eps)
        self.whiten.weight.data[:] = torch.cat((scaled, -scaled)).float()
