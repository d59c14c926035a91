#!/usr/bin/env bash
# Run the whole test suite in .venv (serve + train + client + dev extras; torch is the CPU build 2.13.0).
source "$(dirname "$0")/_venv.sh" serve,train,client,dev
cd "$ROOT"
exec "$VENV/bin/python" -m pytest -q "$@"
