"""Typed settings with demo defaults: the demo needs no configuration at all.

`NUCLEUS_SUBTYPING_DATA` moves the data root (default `./data`), so a cohort's outputs can live
on a large disk without touching code.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from storage.layout import DataLayout

DATA_ROOT_ENV = "NUCLEUS_SUBTYPING_DATA"


def default_data_root() -> str:
    return os.environ.get(DATA_ROOT_ENV, "data")


class DataRoot(dg.ConfigurableResource):
    """Where every artifact is written; see storage/layout.py for the folders under it."""

    root: str = ""  # empty: $NUCLEUS_SUBTYPING_DATA, else ./data, read when used

    @property
    def layout(self) -> DataLayout:
        return DataLayout(Path(self.root or default_data_root()))
