"""Recipe configs (dataclasses): ``--epochs`` / ``--batch-size`` / ``--set key=value`` on the command line, and the
config a checkpoint saved read back with the current dataclass."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, TypeVar

C = TypeVar("C")


def parse_setting(default, value: str):
    """One ``--set key=value`` as the type of ``default``: bool (1/true/yes), int, float, str, or a tuple
    (comma-separated, of the default's element type; empty = ())."""
    if isinstance(default, bool):
        return value.lower() in ("1", "true", "yes")
    if isinstance(default, tuple):
        kind = type(default[0]) if default else str
        return tuple(kind(v) for v in value.split(",") if v)
    return type(default)(value)


def config_from_args(default: C, args, batch_field: str = "batch_size") -> C:
    """A copy of the recipe's default config dataclass with --epochs / --batch-size (into ``batch_field``) and every
    ``--set key=value`` applied (e.g. --set amp=true --set teachers=a,b)."""
    overrides = {}
    if getattr(args, "epochs", None):
        overrides["epochs"] = args.epochs
    if getattr(args, "batch_size", None):
        overrides[batch_field] = args.batch_size
    names = [f.name for f in dataclasses.fields(default)]
    for item in getattr(args, "set", None) or []:
        key, _, value = item.partition("=")
        if key not in names:
            raise SystemExit(f"--set {key}: not a field of {type(default).__name__} ({', '.join(names)})")
        overrides[key] = parse_setting(getattr(default, key), value)
    return dataclasses.replace(default, **overrides)


def config_from_checkpoint(default: C, saved: Mapping[str, Any], retired: Mapping[str, Any] | None = None) -> C:
    """The saved config over the recipe's default (fields added since keep their defaults).

    ``retired``: fields the recipe no longer has, each with the one value under which a checkpoint still means what
    the current code does (e.g. ``lm_epochs: 0``, no LM pretraining); any other value is refused, not ignored.
    """
    names = {f.name for f in dataclasses.fields(default)}
    kept = {}
    for key, value in saved.items():
        if key in names:
            kept[key] = value
        elif retired is not None and key in retired:
            if value != retired[key]:
                raise SystemExit(f"this checkpoint was trained with {key}={value!r}, which this code no longer "
                                 f"supports (only {retired[key]!r})")
        else:
            raise SystemExit(f"checkpoint config field {key!r} is not a field of {type(default).__name__}")
    return dataclasses.replace(default, **kept)
