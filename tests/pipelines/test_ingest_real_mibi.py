"""The two real MIBI-TOF DCIS fields (folders of 41 single-stain TIFFs) ingest with mapped names."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

from pipelines.ingest import describe, open_slide_source
from storage.slide_ingest import write_slide
from storage.slide_store import SlideInfo, open_slide

# ../shared beside the repository; NUCLEUS_SUBTYPING_SHARED points elsewhere (another checkout).
SHARED = Path(
    os.environ.get("NUCLEUS_SUBTYPING_SHARED")
    or Path(__file__).resolve().parents[2] / ".." / "shared"
)
MIBI = SHARED / "data" / "real_mibi_dcis"
FIELDS = ["Point2203_pt1072_31606", "Point2206_pt1116_31620"]
MIBI_MPP = 400 / 1024  # 400 µm across 1024 px

pytestmark = pytest.mark.skipif(not MIBI.is_dir(), reason="real MIBI data not present")


@pytest.mark.parametrize("field", FIELDS)
def test_mibi_field_ingests_with_canonical_names(tmp_path, field):
    folder = MIBI / field
    with open_slide_source(folder, mpp=MIBI_MPP) as source:
        assert source.format == "tiff-folder"
        assert source.shape == (41, 1024, 1024)
        assert source.dtype == np.uint8
        assert (source.mpp, source.mpp_source) == (0.390625, "manifest")
        renamed = dict(zip(source.source_stains, source.stains, strict=True))
        assert renamed["PanKRT"] == "PanCK"
        assert renamed["VIM"] == "Vimentin"
        assert renamed["COLI"] == "Collagen"
        assert renamed["HLADRDPDQ"] == "HLADR"
        assert renamed["HH3"] == "HH3" and renamed["Nuc"] == "Nuc"
        info = SlideInfo(field, source.stains, source.mpp, 1024, 1024, "uint8")
        write_slide(tmp_path / f"{field}.zarr", info, source.windows(), describe(source))
    reader = open_slide(tmp_path / f"{field}.zarr")
    assert reader.info.mpp == 0.390625
    for raw, stain in [("PanKRT", "PanCK"), ("VIM", "Vimentin"), ("HH3", "HH3")]:
        expected = tifffile.imread(folder / f"{raw}.tif")
        np.testing.assert_array_equal(reader.read(stains=[stain])[0], expected)
    assert reader.read(stains=["HH3"]).max() > 0


def test_mibi_field_without_mpp_asks_for_manifest_column():
    with pytest.raises(Exception, match="mpp column"):
        open_slide_source(MIBI / FIELDS[0])
