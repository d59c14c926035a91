"""Acquisition groups inside the tumour training set, and sample weights that balance the classes within each group.

The tumour data mixes three public collections (figshare T1-CE tumours, SARTAJ, Br35H mostly no-tumour T2/FLAIR);
file names do not say which. Image statistics do separate them roughly (framing/padding, share of background,
tissue brightness and its histogram), so ``source_groups`` clusters the images on those statistics (k-means, seeded),
and ``balanced_weights`` gives every (group, class) cell the same total sampling weight (capped), so that no-tumour
scans that look like the tumour sources and tumour scans that look like the no-tumour sources count more: the
group (a proxy of the source/sequence) then carries less information about the label.
"""

from __future__ import annotations

import numpy as np

FG = 0.04


def image_stats(x_uint8: np.ndarray) -> np.ndarray:
    """[N,H,W,1] uint8 -> [N,F] float: padding rows/cols share, background share, tissue mean/std, edge brightness and
    an 8-bin histogram of tissue intensities (all in [0,1]-ish)."""
    x = x_uint8[..., 0].astype(np.float32) / 255.0
    fg = x > FG
    n_fg = np.maximum(fg.sum((1, 2)), 1)
    rows0 = (x.max(2) < 0.02).mean(1)
    cols0 = (x.max(1) < 0.02).mean(1)
    bg = 1.0 - fg.mean((1, 2))
    mu = (x * fg).sum((1, 2)) / n_fg
    sd = np.sqrt((((x - mu[:, None, None]) ** 2) * fg).sum((1, 2)) / n_fg)
    edge = np.concatenate([x[:, :4].reshape(len(x), -1), x[:, -4:].reshape(len(x), -1),
                           x[:, :, :4].reshape(len(x), -1), x[:, :, -4:].reshape(len(x), -1)], 1).mean(1)
    bins = np.linspace(FG, 1.0, 9)
    hist = np.stack([((x >= lo) & (x < hi)).sum((1, 2)) for lo, hi in zip(bins[:-1], bins[1:])], 1) / n_fg[:, None]
    return np.concatenate([np.stack([rows0, cols0, bg, mu, sd, edge], 1), hist], 1).astype(np.float64)


def kmeans(f: np.ndarray, k: int, seed: int = 0, iters: int = 50) -> np.ndarray:
    """Plain k-means (k-means++ start) on standardised features; returns labels [N] in 0..k-1."""
    rng = np.random.default_rng(seed)
    z = (f - f.mean(0)) / (f.std(0) + 1e-9)
    centres = [z[rng.integers(len(z))]]
    for _ in range(1, k):
        d = np.min(((z[:, None, :] - np.array(centres)[None]) ** 2).sum(-1), 1)
        centres.append(z[rng.choice(len(z), p=d / d.sum())])
    c = np.array(centres)
    lab = np.zeros(len(z), dtype=np.int64)
    for _ in range(iters):
        lab = ((z[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)
        new = np.array([z[lab == j].mean(0) if (lab == j).any() else c[j] for j in range(k)])
        if np.allclose(new, c):
            break
        c = new
    return lab


def source_groups(x_uint8: np.ndarray, k: int = 6, seed: int = 0) -> np.ndarray:
    return kmeans(image_stats(x_uint8), k, seed)


def balanced_weights(groups: np.ndarray, y: np.ndarray, cap: float = 8.0) -> np.ndarray:
    """Per-sample weights (mean 1): each (group, class) cell present gets the same total weight, then weights are
    capped at ``cap`` x the mean (a cell of 2 images must not dominate) and renormalised."""
    w = np.zeros(len(y), dtype=np.float64)
    cells = {(g, c): np.flatnonzero((groups == g) & (y == c)) for g in np.unique(groups) for c in np.unique(y)}
    cells = {key: idx for key, idx in cells.items() if len(idx)}
    for idx in cells.values():
        w[idx] = 1.0 / len(idx)
    w /= w.mean()
    w = np.minimum(w, cap)
    return w / w.mean()


def head_mask(x_uint8: np.ndarray, threshold: float = 0.06) -> np.ndarray:
    """The filled head silhouette (as mri_augment.filled_head_mask): [N,H,W] bool, a pixel is inside when there is
    tissue on both sides of it in its row and in its column."""
    m = x_uint8[..., 0] > threshold * 255

    def fill(axis: int) -> np.ndarray:
        a = np.maximum.accumulate(m, axis=axis)
        b = np.flip(np.maximum.accumulate(np.flip(m, axis), axis=axis), axis)
        return a & b

    return fill(2) & fill(1)


def head_area(x_uint8: np.ndarray, threshold: float = 0.06) -> np.ndarray:
    """Share of the image inside the filled head silhouette: [N] in [0,1]."""
    return head_mask(x_uint8, threshold).mean((1, 2))


def outside_head_stats(x_uint8: np.ndarray, margin: int = 3) -> np.ndarray:
    """[N,H,W,1] uint8 -> [N,5]: statistics of pixels that show no part of the head, for the shortcut probe.

    Padding rows and columns share (the original image's aspect ratio), then the mean, std and 99th percentile of
    the background outside the head silhouette grown by ``margin`` pixels (scanner noise, export artefacts). A
    classifier that separates tumour from no tumour on these alone has learned the acquisition, not anatomy."""
    x = x_uint8[..., 0].astype(np.float32) / 255.0
    near = np.pad(head_mask(x_uint8), ((0, 0), (margin, margin), (margin, margin)))
    size = 2 * margin + 1
    near = np.lib.stride_tricks.sliding_window_view(near, (size, size), axis=(1, 2)).any((-2, -1))
    out = np.zeros((len(x), 5), np.float64)
    out[:, 0] = (x.max(2) < 0.02).mean(1)
    out[:, 1] = (x.max(1) < 0.02).mean(1)
    for i, (img, inside) in enumerate(zip(x, near)):
        bg = img[~inside]
        if bg.size:
            out[i, 2:] = bg.mean(), bg.std(), np.percentile(bg, 99)
    return out


def area_groups(x_uint8: np.ndarray, k: int = 6) -> np.ndarray:
    """Quantile bins (k) of the head area: balancing the classes within them makes head/brain size uninformative
    (tumour slices in the training data show smaller heads on average, the external set the other way round)."""
    a = head_area(x_uint8)
    edges = np.quantile(a, np.linspace(0, 1, k + 1)[1:-1])
    return np.searchsorted(edges, a, side="right").astype(np.int64)
