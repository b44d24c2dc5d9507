"""The virtual H&E store: levels round-trip, attributes, plain-zarr access, atomic publish."""

import numpy as np
import pytest
import zarr

from storage.errors import StoreLayoutError
from storage.vhe_store import VirtualHELevel, create_vhe, open_vhe


def test_levels_round_trip_and_open_with_plain_zarr(tmp_path):
    path = tmp_path / "vhe" / "S1.zarr"
    rng = np.random.default_rng(0)
    full = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    half = rng.integers(0, 256, (32, 44, 3), dtype=np.uint8)
    levels = [VirtualHELevel(0.32, 50, 70, 25), VirtualHELevel(0.5, 32, 44, 16)]
    with create_vhe(path, "S1", levels, "beer_lambert", {"a": 1}) as writer:
        writer.write(0, 0, 0, full[:25])
        writer.write(0, 25, 0, full[25:])
        writer.write(1, 0, 0, half)
        writer.update_attrs({"params": {"a": 2}})
    reader = open_vhe(path)
    assert np.array_equal(reader.read(), full)
    assert np.array_equal(reader.read(10, 20, 30, 40, level=1), half[10:30, 20:40])
    assert reader.level_mpp == (0.32, 0.5) and reader.level_of(0.5) == 1
    assert (reader.backend, reader.params, reader.slide_id) == ("beer_lambert", {"a": 2}, "S1")
    group = zarr.open_group(str(path), mode="r")
    assert group.attrs["levels"][1] == {"path": "1", "mpp": 0.5}
    assert np.array_equal(group["1"][:], half) and group["0"].chunks == (25, 25, 3)
    with pytest.raises(StoreLayoutError, match=r"no level at 0\.25"):
        reader.level_of(0.25)


def test_failed_rendering_leaves_the_old_store(tmp_path):
    path = tmp_path / "S1.zarr"
    with create_vhe(path, "S1", [VirtualHELevel(0.5, 4, 4)], "beer_lambert") as writer:
        writer.write(0, 0, 0, np.full((4, 4, 3), 9, np.uint8))
    with pytest.raises(RuntimeError), create_vhe(
        path, "S1", [VirtualHELevel(0.5, 4, 4)], "cyclegan"
    ) as writer:
        writer.write(0, 0, 0, np.zeros((4, 4, 3), np.uint8))
        raise RuntimeError("rendering failed")
    reader = open_vhe(path)
    assert reader.backend == "beer_lambert" and (reader.read() == 9).all()
    assert [p.name for p in tmp_path.iterdir()] == ["S1.zarr"]
    with pytest.raises(StoreLayoutError, match="No virtual_he store"):
        open_vhe(tmp_path / "missing.zarr")
