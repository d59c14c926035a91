#!/usr/bin/env bash
# Pack what a GPU machine without a package registry needs for scripts/gpu_check.py into parts that fit
# the device tool's 64 MiB per call (../shared/tools/device_parts.py), under the git-ignored .device-parts/:
#   ort/p1, ort/p2        onnxruntime-gpu 1.31.1 (sm_90 kernels only), the serving wheels for Python 3.12
#                         (the GPU image lacks them: fastapi, pydantic, uvicorn, ...), and Debian's hey binary
#   models/p1, models/p2  models/ as committed at HEAD (git archive, so others' uncommitted edits stay out;
#                         MODELS_FROM=worktree: as in the working tree, which is what the device's checkout gets)
#   SHA256SUMS, unpack.py
# scripts/gpu_device_setup.sh unpacks them on that machine. Needs pip and PyPI here, apt-get for hey.
#   ./scripts/gpu_device_pack.sh            # both streams
#   ./scripts/gpu_device_pack.sh models     # only the models (after a model changed)
#   MODELS_FROM=worktree ./scripts/gpu_device_pack.sh models   # the working tree's models/, uncommitted files too
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
OUT="${PARTS_OUT:-$ROOT/.device-parts}"
TOOL="${DEVICE_PARTS:-$ROOT/../shared/tools/device_parts.py}"
PY="${PY:-$ROOT/.venv/bin/python}"
PART_MB="${PART_MB:-58}"
WHAT="${1:-all}"
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
grep -qx '/.device-parts/' .git/info/exclude 2>/dev/null || echo /.device-parts/ >> .git/info/exclude

# The serving stack's wheels, at the versions the dev venv tests (uvloop, httpx, numpy, pillow,
# prometheus-client, tokenizers, idna are in that machine's image already).
WHEELS=(fastapi==0.165.0 fastapi-offline==1.7.7 starlette==1.10.0 pydantic==2.14.4 pydantic-core==2.50.5
        pydantic-settings==2.16.3 python-dotenv==1.2.4 typing-inspection==0.4.5 annotated-types==0.8.0
        annotated-doc==0.0.7 typing-extensions==4.16.0 uvicorn==0.55.0 h11==0.16.0 click==8.5.1 anyio==4.16.0
        python-multipart==0.0.34 orjson==3.13.0 opentelemetry-api==1.45.2 httptools==0.9.0)

if [ "$WHAT" = all ]; then
  mkdir -p "$STAGE/ort/wheels" "$STAGE/ort/bin" "$STAGE/deb"
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d "$STAGE/ort/wheels" "${WHEELS[@]}"
  (cd "$STAGE/deb" && apt-get download -q hey >/dev/null && dpkg -x hey_*.deb x)
  cp "$STAGE/deb/x/usr/bin/hey" "$STAGE/ort/bin/hey"
  rm -rf "$OUT/ort"
  (cd "$STAGE/ort" && nice -n 5 "$PY" "$TOOL" pack "$OUT/ort" wheels bin --ort-gpu 1.31.1 --part-mb "$PART_MB")
fi
mkdir -p "$STAGE/models"
if [ "${MODELS_FROM:-HEAD}" = worktree ]; then   # the working tree's models/ (tracked and untracked, not ignored)
  git ls-files -co --exclude-standard models | tar -cf - -T - | tar -x -C "$STAGE/models"
  printf '%s\nworktree\n' "$(git rev-parse HEAD)" > "$STAGE/models/PACKED_FROM"
else
  git archive HEAD models | tar -x -C "$STAGE/models"
  git rev-parse HEAD HEAD:models > "$STAGE/models/PACKED_FROM"
fi
rm -rf "$OUT/models"
(cd "$STAGE/models" && nice -n 5 "$PY" "$TOOL" pack "$OUT/models" models PACKED_FROM --part-mb "$PART_MB")

cp "$OUT/models/unpack.py" "$OUT/unpack.py"
cp "$STAGE/models/PACKED_FROM" "$OUT/PACKED_FROM"  # stale parts: git diff --quiet $(head -1 .device-parts/PACKED_FROM) HEAD -- models
(cd "$OUT" && shopt -s nullglob && for f in ort/p*/part.* models/p*/part.*; do
   echo "$(sha256sum "$f" | cut -d' ' -f1)  ${f%%/*}/$(basename "$f")"; done) > "$OUT/SHA256SUMS"
echo "== parts (MB):"
(cd "$OUT" && shopt -s nullglob && for p in ort/p* models/p*; do printf '  %-10s %6.1f\n' "$p" "$(du -b "$p"/part.* | awk '{print $1/1e6}')"; done)
echo "models packed from $(head -1 "$STAGE/models/PACKED_FROM")"
