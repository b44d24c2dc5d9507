"""Nucleus patches: centred on the resampled image, tile-independent, edges padded and flagged,
rows in store order written in aligned chunks, bad tables refused."""

import numpy as np
import polars as pl
import pytest

from pipelines.errors import SlideInputError
from pipelines.patches import (
    PatchParams,
    ResampleGrid,
    cut_patches,
    extract_patches,
    patch_table,
    plan_patches,
    resample_rgb,
)
from storage.patch_store import patch_order

H, W = 700, 620


@pytest.fixture(scope="module")
def slide():
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    n = 600
    cy, cx = rng.uniform(0, H - 1, n), rng.uniform(0, W - 1, n)
    cy[:3], cx[:3] = [0.2, 350.0, 699.0], [300.0, 0.0, 619.4]  # three at the border
    return image, np.arange(1000, 1000 + n), rng.integers(0, 14, n).astype(np.int16), cy, cx


def _extract(slide, params=None):
    params = params or PatchParams()
    image, nid, cls, cy, cx = slide
    plan = plan_patches("S1", nid, cls, cy, cx, H, W, 0.32, params)
    out = np.full((plan.n_patches, 41, 41, 3), 7, np.uint8)
    blocks = []

    def write_block(start, images):
        blocks.append((start, len(images)))
        out[start : start + len(images)] = images

    summary = extract_patches(lambda y0, x0, y1, x1: image[y0:y1, x0:x1], plan, write_block, params)
    return plan, out, blocks, summary


def test_grid_for_the_colon_slides_is_exact():
    grid = ResampleGrid.between(0.32, 0.5)
    assert (grid.p, grid.q, grid.dst_mpp) == (25, 16, 0.5)
    assert grid.dst_size(1000) == 640 and ResampleGrid.between(0.5, 0.5).p == 1


def test_resampling_follows_the_pixel_centre_convention():
    ramp = np.zeros((200, 250, 3), np.uint8)
    ramp[..., 0] = np.arange(200)[:, None]
    ramp[..., 1] = np.arange(250)[None, :]
    grid = ResampleGrid.between(0.32, 0.5)
    out = resample_rgb(ramp, grid).astype(float)
    k = np.arange(out.shape[0])
    expected = (k + 0.5) * 25 / 16 - 0.5
    assert np.abs(out[3:-3, 40, 0] - expected[3:-3]).max() <= 0.6
    j = np.arange(out.shape[1])
    assert np.abs(out[40, 3:-3, 1] - ((j + 0.5) * 25 / 16 - 0.5)[3:-3]).max() <= 0.6


def test_patch_centre_is_the_resampled_image_at_the_centroid(slide):
    image, *_ = slide
    plan, out, _, summary = _extract(slide)
    whole = resample_rgb(image, plan.grid)
    nid, _, cy, cx = slide[1:]
    row_of = {int(n): i for i, n in enumerate(plan.nucleus_id)}
    for i in (10, 200, 599):
        r = row_of[int(nid[i])]
        jy = int(np.floor((cy[i] + 0.5) * 16 / 25))
        jx = int(np.floor((cx[i] + 0.5) * 16 / 25))
        assert abs(plan.grid.to_src(jy) - cy[i]) <= 25 / 32 + 1e-9  # within half a patch pixel
        assert np.array_equal(out[r, 20, 20], whole[jy, jx])
    assert (out != 7).any(axis=(1, 2, 3)).all()  # every row was written
    assert summary.n_patches == 600


def test_tiles_do_not_change_the_patches(slide):
    _, a, _, _ = _extract(slide, PatchParams(tile_px=1024))
    _, b, _, s = _extract(slide, PatchParams(tile_px=150))
    assert s.n_tiles > 4 and np.array_equal(a, b)


def test_edge_nuclei_are_padded_and_flagged_never_dropped(slide):
    image, nid, *_ = slide
    plan, out, _, _ = _extract(slide)
    whole = resample_rgb(image, plan.grid)
    r = int(np.flatnonzero(plan.nucleus_id == nid[0])[0])  # centroid y = 0.2: top border
    assert plan.edge[r] and plan.centre_y[r] == 0
    cxr = int(plan.centre_x[r])
    # Reflect padding: patch row 20 - d is the image row d.
    assert np.array_equal(out[r, 20 - 5], whole[5, cxr - 20 : cxr + 21])
    assert np.array_equal(out[r, 20:], whole[:21, cxr - 20 : cxr + 21])
    _, out_c, _, _ = _extract(slide, PatchParams(pad_mode="constant", pad_value=255))
    assert (out_c[r, :20] == 255).all()
    assert plan.edge.sum() >= 3 and plan.n_patches == 600
    interior = ~plan.edge
    assert ((plan.centre_y[interior] >= 20) & (plan.centre_y[interior] < whole.shape[0] - 20)).all()


def test_rows_in_store_order_written_in_aligned_chunks(slide):
    plan, _, blocks, summary = _extract(slide)
    assert np.array_equal(patch_order(plan.class_index, plan.nucleus_id), np.arange(600))
    assert sorted(blocks) == [(s, min(128, 600 - s)) for s in range(0, 600, 128)]
    assert summary.spills == 0


def test_a_small_buffer_spills_partial_chunks_with_the_same_result(slide):
    _, a, _, _ = _extract(slide, PatchParams(tile_px=150))
    _, b, blocks, s = _extract(slide, PatchParams(tile_px=150, max_buffer_mb=1.0))
    assert s.spills > 0 and len(blocks) > 5 and np.array_equal(a, b)


def test_cut_patches_matches_plain_slicing():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (90, 80, 3), dtype=np.uint8)
    cy, cx = np.array([30, 50]), np.array([25, 55])
    cut = cut_patches(img, 0, 0, cy, cx, 41, 90, 80)
    assert np.array_equal(cut[1], img[30:71, 35:76])


def test_a_table_that_does_not_match_the_slide_is_refused(slide):
    _, nid, cls, cy, cx = slide
    with pytest.raises(SlideInputError, match=r"'S1'.*outside the slide"):
        plan_patches("S1", nid, cls, cy + H, cx, H, W, 0.32)
    with pytest.raises(SlideInputError, match="repeats a nucleus_id"):
        plan_patches("S1", np.zeros_like(nid), cls, cy, cx, H, W, 0.32)
    labels = pl.DataFrame({"nucleus_id": [1, 2], "slide_id": ["S2", "S2"], "class_index": [0, 1]})
    features = pl.DataFrame({"nucleus_id": [1, 2], "slide_id": ["S1", "S1"],
                             "centroid_y_px": [1.0, 2.0], "centroid_x_px": [1.0, 2.0]})
    with pytest.raises(SlideInputError, match=r"nucleus_labels.*'S2'"):
        patch_table(labels, features, "S1")
    labels = labels.with_columns(pl.lit("S1").alias("slide_id"), pl.Series("nucleus_id", [1, 3]))
    with pytest.raises(SlideInputError, match="no nucleus_features row"):
        patch_table(labels, features, "S1")
    kept = patch_table(labels.with_columns(pl.Series("class_index", [0, -1])), features, "S1")
    assert kept["nucleus_id"].to_list() == [1]


@pytest.mark.parametrize("pad_mode", ["reflect", "constant"])
@pytest.mark.parametrize(("h", "w", "tile_px"), [(700, 620, 150), (30, 500, 1024), (9, 9, 1024)])
def test_patches_equal_slicing_the_whole_resampled_slide_padded_once(pad_mode, h, w, tile_px):
    """Tiles, halos and per-tile border padding change nothing, even on slides narrower than
    a patch."""
    rng = np.random.default_rng(h)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    n = 200
    cy, cx = rng.uniform(-0.5, h - 0.51, n), rng.uniform(-0.5, w - 0.51, n)
    params = PatchParams(tile_px=tile_px, pad_mode=pad_mode, pad_value=3)
    plan = plan_patches("S1", np.arange(n), np.zeros(n, np.int16), cy, cx, h, w, 0.32, params)
    out = np.zeros((n, 41, 41, 3), np.uint8)

    def write_block(start, images):
        out[start : start + len(images)] = images

    extract_patches(lambda y0, x0, y1, x1: image[y0:y1, x0:x1], plan, write_block, params)
    pad = ((20, 20), (20, 20), (0, 0))
    whole = resample_rgb(image, plan.grid)
    if pad_mode == "constant":
        whole = np.pad(whole, pad, mode="constant", constant_values=3)
    else:
        whole = np.pad(whole, pad, mode="reflect")
    expected = np.stack([whole[y : y + 41, x : x + 41]
                         for y, x in zip(plan.centre_y, plan.centre_x, strict=True)])
    assert np.array_equal(out, expected)
