"""slide_ome_zarr: OME-NGFF 0.4 read back by ome-zarr-py (the reader napari-ome-zarr uses), with
stain names, colours, micrometre scales per level, pixels and nucleus labels as written."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pytest

from dagster_project.defs.exports.assets import slide_ome_zarr
from dagster_project.defs.exports.wiring import MXIF_NAME, VHE_NAME, write_slide_ome_zarr
from dagster_project.resources import DataRoot
from storage.errors import StoreLayoutError
from storage.layout import DataLayout
from storage.mask_store import create_mask
from storage.ome_zarr import NgffImage, write_ome_zarr
from storage.slide_store import SlideInfo, create_slide
from storage.vhe_store import VirtualHELevel, create_vhe

ome_io = pytest.importorskip("ome_zarr.io")
ome_reader = pytest.importorskip("ome_zarr.reader")
ome_format = pytest.importorskip("ome_zarr.format")

STAINS = ("DAPI", "CD3d", "PanCK")
H, W, MPP, TILE = 256, 192, 0.4, 64


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A 3-stain slide, its mask and virtual H&E in our stores, exported by the asset."""
    layout = DataLayout(tmp_path_factory.mktemp("ngff") / "data")
    rng = np.random.default_rng(3)
    image = rng.integers(0, 60000, (len(STAINS), H, W), dtype=np.uint16)
    labels = (np.arange(H * W, dtype=np.int32).reshape(H, W) // 37) % 500
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    with create_slide(layout.slide_zarr("S1"), SlideInfo("S1", STAINS, MPP, H, W, "uint16"),
                      chunk_px=TILE) as writer:
        writer.write(0, 0, image)
    with create_mask(layout.mask_zarr("S1"), "S1", H, W, chunk_px=TILE) as writer:
        writer.write(0, 0, labels)
    with create_vhe(layout.vhe_zarr("S1"), "S1", [VirtualHELevel(MPP, H, W, TILE)],
                    backend="test") as writer:
        writer.write(0, 0, 0, rgb)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("slides", ["S1"])
    result = dg.materialize(
        [slide_ome_zarr], partition_key="S1", instance=instance,
        resources={"data_root": DataRoot(root=str(layout.root))},
        run_config={"ops": {"slide_ome_zarr": {"config": {"tile_px": TILE}}}})
    assert result.success
    return layout, image, labels, rgb


def _nodes(path) -> tuple:
    """(image node, label node) as ome-zarr-py finds them."""
    location = ome_io.parse_url(str(path), fmt=ome_format.FormatV04())
    nodes = list(ome_reader.Reader(location)())
    image = nodes[0]
    label = next(n for n in nodes if n.load(ome_reader.Label))
    return image, label


def _mean2(block: np.ndarray) -> np.ndarray:
    c, h, w = block.shape
    return np.rint(block.reshape(c, h // 2, 2, w // 2, 2).astype(np.float64).mean(axis=(2, 4)))


def test_mxif_image_names_scales_pixels_and_labels(exported) -> None:
    layout, image, labels, _ = exported
    node, label = _nodes(layout.ome_zarr_dir("S1") / MXIF_NAME)
    meta = node.metadata
    assert meta["name"] == "S1" and meta["channel_names"] == list(STAINS)
    assert [a["name"] for a in meta["axes"]] == ["c", "y", "x"]
    assert [a.get("unit") for a in meta["axes"]] == [None, "micrometer", "micrometer"]
    assert [d.shape for d in node.data] == [(3, 256, 192), (3, 128, 96), (3, 64, 48)]
    scales = [t[0]["scale"] for t in meta["coordinateTransformations"]]
    assert scales == [[1.0, MPP, MPP], [1.0, 2 * MPP, 2 * MPP], [1.0, 4 * MPP, 4 * MPP]]
    assert meta["colormap"][0] == [[0, 0, 0], [0.0, 0.0, 1.0]]  # DAPI blue
    np.testing.assert_array_equal(np.asarray(node.data[0]), image)
    level1 = _mean2(image)
    np.testing.assert_array_equal(np.asarray(node.data[1]), level1.astype(np.uint16))
    np.testing.assert_array_equal(np.asarray(node.data[2]),
                                  _mean2(np.asarray(node.data[1])).astype(np.uint16))
    assert label.metadata["name"] == "nuclei"
    assert [t[0]["scale"] for t in label.metadata["coordinateTransformations"]] == \
        [[MPP, MPP], [2 * MPP, 2 * MPP], [4 * MPP, 4 * MPP]]
    np.testing.assert_array_equal(np.asarray(label.data[0]), labels)
    np.testing.assert_array_equal(np.asarray(label.data[1]), labels[::2, ::2])
    assert (layout.ome_zarr_dir("S1") / MXIF_NAME / ".zattrs").is_file()  # Zarr v2: NGFF 0.4


def test_virtual_he_is_an_rgb_image_with_the_same_labels(exported) -> None:
    layout, _, labels, rgb = exported
    node, label = _nodes(layout.ome_zarr_dir("S1") / VHE_NAME)
    assert node.metadata["channel_names"] == ["red", "green", "blue"]
    assert node.metadata["colormap"][1] == [[0, 0, 0], [0.0, 1.0, 0.0]]
    np.testing.assert_array_equal(np.asarray(node.data[0]), rgb.transpose(2, 0, 1))
    np.testing.assert_array_equal(np.asarray(label.data[0]), labels)


def test_level_zero_is_read_once_tile_by_tile(tmp_path) -> None:
    image = np.arange(2 * 150 * 130, dtype=np.uint16).reshape(2, 150, 130)
    windows: list[tuple[int, int, int, int]] = []

    def read(y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
        windows.append((y0, x0, y1, x1))
        return image[:, y0:y1, x0:x1]

    out = write_ome_zarr(tmp_path / "a.ome.zarr",
                         NgffImage("a", ("DAPI", "CD8"), ("0000FF", "FF0000"), 0.5, 150, 130,
                                   "uint16", read), tile_px=64)
    assert max(y1 - y0 for y0, _, y1, _ in windows) <= 64
    assert max(x1 - x0 for _, x0, _, x1 in windows) <= 64
    covered = np.zeros((150, 130), int)
    for y0, x0, y1, x1 in windows:
        covered[y0:y1, x0:x1] += 1
    assert (covered == 1).all()
    assert out.level_shapes == ((150, 130), (75, 65), (38, 33))  # odd edges round up


def test_grids_that_differ_are_refused(tmp_path) -> None:
    layout = DataLayout(tmp_path / "data")
    with create_slide(layout.slide_zarr("S2"), SlideInfo("S2", ("DAPI",), MPP, 64, 64, "uint16"),
                      chunk_px=TILE) as writer:
        writer.write(0, 0, np.ones((1, 64, 64), np.uint16))
    with create_mask(layout.mask_zarr("S2"), "S2", 64, 60, chunk_px=TILE) as writer:
        writer.write(0, 0, np.zeros((64, 60), np.int32))
    with create_vhe(layout.vhe_zarr("S2"), "S2", [VirtualHELevel(MPP, 64, 64, TILE)],
                    backend="test") as writer:
        writer.write(0, 0, 0, np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(StoreLayoutError, match=r"'S2'.*grids differ"):
        write_slide_ome_zarr(layout, "S2", TILE)
    assert not layout.ome_zarr_dir("S2").exists()
