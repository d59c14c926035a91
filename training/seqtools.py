"""Pieces the sequence recipes (sentiment, traffic, prices) share on top of ``export``/``metrics``:
multi-input ONNX export + parity, quantile (pinball) loss, monotone quantile heads, conformal
widening, block bootstrap and forecast plots."""

from __future__ import annotations

import dataclasses
import time
import warnings
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from training.export import PARITY_ATOL, ParityError, ort_session

QUANTILES = (0.1, 0.5, 0.9)


# -- training plumbing shared by the sequence recipes -------------------------------------------------
def parse_setting(default, value: str):
    """One ``--set key=value`` as the type of ``default``: bool (1/true/yes), int, float, str, or a tuple
    (comma-separated, of the default's element type; empty = ())."""
    if isinstance(default, bool):
        return value.lower() in ("1", "true", "yes")
    if isinstance(default, tuple):
        kind = type(default[0]) if default else str
        return tuple(kind(v) for v in value.split(",") if v)
    return type(default)(value)


def config_from_args(default, args, batch_field: str = "batch_size") -> object:
    """A copy of the recipe's default config dataclass with --epochs / --batch-size (into ``batch_field``) and every
    ``--set key=value`` applied (e.g. --set amp=true --set teachers=a,b)."""
    overrides = {}
    if getattr(args, "epochs", None):
        overrides["epochs"] = args.epochs
    if getattr(args, "batch_size", None):
        overrides[batch_field] = args.batch_size
    names = [f.name for f in dataclasses.fields(default)]
    for item in getattr(args, "set", None) or []:
        key, _, value = item.partition("=")
        if key not in names:
            raise SystemExit(f"--set {key}: not a field of {type(default).__name__} ({', '.join(names)})")
        overrides[key] = parse_setting(getattr(default, key), value)
    return dataclasses.replace(default, **overrides)


def one_cycle(opt: torch.optim.Optimizer, max_lr: float, total_steps: int, pct_start: float):
    """OneCycleLR that also works for a handful of steps (tiny test runs): >= 2 warm-up steps, pct <= 0.5."""
    total = max(int(total_steps), 4)
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=total,
                                               pct_start=min(0.5, max(pct_start, 2.0 / total)))


def run_fit(model: nn.Module, opt: torch.optim.Optimizer, sched, **fit_kwargs):
    """``training.loop.fit`` with the usual (model, optimiser, scheduler) state, timed."""
    from training.loop import fit

    def get_state() -> dict:
        return {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}

    def set_state(st: dict) -> None:
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])

    started = time.time()
    history = fit(get_state=get_state, set_state=set_state, **fit_kwargs)
    print(f"finished in {time.time() - started:.0f} s ({history.wall_time_s:.0f} s of epochs over all sessions)")
    return history


# -- ONNX ------------------------------------------------------------------------------------------
def export_graph(module: nn.Module, example: Mapping[str, torch.Tensor], path: Path, output_names: Sequence[str],
                 dynamic: Mapping[str, Mapping[int, str]]) -> Path:
    """Legacy (TorchScript) exporter with named dynamic axes, opset 17, one file.

    The legacy path is the one that keeps ``nn.RNN`` sequence lengths dynamic (see TOOLCHAIN.md);
    LSTM/GRU export and match on it too, so all sequence models share it.
    """
    module = module.eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(example)
    axes = {k: dict(v) for k, v in dynamic.items()}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, tuple(example[k] for k in names), str(path), dynamo=False, input_names=names,
                          output_names=list(output_names), opset_version=17, dynamic_axes=axes)
    if Path(str(path) + ".data").exists():
        raise RuntimeError(f"{path}: exporter wrote external data; expected one file")
    return path


def parity_cases(module: nn.Module, path: Path, cases: Sequence[Mapping[str, np.ndarray]],
                 atol: float = PARITY_ATOL, rtol: float = 0.0) -> dict[str, object]:
    """Max |torch - onnxruntime| over several named-input cases (batch sizes, sequence lengths).

    Passes where |diff| <= atol + rtol * |torch|. Outputs in raw units (vehicles/hour, dollars) need rtol:
    float32 spacing alone is ~5e-4 at 5,000, so an absolute 1e-4 is not representable there.
    """
    sess = ort_session(path)
    module = module.eval()
    worst = worst_rel = 0.0
    shapes = []
    for feeds in cases:
        with torch.no_grad():
            ref = module(*(torch.from_numpy(feeds[i.name]) for i in sess.get_inputs()))
        ref = ref if isinstance(ref, (tuple, list)) else (ref,)
        got = sess.run(None, dict(feeds))
        for r, g in zip(ref, got):
            if tuple(r.shape) != tuple(g.shape):
                raise ParityError(f"{path}: shape {g.shape} != torch {tuple(r.shape)} for {_shapes(feeds)}")
            ref64 = r.numpy().astype(np.float64)
            err = np.abs(ref64 - g.astype(np.float64))
            if g.size and not np.all(err <= atol + rtol * np.abs(ref64)):
                raise ParityError(f"{path}: torch vs onnxruntime differ by {err.max():.3g} (> {atol} + {rtol} x |ref|) "
                                  f"for {_shapes(feeds)}")
            worst = max(worst, float(err.max(initial=0.0)))
            worst_rel = max(worst_rel, float((err / np.maximum(np.abs(ref64), 1e-12)).max(initial=0.0)))
        shapes.append(_shapes(feeds))
    return {"max_abs_diff": worst, "max_rel_diff": worst_rel, "cases": shapes, "atol": atol, "rtol": rtol}


def _shapes(feeds: Mapping[str, np.ndarray]) -> str:
    return ", ".join(f"{k}{list(v.shape)}" for k, v in feeds.items())


def run_onnx(path: Path, feeds: Mapping[str, np.ndarray], batch: int = 512) -> np.ndarray:
    """First output of the graph over all rows, in chunks."""
    sess = ort_session(path)
    n = len(next(iter(feeds.values())))
    outs = [sess.run(None, {k: v[i : i + batch] for k, v in feeds.items()})[0] for i in range(0, n, batch)]
    return np.concatenate(outs)


def export_command(training_command: str, task: str) -> str:
    """The export command matching a training command (same --checkpoint-dir / --data-dir, if any)."""
    import shlex

    argv = shlex.split(training_command)
    out = ["neuroserve-train", "export", task]
    for opt in ("--checkpoint-dir", "--data-dir"):
        if opt in argv[:-1]:
            out += [opt, argv[argv.index(opt) + 1]]
    return shlex.join(out)


# -- quantile forecasting ----------------------------------------------------------------------------
def pinball_loss(pred: torch.Tensor, target: torch.Tensor, quantiles: Sequence[float] = QUANTILES) -> torch.Tensor:
    """pred [B,H,Q], target [B,H] -> mean pinball loss over B, H, Q."""
    q = torch.tensor(quantiles, dtype=pred.dtype, device=pred.device).view(1, 1, -1)
    err = target.unsqueeze(-1) - pred
    return torch.maximum(q * err, (q - 1) * err).mean()


def monotone_quantiles(raw: torch.Tensor, scale: torch.Tensor | float = 1.0) -> torch.Tensor:
    """raw [..., 3] -> (q10, q50, q90) with q10 <= q50 <= q90: median +/- softplus increments.

    ``scale`` multiplies the increments (conformal widening baked into the graph).
    """
    mid = raw[..., 1]
    lo = mid - nn.functional.softplus(raw[..., 0]) * scale
    hi = mid + nn.functional.softplus(raw[..., 2]) * scale
    return torch.stack([lo, mid, hi], dim=-1)


def widening_factors(q: np.ndarray, y: np.ndarray, target: float = 0.8, grid: np.ndarray | None = None) -> np.ndarray:
    """Per-horizon factor f >= 0 so that [q50 - f(q50-q10), q50 + f(q90-q50)] covers ``target`` of ``y``.

    q [N,H,3], y [N,H]. Fitted on a calibration slice (never the reported validation set).
    """
    grid = np.linspace(0.3, 4.0, 371) if grid is None else grid
    lo_d = np.maximum(q[..., 1] - q[..., 0], 1e-12)
    hi_d = np.maximum(q[..., 2] - q[..., 1], 1e-12)
    # the smallest factor that covers a point: below the median it needs (q50 - y)/lo_d, above (y - q50)/hi_d
    need = np.where(y < q[..., 1], (q[..., 1] - y) / lo_d, (y - q[..., 1]) / hi_d)  # [N,H]
    out = np.empty(q.shape[1])
    for h in range(q.shape[1]):
        cover = (need[:, h][None, :] <= grid[:, None]).mean(1)
        out[h] = grid[int(np.argmin(np.abs(cover - target)))]
    return out


def interval_report(q: np.ndarray, y: np.ndarray) -> dict[str, float]:
    inside = (y >= q[..., 0]) & (y <= q[..., 2])
    return {"coverage": float(inside.mean()), "mean_width": float((q[..., 2] - q[..., 0]).mean()),
            "pinball": float(np.mean([np.mean(np.maximum(a * (y - q[..., i]), (a - 1) * (y - q[..., i])))
                                      for i, a in enumerate(QUANTILES)]))}


def block_bootstrap_ci(fn: Callable[..., float], groups: np.ndarray, *arrays: np.ndarray, n_boot: int = 1000,
                       seed: int = 0) -> list[float]:
    """95% percentile interval of fn(*arrays) resampling whole groups (e.g. days or weeks of forecast origins),
    so that overlapping / cross-sectionally correlated windows are not counted as independent."""
    rng = np.random.default_rng(seed)
    uniq, inv = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inv == g) for g in range(len(uniq))]
    stats = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(uniq), size=len(uniq))
        idx = np.concatenate([members[g] for g in pick])
        stats.append(fn(*(a[idx] for a in arrays)))
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return [float(lo), float(hi)]


def plot_forecasts(history: np.ndarray, actual: np.ndarray, q: np.ndarray, path: Path, title: str,
                   titles: Sequence[str] | None = None, baseline: np.ndarray | None = None,
                   baseline_label: str = "baseline", history_tail: int | None = None) -> Path:
    """Panels of (history tail, actual future, q50 and the 10-90% band) for a few windows."""
    from training.cards import _plt

    plt = _plt()
    n = len(history)
    cols = min(n, 3)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.2 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        h = history[i] if history_tail is None else history[i][-history_tail:]
        t_h = np.arange(-len(h) + 1, 1)
        t_f = np.arange(1, q.shape[1] + 1)
        ax.plot(t_h, h, color="grey", lw=1, label="history")
        ax.plot(t_f, actual[i], color="black", lw=1.4, label="actual")
        ax.plot(t_f, q[i, :, 1], color="tab:blue", lw=1.4, label="q50")
        ax.fill_between(t_f, q[i, :, 0], q[i, :, 2], color="tab:blue", alpha=0.25, label="10-90%")
        if baseline is not None:
            ax.plot(t_f, baseline[i], color="tab:orange", lw=1, ls="--", label=baseline_label)
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
