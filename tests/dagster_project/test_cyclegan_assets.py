"""The cyclegan_model asset: trains, writes a loadable checkpoint and preview, resumes."""

import json

import dagster as dg
import numpy as np
import pytest
from PIL import Image

from dagster_project.defs.vhe.cyclegan_assets import CycleGanConfig, cyclegan_model
from dagster_project.resources import DataRoot
from pipelines.stains import COLON_PANEL, IMMUNE_IDENTITY_STAINS
from pipelines.vhe.cyclegan.infer import BlendParams, load_backend
from storage.checkpoints import METADATA_FILE, read_cyclegan_info
from storage.layout import DataLayout
from storage.slide_store import SlideInfo, create_slide

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _data_root(tmp_path):
    layout = DataLayout(tmp_path / "data")
    rng = np.random.default_rng(0)
    for k in range(2):
        info = SlideInfo(f"slide-{k}", COLON_PANEL, 0.32, 96, 112, "uint16")
        with create_slide(layout.slide_zarr(info.slide_id), info, chunk_px=64) as writer:
            writer.write(0, 0, rng.integers(0, 4000, (27, 96, 112), dtype=np.uint16))
    tiles = tmp_path / "he"
    tiles.mkdir()
    for k in range(3):
        rgb = np.clip(rng.normal([230, 170, 200], 25, (64, 64, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(rgb).save(tiles / f"tile{k}.png")
    return layout, tiles


def _materialise(layout, **config):
    result = dg.materialize(
        [cyclegan_model],
        resources={"data_root": DataRoot(root=str(layout.root))},
        run_config=dg.RunConfig(ops={"cyclegan_model": CycleGanConfig(**config)}),
    )
    assert result.success
    return result.asset_materializations_for_node("cyclegan_model")[0].metadata


def test_asset_trains_writes_a_loadable_checkpoint_and_resumes(tmp_path):
    layout, tiles = _data_root(tmp_path)
    common = {"he_tiles_dir": str(tiles), "crop_px": 32, "checkpoint_every": 2}
    meta = _materialise(layout, steps=3, **common)
    assert meta["step"].value == 3 and meta["steps_run"].value == 3
    assert meta["resumed_from_step"].value == 0 and meta["slides"].value == 2
    out = layout.models_dir / "cyclegan"
    info = read_cyclegan_info(out)
    # the generator never sees a stain that names an immune cell's identity
    assert info.stains == tuple(s for s in COLON_PANEL if s not in IMMUNE_IDENTITY_STAINS)
    assert len(info.stains) == 20 and info.step == 3 and info.mpp == 0.32
    assert info.extra["input_stains"] == "histology"
    assert meta["input_stains"].value["stains"] == list(info.stains)
    assert info.architecture["ngf"] == 8 and info.extra["slide_ids"] == ["slide-0", "slide-1"]
    assert json.loads((out / METADATA_FILE).read_text())["kind"] == "cyclegan"
    preview = np.asarray(Image.open(layout.figures_dir("cyclegan") / "preview.png"))
    assert preview.shape == (96, 288, 3)

    meta = _materialise(layout, steps=5, **common)
    assert meta["resumed_from_step"].value == 3 and meta["steps_run"].value == 2
    assert read_cyclegan_info(out).step == 5

    backend = load_backend(out, device="cpu", blend=BlendParams(patch_px=32))
    window = np.random.default_rng(1).integers(0, 4000, (27, 40, 50)).astype(np.uint16)
    rgb = backend.render(window, COLON_PANEL, 0.32)
    assert rgb.shape == (40, 50, 3) and rgb.dtype == np.uint8


def test_asset_skips_without_real_he_tiles(tmp_path):
    layout, _ = _data_root(tmp_path)
    meta = _materialise(layout, he_tiles_dir=str(tmp_path / "absent"), steps=2)
    assert "no H&E tile folder" in meta["skipped"].value
    assert not (layout.models_dir / "cyclegan").exists()
