"""Learnability on one fold of the calibrated synthetic cohort: what can be learnt from the pixels.

Trains fold 0 of a finished demo chain (patches and folds on the data root; run `make demo`,
or `nucleus-subtyping demo --only synthetic_cohort slide_manifest slide_image nucleus_mask
nucleus_features stain_thresholds nucleus_labels nucleus_catalog virtual_he nucleus_patches
fold_split`, then point NUCLEUS_SUBTYPING_DATA at it) and prints, per class, the H&E signal
the simulator declares (pipelines/synthetic/panel.py HE_CUES), PPV, prevalence and their
ratio on the fold's test patients. Passes when every `strong` class reaches PPV >= 3x its
prevalence and every `none` class stays at PPV <= 1.5x (the leak guard: the pipeline must not
learn what the pixels do not show). The patches come from whichever virtual-H&E backend the
data root was built with. NUCLEUS_SUBTYPING_BENCH_STEPS / _BATCH change the training length
(default 900 steps at batch 64, about 5 min on 2 CPU cores). Run with
`python -m pytest tests/benchmarks/test_bench_learnability.py -s`.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipelines.cell_types import CELL_TYPES
from pipelines.evaluate import look_alike_metrics
from pipelines.synthetic.panel import CONTROL_GROUP, HE_CUES
from pipelines.train.profiles import training_profile
from storage.layout import DataLayout

STRONG_MIN_RATIO = 3.0
NONE_MAX_RATIO = 1.5


def learnability_table(metrics: pl.DataFrame) -> pl.DataFrame:
    """Per class: declared signal, test support, predicted count, PPV, prevalence, ratio."""
    return metrics.select("cell_type", "support", "predicted", "accuracy", "ppv",
                          "prevalence").with_columns(
        signal=pl.col("cell_type").replace_strict({k: v.signal for k, v in HE_CUES.items()}),
        ratio=pl.col("ppv") / pl.col("prevalence"),
    ).select("cell_type", "signal", "support", "predicted", "accuracy", "ppv", "prevalence",
             "ratio")


def run_fold(root: Path, fold: int, steps: int,
             batch_size: int) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """Train and test one fold with the demo recipe at `steps` x `batch_size`: the per-class
    table, the control group's within-group table and a summary."""
    from dagster_project.defs.training.wiring import load_fold, predict_fold, train_fold
    from storage.parquet_dataset import read_slide_partition

    layout = DataLayout(root)
    params = training_profile("demo", steps=steps, batch_size=batch_size,
                              val_interval=max(steps // 6, 1), checkpoint_interval=steps)
    inputs = load_fold(layout, fold, None)
    model = inputs.build_model(params.seed)
    started = time.perf_counter()
    result = train_fold(inputs, model, params, False, logging.getLogger("bench"))
    trained = time.perf_counter() - started
    metrics, n_test = predict_fold(inputs, model, params)
    table = learnability_table(metrics)
    predictions = pl.concat([read_slide_partition(layout.predictions_dir, source.slide.slide_id)
                             .select("class_index", "predicted_index")
                             for source in inputs.sources["test"]])
    group = look_alike_metrics(predictions, CONTROL_GROUP)
    supported = table.filter(pl.col("support") > 0)
    info = {"steps": steps, "batch_size": batch_size, "train_s": round(trained, 1),
            "fold_s": round(time.perf_counter() - started, 1),
            "steps_per_s": round(result.steps_per_s, 2), "test_nuclei": n_test,
            "balanced_accuracy": round(float(supported["accuracy"].mean()), 3)}
    return table, group, info


def test_bench_learnability() -> None:
    root = Path(os.environ.get("NUCLEUS_SUBTYPING_DATA", "data"))
    from storage.folds import folds_path

    if not DataLayout(root).patch_store.exists() or not folds_path(root).exists():
        pytest.skip(f"No patches and folds under {root}: run the demo chain first (see the "
                    "module docstring) and set NUCLEUS_SUBTYPING_DATA.")
    steps = int(os.environ.get("NUCLEUS_SUBTYPING_BENCH_STEPS", "900"))
    batch = int(os.environ.get("NUCLEUS_SUBTYPING_BENCH_BATCH", "64"))
    table, group, info = run_fold(root, 0, steps, batch)
    with pl.Config(tbl_rows=20, tbl_cols=10, float_precision=3):
        print(f"\nfold 0 of {root}: {info}")
        print(table)
        print(f"within the look-alike group {', '.join(CONTROL_GROUP)}:")
        print(group)
    strong = table.filter(pl.col("signal") == "strong")
    weak_strong = strong.filter(pl.col("ratio").fill_null(0.0) < STRONG_MIN_RATIO)
    # never predicted within the group: nothing learnt there, so no leak (shown as null)
    leaks = group.filter(pl.col("ratio_in_group").fill_null(0.0) > NONE_MAX_RATIO)
    assert np.isfinite(info["balanced_accuracy"])
    assert weak_strong.is_empty(), f"strong classes below {STRONG_MIN_RATIO}x: {weak_strong}"
    assert leaks.is_empty(), f"none classes above {NONE_MAX_RATIO}x (leak): {leaks}"
    assert set(table["cell_type"]) == set(CELL_TYPES)
    assert set(group["cell_type"]) == {k for k, c in HE_CUES.items() if c.signal == "none"}
