"""Benchmark: Table 1 labels for 10 million nuclei through the DuckDB views, against the pandas
boolean-mask approach (successive masks over a DataFrame, as SCIMAP's phenotyping does), in the
same process on the same data.

Run: python -m pytest tests/benchmarks/test_bench_labels.py -s
Times are the best of 2 runs for DuckDB (the nucleus_cell_type view read into an Arrow table)
and one run for pandas (labels as two Series); both results are checked to be identical.
Two cases: (1) from positivity (16 BOOLEAN columns) to labels; (2) from per-nucleus mean
intensities and per-slide thresholds to labels (positivity join included). N_NUCLEI may be
lowered with the BENCH_LABELS_NUCLEI environment variable.
"""

from __future__ import annotations

import os
import time

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pipelines.labels import positivity_view_sql
from storage.catalog import read_sql

pd = pytest.importorskip("pandas")

N_NUCLEI = int(os.environ.get("BENCH_LABELS_NUCLEI", 10_000_000))
N_SLIDES = 28
STAINS = (
    "nakatpase", "panck", "muc2", "cga", "vimentin", "sma", "sox9", "olfm4", "lysozyme",
    "cd45", "cd20", "cd68", "cd11b", "cd3d", "cd8", "cd4",
)
PROTOTYPES = (
    ("panck", "nakatpase"), ("panck", "muc2"), ("nakatpase", "cga"), ("panck", "sox9"),
    ("sma", "vimentin"), ("vimentin",), ("vimentin", "cd45", "cd11b"),
    ("vimentin", "cd45", "cd68"), ("vimentin", "cd45", "cd3d", "cd4"),
    ("vimentin", "cd45", "cd3d", "cd8"), ("vimentin", "cd45", "cd3d"), ("vimentin", "cd20"),
    ("vimentin", "lysozyme"), ("vimentin", "cd45"),
)


def _positivity(n: int, seed: int = 0) -> np.ndarray:
    """Prototype patterns of the 14 classes with 3% of stain calls flipped (conflicts too)."""
    rng = np.random.default_rng(seed)
    table = np.array([[s in p for s in STAINS] for p in PROTOTYPES])
    return table[rng.integers(0, len(PROTOTYPES), n)] ^ (rng.random((n, len(STAINS))) < 0.03)


def pandas_labels(df: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Table 1 with successive boolean masks over a DataFrame of positivity columns."""
    epi = df.nakatpase | df.panck | df.muc2 | df.cga
    stroma = df.vimentin | df.sma
    immune = (df.cd45 | df.cd20 | df.cd68 | df.cd11b | df.lysozyme | df.cd3d | df.cd8 | df.cd4)
    prog = df.sox9 | df.olfm4
    exclusions = [
        (3, epi & stroma),
        (5, df.cd68 & (df.cd3d | df.cd20 | df.cd4 | df.cd8 | df.cd11b)),
        (6, df.cd11b & (df.cd3d | df.cd20 | df.cd4 | df.cd8 | df.cd68)),
        (7, df.cd20 & (df.cd3d | df.cd4 | df.cd8)),
        (8, (~df.cd3d & ~df.cd45 & (df.cd4 | df.cd8)) | (df.cd4 & df.cd8)),
        (10, ~epi & ~stroma),
        (11, df.muc2 & (immune | prog | df.sma)),
        (12, df.cga & (immune | df.sma | prog | df.muc2)),
        (13, df.sma & immune),
        (14, immune & prog),
        (15, ~epi & ~stroma & ~prog & ~immune),
        (16, epi & immune),
    ]
    step = pd.Series(pd.NA, index=df.index, dtype="Int16")
    kept = pd.Series(True, index=df.index)
    for number, mask in exclusions:
        step[kept & mask] = number
        kept &= ~mask
    no_t = ~df.cd3d & ~df.cd4 & ~df.cd8
    finals = [
        ("goblet", epi & df.muc2 & ~prog),
        ("endocrine", epi & df.cga & ~prog),
        ("epithelial", epi & ~df.cga & ~prog & ~df.muc2),
        ("fibroblast", stroma & ~immune & df.sma & ~prog),
        ("stromal", stroma & ~immune & ~df.sma & ~prog),
        ("myeloid", immune & df.lysozyme & ~df.cd68 & ~df.cd11b & ~prog & ~df.cd20 & no_t),
        ("helper_t", immune & df.cd4 & ~prog),
        ("cytotoxic_t", immune & df.cd8 & ~prog),
        ("t_cell_receptor", immune & df.cd3d & ~df.cd4 & ~df.cd8),
        ("monocyte", immune & df.cd11b & ~prog & no_t),
        ("macrophage", immune & df.cd68 & ~prog & no_t),
        ("b_cell", immune & df.cd20 & ~df.cd68 & ~prog & no_t),
        ("leukocyte", immune & df.cd45 & ~df.cd20 & ~df.cd68 & ~prog & no_t & ~df.cd11b
         & ~df.lysozyme),
        ("progenitor", prog),
    ]
    cell_type = pd.Series(None, index=df.index, dtype=object)
    for name, mask in finals:
        cell_type[kept & mask] = name
    return cell_type, step


def pl_counts(labels: pa.Table) -> dict:
    counted = pc.value_counts(labels.column("cell_type")).to_pylist()
    return {row["values"]: row["counts"] for row in counted}


def _time(fn, repeats: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def _report(case: str, ours: float, theirs: float) -> None:
    threads = duckdb.execute("SELECT current_setting('threads')").fetchone()[0]
    print(f"\n[{case}] {N_NUCLEI:,} nuclei, {threads} DuckDB threads")
    print(f"  DuckDB views : {ours:7.3f} s  ({N_NUCLEI / ours / 1e6:6.1f} M nuclei/s)")
    print(f"  pandas masks : {theirs:7.3f} s  ({N_NUCLEI / theirs / 1e6:6.1f} M nuclei/s)")
    print(f"  speed-up     : {theirs / ours:7.1f}x (target >= 5x: "
          f"{'met' if theirs / ours >= 5 else 'not met'})")


def test_bench_positivity_to_labels() -> None:
    bits = _positivity(N_NUCLEI)
    table = pa.table({"nucleus_id": np.arange(N_NUCLEI, dtype=np.int64),
                      **{s: bits[:, i] for i, s in enumerate(STAINS)}})
    con = duckdb.connect()
    con.register("positivity_arrow", table)
    con.execute("CREATE TABLE marker_positivity AS SELECT * FROM positivity_arrow")
    con.unregister("positivity_arrow")
    con.execute(read_sql("cell_type_rules.sql"))

    def ours() -> pa.Table:
        return con.sql("SELECT * FROM nucleus_cell_type").to_arrow_table()

    ours_s, labels = _time(ours, repeats=2)
    labels = labels.sort_by("nucleus_id")
    df = pd.DataFrame({s: bits[:, i] for i, s in enumerate(STAINS)})
    theirs_s, (cell_type, step) = _time(lambda: pandas_labels(df), repeats=1)
    _report("positivity -> labels", ours_s, theirs_s)
    assert labels.column("cell_type").to_pylist() == cell_type.where(cell_type.notna(),
                                                                     None).tolist()
    assert np.array_equal(labels.column("excluded_at_step").to_numpy(zero_copy_only=False),
                          step.to_numpy(dtype=float, na_value=np.nan), equal_nan=True)


def test_bench_intensities_to_labels() -> None:
    rng = np.random.default_rng(1)
    bits = _positivity(N_NUCLEI, seed=2)
    slide = (np.arange(N_NUCLEI) * N_SLIDES // N_NUCLEI).astype(np.int32)
    slide_ids = [f"S{i:02d}" for i in range(N_SLIDES)]
    slide_gain = rng.uniform(0.5, 2.0, N_SLIDES)  # per-slide brightness, thresholds follow it
    means = (np.where(bits, np.float32(2000.0), np.float32(100.0))
             * slide_gain[slide].astype(np.float32)[:, None])
    thresholds = {s: 500.0 for s in STAINS}
    con = duckdb.connect()
    con.register("features_arrow", pa.table({
        "nucleus_id": np.arange(N_NUCLEI, dtype=np.int64),
        "slide_id": pa.DictionaryArray.from_arrays(slide, slide_ids).cast(pa.string()),
        **{f"mean_{s}": means[:, i] for i, s in enumerate(STAINS)},
    }))
    con.execute("CREATE TABLE nucleus_features AS SELECT * FROM features_arrow")
    con.unregister("features_arrow")
    rows = [(sid, s, float(thresholds[s] * g), "v1") for sid, g in zip(slide_ids, slide_gain,
                                                                       strict=True)
            for s in STAINS]
    con.execute("CREATE TABLE stain_thresholds (slide_id VARCHAR, stain_key VARCHAR, "
                "threshold DOUBLE, threshold_version VARCHAR)")
    con.executemany("INSERT INTO stain_thresholds VALUES (?, ?, ?, ?)", rows)
    con.execute(positivity_view_sql(STAINS))
    con.execute(read_sql("cell_type_rules.sql"))

    def ours() -> pa.Table:
        return con.sql("SELECT * FROM nucleus_cell_type").to_arrow_table()

    ours_s, labels = _time(ours, repeats=2)
    assert labels.num_rows == N_NUCLEI
    df = pd.DataFrame({f"mean_{s}": means[:, i] for i, s in enumerate(STAINS)})
    df["slide_id"] = pd.Categorical.from_codes(slide, slide_ids)
    wide = pd.DataFrame([{s: thresholds[s] * g for s in STAINS} for g in slide_gain],
                        index=slide_ids)

    def theirs() -> tuple:
        codes = df["slide_id"].cat.codes.to_numpy()
        positive = pd.DataFrame({s: df[f"mean_{s}"].to_numpy() > wide[s].to_numpy()[codes]
                                 for s in STAINS})
        return pandas_labels(positive)

    theirs_s, (cell_type, _) = _time(theirs, repeats=1)
    _report("mean intensities + thresholds -> labels", ours_s, theirs_s)
    counts = dict(pl_counts(labels))
    assert counts == {(None if pd.isna(k) else k): v
                      for k, v in cell_type.value_counts(dropna=False).items()}
