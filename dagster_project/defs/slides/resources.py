"""Where slides come from: a manifest and an inbox folder, with demo defaults.

Empty paths mean the data root's defaults (`<root>/cohort/manifest.csv`, `<root>/inbox`); the
environment variables `NUCLEUS_SUBTYPING_MANIFEST` and `NUCLEUS_SUBTYPING_INBOX` set them too.
"""

import os
from pathlib import Path

import dagster as dg
import polars as pl

from pipelines.stains import UserAlias, check_user_aliases
from storage.fs import as_path
from storage.layout import DataLayout
from storage.manifest import collect_manifest, collect_slides
from storage.stain_aliases_csv import read_stain_aliases

MANIFEST_ENV = "NUCLEUS_SUBTYPING_MANIFEST"
INBOX_ENV = "NUCLEUS_SUBTYPING_INBOX"


class SlideInputs(dg.ConfigurableResource):
    """The slide manifest (CSV/Parquet) and the inbox folder watched for new slides."""

    manifest_path: str = ""  # empty: $NUCLEUS_SUBTYPING_MANIFEST, else <root>/cohort/manifest.csv
    inbox_dir: str = ""  # empty: $NUCLEUS_SUBTYPING_INBOX, else <root>/inbox
    settle_seconds: float = 10.0
    required_stains: list[str] = []  # noqa: RUF012 - pydantic copies defaults
    # The user's own stain aliases (alias -> stain), checked together with <root>/stain_aliases.csv.
    stain_aliases: dict[str, str] = {}  # noqa: RUF012 - pydantic copies defaults

    def aliases(self, layout: DataLayout) -> dict[str, str]:
        """The checked user alias table: the data root's CSV, then the config's entries."""
        rows = [UserAlias(*row) for row in read_stain_aliases(layout.stain_aliases_csv)]
        rows += [UserAlias(alias, stain, f"config stain_aliases[{alias!r}]")
                 for alias, stain in self.stain_aliases.items()]
        return check_user_aliases(rows)

    def manifest_file(self, layout: DataLayout) -> Path:
        chosen = self.manifest_path or os.environ.get(MANIFEST_ENV, "")
        return as_path(chosen) if chosen else layout.cohort_dir / "manifest.csv"

    def inbox(self, layout: DataLayout) -> Path:
        chosen = self.inbox_dir or os.environ.get(INBOX_ENV, "")
        return as_path(chosen) if chosen else layout.inbox_dir

    def collect(self, layout: DataLayout, settle_seconds: float | None = None) -> pl.DataFrame:
        """Every slide of the manifest and the inbox, validated, without content hashes."""
        return collect_manifest(
            self.manifest_file(layout),
            self.inbox(layout),
            manifest_required=bool(self.manifest_path or os.environ.get(MANIFEST_ENV)),
            settle_seconds=self.settle_seconds if settle_seconds is None else settle_seconds,
        )

    def collect_skipping(
        self, layout: DataLayout, settle_seconds: float | None = None
    ) -> tuple[pl.DataFrame, list[str]]:
        """`collect`, skipping inbox entries whose names make no valid slide id; returns the
        slides and what was skipped (one sentence per entry, saying what to rename)."""
        return collect_slides(
            self.manifest_file(layout),
            self.inbox(layout),
            manifest_required=bool(self.manifest_path or os.environ.get(MANIFEST_ENV)),
            settle_seconds=self.settle_seconds if settle_seconds is None else settle_seconds,
        )


@dg.definitions
def slides_resources() -> dg.Definitions:
    return dg.Definitions(resources={"slide_inputs": SlideInputs()})
