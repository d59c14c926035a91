#!/usr/bin/env bash
# Start Neuroserve on the committed models (CPU; no training needed). Extra args go to `neuroserve serve`.
source "$(dirname "$0")/_venv.sh" serve
exec "$VENV/bin/neuroserve" serve "$@"
