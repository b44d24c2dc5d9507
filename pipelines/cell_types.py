"""The 14 nucleus classes of Table 1, their order (the class index) and coarse hierarchy.

The table itself is `sql/cell_types.csv`, read here for Python and by `sql/cell_types.sql` for
the rule files, so Python and SQL share one list.
"""

from __future__ import annotations

from storage.sql_files import read_cell_types

_TABLE = read_cell_types()

CELL_TYPES: tuple[str, ...] = tuple(row.cell_type for row in _TABLE)
CLASS_INDEX: dict[str, int] = {row.cell_type: row.class_index for row in _TABLE}

# cell_type -> (compartment, lineage); lineage is None outside the immune compartment.
HIERARCHY: dict[str, tuple[str, str | None]] = {
    row.cell_type: (row.compartment, row.lineage) for row in _TABLE
}

# One colour per class for maps and QuPath export (RGB, 0-255).
CLASS_COLOURS: dict[str, tuple[int, int, int]] = {row.cell_type: row.rgb for row in _TABLE}
