"""sql/cell_type_rules.sql against a separate, plain-Python reading of Table 1.

The Python reading below was written from the paper's table, step by step, without looking at
the SQL: conflicts are listed as the stain pairs the table names, and final annotations are
applied in order with a later step overwriting an earlier one.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from pipelines.cell_types import CELL_TYPES, HIERARCHY
from storage.sql_files import cell_types_sql

RULES_SQL = Path(__file__).resolve().parents[2] / "sql" / "cell_type_rules.sql"

STAINS = (
    "nakatpase", "panck", "muc2", "cga", "vimentin", "sma", "sox9", "olfm4", "lysozyme",
    "cd45", "cd20", "cd68", "cd11b", "cd3d", "cd8", "cd4",
)

EPI = ("nakatpase", "panck", "muc2", "cga")
STROMA = ("vimentin", "sma")
IMMUNE = ("cd45", "cd20", "cd68", "cd11b", "lysozyme", "cd3d", "cd8", "cd4")
PROGENITOR = ("sox9", "olfm4")


def table1(pos: dict[str, bool]) -> tuple[str | None, int | None, list[int]]:
    """(cell_type, excluded_at_step, final steps that matched) for one positivity pattern."""

    def p(stain: str) -> bool:
        return pos[stain]

    def n(stain: str) -> bool:
        return not pos[stain]

    def any_pair(pairs: list[tuple[str, str]]) -> bool:
        return any(p(a) and p(b) for a, b in pairs)

    epi = any(p(s) for s in EPI)                      # step 1
    stroma = any(p(s) for s in STROMA)                # step 2
    immune = any(p(s) for s in IMMUNE)                # step 4
    prog = any(p(s) for s in PROGENITOR)              # step 9

    exclusions: list[tuple[int, bool]] = [
        (3, epi and stroma),
        (5, any_pair([("cd68", "cd3d"), ("cd68", "cd20"), ("cd68", "cd4"), ("cd68", "cd8"),
                      ("cd68", "cd11b")])),
        (6, any_pair([("cd11b", "cd3d"), ("cd11b", "cd20"), ("cd11b", "cd4"), ("cd11b", "cd8"),
                      ("cd11b", "cd68")])),
        (7, any_pair([("cd20", "cd3d"), ("cd20", "cd4"), ("cd20", "cd8")])),
        (8, (n("cd3d") and n("cd45") and p("cd4")) or (n("cd3d") and n("cd45") and p("cd8"))
            or (p("cd4") and p("cd8"))),
        (10, not epi and not stroma),
        (11, (p("muc2") and immune) or (p("muc2") and prog) or (p("muc2") and p("sma"))),
        (12, (p("cga") and immune) or (p("cga") and p("sma")) or (p("cga") and prog)
             or (p("cga") and p("muc2"))),
        (13, p("sma") and immune),
        (14, immune and prog),
        (15, not epi and not stroma and not prog and not immune),
        (16, epi and immune),
    ]
    for step, excluded in exclusions:
        if excluded:
            return None, step, []

    stromal_fibro = stroma and not immune             # step 20
    finals: list[tuple[int, str, bool]] = [
        (17, "goblet", epi and p("muc2") and not prog),
        (18, "endocrine", epi and p("cga") and not prog),
        (19, "epithelial", epi and n("cga") and not prog and n("muc2")),
        (21, "fibroblast", stromal_fibro and p("sma") and not prog),
        (22, "stromal", stromal_fibro and n("sma") and not prog),
        (23, "myeloid", immune and p("lysozyme") and n("cd68") and n("cd11b") and not prog
         and n("cd20") and n("cd3d") and n("cd8") and n("cd4")),
        (24, "helper_t", immune and p("cd4") and not prog),
        (25, "cytotoxic_t", immune and p("cd8") and not prog),
        (26, "t_cell_receptor", immune and p("cd3d") and n("cd4") and n("cd8")),
        (27, "monocyte", immune and p("cd11b") and n("cd3d") and not prog and n("cd4")
         and n("cd8")),
        (28, "macrophage", immune and p("cd68") and n("cd3d") and not prog and n("cd4")
         and n("cd8")),
        (29, "b_cell", immune and p("cd20") and n("cd68") and n("cd3d") and not prog
         and n("cd4") and n("cd8")),
        (30, "leukocyte", immune and p("cd45") and n("cd20") and n("cd68") and n("cd3d")
         and not prog and n("cd4") and n("cd8") and n("cd11b") and n("lysozyme")),
        (31, "progenitor", prog),
    ]
    label: str | None = None
    matched: list[int] = []
    for step, name, grouped in finals:
        if grouped:
            label = name  # a later final annotation overwrites an earlier one
            matched.append(step)
    return label, None, matched


def _all_patterns() -> np.ndarray:
    codes = np.arange(2 ** len(STAINS), dtype=np.int64)
    return ((codes[:, None] >> np.arange(len(STAINS))) & 1).astype(bool)


def _apply_sql(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(cell_types_sql())  # the class table the rule file reads
    con.execute(RULES_SQL.read_text())


@pytest.fixture(scope="module")
def all_patterns() -> tuple[np.ndarray, dict[int, tuple[str | None, int | None]]]:
    bits = _all_patterns()
    con = duckdb.connect()
    table = {"nucleus_id": np.arange(len(bits), dtype=np.int64)}
    table.update({s: bits[:, i] for i, s in enumerate(STAINS)})
    con.register("patterns", pa.table(table))
    con.execute("CREATE TABLE stain_positivity AS SELECT * FROM patterns")
    _apply_sql(con)
    rows = con.execute(
        "SELECT nucleus_id, cell_type, excluded_at_step FROM nucleus_cell_type"
    ).fetchall()
    assert len(rows) == len(bits)  # one row per nucleus
    return bits, {r[0]: (r[1], r[2]) for r in rows}


def test_all_65536_patterns_match_python_reading(all_patterns) -> None:
    bits, sql = all_patterns
    assert len(sql) == 2 ** 16
    mismatches = []
    for code, row in enumerate(bits):
        label, step, _ = table1(dict(zip(STAINS, row.tolist(), strict=True)))
        if sql[code] != (label, step):
            mismatches.append((code, sql[code], (label, step)))
    assert mismatches == []


def test_final_annotations_are_disjoint_and_cover_every_kept_nucleus(all_patterns) -> None:
    bits, _ = all_patterns
    n_kept = 0
    for row in bits:
        label, step, matched = table1(dict(zip(STAINS, row.tolist(), strict=True)))
        if step is None:
            n_kept += 1
            # exactly one final step: first-match and last-match readings agree
            assert len(matched) == 1, matched
            assert label is not None
    assert n_kept > 0


def test_step_counts_over_all_patterns(all_patterns) -> None:
    _, sql = all_patterns
    steps = [s for _, s in sql.values()]
    # step 15 can never be first: Epi- and Stroma- nuclei already left at step 10
    assert 15 not in steps
    assert {s for s in steps if s is not None} == {3, 5, 6, 7, 8, 10, 11, 12, 13, 14, 16}
    labels = {c for c, _ in sql.values() if c is not None}
    assert labels == set(CELL_TYPES)
    # excluded rows have no class, kept rows always have one
    assert all((c is None) == (s is not None) for c, s in sql.values())


def _label(con: duckdb.DuckDBPyConnection, **positive: bool) -> tuple[str | None, int | None]:
    values = ", ".join(
        ("TRUE" if positive.get(s, False) else "FALSE") + f" AS {s}" for s in STAINS
    )
    con.execute(f"CREATE OR REPLACE TABLE stain_positivity AS SELECT 1::BIGINT AS nucleus_id, "
                f"{values}")
    _apply_sql(con)
    return con.execute("SELECT cell_type, excluded_at_step FROM nucleus_cell_type").fetchone()


@pytest.mark.parametrize(
    ("positive", "expected"),
    [
        ({"panck": True}, ("epithelial", None)),
        ({"panck": True, "muc2": True}, ("goblet", None)),
        ({"nakatpase": True, "cga": True}, ("endocrine", None)),
        ({"panck": True, "sox9": True}, ("progenitor", None)),
        ({"vimentin": True, "olfm4": True}, ("progenitor", None)),
        ({"sma": True}, ("fibroblast", None)),
        ({"vimentin": True}, ("stromal", None)),
        ({"vimentin": True, "cd45": True}, ("leukocyte", None)),
        ({"vimentin": True, "cd3d": True, "cd4": True}, ("helper_t", None)),
        ({"vimentin": True, "cd45": True, "cd8": True}, ("cytotoxic_t", None)),
        ({"vimentin": True, "cd3d": True}, ("t_cell_receptor", None)),
        ({"vimentin": True, "cd20": True, "cd45": True}, ("b_cell", None)),
        ({"vimentin": True, "cd68": True, "lysozyme": True}, ("macrophage", None)),
        ({"vimentin": True, "cd11b": True}, ("monocyte", None)),
        ({"vimentin": True, "lysozyme": True, "cd45": True}, ("myeloid", None)),
        ({"panck": True, "vimentin": True}, (None, 3)),
        ({"vimentin": True, "cd68": True, "cd3d": True}, (None, 5)),
        ({"vimentin": True, "cd11b": True, "cd8": True}, (None, 6)),
        ({"vimentin": True, "cd20": True, "cd3d": True}, (None, 7)),
        ({"vimentin": True, "cd4": True}, (None, 8)),
        ({"vimentin": True, "cd3d": True, "cd4": True, "cd8": True}, (None, 8)),
        ({"cd3d": True}, (None, 10)),
        ({}, (None, 10)),
        ({"sox9": True}, (None, 10)),
        ({"muc2": True, "sox9": True}, (None, 11)),
        ({"cga": True, "sma": True}, (None, 3)),
        ({"cga": True, "muc2": True}, (None, 12)),
        ({"sma": True, "cd45": True}, (None, 13)),
        ({"vimentin": True, "cd45": True, "sox9": True}, (None, 14)),
        ({"panck": True, "cd45": True}, (None, 16)),
    ],
)
def test_single_patterns(positive: dict[str, bool], expected: tuple) -> None:
    assert _label(duckdb.connect(), **positive) == expected


def test_null_positivity_counts_as_negative() -> None:
    con = duckdb.connect()
    cols = ", ".join(f"NULL::BOOLEAN AS {s}" for s in STAINS if s != "panck")
    con.execute(
        f"CREATE TABLE stain_positivity AS SELECT 7::BIGINT AS nucleus_id, TRUE AS panck, {cols}"
    )
    _apply_sql(con)
    assert con.execute("SELECT * FROM nucleus_cell_type").fetchall() == [(7, "epithelial", None)]


def test_contract_columns_and_types() -> None:
    con = duckdb.connect()
    _label(con, panck=True)
    described = con.execute("DESCRIBE nucleus_cell_type").fetchall()
    # cell_type: an ENUM of exactly the 14 classes, in class index order
    enum = "ENUM(" + ", ".join(f"'{c}'" for c in CELL_TYPES) + ")"
    assert [(r[0], r[1]) for r in described] == [
        ("nucleus_id", "BIGINT"), ("cell_type", enum), ("excluded_at_step", "SMALLINT"),
    ]
    # ... that reads, compares and joins like text
    assert con.execute(
        "SELECT cell_type = 'epithelial', cell_type || '', typeof(cell_type::VARCHAR), "
        "enum_code(cell_type) FROM nucleus_cell_type"
    ).fetchone() == (True, "epithelial", "VARCHAR", CELL_TYPES.index("epithelial"))
    joined = con.execute(
        "SELECT h.class_index FROM nucleus_cell_type AS c "
        "JOIN cell_type_hierarchy AS h ON h.cell_type = c.cell_type"
    ).fetchall()
    assert joined == [(CELL_TYPES.index("epithelial"),)]


def test_hierarchy_table_matches_cell_types_module() -> None:
    con = duckdb.connect()
    _label(con)
    rows = con.execute(
        "SELECT cell_type, class_index, compartment, lineage FROM cell_type_hierarchy "
        "ORDER BY class_index"
    ).fetchall()
    assert [r[0] for r in rows] == list(CELL_TYPES)
    assert [r[1] for r in rows] == list(range(len(CELL_TYPES)))
    assert {r[0]: (r[2], r[3]) for r in rows} == HIERARCHY


def test_extra_columns_in_stain_positivity_are_ignored() -> None:
    con = duckdb.connect()
    cols = ", ".join(f"FALSE AS {s}" for s in STAINS if s != "sma")
    con.execute(
        "CREATE TABLE stain_positivity AS SELECT 3::BIGINT AS nucleus_id, 'S1' AS slide_id, "
        f"TRUE AS sma, TRUE AS ki67, {cols}"
    )
    _apply_sql(con)
    assert con.execute("SELECT * FROM nucleus_cell_type").fetchall() == [(3, "fibroblast", None)]


def test_every_pattern_gets_exactly_one_row(all_patterns) -> None:
    _, sql = all_patterns
    assert sorted(sql) == list(range(2 ** 16))


def test_null_calls_anywhere_count_as_negative() -> None:
    """Random patterns with random NULL calls get the class of the same pattern with NULL read
    as negative (the lookup treats NULL like FALSE in every stain)."""
    rng = np.random.default_rng(5)
    n = 3000
    bits = rng.random((n, len(STAINS))) < 0.3
    missing = rng.random((n, len(STAINS))) < 0.2
    table = {"nucleus_id": np.arange(n, dtype=np.int64)}
    table.update({s: pa.array(bits[:, i], mask=missing[:, i]) for i, s in enumerate(STAINS)})
    con = duckdb.connect()
    con.register("patterns", pa.table(table))
    con.execute("CREATE TABLE stain_positivity AS SELECT * FROM patterns")
    _apply_sql(con)
    rows = con.execute("SELECT nucleus_id, cell_type, excluded_at_step FROM nucleus_cell_type "
                       "ORDER BY nucleus_id").fetchall()
    assert [r[0] for r in rows] == list(range(n))
    for (_, cell_type, step), row, gap in zip(rows, bits, missing, strict=True):
        label, want_step, _ = table1(dict(zip(STAINS, (row & ~gap).tolist(), strict=True)))
        assert (cell_type, step) == (label, want_step)


def test_pattern_table_holds_every_pattern_once_and_the_file_can_run_again() -> None:
    con = duckdb.connect()
    _label(con, panck=True)
    _apply_sql(con)  # a second run replaces the tables and the view
    n, distinct = con.execute(
        f"SELECT count(*), count(DISTINCT ({', '.join(STAINS)})) FROM cell_type_patterns"
    ).fetchone()
    assert n == distinct == 2 ** 16
    assert con.execute("SELECT * FROM nucleus_cell_type").fetchall() == [(1, "epithelial", None)]
