# shellcheck shell=bash
# Make the GPU machine ready for scripts/gpu_check.py, from the parts that scripts/gpu_device_pack.sh wrote.
# Source it in the checkout root on that machine (it exports PYTHONPATH, LD_LIBRARY_PATH and PATH):
#
#   source scripts/gpu_device_setup.sh /tmp/parts && python3 scripts/gpu_check.py ...
#
# PARTS (default /tmp/parts) holds ort/part.00N and models/part.00N, optionally SHA256SUMS and unpack.py
# (else .device-parts/unpack.py). It unpacks them into $NSDEV (default /tmp/nsdev): onnxruntime-gpu under
# site/, the serving wheels under wheels/ (installed to pylib/), hey under bin/, the committed models
# under models/ (linked as ./models when the checkout has none). Then it checks that onnxruntime offers
# CUDAExecutionProvider and that a tiny Conv runs on it with the CPU's answer.
# Python: $NS_PY, else /opt/torch/.venv/bin/python (that machine's image), else python3.
# --dry-run: everything but the CUDA session (for a machine without a GPU). An existing ./models is left alone.
# Re-sourcing skips what is already unpacked (remove $NSDEV to start over).

_ns_device_setup() {
  local parts="/tmp/parts" dry=0 arg
  for arg in "$@"; do
    case "$arg" in
      --dry-run) dry=1 ;;
      *) parts="$arg" ;;
    esac
  done
  local dest="${NSDEV:-/tmp/nsdev}" py="${NS_PY:-}"
  if [ -z "$py" ]; then
    if [ -x /opt/torch/.venv/bin/python ]; then py=/opt/torch/.venv/bin/python; else py=$(command -v python3); fi
  fi
  echo "== gpu_device_setup: parts $parts, into $dest, python $py ($("$py" -c 'import sys; print(sys.version.split()[0])'))"
  [ -f scripts/gpu_device_setup.sh ] || { echo "run it in the checkout root"; return 1; }

  local unpack="$parts/unpack.py"
  [ -f "$unpack" ] || unpack=.device-parts/unpack.py
  [ -f "$unpack" ] || { echo "no unpack.py in $parts or .device-parts/"; return 1; }
  if [ -f "$parts/SHA256SUMS" ]; then
    (cd "$parts" && sha256sum --quiet -c SHA256SUMS) || { echo "parts missing or damaged (above): copy them again"; return 1; }
    echo "   parts: $(wc -l <"$parts/SHA256SUMS") checked against SHA256SUMS"
  fi
  mkdir -p "$dest"
  local stream started
  for stream in ort models; do
    if [ -f "$dest/.unpacked-$stream" ]; then echo "   $stream: already unpacked"; continue; fi
    ls "$parts/$stream"/part.* >/dev/null 2>&1 || { echo "no parts in $parts/$stream"; return 1; }
    started=$(date +%s)
    "$py" "$unpack" "$parts/$stream" "$dest" >/dev/null || { echo "unpacking $stream failed"; return 1; }
    touch "$dest/.unpacked-$stream"
    echo "   $stream: unpacked in $(( $(date +%s) - started )) s"
  done

  if [ ! -f "$dest/.installed-wheels" ]; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$dest/pylib" \
      "$dest"/wheels/*.whl \
      || "$py" -c 'import sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in sys.argv[2:]]' \
           "$dest/pylib" "$dest"/wheels/*.whl \
      || { echo "installing the wheels failed"; return 1; }
    touch "$dest/.installed-wheels"
  fi
  echo "   wheels: $(ls "$dest"/wheels/*.whl | wc -l) installed into $dest/pylib"

  # onnxruntime-gpu first: it must shadow the image's CPU onnxruntime; then the serving packages, then the checkout.
  export PYTHONPATH="$dest/site:$dest/pylib:$PWD${PYTHONPATH:+:$PYTHONPATH}"
  # Child processes started with their own PYTHONPATH (gpu_check's servers, say) must see them too: a .pth
  # in the interpreter's site-packages puts both first on sys.path for every process of that interpreter
  # (that machine is thrown away after the lease). Not in a dry run unless NS_PTH=1: it would change a shared venv.
  local pth
  pth="$("$py" -c 'import site; print(site.getsitepackages()[0])')/00-neuroserve-device.pth"
  if [ "$dry" = 0 ] || [ "${NS_PTH:-0}" = 1 ]; then
    echo "import sys; sys.path[:0] = [p for p in ('$dest/site', '$dest/pylib') if p not in sys.path]" >"$pth" \
      && echo "   $pth: $dest/site and $dest/pylib first for every process"
  fi
  # onnxruntime-gpu 1.31.1 needs CUDA 13 + cuDNN 9: the image's torch venv holds them as nvidia-* wheels.
  local nvlibs
  nvlibs=$(find "$("$py" -c 'import site; print(site.getsitepackages()[0])')/nvidia" -name 'lib*.so*' -printf '%h\n' 2>/dev/null | sort -u | paste -sd: -)
  if [ -n "$nvlibs" ]; then
    export LD_LIBRARY_PATH="$nvlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "   LD_LIBRARY_PATH: $(tr ':' '\n' <<<"$nvlibs" | wc -l) nvidia lib folders"
  else
    echo "   no nvidia-* lib folders beside $py (expected only where there is no GPU)"
  fi
  chmod +x "$dest/bin/hey"
  export PATH="$dest/bin:$PATH"
  echo "   hey: $(command -v hey)"

  if [ -L models ]; then
    ln -sfn "$dest/models" models
  elif [ -e models ]; then
    echo "   models: the checkout's own models/ (left alone)"
  else
    ln -s "$dest/models" models
  fi
  [ -L models ] && echo "   models: ./models -> $dest/models ($(ls "$dest/models" | wc -l) models, packed from $(head -c 12 "$dest/PACKED_FROM" 2>/dev/null))"

  "$py" - "$dry" <<'EOF' || { echo "== gpu_device_setup FAILED (above)"; return 1; }
import sys
dry = sys.argv[1] == "1"
import onnxruntime as ort
print(f"   onnxruntime {ort.__version__} from {ort.__file__}")
providers = ort.get_available_providers()
print(f"   available providers: {providers}")
assert "CUDAExecutionProvider" in providers, "this onnxruntime has no CUDA provider: is $NSDEV/site first on PYTHONPATH?"
import fastapi, orjson, pydantic, pydantic_settings, uvicorn, multipart  # noqa: F401  the serving stack
import service.app  # noqa: F401
print(f"   service imports: fastapi {fastapi.__version__}, pydantic {pydantic.__version__}, uvicorn {uvicorn.__version__}")
if dry:
    print("   dry run: the CUDA session is skipped")
    sys.exit(0)
import numpy as np
from onnx import TensorProto, helper
rng = np.random.default_rng(0)
w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
graph = helper.make_graph(
    [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "conv",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 32, 32])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    [helper.make_tensor("w", TensorProto.FLOAT, w.shape, w.ravel())])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9).SerializeToString()
x = rng.standard_normal((4, 3, 32, 32)).astype(np.float32)
cuda = ort.InferenceSession(model, providers=["CUDAExecutionProvider"])
assert cuda.get_providers()[0] == "CUDAExecutionProvider", f"the session fell back: {cuda.get_providers()}"
cpu = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
diff = float(np.abs(cuda.run(None, {"x": x})[0] - cpu.run(None, {"x": x})[0]).max())
assert diff < 1e-3, f"CUDA and CPU differ by {diff}"
print(f"   CUDA Conv session: providers {cuda.get_providers()}, max |CUDA - CPU| = {diff:.1e}")
EOF
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/   GPU: /'
  echo "== gpu_device_setup ok"
}

if (return 0 2>/dev/null); then
  _ns_device_setup "$@"
  _ns_status=$?
  unset -f _ns_device_setup
  # shellcheck disable=SC2317  # the `return` ends a sourced script; it is never reached when run as a program
  return $_ns_status
else
  _ns_device_setup "$@"
  exit $?
fi
