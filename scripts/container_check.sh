#!/usr/bin/env bash
# Build the Dockerfile with buildah (no Docker engine needed) and start its command: the container
# must answer /v2/health/ready and serve a real prediction. Debian/Ubuntu as root:
#   apt-get install -y buildah debootstrap && ./scripts/container_check.sh
# The base image (python:3.11-slim-bookworm) is made locally with debootstrap when it is not present,
# so the check needs only Debian's and PyPI's registries.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/_buildah_base.sh
source "$ROOT/scripts/_buildah_base.sh"   # STORE, BASE, ensure_base_image
IMAGE=localhost/neuroserve:check
PORT="${PORT:-18080}"
GRPC_PORT="${GRPC_PORT:-18081}"
WORK="${WORK:-/var/tmp/neuroserve-container-check}"
mkdir -p "$WORK"

ensure_base_image "$WORK"

echo "== building $IMAGE"
started=$(date +%s)
buildah "${STORE[@]}" bud --format docker --isolation chroot --pull=never --layers=false \
  -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
  -t "$IMAGE" "$ROOT" >"$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log"; exit 1; }
echo "   built in $(( $(date +%s) - started )) s"

echo "== checking the image"
user=$(buildah "${STORE[@]}" inspect --type image --format '{{.OCIv1.Config.User}}' "$IMAGE")
[ "$user" = "10001:10001" ] || { echo "image runs as '$user', expected the non-root uid 10001"; exit 1; }
buildah "${STORE[@]}" inspect --type image --format '{{.Docker.Config.Healthcheck}}' "$IMAGE" | grep -q health/ready \
  || { echo "no HEALTHCHECK on readiness"; exit 1; }

ctr=$(buildah "${STORE[@]}" from "$IMAGE")
cleanup() {
  [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  buildah "${STORE[@]}" rm "$ctr" >/dev/null 2>&1 || true
}
trap cleanup EXIT
if buildah "${STORE[@]}" run --isolation chroot "$ctr" -- python3 -c "import torch" 2>/dev/null; then
  echo "torch is installed in the serving image"; exit 1
fi
echo "== starting the image's command (port $PORT)"
buildah "${STORE[@]}" run --isolation chroot --env NEUROSERVE_HOST=127.0.0.1 --env NEUROSERVE_PORT="$PORT" --env NEUROSERVE_GRPC_PORT="$GRPC_PORT" "$ctr" \
  -- neuroserve serve >"$WORK/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 120); do
  if curl -fsS "http://127.0.0.1:$PORT/v2/health/ready" >"$WORK/ready.json" 2>/dev/null; then break; fi
  kill -0 "$server_pid" 2>/dev/null || { echo "the server exited"; tail -20 "$WORK/serve.log"; exit 1; }
  sleep 1
done
curl -fsS "http://127.0.0.1:$PORT/v2/health/ready" || { echo "never ready"; tail -20 "$WORK/serve.log"; exit 1; }
echo
curl -fsS "http://127.0.0.1:$PORT/v1/models" | python3 -c "import json,sys; d=json.load(sys.stdin)['data']; print('models:', ', '.join(f\"{m['id']} ({m['state']}, {m['provider']})\" for m in d))"
# the image's gRPC face (Open Inference Protocol), from the host with tritonclient.grpc (dev extra)
"$ROOT/.venv/bin/python" -c "import tritonclient.grpc as g; c = g.InferenceServerClient('127.0.0.1:$GRPC_PORT'); \
assert c.is_server_live() and c.is_server_ready(); print('gRPC ready:', c.get_server_metadata(as_json=True)['name'])" \
  || { echo "gRPC on $GRPC_PORT did not answer"; tail -20 "$WORK/serve.log"; exit 1; }
echo "== container check passed"
