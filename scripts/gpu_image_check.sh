#!/usr/bin/env bash
# Build Dockerfile.gpu with buildah and check, on a machine without a GPU, everything of the CUDA provider that
# can be checked without one: onnxruntime-gpu is the only onnxruntime, it offers CUDAExecutionProvider, its CUDA
# provider library and the CUDA/cuDNN libraries it loads resolve every dependency from NVIDIA's wheels except
# libcuda.so.1 (the driver's, mounted at run time by the NVIDIA Container Toolkit), and the server started with
# the image's NEUROSERVE_PROVIDERS=cuda refuses to serve on the CPU. Debian/Ubuntu as root:
#   apt-get install -y buildah debootstrap && ./scripts/gpu_image_check.sh          # build + check
#   ./scripts/gpu_image_check.sh --no-build                                        # check the built image again
# Too big for CI (about 3.5 GB of CUDA wheels downloaded, a 6 GB image, ~15 GB of vfs storage): CI keeps
# scripts/container_check.sh for the CPU image. docs/deployment.md records a run.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/_buildah_base.sh
source "$ROOT/scripts/_buildah_base.sh"   # STORE, BASE, ensure_base_image
IMAGE=localhost/neuroserve:gpu
PORT="${PORT:-18081}"
WORK="${WORK:-/var/tmp/neuroserve-gpu-image-check}"
mkdir -p "$WORK"

if [ "${1:-}" != "--no-build" ]; then
  ensure_base_image "$WORK"
  free_gb=$(df -BG --output=avail /var/lib/containers 2>/dev/null | tail -1 | tr -dc 0-9)
  [ "${free_gb:-0}" -ge 20 ] || { echo "need >= 20 GB free under /var/lib/containers (vfs copies every layer); ${free_gb:-?} GB free"; exit 1; }
  echo "== building $IMAGE from Dockerfile.gpu (log: $WORK/build.log)"
  started=$(date +%s)
  buildah "${STORE[@]}" bud --format docker --isolation chroot --pull=never --layers=false \
    -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
    -f "$ROOT/Dockerfile.gpu" -t "$IMAGE" "$ROOT" >"$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log"; exit 1; }
  echo "   built in $(( $(date +%s) - started )) s"
fi
echo "   image size: $(buildah "${STORE[@]}" images --format '{{.Size}}' "$IMAGE")"

echo "== checking the image"
user=$(buildah "${STORE[@]}" inspect --type image --format '{{.OCIv1.Config.User}}' "$IMAGE")
[ "$user" = "10001:10001" ] || { echo "image runs as '$user', expected the non-root uid 10001"; exit 1; }
buildah "${STORE[@]}" inspect --type image --format '{{.OCIv1.Config.Env}}' "$IMAGE" | grep -q NEUROSERVE_PROVIDERS=cuda \
  || { echo "NEUROSERVE_PROVIDERS=cuda is not set"; exit 1; }

ctr=$(buildah "${STORE[@]}" from "$IMAGE")
cleanup() {
  [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  buildah "${STORE[@]}" rm "$ctr" >/dev/null 2>&1 || true
}
trap cleanup EXIT
in_image() { buildah "${STORE[@]}" run --isolation chroot "$ctr" -- "$@"; }

in_image python3 - <<'EOF'
import ctypes, importlib.metadata as md, onnxruntime as ort
dists = sorted(d.metadata["Name"] for d in md.distributions() if d.metadata["Name"].lower().startswith("onnxruntime"))
assert dists == ["onnxruntime-gpu"], f"expected onnxruntime-gpu alone, found {dists}"
providers = ort.get_available_providers()
print(f"   onnxruntime-gpu {ort.__version__}; available providers: {', '.join(providers)}")
assert "CUDAExecutionProvider" in providers
rt = ctypes.c_int()
assert ctypes.CDLL("libcudart.so.13").cudaRuntimeGetVersion(ctypes.byref(rt)) == 0
cudnn = ctypes.CDLL("libcudnn.so.9")
cudnn.cudnnGetVersion.restype = ctypes.c_size_t
v = cudnn.cudnnGetVersion()
print(f"   loader finds CUDA runtime {rt.value // 1000}.{rt.value % 1000 // 10} and cuDNN {v // 10000}.{v % 10000 // 100}.{v % 100} "
      "(from the wheels, through /etc/ld.so.conf.d)")
EOF

echo "== ldd of the CUDA provider and of the CUDA/cuDNN libraries it loads"
cuda_ep=$(in_image python3 -c "import onnxruntime, pathlib; print(next(pathlib.Path(onnxruntime.__file__).parent.glob('capi/libonnxruntime_providers_cuda.so')))")
libs=$(in_image bash -c "ldconfig -p | grep -oE '/[^ ]+/nvidia/[^ ]+/lib(cudart|cublas|cublasLt|curand|cufft|nvrtc|nvJitLink|cudnn[a-z_]*)\.so\.[0-9]+$' | sort -u")
missing=0
for lib in "$cuda_ep" $libs; do
  out=$(in_image ldd "$lib")
  notfound=$(grep 'not found' <<<"$out" | grep -v 'libcuda\.so\.1 ' || true)
  printf '   %-60s %2d deps, libcuda.so.1 %s%s\n' "${lib##*/site-packages/}" "$(grep -c '=>' <<<"$out")" \
    "$(grep -q 'libcuda\.so\.1 => not found' <<<"$out" && echo 'from the driver at run time' || echo 'not needed')" \
    "${notfound:+; NOT FOUND: $(awk '{print $1}' <<<"$notfound" | paste -sd' ' -)}"
  [ -z "$notfound" ] || missing=1
done
[ "$missing" = 0 ] || { echo "a CUDA library dependency does not resolve in the image"; exit 1; }
if in_image bash -c "ldconfig -p | grep -q 'libcuda\.so\.1 '" 2>/dev/null; then
  echo "the image carries a libcuda.so.1 (a stub would shadow the driver's)"; exit 1
fi

echo "== the image's command without a GPU: NEUROSERVE_PROVIDERS=cuda must refuse the CPU (port $PORT)"
buildah "${STORE[@]}" run --isolation chroot --env NEUROSERVE_HOST=127.0.0.1 --env NEUROSERVE_PORT="$PORT" "$ctr" \
  -- neuroserve serve >"$WORK/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 120); do
  curl -fsS "http://127.0.0.1:$PORT/v1/models" >"$WORK/models.json" 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 1
done
if curl -fsS "http://127.0.0.1:$PORT/v2/health/ready" >/dev/null 2>&1; then
  echo "the server says ready on a machine without a GPU"; exit 1
fi
python3 - "$WORK/models.json" "$WORK/serve.log" <<'EOF'
import json, pathlib, sys
models = json.loads(pathlib.Path(sys.argv[1]).read_text() or "{}").get("data", []) if pathlib.Path(sys.argv[1]).exists() else []
on_cpu = [m["id"] for m in models if m.get("state") == "READY"]
assert not on_cpu, f"models serving without CUDA: {on_cpu}"
print(f"   not ready; {len(models)} models, none READY" + (f"; e.g. {models[0]['id']}: {models[0].get('reason', '')[:200]}" if models else ""))
log = pathlib.Path(sys.argv[2]).read_text()
versions = [json.loads(line)["message"] for line in log.splitlines() if line.startswith("{") and "CUDA runtime" in line]
print("   start-up log:", versions[0][:240] if versions else "no CUDA runtime line")
causes = sorted({line.split("with error: ")[1].strip() for line in log.splitlines() if "Failed to load library" in line})
print("   why the CUDA provider did not load:", "; ".join(causes) or "not logged")
assert all(cause.startswith("libcuda.so.1:") for cause in causes), "something besides the driver is missing"
EOF
echo "== GPU image check passed (no GPU here: run the image with --gpus all for the real thing)"
