"""Class prevalence of the demo cohort's labels against the paper's §3.

The labels are the pipeline's own: per-nucleus stain means on the true masks, automatic
per-slide thresholds and sql/cell_type_rules.sql (segmentation is left out, so this measures
the simulator and the label stages). Passes when each of the six classes the paper reports is
within ±25 % relative of its prevalence. Run with
`python -m pytest tests/benchmarks/test_bench_cohort_prevalence.py -s` (about 2 min on 2 cores).
"""

from __future__ import annotations

import os

import numpy as np
import polars as pl

from pipelines.cell_types import CELL_TYPES, CLASS_INDEX
from pipelines.ids import nucleus_ids
from pipelines.labels import RuleSet, label_slide
from pipelines.stains import stain_key
from pipelines.synthetic import CohortParams, simulate_cohort
from pipelines.synthetic.panel import HE_CUES
from pipelines.thresholds import AutoThresholdParams, slide_thresholds
from storage.sql_files import read_sql
from storage.thresholds_csv import parse_thresholds_csv

PAPER_PREVALENCE = {"epithelial": 0.25, "goblet": 0.19, "stromal": 0.29, "fibroblast": 0.09,
                    "progenitor": 0.07, "helper_t": 0.03}


def _labels(slide, rules: RuleSet) -> pl.DataFrame:
    flat = slide.labels.ravel()
    n = int(flat.max())
    area = np.maximum(np.bincount(flat, minlength=n + 1)[1:], 1)
    label = np.arange(1, n + 1, dtype=np.int32)
    means = {f"mean_{stain_key(s)}": (np.bincount(flat, weights=slide.image[i].ravel()
                                                  .astype(np.float64), minlength=n + 1)[1:]
                                      / area).astype(np.float32)
             for i, s in enumerate(slide.stains)}
    features = pl.DataFrame({"nucleus_id": nucleus_ids(slide.slide_id, label),
                             "slide_id": [slide.slide_id] * n, "label": label, **means})
    thresholds = slide_thresholds(slide.slide_id, features, parse_thresholds_csv(""),
                                  AutoThresholdParams())
    labels = label_slide(slide.slide_id, features, thresholds, rules, CLASS_INDEX)
    return pl.DataFrame({"site": slide.site, "condition": slide.condition,
                         "cell_type": labels["cell_type"]})


def test_bench_demo_cohort_prevalence() -> None:
    rules = RuleSet(sql=read_sql("cell_type_rules.sql"))
    workers = min(2, os.cpu_count() or 1)
    frame = pl.concat([_labels(s, rules) for s in simulate_cohort(CohortParams(), workers)])
    labelled = frame.filter(pl.col("cell_type").is_not_null())
    share = {c: float((labelled["cell_type"] == c).mean()) for c in CELL_TYPES}
    print(f"\n{frame.height} nuclei, {labelled.height} labelled "
          f"({labelled.height / frame.height:.2f})")
    print("| cell_type | signal | prevalence | paper | relative |")
    for c in CELL_TYPES:
        paper = PAPER_PREVALENCE.get(c)
        rel = f"{share[c] / paper - 1:+.0%}" if paper else ""
        print(f"| {c} | {HE_CUES[c].signal} | {share[c]:.3f} | {paper or ''} | {rel} |")
    other = sum(v for c, v in share.items() if c not in PAPER_PREVALENCE)
    print(f"| other eight | | {other:.3f} | 0.08 | |")
    for key in ("site", "condition"):
        print(labelled.group_by(key, "cell_type").len()
              .with_columns(share=(pl.col("len") / pl.col("len").sum().over(key)).round(3))
              .pivot(on=key, index="cell_type", values="share").sort("cell_type"))
    for c, paper in PAPER_PREVALENCE.items():
        assert abs(share[c] / paper - 1) <= 0.25, (c, share[c], paper)
    assert other < 0.15, other
