"""SCIMAP's own exemplar (replicated to 1 M cells): SCIMAP 2.4.1 `rescale` + `phenotype_cells`
in its own venv (it pins numpy 1.26) against the compiled rule SQL in DuckDB, cell for cell.

Set SCIMAP_PYTHON to that venv's python (default /work/.scimap-venv/bin/python); skipped when
absent. SCIMAP_BENCH_CELLS sets the cell count (default 1,000,000).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipelines.scimap_workflow import compile_workflow

SCIMAP_PYTHON = Path(os.environ.get("SCIMAP_PYTHON", "/work/.scimap-venv/bin/python"))
MARKERS = ["ELANE", "CD57", "CD45", "CD11B", "SMA", "CD16", "ECAD", "FOXP3", "NCAM"]
IMAGE = "exemplar-001--unmicst_cell"
RUN_SCIMAP = """
import sys, time, anndata as ad, pandas as pd, numpy as np, scimap as sm
cells = pd.read_csv(sys.argv[1])
markers = sys.argv[5].split(",")
a = ad.AnnData(cells[markers].to_numpy(np.float64),
               obs=pd.DataFrame({"imageid": sys.argv[6]}, index=cells.CellID.astype(str)))
a.var.index = markers
gates, workflow = pd.read_csv(sys.argv[2]), pd.read_csv(sys.argv[3])
t = time.perf_counter()
a = sm.pp.rescale(a, gate=gates, verbose=False)
a = sm.tl.phenotype_cells(a, phenotype=workflow, label="phenotype", verbose=False)
print("SCIMAP_S", time.perf_counter() - t)
out = {"CellID": cells.CellID.values, "phenotype": a.obs["phenotype"].values}
pd.DataFrame(out).to_csv(sys.argv[4], index=False)
"""


def _example_dir() -> Path:
    out = subprocess.run(
        [str(SCIMAP_PYTHON), "-c", "import scimap, os; print(os.path.dirname(scimap.__file__))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip().splitlines()[-1]) / "tests" / "scimapExampleData"


@pytest.mark.skipif(not SCIMAP_PYTHON.exists(), reason="no SCIMAP venv (SCIMAP_PYTHON)")
def test_compiled_sql_matches_scimap_and_is_faster(tmp_path: Path) -> None:
    n_cells = int(os.environ.get("SCIMAP_BENCH_CELLS", "1000000"))
    data = _example_dir()
    cells = pl.read_csv(data / "exemplar-001--unmicst_cell.csv").select("CellID", *MARKERS)
    reps = -(-n_cells // cells.height)
    big = (
        pl.concat([cells] * reps)
        .head(n_cells)
        .with_columns(
            CellID=pl.int_range(1, n_cells + 1, dtype=pl.Int64),
            **{m: pl.col(m).cast(pl.Float64) for m in MARKERS},
        )
    )
    big.write_csv(tmp_path / "cells.csv")
    run = subprocess.run(
        [
            str(SCIMAP_PYTHON),
            "-c",
            RUN_SCIMAP,
            str(tmp_path / "cells.csv"),
            str(data / "manual_gates.csv"),
            str(data / "phenotype_workflow.csv"),
            str(tmp_path / "scimap.csv"),
            ",".join(MARKERS),
            IMAGE,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    scimap_s = float(
        next(line for line in run.stdout.splitlines() if line.startswith("SCIMAP_S")).split()[1]
    )

    compiled = compile_workflow(
        data / "phenotype_workflow.csv", data / "manual_gates.csv", data_stains=MARKERS
    )
    features = big.select(
        nucleus_id="CellID",
        slide_id=pl.lit(IMAGE),
        **{"mean_" + m.lower(): pl.col(m) for m in MARKERS},
    )
    con = duckdb.connect()
    con.register("nucleus_features", features.to_arrow())
    start = time.perf_counter()
    con.execute(compiled.sql)
    ours = pl.from_arrow(
        con.sql("SELECT nucleus_id, cell_type FROM nucleus_cell_type").to_arrow_table()
    )
    ours_s = time.perf_counter() - start

    ref = pl.read_csv(tmp_path / "scimap.csv")
    joined = ours.join(ref, left_on="nucleus_id", right_on="CellID", how="full")
    mismatches = joined.filter(pl.col("cell_type").ne_missing(pl.col("phenotype"))).height
    print(
        f"\ncells {n_cells}: mismatches {mismatches}; SCIMAP {scimap_s:.1f} s, compiled SQL "
        f"{ours_s:.3f} s, ratio {scimap_s / ours_s:.0f}x"
    )
    assert joined.height == n_cells
    assert mismatches == 0
    assert scimap_s / ours_s >= 100
