#!/usr/bin/env bash
# Train the generation models on one CUDA GPU (how the committed translate-en-de and chat-dailydialog
# were made): several configurations of each task in parallel, each time-boxed, then keep the best of
# each task by its validation metric (BLEU / loss) and pack it (fp16 weights) for export on a CPU box:
#   scripts/gpu_train_generation.sh DATA_DIR TOKENIZER_DIR OUT_DIR [BUDGET_S]
#   neuroserve-train export translation --checkpoint OUT_DIR/translation/best.pt   (and chat)
# TOKENIZER_DIR/<task>/tokenizer.json come from `neuroserve-train train <task>` (built on the train split
# at start) so that the GPU run and the CPU export share one tokenizer.
set -euo pipefail
DATA=$1 TOK=$2 OUT=$3 BUDGET=${4:-240}
PY=${PYTHON:-python3}
CK=${CKPT:-/tmp/gen-ckpt}
mkdir -p "$OUT/logs"

launch() {  # name task --set ...
  local name=$1 task=$2; shift 2
  mkdir -p "$CK/$name/$task"
  cp "$TOK/$task/tokenizer.json" "$CK/$name/$task/"
  NEUROSERVE_THREADS=2 PYTHONUNBUFFERED=1 "$PY" -m training train "$task" --device cuda --seed 0 --quiet \
    --data-dir "$DATA" --checkpoint-dir "$CK/$name" --time-budget "$BUDGET" "$@" >"$OUT/logs/$name.log" 2>&1 &
}

launch t256x4 translation --set d_model=256 --set heads=4 --set encoder_layers=4 --set decoder_layers=4 --set ff=1024
launch t256x4d2 translation --set d_model=256 --set heads=4 --set encoder_layers=4 --set decoder_layers=4 --set ff=1024 --set dropout=0.2
launch t256x6 translation --set d_model=256 --set heads=4 --set encoder_layers=6 --set decoder_layers=6 --set ff=1024
launch t384x3 translation --set d_model=384 --set heads=6 --set encoder_layers=3 --set decoder_layers=3 --set ff=1536 --set lr=0.0007
launch c256x6 chat --set d_model=256 --set heads=4 --set decoder_layers=6 --set ff=1024 --set dropout=0.3
launch c256x4 chat --set d_model=256 --set heads=4 --set decoder_layers=4 --set ff=1024 --set dropout=0.2
wait || true
"$PY" scripts/gpu_pick_best.py "$CK" "$OUT"
tar -C "$OUT" -czf "$OUT/logs.tar.gz" logs && rm -rf "$OUT/logs"
