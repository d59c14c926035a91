"""Pack the CIFAR GPU runs for the trip back (called by scripts/gpu_train_cifar.sh collect).

    python scripts/gpu_cifar_collect.py RUNS_DIR OUT_DIR [DATA_DIR]

RUNS_DIR holds one folder per run, each with cifar10/last.pt (``neuroserve-train train cifar10
--checkpoint-dir RUNS_DIR/<name>``) and the run's log RUNS_DIR/<name>.log. Writes to OUT_DIR:

- ``summary.json``: per run its config, epochs done / planned, wall time, final validation accuracy
  (no TTA, mirror, the recipe's TTA level; on the pixels the GPU machine trained from) and its state
  (done / running / failed);
- ``ckpt.tar.part-aa`` ...: one tar of ``<name>.pt`` slim checkpoints, split into 15 MiB pieces (the device
  returns files of at most 16 MiB). Each slim checkpoint keeps what ``export``/``evaluate`` read (``meta``,
  ``history``, ``epoch``, ``recipe.model``) with floating tensors of >= 1024 elements stored as fp16 (the
  export's --fp16-weights rounds them so anyway; loading casts them back to fp32); optimiser and lookahead
  state are left out. Reassemble with ``cat ckpt.tar.part-* | tar -x -C DIR``.

With DATA_DIR (the --data-dir the runs trained from), ``summary.json`` also gets ``ensembles``: the validation
accuracy of every pair of finished runs (logits averaged) and of each run alone, at TTA levels 0, 1 and 2, computed
with the fp16-rounded weights that come back (on the GPU when there is one).
"""

from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path

import torch

FP16_MIN_ELEMENTS = 1024
PIECE = 15 * 1024 * 1024


def slim(ckpt: dict) -> dict:
    model = {k: (v.half() if v.is_floating_point() and v.numel() >= FP16_MIN_ELEMENTS else v)
             for k, v in ckpt["recipe"]["model"].items()}
    return {"epoch": ckpt["epoch"], "recipe": {"model": model}, "history": ckpt["history"], "meta": ckpt["meta"]}


def run_state(log: Path) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    if "done in" in text:
        return "done"
    if "Traceback" in text or "Error" in text:
        return "failed"
    return "running"


def ensemble_table(slims: dict[str, dict], data_dir: Path) -> dict[str, dict[str, float]]:
    import argparse
    import itertools
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from training.data import cifar10 as data
    from training.recipes import get_recipe
    from training.recipes.cifar10 import predict_logits, to_float

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    recipe = get_recipe("cifar10")
    logits: dict[str, dict[int, torch.Tensor]] = {}
    y_val = None
    for name, ckpt in slims.items():
        meta = ckpt["meta"]
        with tempfile.NamedTemporaryFile(suffix=".pt") as f:
            torch.save(ckpt, f.name)
            model, _ = recipe.load_trained(argparse.Namespace(checkpoint=f.name))
        _, val = data.load_splits(data_dir, meta["config"]["val_size"], meta["config"]["split_seed"], meta.get("limit"))
        if y_val is not None and not torch.equal(y_val, torch.as_tensor(val.y)):
            continue  # another split: no ensemble with the others
        y_val = torch.as_tensor(val.y)
        x = to_float(val.x).to(device)
        model.to(device)
        logits[name] = {level: predict_logits(model, x, tta=level).float().cpu() for level in (0, 1, 2)}
    table: dict[str, dict[str, float]] = {}
    for k in (1, 2):
        for names in itertools.combinations(sorted(logits), k):
            table["+".join(names)] = {f"tta{level}": float((torch.stack([logits[n][level] for n in names]).mean(0)
                                                          .argmax(1) == y_val).float().mean()) for level in (0, 1, 2)}
    return table


def main(runs: Path, out: Path, data_dir: Path | None = None) -> int:
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, dict] = {}
    slims: dict[str, dict] = {}
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        for run in sorted(p for p in runs.iterdir() if p.is_dir()):
            log = runs / f"{run.name}.log"
            row: dict = {"state": run_state(log)}
            path = run / "cifar10" / "last.pt"
            if path.exists():
                try:
                    ckpt = torch.load(path, map_location="cpu", weights_only=False)
                except Exception as exc:  # a torn read while the run is still writing: say so, go on
                    row["error"] = f"{type(exc).__name__}: {exc}"
                    ckpt = None
                if ckpt is not None:
                    epochs = ckpt["history"]["epochs"]
                    last = epochs[-1] if epochs else {}
                    cfg = ckpt["meta"]["config"]
                    row.update({
                        "epochs_done": ckpt["epoch"] + 1, "epochs_planned": cfg["epochs"],
                        "widths": cfg["widths"], "depth": cfg.get("depth", 2), "cutout": cfg.get("cutout", 0),
                        "translate": cfg["translate"], "seed": ckpt["meta"]["seed"], "params": ckpt["meta"]["params"],
                        "wall_time_s": round(ckpt["history"]["wall_time_s"], 1),
                        "epoch_time_s": round(last.get("epoch_time_s", 0.0), 2),
                        "estimated_epoch_s": ckpt["meta"].get("estimated_epoch_s"),
                        "val_acc": last.get("val_acc"), "val_acc_tta1": last.get("val_acc_tta1"),
                        "val_acc_tta": last.get("val_acc_tta"), "tta_level": cfg["tta_level"],
                        "command": ckpt["meta"]["command"], "hardware": ckpt["meta"]["hardware"],
                    })
                    buf = io.BytesIO()
                    small = slim(ckpt)
                    if row["state"] == "done":
                        slims[run.name] = small
                    torch.save(small, buf)
                    info = tarfile.TarInfo(f"{run.name}.pt")
                    info.size = buf.tell()
                    buf.seek(0)
                    tar.addfile(info, buf)
                    row["slim_bytes"] = info.size
            summary[run.name] = row
    if data_dir is not None and slims:
        try:
            summary["ensembles"] = ensemble_table(slims, data_dir)
        except Exception as exc:  # the checkpoints matter more than this table
            summary["ensembles"] = {"error": f"{type(exc).__name__}: {exc}"}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    data = tar_bytes.getvalue()
    for i in range(0, len(data), PIECE):
        suffix = "a" + "abcdefghijklmnopqrstuvwxyz"[i // PIECE]
        (out / f"ckpt.tar.part-{suffix}").write_bytes(data[i:i + PIECE])
    for name, row in summary.get("ensembles", {}).items():
        print(f"val accuracy {name:>12}: {row}")
    for name, row in summary.items():
        if name == "ensembles":
            continue
        print(f"{name:>10} {row['state']:>8} epochs {row.get('epochs_done')}/{row.get('epochs_planned')} "
              f"val {row.get('val_acc')} tta1 {row.get('val_acc_tta1')} tta {row.get('val_acc_tta')} "
              f"{row.get('wall_time_s')} s")
    print(f"ckpt.tar: {len(data) / 2**20:.1f} MiB in {max(1, -(-len(data) // PIECE))} piece(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) > 3 else None))
