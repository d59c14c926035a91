"""Print the README's settings table from service.settings.Settings (`--write` updates README.md in place)."""

from __future__ import annotations

import sys
from pathlib import Path

from service.settings import Settings


def settings_table() -> str:
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        described = {"intra_op_threads": "cores / workers / instances (1 on 2 cores)", "models_dir": "the repository's models/"}
        if name in described:
            default = described[name]
        elif field.default_factory is not None:
            default = "(empty)"
        else:
            default = "(unset)" if field.default is None else str(field.default).lower() if isinstance(field.default, bool) else str(field.default)
        lines.append(f"| `NEUROSERVE_{name.upper()}` | `{default}` | {field.description} |")
    return "\n".join(lines)


def write_readme(path: Path = Path(__file__).resolve().parent.parent / "README.md") -> None:
    text = path.read_text()
    start, end = "<!-- settings:start -->\n", "\n<!-- settings:end -->"
    head, rest = text.split(start, 1)
    path.write_text(head + start + settings_table() + end + rest.split(end, 1)[1])


if __name__ == "__main__":
    if "--write" in sys.argv:
        write_readme()
    else:
        print(settings_table())
