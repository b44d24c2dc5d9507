"""The classifier report under layout.reports_dir, each file written atomically:

    classifier_report.md          the report (links the figures by relative path)
    classifier/<name>.png         its figures
    classifier/<name>.csv         its tables (per-fold and summary metrics)

Figures and tables are written first and the Markdown last, so a report never links a
missing figure.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import polars as pl

from storage.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from storage.errors import StoreLayoutError
from storage.fs import as_path

REPORT_FILE = "classifier_report.md"
ASSET_DIR = "classifier"


def report_path(reports_dir: Path) -> Path:
    return as_path(reports_dir) / REPORT_FILE


def asset_link(name: str) -> str:
    """How the Markdown report links a file written by `write_report`."""
    return f"{ASSET_DIR}/{name}"


def write_report(
    reports_dir: Path,
    markdown: str,
    figures: Mapping[str, bytes],
    tables: Mapping[str, pl.DataFrame] | None = None,
) -> Path:
    reports_dir = as_path(reports_dir)
    assets = reports_dir / ASSET_DIR
    for name, data in figures.items():
        atomic_write_bytes(assets / name, data)
    for name, frame in (tables or {}).items():
        with atomic_path(assets / name) as tmp:
            frame.write_csv(tmp)
    return atomic_write_text(report_path(reports_dir), markdown)


def read_vhe_overview(
    path: Path, mpp: float = 0.5, max_px: int = 1200
) -> tuple[np.ndarray, float] | None:
    """A slide's virtual H&E for a whole-slide map: the level at `mpp` µm/px (else the
    coarsest level), subsampled to at most `max_px` per side; (rgb, µm per pixel of it).

    None when the slide has no virtual H&E store (the virtual_he asset is not materialised, or
    this checkout has no storage.vhe_store): the maps then show centroids only.
    """
    path = as_path(path)
    if not path.exists():
        return None
    try:
        from storage.vhe_store import open_vhe
    except ImportError:
        return None
    reader = open_vhe(path)
    try:
        level = reader.level_of(mpp)
    except StoreLayoutError:
        level = max(range(len(reader.level_mpp)), key=lambda i: reader.level_mpp[i])
    h, w = reader.shape(level)
    step = max(1, -(-max(h, w) // max_px))
    rgb = reader.read(level=level)[::step, ::step]
    return np.ascontiguousarray(rgb), float(reader.level_mpp[level]) * step
