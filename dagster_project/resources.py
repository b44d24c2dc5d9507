"""Typed settings with demo defaults: the demo needs no configuration at all.

`NUCLEUS_SUBTYPING_DATA` moves the data root (default `./data`), so a cohort's outputs can live
on a large disk, or on object storage as an fsspec URL (`s3://bucket/prefix`), without touching
code.
"""

from __future__ import annotations

import os

import dagster as dg

from storage.layout import DataLayout

DATA_ROOT_ENV = "NUCLEUS_SUBTYPING_DATA"


def default_data_root() -> str:
    return os.environ.get(DATA_ROOT_ENV, "data")


class DataRoot(dg.ConfigurableResource):
    """Where every artifact is written; see storage/layout.py for the folders under it."""

    root: str = ""  # empty: $NUCLEUS_SUBTYPING_DATA, else ./data, read when used; a folder or URL

    @property
    def layout(self) -> DataLayout:
        return DataLayout(self.root or default_data_root())
