#!/usr/bin/env bash
# Train several CIFAR-10 configurations at once on one CUDA GPU (the H200 lent through the device tool), in the
# background, then bring the checkpoints back as fp16 pieces for export on a CPU box.
#
# From the checkout root on the GPU machine, with the JPEG pack carried in .device-parts/cifar
# (neuroserve-train prepare cifar10 --source ../shared/data/cifar10/train.npz \
#      --out .device-parts/cifar/data/cifar10/train_jpeg.npz):
#
#   bash scripts/gpu_train_cifar.sh start [BUDGET_S]   # decode + check the pack, launch every run under setsid;
#                                                     # returns in ~15 s, the runs go on in the background
#   bash scripts/gpu_train_cifar.sh status            # one line per run (last epoch line of its log)
#   bash scripts/gpu_train_cifar.sh collect [WAIT_S]  # wait (at most WAIT_S, default 330) for the runs, then put
#                                                     # summary.json, ckpt.tar.part-* and logs.tar.gz into $OUT
#   bash scripts/gpu_train_cifar.sh run [BUDGET_S]    # start + collect in one call (foreground)
# start copies this script to /tmp/cifar-gpu/src/: a later call can run
#   bash /tmp/cifar-gpu/src/gpu_train_cifar.sh status|collect   (nothing carried, whatever the checkout holds then)
#
# BUDGET_S (default 210) is each run's --time-budget: a few throw-away steps are timed at start (with every run
# competing for the GPU) and the run's epochs are cut to what fits, so every run ends within ~BUDGET_S + 40 s.
# Back here: cat ckpt.tar.part-* | tar -x -C DIR; then
#   neuroserve-train export cifar10 --checkpoint DIR/<run>.pt [--ensemble DIR/<run2>.pt] --fp16-weights --tta N
# (export scores the validation split on ../shared/data/cifar10/train.npz itself).
#
# Here, before the call: bash scripts/gpu_train_cifar.sh kit   (copies training/ and these two scripts, as committed, into
# .device-parts/cifar/kit, so that the carried .device-parts/cifar alone is enough: there, run
# bash .device-parts/cifar/kit/scripts/gpu_train_cifar.sh start  from any folder holding .device-parts/cifar)
set -uo pipefail
CMD=${1:-run}
ROOT=$(pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)   # the folder holding training/ and scripts/ (the checkout, or the kit)
PY=${PYTHON:-/opt/torch/.venv/bin/python}
[ -x "$PY" ] || PY=python3
W=${CIFAR_GPU_DIR:-/tmp/cifar-gpu}
RUNS=${CIFAR_GPU_RUNS:-/dev/shm/cifar-gpu-runs}   # checkpoints are rewritten every epoch: keep them in RAM
shm_kb=$(df -Pk /dev/shm 2>/dev/null | awk 'NR==2 {print $4}')
[ "${shm_kb:-0}" -gt 3000000 ] || RUNS=${CIFAR_GPU_RUNS:-$W/runs}   # a small /dev/shm: the disk (~1 GB written per run)
case "$CMD" in start|run) ;; *) [ -f "$W/RUNS_DIR" ] && RUNS=$(cat "$W/RUNS_DIR") ;; esac  # the one start chose
PACK=$ROOT/.device-parts/cifar/data/cifar10/train_jpeg.npz
[ -f "$PACK" ] || PACK=$SRC/../data/cifar10/train_jpeg.npz
DEVICE=${CIFAR_GPU_DEVICE:-cuda}     # a CPU dry run here: CIFAR_GPU_DEVICE=cpu CIFAR_GPU_EXTRA="--limit 300" ...
EXTRA=${CIFAR_GPU_EXTRA:-}

# name | seed | epochs | --set overrides. 95 = airbench95's widths (4.6M params, 9.2 MB as fp16); 96 = airbench96's
# widths + a third conv with a residual per group + cutout 12 + translate 4 (9.9M, 19.8 MB); 96n = the same at
# 3/4 width (5.6M, 11.2 MB). What comes back: ~60 MB of fp16 checkpoints in 15 MiB pieces (the limit is 64 MiB):
# a fifth run of this size does not fit. Another table: CIFAR_GPU_TABLE="name seed epochs k=v ...(one per line)".
RUN_TABLE=${CIFAR_GPU_TABLE:-"
a95    0 40 widths=128,384,384
b96n   0 45 widths=96,288,384 depth=3 cutout=12 translate=4
c96    0 45 widths=128,384,512 depth=3 cutout=12 translate=4
d96    1 45 widths=128,384,512 depth=3 cutout=12 translate=4
"}

stage() {  # code + data into $W (the checkout may be re-sent by later calls while the runs go on)
  rm -rf "$W" "$RUNS"
  mkdir -p "$W/src" "$W/data/cifar10" "$W/logs" "$RUNS"
  echo "$RUNS" >"$W/RUNS_DIR"
  cp -r "$SRC/training" "$W/src/" && cp "$SRC/scripts/gpu_cifar_collect.py" "$0" "$W/src/" || return 1
  [ -f "$PACK" ] || { echo "no JPEG pack at $PACK (carry .device-parts/cifar)"; return 1; }
  # decode once (Pillow), check the pixels' sha256 against the source's, write a plain npz every run reads
  (cd "$W/src" && "$PY" - "$PACK" "$W/data/cifar10/train.npz" <<'EOF'
import sys, time, numpy as np
from training.data import cifar10 as d
t = time.time()
with np.load(sys.argv[1]) as f:
    pack = {k: f[k] for k in f.files}
x, y = d.decode_jpeg_pack(pack, name=sys.argv[1])
exact = d.pixels_sha256(x) == str(pack["sha256"])
np.savez(sys.argv[2], x=x, y=y.astype(np.uint8))
print(f"decoded {len(x)} images in {time.time() - t:.1f} s; pixels identical to train.npz: {exact}")
EOF
  ) 2>&1 | tee "$W/logs/decode.log"
  [ -f "$W/data/cifar10/train.npz" ]
}

supervise() {  # runs every configuration in parallel, waits, packs the results into $W/out; writes $W/DONE
  local budget=$1
  cd "$W/src"
  echo "$(date -u +%FT%TZ) start, budget ${budget}s per run, $("$PY" -c 'import torch;print(torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA")' 2>&1)"
  nvidia-smi --query-gpu=name,memory.used,memory.total,utilization.gpu --format=csv,noheader 2>/dev/null
  while read -r name seed epochs sets; do  # (not in a pipe: the runs must be children of this shell for wait)
    [ -n "$name" ] || continue
    args=()
    for s in $sets; do args+=(--set "$s"); done
    NEUROSERVE_THREADS=2 PYTHONUNBUFFERED=1 "$PY" -m training train cifar10 --device "$DEVICE" --quiet $EXTRA \
      --data-dir "$W/data" --checkpoint-dir "$RUNS/$name" --seed "$seed" --epochs "$epochs" \
      --time-budget "$budget" --set amp=true "${args[@]}" >"$RUNS/$name.log" 2>&1 </dev/null &
    echo "launched $name (pid $!): seed $seed, epochs <= $epochs, $sets"
  done <<<"$RUN_TABLE"
  wait
  echo "$(date -u +%FT%TZ) all runs ended"
  nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader 2>/dev/null
  pack_results
  date -u +%FT%TZ >"$W/DONE"
}

pack_results() {
  rm -rf "$W/out" && mkdir -p "$W/out"
  (cd "$W/src" && "$PY" gpu_cifar_collect.py "$RUNS" "$W/out" "$W/data") 2>&1 | tee "$W/logs/collect.log"
  cp "$RUNS"/*.log "$W/logs/" 2>/dev/null
  tar -C "$W" -czf "$W/out/logs.tar.gz" logs
}

status() {
  for log in "$RUNS"/*.log; do
    [ -f "$log" ] || continue
    printf '%-6s %s\n' "$(basename "$log" .log)" "$(grep -E '^epoch|time budget|Error|done in' "$log" | tail -n 1 | cut -c1-220)"
  done
  nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader 2>/dev/null
}

collect() {  # bounded wait for $W/DONE, then copy the packed results (or pack what is there) into $OUT
  local wait_s=${1:-330} t=0
  : "${OUT:?collect writes into \$OUT}"
  while [ ! -f "$W/DONE" ] && [ "$t" -lt "$wait_s" ]; do sleep 5; t=$((t + 5)); done
  if [ ! -f "$W/DONE" ]; then
    echo "runs not finished after ${wait_s}s: packing the last finished epoch of each (state 'running' in summary.json)"
    status
    pack_results
  fi
  cp "$W"/out/* "$OUT"/
  cat "$W/logs/supervise.log" 2>/dev/null | tail -n 12
  cat "$W/logs/collect.log" 2>/dev/null
  ls -la "$OUT"
}

case "$CMD" in
  kit)
    # the committed code (HEAD), not the working tree: other people's unfinished edits stay out of the kit
    rm -rf "$ROOT/.device-parts/cifar/kit" && mkdir -p "$ROOT/.device-parts/cifar/kit"
    git -C "$ROOT" archive HEAD training scripts/gpu_train_cifar.sh scripts/gpu_cifar_collect.py |
      tar -x -C "$ROOT/.device-parts/cifar/kit" || exit 1
    git -C "$ROOT" rev-parse --short HEAD >"$ROOT/.device-parts/cifar/kit/COMMIT"
    du -sh "$ROOT/.device-parts/cifar"/*
    ;;
  start)
    stage || exit 1
    setsid nohup bash "$0" _supervise "${2:-210}" >"$W/logs/supervise.log" 2>&1 </dev/null &
    sleep 3
    cat "$W/logs/supervise.log"
    echo "runs going on in the background (setsid); later: bash scripts/gpu_train_cifar.sh collect [WAIT_S]"
    ;;
  _supervise) supervise "$2" ;;
  status) status ;;
  collect) collect "${2:-330}" ;;
  run)
    stage || exit 1
    supervise "${2:-210}" 2>&1 | tee "$W/logs/supervise.log"
    cp "$W"/out/* "${OUT:?}"/ && ls -la "$OUT"
    ;;
  *) echo "usage: $0 start|status|collect|run [SECONDS]"; exit 2 ;;
esac
