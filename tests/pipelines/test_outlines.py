import numpy as np
from skimage.draw import disk
from skimage.draw import polygon as fill_polygon

from pipelines.outlines import OutlineParams, trace_outlines


def test_outline_of_a_disk_encloses_its_area_at_slide_coordinates() -> None:
    labels = np.zeros((64, 64), np.int32)
    labels[disk((30, 20), 8)] = 5
    labels[10:14, 50:60] = 9  # a rectangle: area 40 px
    ys, xs = np.nonzero(labels == 5)
    # The window starts at (100, 200) in slide pixels; boxes are in slide pixels too.
    boxes = {
        5: (100 + ys.min(), 200 + xs.min(), 100 + ys.max() + 1, 200 + xs.max() + 1),
        9: (110, 250, 114, 260),
    }
    outlines = trace_outlines(labels, 100, 200, boxes, OutlineParams(tolerance_px=0))
    rect = outlines[9]
    assert np.array_equal(rect[0], rect[-1])
    assert rect[:, 0].min() == 250 and rect[:, 0].max() == 260  # pixel edges in x
    assert rect[:, 1].min() == 110 and rect[:, 1].max() == 114
    # Rasterising the traced polygon gives back the nucleus (up to boundary pixels).
    ring = outlines[5] - np.array([200, 100])
    rr, cc = fill_polygon(ring[:, 1] - 0.5, ring[:, 0] - 0.5, labels.shape)
    filled = np.zeros_like(labels, bool)
    filled[rr, cc] = True
    truth = labels == 5
    assert (filled & truth).sum() / truth.sum() > 0.9
    assert (filled & ~truth).sum() < 0.1 * truth.sum()


def test_simplification_keeps_the_shape_with_fewer_vertices() -> None:
    labels = np.zeros((80, 80), np.int32)
    labels[disk((40, 40), 20)] = 1
    box = {1: (20, 20, 61, 61)}
    exact = trace_outlines(labels, 0, 0, box, OutlineParams(0))[1]
    simple = trace_outlines(labels, 0, 0, box, OutlineParams(0.5))[1]
    assert len(simple) < len(exact) / 2
    assert abs(simple[:, 0].max() - exact[:, 0].max()) <= 0.5
