"""Ingest streams window by window into the slide store, and a failure loses nothing."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import tifffile

from pipelines.errors import SlideInputError
from pipelines.ingest import describe, open_slide_source
from storage.slide_ingest import is_current, prefetched, write_slide
from storage.slide_store import SlideInfo, open_slide
from tests.ingest_fixtures import (
    big_tiff_pixels,
    stain_stack,
    write_big_ome_tiff,
    write_ome_tiff,
    write_tiff_folder,
)

MEMORY_BUDGET = 24 * 2**20  # bytes of Python/numpy allocations an ingest may hold at once


def _ingest(path, final, slide_id="s1", mpp=None, tile_px=1024):
    with open_slide_source(path, mpp=mpp) as source:
        info = SlideInfo(slide_id, source.stains, source.mpp, source.height_px,
                         source.width_px, str(source.dtype))
        return write_slide(final, info, source.windows(tile_px), describe(source),
                           chunk_px=tile_px), source.nbytes


def test_slide_larger_than_budget_ingests_in_bounded_memory(tmp_path):
    names = ["DAPI", "CD3D", "PanKRT", "VIM", "SMA", "CD45"]
    path = write_big_ome_tiff(tmp_path / "big.ome.tif", len(names), 2560, 3072, names, tile=512)
    final = tmp_path / "slides" / "big.zarr"
    tracemalloc.start()
    try:
        written, nbytes = _ingest(path, final, "big")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert nbytes == 6 * 2560 * 3072 * 2 > 3 * MEMORY_BUDGET
    assert peak < MEMORY_BUDGET, f"ingest held {peak / 2**20:.1f} MiB at once"
    assert written.windows == 6 * 3 * 3
    reader = open_slide(final)
    assert reader.info.stains == ("DAPI", "CD3d", "PanCK", "Vimentin", "SMA", "CD45")
    assert reader.info.mpp == pytest.approx(0.32)
    for stain, (y0, x0, y1, x1) in [(0, (0, 0, 300, 200)), (5, (2000, 2900, 2560, 3072)),
                                    (3, (1000, 1020, 1050, 1030))]:
        np.testing.assert_array_equal(
            reader.read(y0, x0, y1, x1, stains=[reader.info.stains[stain]])[0],
            big_tiff_pixels(stain, y0, x0, y1, x1),
        )


def test_written_store_matches_source_and_records_it(tmp_path):
    data = stain_stack(3, 300, 500)
    path = write_ome_tiff(tmp_path / "s.ome.tif", data, ["DAPI", "VIM", "CD8"], mpp=0.32)
    written, _ = _ingest(path, tmp_path / "s.zarr", tile_px=128)
    reader = open_slide(written.path)
    np.testing.assert_array_equal(reader.read(), data)
    assert reader.chunk_px == (128, 128)
    assert reader.source["format"] == "ome-tiff"
    assert reader.source["source_stains"] == '["DAPI", "VIM", "CD8"]'
    assert written.bytes_raw == data.nbytes and 0 < written.bytes_on_disk < data.nbytes


def test_failing_ingest_keeps_previous_store_and_leaves_no_temporary(tmp_path):
    data = stain_stack(2, 256, 256)
    path = write_ome_tiff(tmp_path / "s.ome.tif", data, ["DAPI", "CD4"], tile=(128, 128))
    final = tmp_path / "slides" / "s1.zarr"
    _ingest(path, final, tile_px=128)
    good = open_slide(final).read()

    changed = stain_stack(2, 256, 256, seed=7)
    write_ome_tiff(path, changed, ["DAPI", "CD4"], tile=(128, 128))
    with tifffile.TiffFile(path) as tif:  # damage the last tile of CD4
        page = tif.series[0].pages[1]
        offset, count = page.dataoffsets[-1], page.databytecounts[-1]
    raw = bytearray(path.read_bytes())
    raw[offset : offset + count] = b"\x00" * count
    path.write_bytes(bytes(raw))

    with pytest.raises(SlideInputError, match=r"s\.ome\.tif: cannot read stain 'CD4'"):
        _ingest(path, final, tile_px=128)
    np.testing.assert_array_equal(open_slide(final).read(), good)
    assert sorted(p.name for p in final.parent.iterdir()) == ["s1.zarr"]


def test_failing_folder_ingest_keeps_previous_store(tmp_path):
    folder = write_tiff_folder(tmp_path / "field", stain_stack(2, 64, 64, "uint8"), ["DAPI", "CD4"])
    final = tmp_path / "slides" / "field.zarr"
    _ingest(folder, final, "field", mpp=0.5)
    tifffile.imwrite(folder / "CD8.tif", np.zeros((64, 32), np.uint8))
    with pytest.raises(SlideInputError, match=r"CD8\.tif"):
        _ingest(folder, final, "field", mpp=0.5)
    assert open_slide(final).info.stains == ("CD4", "DAPI")
    assert sorted(p.name for p in final.parent.iterdir()) == ["field.zarr"]


def test_is_current_compares_content_and_layout(tmp_path):
    data = stain_stack(1, 32, 32)
    path = write_ome_tiff(tmp_path / "s.ome.tif", data, ["DAPI"])
    final = tmp_path / "s.zarr"
    with open_slide_source(path) as source:
        info = SlideInfo("s", source.stains, source.mpp, 32, 32, "uint16")
        write_slide(final, info, source.windows(), {**describe(source), "content_sha256": "abc"})
    assert is_current(final, info, "abc")
    assert not is_current(final, info, "abd")
    assert not is_current(final, SlideInfo("s", ("DAPI",), 0.5, 32, 32, "uint16"), "abc")
    assert not is_current(tmp_path / "absent.zarr", info, "abc")


def test_prefetched_keeps_order_reraises_and_stops_early():
    import threading

    assert list(prefetched(iter(range(50)), depth=3)) == list(range(50))
    assert list(prefetched(iter(range(5)), depth=0)) == list(range(5))

    def failing():
        yield 1
        raise SlideInputError("broken.tif: cannot read")

    got = []
    with pytest.raises(SlideInputError, match=r"broken\.tif"):
        for item in prefetched(failing()):
            got.append(item)
    assert got == [1]

    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    before = threading.active_count()
    for item in prefetched(endless(), depth=2):
        if item == 3:
            break
    assert threading.active_count() == before  # the reader thread was joined
    assert len(produced) <= 3 + 1 + 2 + 1  # consumed, in flight, queued, blocked
