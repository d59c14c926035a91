"""Pre-LN Transformers for generation: an encoder-decoder (translation) and a decoder-only LM (chat).

Both are written out by hand (no ``nn.Transformer``) so that the incremental-decoding step exports
cleanly: a decoder step takes this step's tokens plus the key/value cache of every earlier step and
returns the logits of the last position and the grown cache, so the prefix is never recomputed.

Cache layout, shared with the service (service/generation): ``[layers, batch, heads, time, head_dim]``.
Masks are int64 ``1 = attend`` / ``0 = padding``, HF-style; positions are explicit so that left-padded
rows of a batch each count from their own first real token.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class TransformerConfig:
    vocab_size: int = 8000
    d_model: int = 256
    heads: int = 4
    encoder_layers: int = 3
    decoder_layers: int = 3
    ff: int = 1024
    dropout: float = 0.1
    max_positions: int = 512
    pad_id: int = 0

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads

    def to_dict(self) -> dict:
        return asdict(self)


def sinusoid_table(n: int, d: int) -> torch.Tensor:
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    inv = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    table = torch.zeros(n, d)
    table[:, 0::2] = torch.sin(pos * inv)
    table[:, 1::2] = torch.cos(pos * inv)
    return table


class Attention(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.head_dim = heads, d // heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.dropout = dropout

    def split(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, D] -> [B, H, T, dh]
        b, t, _ = x.shape
        return x.view(b, t, self.heads, self.head_dim).transpose(1, 2)

    def project_kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split(self.k(x)), self.split(self.v(x))

    def attend(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """``allowed``: bool, broadcastable to [B, H, Tq, Tk]."""
        q = self.split(self.q(x))
        if torch.onnx.is_in_onnx_export() or not self.training:
            # explicit math: exports to plain MatMul/Softmax and matches ORT bit-for-bit-ish
            scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim))
            scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
            out = torch.softmax(scores, dim=-1) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=self.dropout)
        b, _, t, _ = out.shape
        return self.o(out.transpose(1, 2).reshape(b, t, -1))


class FeedForward(nn.Sequential):
    def __init__(self, d: int, ff: int, dropout: float):
        super().__init__(nn.Linear(d, ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff, d))


class EncoderLayer(nn.Module):
    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(c.d_model), nn.LayerNorm(c.d_model)
        self.attn = Attention(c.d_model, c.heads, c.dropout)
        self.ff = FeedForward(c.d_model, c.ff, c.dropout)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        k, v = self.attn.project_kv(h)
        x = x + self.drop(self.attn.attend(h, k, v, allowed))
        return x + self.drop(self.ff(self.norm2(x)))


class DecoderLayer(nn.Module):
    """Self-attention (cached) + optional cross-attention + feed-forward."""

    def __init__(self, c: TransformerConfig, cross: bool):
        super().__init__()
        self.norm1, self.norm3 = nn.LayerNorm(c.d_model), nn.LayerNorm(c.d_model)
        self.self_attn = Attention(c.d_model, c.heads, c.dropout)
        self.cross_attn = Attention(c.d_model, c.heads, c.dropout) if cross else None
        self.norm2 = nn.LayerNorm(c.d_model) if cross else None
        self.ff = FeedForward(c.d_model, c.ff, c.dropout)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x, self_allowed, past_k=None, past_v=None, cross_k=None, cross_v=None, cross_allowed=None):
        h = self.norm1(x)
        k, v = self.self_attn.project_kv(h)
        if past_k is not None:
            k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
        x = x + self.drop(self.self_attn.attend(h, k, v, self_allowed))
        if self.cross_attn is not None:
            x = x + self.drop(self.cross_attn.attend(self.norm2(x), cross_k, cross_v, cross_allowed))
        return x + self.drop(self.ff(self.norm3(x))), k, v


class Embedder(nn.Module):
    """Token embedding * sqrt(d) + sinusoidal position (looked up by explicit position ids)."""

    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.tokens = nn.Embedding(c.vocab_size, c.d_model, padding_idx=c.pad_id)
        nn.init.normal_(self.tokens.weight, std=c.d_model ** -0.5)
        with torch.no_grad():
            self.tokens.weight[c.pad_id].zero_()
        self.register_buffer("positions", sinusoid_table(c.max_positions, c.d_model), persistent=False)
        self.scale = math.sqrt(c.d_model)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        return self.drop(self.tokens(ids) * self.scale + self.positions[position_ids])

    def logits(self, h: torch.Tensor) -> torch.Tensor:  # tied output projection
        return h @ self.tokens.weight.t()


def causal_allowed(attention_mask: torch.Tensor, new: int) -> torch.Tensor:
    """[B, P+T] 1/0 mask -> bool [B, 1, T, P+T]: real keys at or before each query's own position."""
    total = attention_mask.shape[1]
    q_pos = torch.arange(new, device=attention_mask.device) + (total - new)
    k_pos = torch.arange(total, device=attention_mask.device)
    causal = k_pos[None, :] <= q_pos[:, None]  # [T, P+T]
    return causal[None, None] & (attention_mask[:, None, None, :] > 0)


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position of each token counting only real ones (left padding gets 0)."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


class DecoderStack(nn.Module):
    def __init__(self, c: TransformerConfig, layers: int, cross: bool):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(c, cross) for _ in range(layers))
        self.norm = nn.LayerNorm(c.d_model)

    def forward(self, x, self_allowed, past_k=None, past_v=None, cross_k=None, cross_v=None, cross_allowed=None):
        new_k, new_v = [], []
        for i, layer in enumerate(self.layers):
            x, k, v = layer(x, self_allowed,
                            None if past_k is None else past_k[i], None if past_v is None else past_v[i],
                            None if cross_k is None else cross_k[i], None if cross_v is None else cross_v[i],
                            cross_allowed)
            new_k.append(k)
            new_v.append(v)
        return self.norm(x), torch.stack(new_k), torch.stack(new_v)


class Seq2SeqTransformer(nn.Module):
    """Encoder-decoder with one shared (joint-BPE) embedding, tied to the output projection."""

    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.config = c
        self.embed = Embedder(c)
        self.encoder = nn.ModuleList(EncoderLayer(c) for _ in range(c.encoder_layers))
        self.encoder_norm = nn.LayerNorm(c.d_model)
        self.decoder = DecoderStack(c, c.decoder_layers, cross=True)

    def encode(self, src_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = (src_ids != self.config.pad_id).long()
        x = self.embed(src_ids, positions_from_mask(mask))
        allowed = (mask > 0)[:, None, None, :]
        for layer in self.encoder:
            x = layer(x, allowed)
        return self.encoder_norm(x), mask

    def cross_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ks, vs = zip(*(layer.cross_attn.project_kv(memory) for layer in self.decoder.layers))
        return torch.stack(ks), torch.stack(vs)

    def forward(self, src_ids: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits [B, T, V] (training)."""
        memory, src_mask = self.encode(src_ids)
        cross_k, cross_v = self.cross_kv(memory)
        tgt_mask = (tgt_in != self.config.pad_id).long()
        tgt_mask[:, 0] = 1  # BOS
        x = self.embed(tgt_in, positions_from_mask(tgt_mask))
        h, _, _ = self.decoder(x, causal_allowed(tgt_mask, tgt_in.shape[1]), cross_k=cross_k, cross_v=cross_v,
                               cross_allowed=(src_mask > 0)[:, None, None, :])
        return self.embed.logits(h)


class DecoderOnlyLM(nn.Module):
    """GPT-style LM over a chat transcript (role tokens + text + end-of-turn)."""

    def __init__(self, c: TransformerConfig):
        super().__init__()
        self.config = c
        self.embed = Embedder(c)
        self.decoder = DecoderStack(c, c.decoder_layers, cross=False)

    def forward(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(ids)
        x = self.embed(ids, positions_from_mask(attention_mask))
        h, _, _ = self.decoder(x, causal_allowed(attention_mask, ids.shape[1]))
        return self.embed.logits(h)


# -- export wrappers (ONNX graphs the service runs) -------------------------------------------

class EncoderExport(nn.Module):
    """src_ids [B,S] -> cross_key, cross_value [L,B,H,S,dh], encoder_attention_mask [B,S]."""

    def __init__(self, model: Seq2SeqTransformer):
        super().__init__()
        self.model = model

    def forward(self, src_ids: torch.Tensor):
        memory, mask = self.model.encode(src_ids)
        k, v = self.model.cross_kv(memory)
        return k, v, mask


class Seq2SeqStepExport(nn.Module):
    """One incremental decoder step of the translator."""

    def __init__(self, model: Seq2SeqTransformer):
        super().__init__()
        self.model = model

    def forward(self, input_ids, position_ids, attention_mask, past_key, past_value,
                cross_key, cross_value, encoder_attention_mask):
        m = self.model
        x = m.embed(input_ids, position_ids)
        h, k, v = m.decoder(x, causal_allowed(attention_mask, input_ids.shape[1]), past_key, past_value,
                            cross_key, cross_value, (encoder_attention_mask > 0)[:, None, None, :])
        return m.embed.logits(h[:, -1]), k, v


class LMStepExport(nn.Module):
    """One incremental step (or a prompt prefill) of the chat LM."""

    def __init__(self, model: DecoderOnlyLM):
        super().__init__()
        self.model = model

    def forward(self, input_ids, position_ids, attention_mask, past_key, past_value):
        m = self.model
        x = m.embed(input_ids, position_ids)
        h, k, v = m.decoder(x, causal_allowed(attention_mask, input_ids.shape[1]), past_key, past_value)
        return m.embed.logits(h[:, -1]), k, v
