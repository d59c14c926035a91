"""Recurrent nets for the sequence tasks. Every graph takes the served inputs directly (token ids +
lengths; raw volumes + hour of week; raw closes) so that all preprocessing is inside the ONNX export."""

from __future__ import annotations

import math

import torch
from torch import nn

from training.nets.quantile import monotone_quantiles

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


def make_rnn(arch: str, inp: int, hidden: int, layers: int = 1, dropout: float = 0.0) -> nn.Module:
    kw = {"nonlinearity": "tanh"} if arch == "rnn" else {}
    return CELLS[arch](inp, hidden, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0, **kw)


def reverse_valid(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each row's first ``lengths`` steps, leave the padding in place (an involution)."""
    t = torch.arange(x.shape[1], device=x.device).unsqueeze(0)
    idx = torch.where(t < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - t, t)
    return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[2]))


class SentimentNet(nn.Module):
    """Embedding -> (bi)directional RNN/GRU/LSTM -> masked max+mean pooling -> 2 logits.

    Padding invariance: the forward pass only looks at each row's first ``lengths`` tokens (causal
    forward direction; the backward direction runs on the row reversed within its length; pooling is
    masked), so extra right-padding never changes a row's output. No pack_padded_sequence (no export).
    """

    def __init__(self, vocab_size: int, arch: str = "lstm", emb_dim: int = 128, hidden: int = 128,
                 bidirectional: bool = True, dropout: float = 0.3, emb_dropout: float = 0.1):
        super().__init__()
        self.arch = arch
        self.bidirectional = bidirectional
        self.emb = nn.Embedding(vocab_size, emb_dim, padding_idx=0)
        self.fwd = make_rnn(arch, emb_dim, hidden)
        self.bwd = make_rnn(arch, emb_dim, hidden) if bidirectional else None
        width = hidden * (2 if bidirectional else 1)
        self.emb_drop = nn.Dropout(emb_dropout)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Sequential(nn.Linear(2 * width, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 2))

    def features(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        seq = input_ids.shape[1]
        lengths = torch.clamp(lengths, min=1).clamp(max=seq)
        mask = (torch.arange(seq, device=input_ids.device).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(-1)
        x = self.emb_drop(self.emb(input_ids))
        out, _ = self.fwd(x)
        if self.bwd is not None:
            back, _ = self.bwd(reverse_valid(x, lengths))
            out = torch.cat([out, reverse_valid(back, lengths)], dim=-1)
        m = mask.to(out.dtype)
        mean = (out * m).sum(1) / m.sum(1)
        mx = torch.where(mask, out, torch.full_like(out, -1e4)).amax(1)
        return self.drop(torch.cat([mx, mean], dim=-1))

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(input_ids, lengths))


class SentimentExport(nn.Module):
    """(input_ids int64 [B,T], lengths int64 [B]) -> probabilities [B,2] (negative, positive)."""

    def __init__(self, net: SentimentNet):
        super().__init__()
        self.net = net

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(input_ids, lengths), dim=-1)


def _harmonics(phase: torch.Tensor, k: int) -> list[torch.Tensor]:
    """sin/cos of 2*pi*j*phase for j = 1..k (phase in cycles)."""
    out = []
    for j in range(1, k + 1):
        out += [torch.sin(2 * math.pi * j * phase), torch.cos(2 * math.pi * j * phase)]
    return out


class TrafficNet(nn.Module):
    """Raw hourly volumes [B,168] + hour_of_week of history[0] -> quantiles [B,24,3] in raw volume units.

    In the graph: volume scaling, calendar features (hour-of-day / day-of-week harmonics from
    hour_of_week + arange), the train hour-of-week mean profile (a buffer) as the level the net corrects.
    The LSTM reads the week as 7 daily steps of 24 hourly values (+ calendar of each day's start).
    """

    def __init__(self, profile: torch.Tensor, scale: float, hidden: int = 128, layers: int = 2, dropout: float = 0.1):
        super().__init__()
        self.register_buffer("profile", profile.float().clone())  # [168] train hour-of-week mean, raw units
        self.register_buffer("inv_scale", torch.tensor(1.0 / scale))
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.register_buffer("widen", torch.ones(24))  # conformal widening per horizon (set at export)
        step_in = 24 + 24 + 6  # volumes, the profile at those hours, calendar of the day start
        self.lstm = nn.LSTM(step_in, hidden, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        head_in = hidden + 24 * 3 + 6
        self.head = nn.Sequential(nn.Linear(head_in, 256), nn.GELU(), nn.Dropout(dropout), nn.Linear(256, 24 * 3))

    def _calendar(self, how: torch.Tensor) -> torch.Tensor:
        how = how.to(torch.float32)
        feats = _harmonics(how / 168.0, 1) + _harmonics(torch.remainder(how, 24.0) / 24.0, 2)
        return torch.stack(feats, dim=-1)

    def forward(self, history: torch.Tensor, hour_of_week: torch.Tensor) -> torch.Tensor:
        b = history.shape[0]
        hours = torch.remainder(hour_of_week.unsqueeze(1) + torch.arange(168, device=history.device).unsqueeze(0), 168)
        prof = self.profile[hours] * self.inv_scale  # [B,168]; the forecast hours repeat the history's
        x = history * self.inv_scale
        day_start = hours[:, ::24]  # [B,7]
        steps = torch.cat([x.view(b, 7, 24), prof.view(b, 7, 24), self._calendar(day_start)], dim=-1)
        out, _ = self.lstm(steps)
        feats = torch.cat([out[:, -1], x[:, :24], x[:, -24:], prof[:, :24], self._calendar(hour_of_week)], dim=-1)
        raw = self.head(feats).view(b, 24, 3)
        base = prof[:, :24]
        raw = torch.stack([raw[..., 0], raw[..., 1] + base, raw[..., 2]], dim=-1)
        return monotone_quantiles(raw, self.widen.view(1, 24)) * self.scale


class TrafficCalendarNet(TrafficNet):
    """TrafficNet + the request's calendar: ``calendar`` [B,192,4] per hour of history and forecast (US federal
    holiday, low day, time of year; service/calendar.py computes it from the request's timestamps).

    The level the net corrects is the hour-of-week profile, with holiday hours taken from the Sunday profile at the
    same hour of day (the known holiday effect as a prior); the LSTM's daily steps carry each day's flags, so a
    holiday in the history week is not mistaken for a level change.
    """

    def __init__(self, profile: torch.Tensor, scale: float, hidden: int = 128, layers: int = 2, dropout: float = 0.1,
                 n_calendar: int = 4):
        super().__init__(profile, scale, hidden, layers, dropout)
        self.n_calendar = n_calendar
        step_in = 24 + 24 + 6 + 24 + n_calendar  # volumes, profile, day-start calendar, holiday prior, day's flags
        self.lstm = nn.LSTM(step_in, hidden, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        head_in = hidden + 24 * 5 + 6 + 24 * 2 + n_calendar
        self.head = nn.Sequential(nn.Linear(head_in, 256), nn.GELU(), nn.Dropout(dropout), nn.Linear(256, 24 * 3))

    def forward(self, history: torch.Tensor, hour_of_week: torch.Tensor, calendar: torch.Tensor) -> torch.Tensor:
        b = history.shape[0]
        hours = torch.remainder(hour_of_week.unsqueeze(1) + torch.arange(192, device=history.device).unsqueeze(0), 168)
        prof = self.profile[hours] * self.inv_scale  # [B,192]
        sunday = self.profile[144 + torch.remainder(hours, 24)] * self.inv_scale
        hol = calendar[..., 0]
        prior = prof + hol * (sunday - prof)  # [B,192]: holiday hours look like a Sunday
        x = history * self.inv_scale
        day_start = hours[:, :168:24]  # [B,7]
        day_flags = calendar[:, :168].reshape(b, 7, 24, self.n_calendar).mean(2)
        steps = torch.cat([x.view(b, 7, 24), prof[:, :168].view(b, 7, 24), self._calendar(day_start),
                           prior[:, :168].view(b, 7, 24), day_flags], dim=-1)
        out, _ = self.lstm(steps)
        fut = calendar[:, 168:]
        feats = torch.cat([out[:, -1], x[:, :24], x[:, -24:], prof[:, 168:], prior[:, 168:], prior[:, :24],
                           self._calendar(hour_of_week), fut[..., 0], fut[..., 1], fut[:, 0]], dim=-1)
        raw = self.head(feats).view(b, 24, 3)
        base = prior[:, 168:]
        raw = torch.stack([raw[..., 0], raw[..., 1] + base, raw[..., 2]], dim=-1)
        return monotone_quantiles(raw, self.widen.view(1, 24)) * self.scale


class PriceNet(nn.Module):
    """Raw closes [B,60] -> price quantiles [B,5,3] via cumulative log returns.

    In the graph: log returns, divided by the window's own volatility (scale-free in price and in
    volatility), an LSTM over the 59 returns, quantiles of the cumulative log return for days 1..5 in
    volatility units, then ``last_close * exp(vol * q)``.
    """

    def __init__(self, hidden: int = 64, layers: int = 1, dropout: float = 0.1, horizon: int = 5):
        super().__init__()
        self.horizon = horizon
        self.register_buffer("widen", torch.ones(horizon))
        self.lstm = nn.LSTM(2, hidden, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.head = nn.Sequential(nn.Linear(hidden + 3, 64), nn.GELU(), nn.Dropout(dropout), nn.Linear(64, horizon * 3))
        self.register_buffer("sqrt_h", torch.sqrt(torch.arange(1, horizon + 1, dtype=torch.float32)))

    def cum_returns(self, closes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (quantiles of the cumulative log return [B,H,3], log of the last close [B], window volatility [B,1])."""
        logc = torch.log(torch.clamp(closes, min=1e-6))
        r = logc[:, 1:] - logc[:, :-1]  # [B,59]
        vol = torch.sqrt((r * r).mean(1, keepdim=True) + 1e-8)  # [B,1]
        z = r / vol
        steps = torch.stack([torch.clamp(z, -8, 8), torch.log(vol).expand_as(z) * 0.1], dim=-1)
        out, _ = self.lstm(steps)
        vol20 = torch.sqrt((r[:, -20:] ** 2).mean(1, keepdim=True) + 1e-8)
        mom = z[:, -5:].mean(1, keepdim=True)
        feats = torch.cat([out[:, -1], torch.log(vol20 / vol), mom, torch.log(vol) * 0.1], dim=-1)
        raw = self.head(feats).view(-1, self.horizon, 3)
        # spreads start near the random-walk width (1.28 sigma sqrt(h)); the net learns corrections
        sig = self.sqrt_h.view(1, -1)
        raw = torch.stack([raw[..., 0] + 0.6 * sig, raw[..., 1] * 0.1, raw[..., 2] + 0.6 * sig], dim=-1)
        q = monotone_quantiles(raw, self.widen.view(1, -1)) * vol.unsqueeze(-1)
        return q, logc[:, -1], vol

    def forward(self, closes: torch.Tensor) -> torch.Tensor:
        q, last, _ = self.cum_returns(closes)
        return torch.exp(q + last.view(-1, 1, 1))
