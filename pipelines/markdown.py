"""Markdown tables of small frames, for asset metadata and reports: the one table writer.

A cell is `none` for a null, `formats[column](value)` where a column has a formatter, the
float format for floats, and `str(value)` otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import polars as pl

# Rows an asset's preview table shows.
PREVIEW_ROWS = 30


def markdown_table(
    frame: pl.DataFrame,
    limit: int | None = None,
    *,
    float_format: str | None = None,
    none: str = "",
    formats: Mapping[str, Callable[[Any], str]] | None = None,
) -> str:
    """The first `limit` rows (all when None) of `frame` as a Markdown table."""
    head = frame if limit is None else frame.head(limit)
    formats = formats or {}

    def cell(name: str, value: Any) -> str:
        if value is None:
            return none
        if name in formats:
            return formats[name](value)
        if float_format is not None and isinstance(value, float):
            return format(value, float_format)
        return str(value)

    lines = ["| " + " | ".join(head.columns) + " |", "|" + "---|" * len(head.columns)]
    lines += ["| " + " | ".join(cell(n, v) for n, v in zip(head.columns, row, strict=True))
              + " |" for row in head.iter_rows()]
    return "\n".join(lines)


def preview_markdown(frame: pl.DataFrame, columns: list[str], limit: int = 20) -> str:
    """The manifest's first `limit` rows of `columns` (hashes shortened, paths as file names),
    for asset metadata."""
    table = markdown_table(frame.select(columns), limit, formats={
        "content_sha256": lambda value: str(value)[:12],
        "path": lambda value: Path(value).name,
    })
    if frame.height > limit:
        table += f"\n\n… and {frame.height - limit} more slides."
    return table
