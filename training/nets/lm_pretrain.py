"""Bidirectional language-model pretraining of a ``SentimentNet``'s embedding and recurrent cells on unlabeled text
(the ULMFiT / ELMo idea at a tiny scale): the forward cell predicts the next token, the backward cell the previous
one. Negative sampling instead of a full softmax keeps it cheap on CPU (cost ~ hidden x (1 + negatives) per token).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from training.data.sentiment import length_batches, pad_batch
from training.nets.sequence import SentimentNet, reverse_valid
from training.seqtools import one_cycle


def _ns_loss(h: torch.Tensor, target: torch.Tensor, out: torch.nn.Embedding, noise: torch.Tensor, k: int,
             g: torch.Generator) -> torch.Tensor:
    """h [N,H] context states, target [N] ids -> mean negative-sampling loss."""
    neg = torch.multinomial(noise, len(target) * k, replacement=True, generator=g).view(len(target), k)
    pos = (h * out(target)).sum(-1)
    negs = torch.bmm(out(neg), h.unsqueeze(-1)).squeeze(-1)
    return -(F.logsigmoid(pos) + F.logsigmoid(-negs).sum(-1)).mean()


def pretrain_lm(net: SentimentNet, seqs: list[np.ndarray], epochs: int, seed: int = 0, negatives: int = 20,
                batch: int = 128, lr: float = 2e-3, quiet: bool = True) -> dict:
    """Trains net.emb, net.fwd and net.bwd in place; returns a summary."""
    if net.bwd is None:
        raise ValueError("bidirectional net expected")
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    seqs = [s for s in seqs if len(s) >= 2]
    vocab, hidden = net.emb.num_embeddings, net.fwd.hidden_size
    counts = np.bincount(np.concatenate(seqs), minlength=vocab).astype(np.float64)
    counts[:2] = 0
    noise = torch.as_tensor(counts ** 0.75 / (counts ** 0.75).sum(), dtype=torch.float32)
    out_f = torch.nn.Embedding(vocab, hidden)
    out_b = torch.nn.Embedding(vocab, hidden)
    for e in (out_f, out_b):
        torch.nn.init.normal_(e.weight, 0, 0.05, generator=g)
    params = [*net.emb.parameters(), *net.fwd.parameters(), *net.bwd.parameters(), *out_f.parameters(),
              *out_b.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    lengths = np.asarray([len(s) for s in seqs])
    steps_per_epoch = math.ceil(len(seqs) / batch)
    sched = one_cycle(opt, lr, steps_per_epoch * epochs, 0.05)
    t0 = time.time()
    losses = []
    net.train()
    for epoch in range(epochs):
        tot = n = 0.0
        for idx in tqdm(length_batches(lengths, batch, rng), desc=f"LM {epoch + 1}/{epochs}", leave=False,
                        mininterval=10, disable=quiet):
            ids_np, len_np = pad_batch([seqs[j] for j in idx])
            ids, ln = torch.from_numpy(ids_np), torch.from_numpy(len_np)
            t = torch.arange(ids.shape[1]).unsqueeze(0)
            x = net.emb_drop(net.emb(ids))
            hf, _ = net.fwd(x)
            hb = reverse_valid(net.bwd(reverse_valid(x, ln))[0], ln)
            m_f = (t + 1 < ln.unsqueeze(1))  # state at t predicts t+1
            m_b = (t >= 1) & (t < ln.unsqueeze(1))  # state at t predicts t-1
            ctx_f = hf[:, :-1][m_f[:, :-1]]
            tgt_f = ids[:, 1:][m_f[:, :-1]]
            ctx_b = hb[:, 1:][m_b[:, 1:]]
            tgt_b = ids[:, :-1][m_b[:, 1:]]
            loss = 0.5 * (_ns_loss(ctx_f, tgt_f, out_f, noise, negatives, g)
                          + _ns_loss(ctx_b, tgt_b, out_b, noise, negatives, g))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            if sched.last_epoch < sched.total_steps - 1:
                sched.step()
            tot += float(loss.detach()) * len(idx)
            n += len(idx)
        losses.append(round(tot / max(n, 1), 4))
    with torch.no_grad():
        net.emb.weight[0].zero_()
    return {"epochs": epochs, "negatives": negatives, "sequences": len(seqs), "tokens": int(lengths.sum()),
            "loss_by_epoch": losses, "seconds": round(time.time() - t0, 1)}
