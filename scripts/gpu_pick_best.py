"""Pick the best run of each generation task by its validation metric and pack it for the trip back.

    python scripts/gpu_pick_best.py CKPT_ROOT OUT_DIR

Writes OUT_DIR/<task>/best.pt (fp16 weights: half the bytes, re-validated after export anyway),
and OUT_DIR/summary.json with every run's best and last rows.
"""

import json
import sys
from pathlib import Path

import torch

root, out = Path(sys.argv[1]), Path(sys.argv[2])
summary: dict = {}
best: dict = {}
for ckpt in sorted(root.glob("*/*/best.pt")):
    run, task = ckpt.parent.parent.name, ckpt.parent.name
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    metric, value = next(iter((k, v) for k, v in state["best"].items() if k != "epoch"))
    summary[run] = {"task": task, "best": state["best"], "params": state["params"], "config": state["config"],
                    "planned_epochs": state["planned_epochs"], "history": state["history"],
                    "train_wall_time_s": state["train_wall_time_s"], "hardware": state["hardware"]}
    lower = metric.endswith("loss")
    if task not in best or (value < best[task][0] if lower else value > best[task][0]):
        best[task] = (value, run, ckpt, state)
for task, (value, run, ckpt, state) in best.items():
    dest = out / task
    dest.mkdir(parents=True, exist_ok=True)
    state["model"] = {k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()}
    state["run"] = run
    # the trip back takes files of at most 16 MiB: shard the weights (load_trained joins them)
    shards, cur, size = [], {}, 0
    for k, v in state.pop("model").items():
        if cur and size + v.numel() * v.element_size() > 14_000_000:
            shards.append(cur)
            cur, size = {}, 0
        cur[k] = v
        size += v.numel() * v.element_size()
    shards.append(cur)
    state["model"], state["shards"] = shards[0], len(shards)
    torch.save(state, dest / "best.pt")
    for i, shard in enumerate(shards[1:], 1):
        torch.save(shard, dest / f"best.shard{i}.pt")
    summary[f"chosen_{task}"] = run
    print(f"{task}: best {run} {value:.4f} -> {dest / 'best.pt'} ({(dest / 'best.pt').stat().st_size / 1e6:.1f} MB)")
(out / "summary.json").write_text(json.dumps(summary, indent=1))
