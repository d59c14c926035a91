"""The shared data's tab-separated files: a header row naming the columns, then one row per example; no quoting
(QUOTE_NONE: quotes are text)."""

from __future__ import annotations

import csv
from pathlib import Path


def read_columns(path: Path, header: tuple[str, ...], limit: int | None = None) -> list[list[str]]:
    """The first ``len(header)`` columns of every row (the first ``limit`` rows), one list per column; refuses a file
    whose header does not start with ``header``."""
    columns: list[list[str]] = [[] for _ in header]
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        got = next(reader)
        if got[: len(header)] != list(header):
            raise ValueError(f"{path}: expected header {'<TAB>'.join(header)}, got {got}")
        for row in reader:
            if len(row) < len(header):
                raise ValueError(f"{path}: line {reader.line_num} has {len(row)} of the {len(header)} columns")
            for column, value in zip(columns, row):
                column.append(value)
            if limit and len(columns[0]) >= limit:
                break
    return columns
