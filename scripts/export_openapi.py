"""Write docs/openapi.json, the API reference, from the app itself (no server, no models needed).

    .venv/bin/python -m scripts.export_openapi
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from service.app import create_app
from service.settings import Settings

TARGET = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"


def openapi_document() -> dict:
    with tempfile.TemporaryDirectory() as empty:
        return create_app(Settings(models_dir=Path(empty), log_level="error")).openapi()


def main() -> None:
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n")
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
