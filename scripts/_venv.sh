# Sourced by the other scripts: create or update .venv with the given extras (Debian/Ubuntu, Python 3.11).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
VENV="$ROOT/.venv"
EXTRAS="$1"
STAMP="$VENV/.neuroserve-$(echo "$EXTRAS" | tr ',' '-')"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
# Reinstall only when the project's requirements changed since the last install with these extras.
WANT="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e "$ROOT[$EXTRAS]"
  echo "$WANT" > "$STAMP"
fi
