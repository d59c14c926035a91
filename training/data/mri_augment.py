"""Acquisition-robustness augmentation and per-image intensity standardisation for 2D MRI slices.

Every function takes float images ``x01`` [B,1,H,W] in [0,1] (background ~0) and a ``torch.Generator``, and is
per-image random. The aim is to make a tumour detector trained on one mix of sources (skull-on T1-CE / T2) hold up
on scans from elsewhere (for example skull-stripped FLAIR): randomise what depends on the scanner and the sequence
(contrast curve, gamma, bias field, blur, noise, framing, skull) and keep the anatomy.

``ForegroundNorm`` is the per-image standardisation; it lives here and in the exported graph
(``training/exporters/tumor.py``), so training and serving compute the same thing.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

FG_THRESHOLD = 0.04  # pixels above ~10/255 count as tissue (the backgrounds here are black padding / air)


class ForegroundNorm(nn.Module):
    """Per-image standardisation over foreground pixels (x > FG_THRESHOLD), NCHW float in [0,1] -> NCHW float.

    mode ``fg_z``: z = (x - mean_fg) / std_fg, clipped to [-clip, clip]; background pixels are set to -clip.
    mode ``fg_scale``: x / (mean_fg + 2 std_fg), clipped to [0, 1.5], then mapped to about zero mean / unit std by
    fixed constants; background stays the lowest value.
    Both remove each image's own brightness and contrast scale, which differ by source.
    """

    def __init__(self, mode: str = "fg_z", clip: float = 3.0, threshold: float = FG_THRESHOLD):
        super().__init__()
        if mode not in ("fg_z", "fg_scale"):
            raise ValueError(f"unknown normalisation mode {mode!r}")
        self.mode, self.clip, self.threshold = mode, float(clip), float(threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = (x > self.threshold).to(x.dtype)
        cnt = m.sum(dim=(2, 3), keepdim=True) + 1.0
        mu = (x * m).sum(dim=(2, 3), keepdim=True) / cnt
        var = (((x - mu) * m) ** 2).sum(dim=(2, 3), keepdim=True) / cnt
        sd = torch.sqrt(var + 1e-4)
        if self.mode == "fg_z":
            z = torch.clamp((x - mu) / sd, -self.clip, self.clip)
            return z * m - self.clip * (1.0 - m)
        s = torch.clamp(x / (mu + 2.0 * sd), 0.0, 1.5)
        return (s - 0.35) / 0.35


def _u(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=gen)


def filled_head_mask(x01: torch.Tensor, threshold: float = 0.06) -> torch.Tensor:
    """The head's silhouette: threshold, then fill along rows and columns (a pixel is inside when there is tissue
    on both sides of it in its row AND in its column). [B,1,H,W] float 0/1."""
    m = (x01 > threshold).to(torch.uint8)

    def fill(dim: int) -> torch.Tensor:
        a = torch.cummax(m, dim=dim).values
        b = torch.cummax(m.flip(dim), dim=dim).values.flip(dim)
        return a & b

    return (fill(3) & fill(2)).to(x01.dtype)


def erode(mask: torch.Tensor, k: int) -> torch.Tensor:
    """Binary erosion by a (2k+1)x(2k+1) square."""
    if k <= 0:
        return mask
    return 1.0 - F.max_pool2d(1.0 - mask, kernel_size=2 * k + 1, stride=1, padding=k)


def skull_strip(x01: torch.Tensor, gen: torch.Generator, p: float = 0.5, k_min: int = 2, k_max: int = 7) -> torch.Tensor:
    """With probability p per image: black out everything outside the head silhouette eroded by k (random in
    [k_min, k_max] pixels at 64x64), which removes scalp and skull like a skull-stripped scan."""
    b = len(x01)
    apply = _u(gen, b) < p
    if not apply.any():
        return x01
    k = torch.randint(k_min, k_max + 1, (b,), generator=gen)
    mask = filled_head_mask(x01)
    out = x01.clone()
    for kk in k[apply].unique().tolist():
        sel = apply & (k == kk)
        out[sel] = x01[sel] * erode(mask[sel], int(kk))
    return out


def affine(x01: torch.Tensor, gen: torch.Generator, rotate_deg: float, scale_min: float, scale_max: float,
           shift: float, hflip: bool = True) -> torch.Tensor:
    """Mirror, rotation, zoom (content scaled by a factor in [scale_min, scale_max]; < 1 zooms out) and shift."""
    b = len(x01)
    if hflip:
        flip = _u(gen, b) < 0.5
        x01 = torch.where(flip.view(-1, 1, 1, 1), x01.flip(-1), x01)
    angle = (_u(gen, b) * 2 - 1) * math.radians(rotate_deg)
    log_s = math.log(scale_min) + _u(gen, b) * (math.log(scale_max) - math.log(scale_min))
    scale = torch.exp(log_s)
    tx, ty = (_u(gen, b) * 2 - 1) * shift * 2, (_u(gen, b) * 2 - 1) * shift * 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x01.shape), align_corners=False)
    return F.grid_sample(x01, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def monotone_remap(x01: torch.Tensor, gen: torch.Generator, p: float = 0.5, knots: int = 4) -> torch.Tensor:
    """A random increasing piecewise-linear intensity curve per image (0 -> 0, 1 -> 1): a histogram-equalisation-like
    change of contrast between tissues (never an inversion)."""
    b = len(x01)
    inc = _u(gen, b, knots) + 0.15
    inc = inc / inc.sum(1, keepdim=True)
    ys = torch.cat([torch.zeros(b, 1), inc.cumsum(1)], 1)  # [B, knots+1]
    xi = x01.clamp(0, 1) * knots
    idx = xi.floor().clamp(max=knots - 1)
    frac = xi - idx
    idx = idx.long().view(b, -1)
    y = torch.gather(ys, 1, idx) + frac.view(b, -1) * torch.gather(inc, 1, idx)
    apply = (_u(gen, b) < p).view(-1, 1, 1, 1)
    return torch.where(apply, y.view_as(x01), x01)


def random_curve(x01: torch.Tensor, gen: torch.Generator, p: float = 0.5, knots: int = 5) -> torch.Tensor:
    """A random piecewise-linear intensity curve per image that need NOT be increasing (0 -> 0, so the background
    stays black; the other knots uniform in [0.1, 1]): tissues get random relative intensities, as between MRI
    sequences (T1 vs T2 vs FLAIR), so the sequence cannot stand in for the label. Not a plain inversion."""
    b = len(x01)
    ys = torch.cat([torch.zeros(b, 1), 0.1 + 0.9 * _u(gen, b, knots)], 1)  # [B, knots+1]
    xi = x01.clamp(0, 1) * knots
    idx = xi.floor().clamp(max=knots - 1)
    frac = (xi - idx).view(b, -1)
    idx = idx.long().view(b, -1)
    lo, hi = torch.gather(ys, 1, idx), torch.gather(ys, 1, idx + 1)
    y = lo + frac * (hi - lo)
    apply = (_u(gen, b) < p).view(-1, 1, 1, 1)
    return torch.where(apply, y.view_as(x01), x01)


def invert(x01: torch.Tensor, gen: torch.Generator, p: float = 0.3) -> torch.Tensor:
    """With probability p per image: invert the intensities inside the head (x -> 1 - x on the filled head mask,
    background stays black), so that dark-CSF and bright-CSF sequences (T1 vs T2) both occur with either label."""
    b = len(x01)
    apply = (_u(gen, b) < p).view(-1, 1, 1, 1)
    if not apply.any():
        return x01
    mask = filled_head_mask(x01, threshold=FG_THRESHOLD)
    inv = (1.0 - x01.clamp(0, 1)) * mask
    return torch.where(apply, inv, x01)


def bias_field(x01: torch.Tensor, gen: torch.Generator, p: float = 0.5, strength: float = 0.35, grid: int = 3) -> torch.Tensor:
    """Smooth multiplicative intensity inhomogeneity: exp(upsampled coarse gaussian field)."""
    b, _, h, w = x01.shape
    coarse = torch.randn(b, 1, grid, grid, generator=gen) * (_u(gen, b) * strength).view(-1, 1, 1, 1)
    field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True).exp()
    apply = (_u(gen, b) < p).view(-1, 1, 1, 1)
    return torch.where(apply, x01 * field, x01)


def gaussian_blur(x01: torch.Tensor, gen: torch.Generator, p: float = 0.3, sigma_min: float = 0.3,
                  sigma_max: float = 1.0) -> torch.Tensor:
    b = len(x01)
    sigma = sigma_min + _u(gen, b) * (sigma_max - sigma_min)
    r = torch.arange(-2, 3, dtype=x01.dtype)
    k1 = torch.exp(-(r.view(1, -1) ** 2) / (2 * sigma.view(-1, 1) ** 2))
    k1 = k1 / k1.sum(1, keepdim=True)
    k2 = (k1.view(b, 5, 1) * k1.view(b, 1, 5)).view(b, 1, 5, 5)
    blurred = F.conv2d(F.pad(x01.transpose(0, 1), (2, 2, 2, 2), mode="replicate"), k2, groups=b).transpose(0, 1)
    apply = (_u(gen, b) < p).view(-1, 1, 1, 1)
    return torch.where(apply, blurred, x01)


def gaussian_noise(x01: torch.Tensor, gen: torch.Generator, p: float = 0.3, sigma_max: float = 0.04) -> torch.Tensor:
    b = len(x01)
    sigma = (_u(gen, b) * sigma_max * (_u(gen, b) < p)).view(-1, 1, 1, 1)
    return x01 + torch.randn(x01.shape, generator=gen) * sigma


def gamma_contrast(x01: torch.Tensor, gen: torch.Generator, gamma_max: float = 2.0, contrast: float = 0.25,
                   brightness: float = 0.08) -> torch.Tensor:
    """Gamma (log-uniform in [1/gamma_max, gamma_max]), contrast and brightness jitter (brightness on tissue only,
    so the black background stays black)."""
    b = len(x01)
    gamma = torch.exp((_u(gen, b) * 2 - 1) * math.log(gamma_max)).view(-1, 1, 1, 1)
    c = (1 + (_u(gen, b) * 2 - 1) * contrast).view(-1, 1, 1, 1)
    br = ((_u(gen, b) * 2 - 1) * brightness).view(-1, 1, 1, 1)
    x = x01.clamp(0, 1) ** gamma * c
    return x + br * (x > FG_THRESHOLD).to(x.dtype)


def strong_augment(x01: torch.Tensor, gen: torch.Generator, *, rotate_deg: float = 15.0, scale_min: float = 0.65,
                   scale_max: float = 1.15, shift: float = 0.08, skull_p: float = 0.5, remap_p: float = 0.5,
                   bias_p: float = 0.5, blur_p: float = 0.3, noise_p: float = 0.3, gamma_max: float = 1.7,
                   curve_p: float = 0.0, invert_p: float = 0.0) -> torch.Tensor:
    """The full chain: skull strip -> geometry -> contrast curve (-> inversion) -> gamma/contrast/brightness -> bias field ->
    blur -> noise; output clamped to [0,1]."""
    x = skull_strip(x01, gen, p=skull_p)
    x = affine(x, gen, rotate_deg, scale_min, scale_max, shift)
    x = monotone_remap(x, gen, p=remap_p)
    if curve_p > 0:
        x = random_curve(x, gen, p=curve_p)
    if invert_p > 0:
        x = invert(x, gen, p=invert_p)
    x = gamma_contrast(x, gen, gamma_max=gamma_max)
    x = bias_field(x, gen, p=bias_p)
    x = gaussian_blur(x, gen, p=blur_p)
    x = gaussian_noise(x, gen, p=noise_p)
    return x.clamp(0, 1)
