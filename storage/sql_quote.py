"""Quoting for SQL text the project generates: DuckDB identifiers and string literals.

One home for both, read by the catalog (`storage/catalog.py`) and by the SQL the labelling and
the SCIMAP workflow generate (`pipelines/labels.py`, `pipelines/scimap_workflow.py`).
"""

from __future__ import annotations


def quote_identifier(name: str) -> str:
    """A DuckDB identifier in double quotes (inner quotes doubled)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """A DuckDB string literal in single quotes (inner quotes doubled)."""
    return "'" + text.replace("'", "''") + "'"
