"""Settings of the labelling stage, with demo defaults (no configuration needed)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from pipelines.thresholds import AutoThresholdParams
from storage.catalog import DEFAULT_RULES_SQL
from storage.fs import as_path
from storage.layout import DataLayout


class LabelSettings(dg.ConfigurableResource):
    """Where the manual thresholds CSV and the catalog live, and how thresholds are suggested.

    Empty paths mean the defaults under the data root: `<root>/thresholds.csv` (absent: every
    threshold automatic) and `<root>/catalog.duckdb`. `catalog_rules_sql` names a rule file
    under sql/ (or a path); e.g. `rules/mibi_breast.sql` for the MIBI breast panel. The label
    table for training always uses Table 1 (`cell_type_rules.sql`).
    """

    thresholds_csv: str = ""
    catalog_db: str = ""
    auto_method: str = "otsu_log1p"
    catalog_rules_sql: str = DEFAULT_RULES_SQL
    review_figures: bool = True

    def csv_path(self, layout: DataLayout) -> Path:
        chosen = self.thresholds_csv
        return as_path(chosen) if chosen else layout.thresholds_csv

    def catalog_path(self, layout: DataLayout) -> Path:
        return as_path(self.catalog_db) if self.catalog_db else layout.catalog_db

    def params(self) -> AutoThresholdParams:
        return AutoThresholdParams(method=self.auto_method)  # type: ignore[arg-type]


@dg.definitions
def labels_resources() -> dg.Definitions:
    return dg.Definitions(resources={"label_settings": LabelSettings()})
