"""Asset metadata the Dagster UI shows: PNG previews, linked figures, tables and commands.

One home for how a preview is written, so every stage's assets show theirs the same way.
"""

from __future__ import annotations

import base64

import dagster as dg
import polars as pl

from pipelines.markdown import PREVIEW_ROWS, markdown_table
from storage.fs import StoragePath, link


def _captioned(caption: str, image: str) -> str:
    return f"{caption}\n\n{image}" if caption else image


def png_md(png: bytes, alt: str = "preview", caption: str = "") -> dg.MetadataValue:
    """PNG bytes inlined as a base64 data URL: the UI shows it without reaching the file."""
    encoded = base64.b64encode(png).decode("ascii")
    return dg.MetadataValue.md(_captioned(caption, f"![{alt}](data:image/png;base64,{encoded})"))


def linked_png_md(path: StoragePath, alt: str = "preview", caption: str = "") -> dg.MetadataValue:
    """A written figure shown through its link (file:// or URL), for figures too big to inline."""
    return dg.MetadataValue.md(_captioned(caption, f"![{alt}]({link(path)})"))


def table_md(frame: pl.DataFrame, limit: int | None = PREVIEW_ROWS) -> dg.MetadataValue:
    """The first `limit` rows of a small frame (all when None) as a Markdown table."""
    return dg.MetadataValue.md(markdown_table(frame, limit))


def command_md(command: str) -> dg.MetadataValue:
    """A command or snippet to copy, in code format."""
    return dg.MetadataValue.md(f"`{command}`")
