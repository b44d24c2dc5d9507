"""Slides of the synthetic cohort ingest through the cohort manifest with all 27 stains."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from pipelines import synthetic
from pipelines.ingest import describe, open_slide_source
from pipelines.stains import COLON_PANEL, canonical_stain
from storage import cohort_files
from storage.manifest import read_manifest
from storage.slide_ingest import write_slide
from storage.slide_store import SlideInfo, open_slide


def test_synthetic_cohort_slides_ingest(tmp_path):
    params = synthetic.CohortParams(n_patients=2, n_slides=2, slide_px=256, seed=3)
    cohort = tmp_path / "cohort"
    cohort_files.write_cohort(cohort, synthetic.simulate_cohort(params), params.as_dict())
    manifest = read_manifest(cohort / "manifest.csv")
    assert manifest.height == 2
    for row in manifest.iter_rows(named=True):
        with open_slide_source(row["path"], mpp=row["mpp"]) as source:
            assert source.format == "ome-tiff"
            assert len(source.stains) == 27
            assert set(source.stains) == set(COLON_PANEL)
            assert all(canonical_stain(s) == s for s in source.stains)
            assert source.mpp == pytest.approx(0.32)
            info = SlideInfo(row["slide_id"], source.stains, source.mpp, source.height_px,
                             source.width_px, str(source.dtype))
            written = write_slide(tmp_path / f"{row['slide_id']}.zarr", info,
                                  source.windows(128), describe(source), chunk_px=128)
        reader = open_slide(written.path)
        np.testing.assert_array_equal(reader.read(), tifffile.imread(row["path"]))
        assert reader.info.height_px == reader.info.width_px == 256
