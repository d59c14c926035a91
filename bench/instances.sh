#!/usr/bin/env bash
# Model instances x intra-op threads on the committed models (docs/benchmarks.md): Neuroserve alone,
# hey for SECONDS per point, binary OIP on cifar10-resnet and the sentiment task endpoint.
#   bench/instances.sh ["1 2" "2 1" ...]      (each argument: "<instances> <intra-op threads>")
# The solo session is off unless NEUROSERVE_SOLO_SESSION=true: each layout is measured on its own.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_POINT="${SECONDS_PER_POINT:-5}"
PORT="${PORT:-8125}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
.venv/bin/python - "$tmp" <<'PY'
import json, sys
import numpy as np
out = sys.argv[1]
img = np.random.default_rng(0).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
header = json.dumps({"inputs": [{"name": "images", "shape": [1, 32, 32, 3], "datatype": "UINT8",
                                 "parameters": {"binary_data_size": img.nbytes}}],
                     "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]}).encode()
open(f"{out}/body.bin", "wb").write(header + img.tobytes())
open(f"{out}/hlen", "w").write(str(len(header)))
open(f"{out}/sent.json", "w").write(json.dumps({"texts": ["a gripping , beautifully acted film", "dull and far too long",
                                                         "it is not bad at all", "the best movie of the year"]}))
PY
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=("1 2" "2 1" "2 2")
for cfg in "${configs[@]}"; do
  set -- $cfg
  NEUROSERVE_LOAD_MODELS=cifar10-resnet,sentiment-lstm NEUROSERVE_MODEL_INSTANCES=$1 NEUROSERVE_INTRA_OP_THREADS=$2 \
    NEUROSERVE_SOLO_SESSION="${NEUROSERVE_SOLO_SESSION:-false}" \
    NEUROSERVE_LOG_LEVEL=warning .venv/bin/python -m service.cli serve --port "$PORT" >"$tmp/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 120); do curl -sf "localhost:$PORT/v2/health/ready" >/dev/null && break; sleep 0.5; done
  for c in 1 8; do
    a=$(hey -z "${SECONDS_PER_POINT}s" -c $c -m POST -T application/octet-stream -H "Inference-Header-Content-Length: $(cat "$tmp/hlen")" \
        -D "$tmp/body.bin" "http://127.0.0.1:$PORT/v2/models/cifar10-resnet/infer" | awk '/Requests\/sec/ {print $2}')
    b=$(hey -z "${SECONDS_PER_POINT}s" -c $c -m POST -T application/json -D "$tmp/sent.json" \
        "http://127.0.0.1:$PORT/v1/text/sentiment" | awk '/Requests\/sec/ {print $2}')
    echo "instances=$1 intra=$2 c=$c cifar-binary=${a} req/s sentiment=${b} req/s"
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
