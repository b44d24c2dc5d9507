"""Watershed on a real MIBI field (DCIS, HH3 + Nuc nuclear stains, 0.39 µm/px) and its features."""

from pathlib import Path

import numpy as np
import pytest
import tifffile

from pipelines.quantify import feature_checks, quantify_slide
from pipelines.segment import SegmentParams, segment_slide
from pipelines.segment.base import ArrayMask, ArraySlide
from pipelines.segment.preview import outline_overlay
from pipelines.segment.watershed import WatershedParams, WatershedSegmenter
from pipelines.stains import canonical_stains

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real_mibi_dcis"
FIELD = DATA / "Point2203_pt1072_31606"
MPP = 0.39


@pytest.mark.skipif(not FIELD.is_dir(), reason="real MIBI data not present")
def test_watershed_on_a_real_mibi_field(tmp_path) -> None:
    names = sorted(p.stem for p in FIELD.glob("*.tif"))
    image = np.stack([tifffile.imread(FIELD / f"{n}.tif") for n in names])
    slide = ArraySlide(image, canonical_stains(names, source=FIELD.name), MPP, FIELD.name)
    backend = WatershedSegmenter(WatershedParams(smooth_sigma_um=0.8))  # ion counts: smooth more
    run = segment_slide(slide, backend, SegmentParams(tile_px=512, nuclear_stains=("HH3", "Nuc")))
    labels = np.zeros(image.shape[1:], np.int32)
    for tile, block in run:
        labels[tile.y0 : tile.y1, tile.x0 : tile.x1] = block
    area_mm2 = labels.size * MPP**2 * 1e-6
    # A 400 x 400 µm field of breast tissue holds a few hundred to a few thousand nuclei.
    assert 300 < run.n_nuclei < 3000, run.n_nuclei
    assert 1000 < run.n_nuclei / area_mm2 < 15000
    features = quantify_slide(slide, ArrayMask(labels, FIELD.name))
    assert features.height == run.n_nuclei
    assert all(ok for ok, _ in feature_checks(features).values())
    assert 10 < features["area_um2"].median() < 80
    # Nuclei are bright in the nuclear stain and the stain is sparse outside them.
    nuclear = image[names.index("HH3")].astype(float)
    assert features["mean_hh3"].mean() > 3 * nuclear[labels == 0].mean()
    rgb = outline_overlay(image[names.index("HH3")] + image[names.index("Nuc")], labels)
    assert rgb.shape == (512, 512, 3) and (rgb == (255, 214, 0)).all(axis=2).mean() > 0.02
