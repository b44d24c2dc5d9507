"""The project's SQL files and its class table, read from the `sql/` folder.

`sql/` travels as package data, so it lies beside the packages in a checkout and in
site-packages alike. The class table `sql/cell_types.csv` (the 14 classes in class index order,
their compartment, lineage and map colour) is its one home: Python reads it through
`read_cell_types` (pipelines/cell_types.py), SQL through `cell_types_sql`, which every caller
runs before a rule file.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from storage.errors import StoreLayoutError
from storage.sql_quote import quote_literal

SQL_DIR = Path(__file__).resolve().parents[1] / "sql"
CELL_TYPES_CSV = "cell_types.csv"
CELL_TYPES_SQL = "cell_types.sql"
CELL_TYPES_CSV_VARIABLE = "cell_types_csv"  # the DuckDB variable cell_types.sql reads the path from
_CELL_TYPE_COLUMNS = ("cell_type", "class_index", "compartment", "lineage", "red", "green", "blue")


def sql_path(name: str | Path) -> Path:
    """A file under the project's sql/ folder (a relative name) or any path (an absolute one)."""
    path = Path(name)
    if not path.is_absolute():
        path = SQL_DIR / path
    if not path.is_file():
        raise StoreLayoutError(
            f"SQL file {path} does not exist; give a file under {SQL_DIR} or an absolute path."
        )
    return path


def read_sql(name: str | Path) -> str:
    """The text of a SQL file: a name under the project's sql/ folder, or any path."""
    return sql_path(name).read_text(encoding="utf-8")


@dataclass(frozen=True)
class CellTypeRow:
    """One class of the class table; `lineage` is None outside the immune compartment."""

    cell_type: str
    class_index: int
    compartment: str
    lineage: str | None
    rgb: tuple[int, int, int]


def read_cell_types() -> tuple[CellTypeRow, ...]:
    """The class table in class index order, checked: the header, unique names, and a class
    index equal to the row's position (the index is the model's output unit)."""
    path = sql_path(CELL_TYPES_CSV)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != _CELL_TYPE_COLUMNS:
            raise StoreLayoutError(
                f"{path}: the header must be {','.join(_CELL_TYPE_COLUMNS)}, "
                f"not {','.join(reader.fieldnames or ())}.")
        rows = tuple(
            CellTypeRow(cell_type=r["cell_type"], class_index=int(r["class_index"]),
                        compartment=r["compartment"], lineage=r["lineage"] or None,
                        rgb=(int(r["red"]), int(r["green"]), int(r["blue"])))
            for r in reader)
    for position, row in enumerate(rows):
        if row.class_index != position:
            raise StoreLayoutError(
                f"{path}: {row.cell_type!r} has class_index {row.class_index} on row "
                f"{position + 1}; list the classes in class index order from 0.")
    if len({r.cell_type for r in rows}) != len(rows):
        raise StoreLayoutError(f"{path}: a cell_type is listed twice; give each class once.")
    return rows


def cell_types_sql() -> str:
    """SQL creating the class table `cell_types` and the ENUM type `cell_type_enum` (both
    TEMP: a catalog file keeps only what a rule file makes of them) from sql/cell_types.csv."""
    path = quote_literal(str(sql_path(CELL_TYPES_CSV)))
    return (f"SET VARIABLE {CELL_TYPES_CSV_VARIABLE} = {path};\n"
            + read_sql(CELL_TYPES_SQL))
