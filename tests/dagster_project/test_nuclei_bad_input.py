"""nucleus_mask with the import backend refuses a binary mask, or labels it when asked."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pytest
import tifffile

from dagster_project.defs.nuclei.assets import nucleus_mask
from dagster_project.resources import DataRoot
from pipelines.errors import SlideInputError
from storage.layout import DataLayout
from storage.mask_store import open_mask
from storage.slide_store import SlideInfo, create_slide


def _setup(tmp_path) -> DataLayout:
    layout = DataLayout(tmp_path)
    info = SlideInfo("P01_S1", ("DAPI",), 1.0, 200, 200, "uint16")
    with create_slide(layout.slide_zarr("P01_S1"), info, chunk_px=256) as writer:
        writer.write(0, 0, np.zeros((1, 200, 200), np.uint16))
    binary = np.zeros((200, 200), np.uint8)
    for y, x in [(30, 30), (100, 120), (160, 60)]:
        binary[y - 15 : y + 15, x - 15 : x + 15] = 1  # 3 nuclei of 900 µm² each
    path = tmp_path / "imported_masks" / "P01_S1.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, binary)
    return layout


def _run(root, **config):
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("slides", ["P01_S1"])
    run_config = {"ops": {"nucleus_mask": {"config": {"backend": "import", "tile_px": 128,
                                                      **config}}}}
    return dg.materialize([nucleus_mask], partition_key="P01_S1", instance=instance,
                          resources={"data_root": DataRoot(root=str(root)),
                                     "mesmer_pipes": dg.PipesSubprocessClient()},
                          run_config=run_config)


def test_binary_import_is_refused_and_leaves_no_mask(tmp_path):
    layout = _setup(tmp_path)
    with pytest.raises(SlideInputError, match=r"(?i)label a binary mask first"):
        _run(tmp_path)
    assert not layout.mask_zarr("P01_S1").exists()


def test_binary_import_labelled_by_connected_components(tmp_path):
    layout = _setup(tmp_path)
    result = _run(tmp_path, binary_mask="connected_components")
    metadata = result.asset_materializations_for_node("nucleus_mask")[0].metadata
    assert metadata["n_nuclei"].value == 3
    mask = open_mask(layout.mask_zarr("P01_S1")).read()
    assert sorted(np.unique(mask).tolist()) == [0, 1, 2, 3]
    assert int((mask == mask[100, 120]).sum()) == 900
