"""Skip-gram with negative sampling (word2vec, Mikolov et al. 2013) in torch, to initialise the sentiment
embeddings from unlabeled text when no pretrained vectors are available offline.

Sequences are lists of token ids of the served vocabulary (0 = pad, 1 = unknown: both skipped).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from tqdm import tqdm


def skipgram_pairs(seqs: list[np.ndarray], window: int, rng: np.random.Generator,
                   keep_prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(centre, context) pairs with a random window size per centre (1..window), after frequent-word subsampling."""
    centres, contexts = [], []
    for s in seqs:
        s = s[s > 1]
        s = s[rng.random(len(s)) < keep_prob[s]]
        n = len(s)
        if n < 2:
            continue
        spans = rng.integers(1, window + 1, size=n)
        for off in range(1, window + 1):
            if off >= n:
                break
            ok = spans[: n - off] >= off  # centre i sees i+off
            centres.append(s[: n - off][ok])
            contexts.append(s[off:][ok])
            ok2 = spans[off:] >= off  # centre i+off sees i
            centres.append(s[off:][ok2])
            contexts.append(s[: n - off][ok2])
    if not centres:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(centres).astype(np.int64), np.concatenate(contexts).astype(np.int64)


def pretrain_embeddings(seqs: list[np.ndarray], vocab: int, dim: int, epochs: int, seed: int = 0, window: int = 5,
                        negatives: int = 5, batch: int = 4096, lr: float = 0.01, subsample: float = 1e-4,
                        quiet: bool = True) -> tuple[np.ndarray, dict]:
    """-> (input embeddings [vocab, dim] float32, summary)."""
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    counts = np.bincount(np.concatenate(seqs) if seqs else np.zeros(0, np.int64), minlength=vocab).astype(np.float64)
    counts[:2] = 0
    freq = counts / max(counts.sum(), 1)
    keep_prob = np.minimum(1.0, np.sqrt(subsample / np.maximum(freq, 1e-12)) + subsample / np.maximum(freq, 1e-12))
    noise = torch.as_tensor(counts ** 0.75 / max((counts ** 0.75).sum(), 1e-12), dtype=torch.float32)
    emb_in = torch.nn.Embedding(vocab, dim, sparse=True)
    emb_out = torch.nn.Embedding(vocab, dim, sparse=True)
    torch.nn.init.uniform_(emb_in.weight, -0.5 / dim, 0.5 / dim, generator=g)
    torch.nn.init.zeros_(emb_out.weight)
    opt = torch.optim.SparseAdam([*emb_in.parameters(), *emb_out.parameters()], lr=lr)
    t0 = time.time()
    losses = []
    total_pairs = 0
    for epoch in range(epochs):
        c, x = skipgram_pairs(seqs, window, rng, keep_prob)
        perm = rng.permutation(len(c))
        c, x = torch.from_numpy(c[perm]), torch.from_numpy(x[perm])
        total_pairs += len(c)
        tot = 0.0
        steps = math.ceil(len(c) / batch)
        for i in tqdm(range(steps), desc=f"skip-gram {epoch + 1}/{epochs}", leave=False, mininterval=10, disable=quiet):
            cb, xb = c[i * batch : (i + 1) * batch], x[i * batch : (i + 1) * batch]
            neg = torch.multinomial(noise, len(cb) * negatives, replacement=True, generator=g).view(len(cb), negatives)
            vc = emb_in(cb)  # [B,D]
            pos = (vc * emb_out(xb)).sum(-1)
            negs = torch.bmm(emb_out(neg), vc.unsqueeze(-1)).squeeze(-1)
            loss = -(torch.nn.functional.logsigmoid(pos).mean() + torch.nn.functional.logsigmoid(-negs).sum(-1).mean())
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss.detach())
        losses.append(round(tot / max(steps, 1), 4))
    w = emb_in.weight.detach().numpy().astype(np.float32)
    # match the scale of nn.Embedding's N(0,1) init per coordinate so that the downstream lr/dropout still fit
    w = w / (w[counts > 0].std() + 1e-12) if (counts > 0).any() else w
    return w, {"epochs": epochs, "window": window, "negatives": negatives, "dim": dim, "pairs_seen": int(total_pairs),
               "loss_by_epoch": losses, "seconds": round(time.time() - t0, 1)}
