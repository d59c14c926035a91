#!/usr/bin/env bash
# Creates the peers' virtualenvs for bench/peers/run.py, one per peer, under bench/peers/.venvs/<peer>/
# (git-ignored), from the pinned lock files bench/peers/requirements-<peer>.txt (every package with
# its exact version, as installed and measured). Never installs torch: checked at the end.
#
#   bench/peers/setup.sh            # both peers
#   bench/peers/setup.sh kserve     # one
#   PYTHON=python3.11 NICE=15 ...   # interpreter and niceness (default 15: pip is CPU-heavy)
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3.11}"
NICE="${NICE:-15}"
peers=("$@")
[ ${#peers[@]} -eq 0 ] && peers=(kserve bentoml)
for peer in "${peers[@]}"; do
    lock="requirements-$peer.txt"
    [ -f "$lock" ] || { echo "no $lock: unknown peer $peer" >&2; exit 2; }
    venv=".venvs/$peer"
    if [ ! -x "$venv/bin/python" ]; then
        echo "creating $venv"
        nice -n "$NICE" "$PYTHON" -m venv "$venv"
    fi
    echo "installing $lock into $venv"
    nice -n "$NICE" "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$lock"
    if "$venv/bin/python" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is not None)'; then
        :
    else
        echo "torch ended up in $venv: not allowed for this benchmark" >&2
        exit 1
    fi
    "$venv/bin/python" -c "import importlib.metadata as m; print('$peer:', ', '.join(f'{p} {m.version(p)}' for p in ['$peer', 'onnxruntime', 'numpy', 'pillow', 'tokenizers']))"
done
