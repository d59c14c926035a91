"""Print the README's settings table from service.settings.Settings (run after changing a setting)."""

from __future__ import annotations

from service.settings import Settings


def settings_table() -> str:
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        described = {"intra_op_threads": "min(4, cores), cores - 1 above 2 cores", "models_dir": "the repository's models/"}
        if name in described:
            default = described[name]
        elif field.default_factory is not None:
            default = "(empty)"
        else:
            default = "(unset)" if field.default is None else str(field.default).lower() if isinstance(field.default, bool) else str(field.default)
        lines.append(f"| `NEUROSERVE_{name.upper()}` | `{default}` | {field.description} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(settings_table())
