"""H&E nucleus segmentation: he-classical on fields with a known answer, the registry, and the
annotated real tiles (skipped when ../shared/data/real_he_nuclei is absent)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from pipelines.errors import ConfigurationError
from pipelines.segment import he
from pipelines.segment.he import ArrayRGBSlide, build_he_backend, segment_he_slide
from pipelines.segment.he_classical import TUNING_TILES, HEClassicalSegmenter
from pipelines.segment.quality import match_score
from tests.he_fixtures import synthetic_he

REAL_NUCLEI = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real_he_nuclei"


def _labels(slide: ArrayRGBSlide, backend, tile_px: int) -> np.ndarray:
    out = np.zeros((slide.height_px, slide.width_px), np.int32)
    for tile, block in segment_he_slide(slide, backend, tile_px=tile_px):
        out[tile.y0 : tile.y1, tile.x0 : tile.x1] = block
    return out


@pytest.mark.parametrize("mpp", [0.5, 0.25])
def test_every_synthetic_nucleus_found_once_at_20x_and_40x(mpp):
    rgb, truth = synthetic_he(240, 300, mpp, n_nuclei=30, seed=1)
    found = _labels(ArrayRGBSlide(rgb, mpp, "S1"), build_he_backend("he-classical"), 2048)
    score = match_score(truth, found)
    assert (score.true_positives, score.false_positives, score.false_negatives) == (30, 0, 0)
    assert score.mean_matched_iou > 0.85


def test_tiles_stitch_to_the_whole_field_result():
    rgb, _ = synthetic_he(300, 340, 0.25, n_nuclei=40, seed=5)
    slide = ArrayRGBSlide(rgb, 0.25, "S1")
    backend = build_he_backend("he-classical")
    whole, tiled = _labels(slide, backend, 2048), _labels(slide, backend, 96)
    assert match_score(whole, tiled, 0.99).f1 == 1.0  # the same nuclei, pixel for pixel
    assert tiled.max() == np.unique(tiled[tiled > 0]).size  # labels 1..N, none split


def test_glass_and_eosin_only_tissue_give_no_nuclei():
    glass, _ = synthetic_he(128, 128, 0.5, 0, tissue=False)
    eosin, _ = synthetic_he(128, 128, 0.5, 0, seed=2)
    backend = build_he_backend("he-classical")
    for rgb in (glass, eosin):
        run = segment_he_slide(ArrayRGBSlide(rgb, 0.5, "S1"), backend, tile_px=64)
        assert sum(int(block.max()) for _, block in run) == 0 and run.n_nuclei == 0


def test_registry_builds_by_name_and_refuses_unknown_names_and_settings(monkeypatch):
    backend = build_he_backend("he-classical", {"min_area_um2": 12.0})
    assert isinstance(backend, HEClassicalSegmenter) and backend.params.min_area_um2 == 12.0
    with pytest.raises(ConfigurationError, match="no setting"):
        build_he_backend("he-classical", {"sigma": 1.0})
    with pytest.raises(ConfigurationError, match="he-classical, he-learned, import"):
        build_he_backend("he-unknown")
    monkeypatch.setitem(he.HE_BACKENDS, "he-twice", "tests.pipelines.test_he_segment:_twice")
    assert build_he_backend("he-twice").name == "he-classical-coarse"
    assert "he-twice" in he.he_backend_names()


def _twice(settings):
    """A second backend registered by name: he-classical with coarser smoothing."""
    from dataclasses import replace

    base = build_he_backend("he-classical")
    return replace(base, params=replace(base.params, smooth_sigma_um=1.2),
                   name="he-classical-coarse")


def _annotated() -> list[dict[str, str]]:
    if not (REAL_NUCLEI / "tiles.csv").is_file():
        pytest.skip(f"no annotated H&E tiles at {REAL_NUCLEI}")
    with (REAL_NUCLEI / "tiles.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_he_classical_on_the_twelve_held_out_annotated_tiles():
    """Mean F1 at IoU 0.5 on the tiles the defaults were not chosen on (target >= 0.65)."""
    scores = []
    for row in _annotated():
        if row["tile"] in TUNING_TILES:
            continue
        rgb = np.asarray(Image.open(REAL_NUCLEI / row["image"]).convert("RGB"))
        truth = tifffile.imread(REAL_NUCLEI / row["mask"])
        slide = ArrayRGBSlide(rgb, float(row["mpp"]), row["tile"])
        scores.append(match_score(truth, _labels(slide, build_he_backend("he-classical"),
                                                 512)).f1)
    assert len(scores) == 12
    assert np.mean(scores) >= 0.70  # measured 0.714 (docs/real-he.md); the target is 0.65
