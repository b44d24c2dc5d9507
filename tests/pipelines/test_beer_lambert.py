"""Beer-Lambert virtual H&E: colours where the physics says, scale invariance, bad input."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pipelines.errors import ConfigurationError, StainError
from pipelines.vhe.beer_lambert import (
    DEFAULT_ABSORPTIONS,
    EOSIN_OD,
    IMMUNE_IDENTITY_STAINS,
    MARKER_TINTED_ABSORPTIONS,
    BeerLambertBackend,
    BeerLambertParams,
    absorption_table,
    estimate_dye_vectors,
)
from tests.vhe_phantom import make_phantom

REAL_HE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real_he_colon_tiles"


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(256, 320, seed=1)


def _render(image, stains, params=None):
    backend = BeerLambertBackend(params).calibrate(image.reshape(len(stains), -1), "phantom")
    return backend.render(image, stains, 0.32)


def test_nuclei_are_blue_purple_and_dark_stroma_pink_and_light_glass_white(phantom):
    rgb = _render(phantom.image, phantom.stains).astype(int)
    nuclei = rgb[phantom.labels > 0].mean(axis=0)
    stroma_mask = np.zeros(phantom.labels.shape, bool)
    stroma_mask[100:140, 120:200] = True
    stroma = rgb[stroma_mask & (phantom.labels == 0)]
    glass = rgb[:, -20:].reshape(-1, 3).mean(axis=0)
    assert nuclei[2] > nuclei[0] > nuclei[1]  # blue-purple: B > R > G
    assert nuclei.mean() < 160  # dark
    pink = stroma.mean(axis=0)
    assert pink[0] > pink[2] > pink[1]  # pink: R > B > G
    assert pink.mean() > 180  # light
    assert glass.min() > 235  # white glass


def test_brighter_slide_renders_the_same_colours(phantom):
    dim = _render(phantom.image, phantom.stains)
    bright = make_phantom(256, 320, seed=1, brightness=2.5)
    diff = np.abs(_render(bright.image, bright.stains).astype(int) - dim.astype(int))
    assert np.percentile(diff, 99) <= 2 and diff.mean() < 0.5


def test_rendering_is_deterministic_and_matches_beer_lambert(phantom):
    a = _render(phantom.image, phantom.stains)
    assert np.array_equal(a, _render(phantom.image, phantom.stains))
    # One stain, eosin only: every pixel is I0 * exp(-c * e) with c = weight * normalised value.
    params = BeerLambertParams(
        absorptions=(
            replace(BeerLambertParams().absorptions[0], hematoxylin=0.0),  # DAPI, no dye
            replace(BeerLambertParams().absorptions[6], eosin=1.0),  # PanCK
        ),
        eosin_floor=0.0, missing="ignore", tissue_sigma_um=0.0,
    )
    stains = ("DAPI", "PanCK")
    image = np.zeros((2, 4, 100), np.float32)
    image[0] = np.arange(100)
    image[1] = np.arange(100)
    backend = BeerLambertBackend(params).calibrate(image.reshape(2, -1), "ramp")
    rgb = backend.render(image, stains, 0.32).astype(float)
    norm = backend.normalisation
    n = np.clip((np.arange(100) - norm.background[1]) / (norm.high[1] - norm.background[1]), 0, 1)
    e = np.asarray(EOSIN_OD) / np.linalg.norm(EOSIN_OD)
    expected = np.asarray(params.illumination)[None] * np.exp(-n[:, None] * e[None])
    assert np.abs(rgb[0] - expected).max() <= 1.0


def test_missing_stain_is_a_clear_error(phantom):
    stains = tuple(s for s in phantom.stains if s != "Collagen")
    image = phantom.image[[phantom.stains.index(s) for s in stains]]
    backend = BeerLambertBackend()
    with pytest.raises(StainError, match="Collagen") as info:
        backend.for_stains(stains, source="Slide 'P1'")
    assert "set missing_stains: ignore in the virtual_he config" in str(info.value)
    assert "missing='ignore'" not in str(info.value)
    lenient = BeerLambertBackend(BeerLambertParams(missing="ignore")).for_stains(stains, source="x")
    assert "Collagen" not in lenient.stains
    rgb = lenient.calibrate(image.reshape(len(stains), -1), "P1").render(image, stains, 0.32)
    assert rgb.shape == (*image.shape[1:], 3)
    no_dapi = tuple(s for s in phantom.stains if s != "DAPI")
    with pytest.raises(StainError, match="DAPI"):
        BeerLambertBackend(BeerLambertParams(missing="ignore")).for_stains(no_dapi, source="P1")


def test_uncalibrated_backend_and_bad_tables_raise():
    with pytest.raises(ConfigurationError, match="calibrate"):
        BeerLambertBackend().render(np.zeros((27, 2, 2)), BeerLambertBackend().stains, 0.32)
    with pytest.raises(ConfigurationError, match="nuclear stain"):
        BeerLambertParams(absorptions=BeerLambertParams().absorptions[1:])


@pytest.mark.skipif(not REAL_HE.is_dir(), reason="real H&E tiles not available")
def test_default_eosin_vector_is_the_one_measured_on_real_colon_he():
    import tifffile

    tiles = [tifffile.imread(p) for p in sorted(REAL_HE.glob("*/*.tif"))]
    hema, eosin = estimate_dye_vectors(np.stack(tiles))
    assert np.allclose(eosin, EOSIN_OD, atol=0.01)
    assert np.dot(hema, BeerLambertParams().hematoxylin_od) / np.linalg.norm(
        BeerLambertParams().hematoxylin_od
    ) > 0.98


def test_immune_identity_adds_no_colour_by_default_but_does_in_marker_tinted(phantom):
    """Lighting the CD3d..CD68 planes inside the tissue leaves the default rendering unchanged
    (to rounding); the named "marker_tinted" table (the earlier one) turns them into eosin."""
    immune = [phantom.stains.index(s) for s in IMMUNE_IDENTITY_STAINS]
    lit = phantom.image.copy()
    inside = np.zeros(phantom.labels.shape, bool)
    inside[100:140, 120:200] = True  # lamina propria, well inside the tissue
    bright = np.percentile(phantom.image[immune], 99.9)
    lit[immune] = np.where(
        inside, np.maximum(lit[immune], bright), lit[immune]
    )
    sample = phantom.image.reshape(len(phantom.stains), -1)
    for name, changes in (("histology", False), ("marker_tinted", True)):
        params = BeerLambertParams(absorptions=absorption_table(name))
        backend = BeerLambertBackend(params).calibrate(sample, "phantom")
        base = backend.render(phantom.image, phantom.stains, 0.32).astype(int)
        diff = np.abs(backend.render(lit, phantom.stains, 0.32).astype(int) - base)
        assert diff.max() > 10 if changes else diff.max() <= 1, (name, diff.max())
    assert BeerLambertParams().absorptions == absorption_table("histology")
    for stain in ("CgA", "CD68", "CD45"):
        default = next(a for a in DEFAULT_ABSORPTIONS if a.stain == stain)
        tinted = next(a for a in MARKER_TINTED_ABSORPTIONS if a.stain == stain)
        assert default.eosin < tinted.eosin
    with pytest.raises(ConfigurationError, match="marker_tinted"):
        absorption_table("legacy")
