#!/usr/bin/env bash
# Start Neuroserve on the committed models (CPU; no training needed). Extra args go to `neuroserve serve`.
source "$(dirname "$0")/_venv.sh" serve
# Few glibc malloc arenas: the server runs many threads (ORT pools, decode engines, request workers), and
# per-thread arenas keep freed memory as RSS. The Dockerfile sets the same.
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"
exec "$VENV/bin/neuroserve" serve "$@"
