"""The SCIMAP workflow compiler: bad input names the row; the compiled file labels like SCIMAP
(hand-worked cells here; SCIMAP itself in tests/benchmarks/test_bench_scimap.py)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipelines.errors import StainError
from pipelines.scimap_workflow import compile_workflow, main
from storage.catalog import build_catalog, project_catalog_spec, query_catalog

WORKFLOW = ",,CD45,ECAD,CD4,CD8\nall,Immune,pos,,,\nall,Epi,,pos,,\nImmune,T4,,,pos,neg\n"
GATES = "markers,gates\nCD45,5\nECAD,5\nCD4,5\nCD8,5\n"


def _write(tmp_path: Path, workflow: str = WORKFLOW, gates: str = GATES) -> tuple[Path, Path]:
    (tmp_path / "w.csv").write_text(workflow)
    (tmp_path / "g.csv").write_text(gates)
    return tmp_path / "w.csv", tmp_path / "g.csv"


def _features() -> pl.DataFrame:
    import math

    # intensities chosen so ln(1+x) lands on both sides of each gate (5)
    raw = {
        "mean_cd45": [0.0, 400.0, 400.0, 10.0, math.e**5 - 1],
        "mean_ecad": [0.0, 10.0, 10.0, 900.0, 1.0],
        "mean_cd4": [0.0, 900.0, 1.0, 1.0, math.e**5 - 1],
        "mean_cd8": [0.0, 1.0, 900.0, 1.0, 1.0],
    }
    return pl.DataFrame({"nucleus_id": [1, 2, 3, 4, 5], "slide_id": ["s1"] * 5, **raw})


def _labels(sql: str, features: pl.DataFrame) -> list[str]:
    con = duckdb.connect()
    con.register("nucleus_features", features.to_arrow())
    con.execute(sql)
    return [
        r[0]
        for r in con.sql("SELECT cell_type FROM nucleus_cell_type ORDER BY nucleus_id").fetchall()
    ]


def test_labels_follow_the_levels(tmp_path: Path) -> None:
    compiled = compile_workflow(*_write(tmp_path))
    # 1: nothing above its gate -> Unknown; 2: CD45+ CD4+ CD8- -> T4; 3: CD45+, CD8+ -> Immune
    # (T4 scores below 0.5: Immune-rest falls back to Immune); 4: ECAD+ -> Epi;
    # 5: CD45 at the gate value scores exactly 0.5 -> Immune, CD4 at 0.5 and CD8 low -> T4
    assert _labels(compiled.sql, _features()) == ["Unknown", "T4", "Immune", "Epi", "T4"]
    assert compiled.stains == ("CD45", "ECAD", "CD4", "CD8")


@pytest.mark.parametrize(
    ("workflow", "message"),
    [
        (",,CD45,CD99\nall,Immune,pos,pos\n", "row 2 (Immune): marker CD99 has no gate"),
        (",,CD45\nall,Immune,posit\n", "row 2 (Immune): unknown category 'posit'"),
        (",,CD45\nall,Immune,pos\nMyeloid,Mac,pos\n", "row 3: parent phenotype 'Myeloid'"),
    ],
)
def test_bad_workflows_name_the_row(tmp_path: Path, workflow: str, message: str) -> None:
    with pytest.raises(StainError, match=message.replace("(", r"\(").replace(")", r"\)")):
        compile_workflow(*_write(tmp_path, workflow))


def test_marker_missing_from_data_names_the_row(tmp_path: Path) -> None:
    with pytest.raises(StainError, match=r"row 4 \(T4\): marker CD8 is not in the data"):
        compile_workflow(*_write(tmp_path), data_stains=["CD45", "ECAD", "CD4"])


def test_catalog_uses_the_compiled_file(tmp_path: Path) -> None:
    from pipelines.labels import positivity_view_sql
    from storage.layout import DataLayout
    from storage.parquet_dataset import PART_NAME

    layout = DataLayout(tmp_path / "root")
    rule_file = tmp_path / "scimap.sql"
    main([*map(str, _write(tmp_path)), str(rule_file)])
    features = _features()
    (layout.features_dir / "slide_id=s1").mkdir(parents=True)
    features.write_parquet(layout.features_dir / "slide_id=s1" / PART_NAME)
    thresholds = pl.DataFrame(
        {
            "slide_id": ["s1"] * 4,
            "stain_key": ["cd45", "ecad", "cd4", "cd8"],
            "stain": ["CD45", "ECAD", "CD4", "CD8"],
            "threshold": [1.0] * 4,
            "source": ["manual"] * 4,
            "method": ["manual"] * 4,
            "set_by": ["test"] * 4,
            "note": [""] * 4,
            "threshold_version": ["v1"] * 4,
        }
    )
    (layout.thresholds_dir / "slide_id=s1").mkdir(parents=True)
    thresholds.write_parquet(layout.thresholds_dir / "slide_id=s1" / PART_NAME)
    db = build_catalog(
        tmp_path / "catalog.duckdb",
        project_catalog_spec(
            layout, positivity_view_sql(["cd45", "ecad", "cd4", "cd8"]), rule_file
        ),
    )
    got = query_catalog(db, "SELECT nucleus_id, cell_type FROM nucleus_classes ORDER BY nucleus_id")
    assert got["cell_type"].to_list() == ["Unknown", "T4", "Immune", "Epi", "T4"]
