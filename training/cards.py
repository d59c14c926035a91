"""Model repository artefacts: manifest.json (validated by ``service.manifest.Manifest``), card.json,
README.md (the model card) and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np


def write_manifest(model_dir: Path, fields: dict[str, Any]) -> Path:
    """Validate with the server's own pydantic model and write it the way the server does."""
    from service.manifest import Manifest, write_manifest as _write

    manifest = Manifest.model_validate(fields)
    model_dir.mkdir(parents=True, exist_ok=True)
    return _write(model_dir, manifest)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(history: dict[str, Any], path: Path, metrics: Sequence[tuple[str, str]], title: str) -> Path:
    """One panel per (train_key, val_key) pair, against epoch."""
    plt = _plt()
    rows = history["epochs"]
    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6))
    axes = np.atleast_1d(axes)
    for ax, keys in zip(axes, metrics):
        for key in keys:
            if key and any(key in r for r in rows):
                ax.plot(epochs, [r.get(key, float("nan")) for r in rows], marker="o", ms=3, label=key)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_confusion(cm: np.ndarray, labels: Sequence[str], path: Path, title: str) -> Path:
    plt = _plt()
    n = len(labels)
    fig, ax = plt.subplots(figsize=(1.0 + 0.62 * n, 0.8 + 0.55 * n))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    vmax = cm.max() if cm.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if cm[i, j] > vmax / 2 else "black")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_roc(fpr: np.ndarray, tpr: np.ndarray, auc: float, path: Path, title: str,
             point: tuple[float, float] | None = None) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.plot(fpr, tpr, label=f"AUROC {auc:.4f}")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
    if point is not None:
        ax.plot([point[0]], [point[1]], "ro", label="operating threshold")
    ax.set_xlabel("1 - specificity (false-positive rate)")
    ax.set_ylabel("sensitivity (true-positive rate)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def fmt_prop(p: dict[str, Any], digits: int = 2) -> str:
    """'94.12% (95% CI 93.4-94.8%, 4706/5000)'."""
    v, (lo, hi) = p["value"], p["ci95"]
    return f"{100 * v:.{digits}f}% (95% CI {100 * lo:.{digits}f}-{100 * hi:.{digits}f}%, {p['k']}/{p['n']})"


def write_card(model_dir: Path, card: dict[str, Any], readme: str) -> None:
    (model_dir / "card.json").write_text(json.dumps(card, indent=2, default=_json_default) + "\n")
    (model_dir / "README.md").write_text(readme.rstrip() + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj)}")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def recreate_section(provenance: dict[str, Any]) -> str:
    """The card's "Recreate" block: the exact training and export commands, and any note on the run."""
    p = provenance
    note = ("**Note on this run:** " + p["notes"]) if p.get("notes") else ""
    return f"## Recreate\n```\n{p['training_command']}\n{p['export_command']}\n```\n{note}"


def plot_forecasts(history: np.ndarray, actual: np.ndarray, q: np.ndarray, path: Path, title: str,
                   titles: Sequence[str] | None = None, baseline: np.ndarray | None = None,
                   baseline_label: str = "baseline", history_tail: int | None = None) -> Path:
    """Panels of (history tail, actual future, q50 and the 10-90% band) for a few windows."""
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
