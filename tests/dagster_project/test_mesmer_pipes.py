"""The Mesmer backend end to end: Dagster Pipes launches the worker in the Mesmer environment,
deepcell's real Mesmer pipeline runs a stand-in network the test builds, the mask is stitched
and published through the mask store. Skipped when `.mesmer-env` has not been created."""

import subprocess
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from scipy.special import expit

from dagster_project.defs.nuclei.mesmer import REPO_ROOT, segment_with_mesmer_pipes
from pipelines.segment.mesmer_weights import MesmerParams
from storage.errors import ModelWeightsError
from storage.layout import DataLayout
from storage.mask_store import open_mask
from storage.slide_store import SlideInfo, create_slide

MESMER_PYTHON = REPO_ROOT / ".mesmer-env" / "bin" / "python"
needs_env = pytest.mark.skipif(
    not MESMER_PYTHON.exists(), reason="no .mesmer-env: run `make mesmer-env` to create it"
)
SLIDE_ID = "S-mesmer"
MPP = 0.32
RADIUS_PX = 11


def nucleus_centres() -> np.ndarray:
    """Separated nuclei on a jittered grid, with some placed on the 256 px tile borders."""
    rng = np.random.default_rng(3)
    ys, xs = np.meshgrid(np.arange(30, 380, 50), np.arange(30, 500, 50), indexing="ij")
    grid = np.stack([ys.ravel(), xs.ravel()], axis=1) + rng.integers(-6, 7, (ys.size, 2))
    candidates = np.vstack([[[256, 120], [128, 256], [255, 257]], grid])
    keep: list[int] = []
    for i, c in enumerate(candidates):
        if all(np.hypot(*(c - candidates[j])) >= 3.2 * RADIUS_PX for j in keep):
            keep.append(i)
    return candidates[keep]


def synthetic_stains(shape: tuple[int, int], centres: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.indices(shape)
    dapi = np.zeros(shape)
    for cy, cx in centres:
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        dapi = np.maximum(dapi, expit((RADIUS_PX - np.sqrt(d2)) / 1.2))
    dapi = 200 + 3000 * dapi + rng.normal(0, 30, shape)
    muc2 = 300 + rng.normal(0, 30, shape)
    cd3d = 100 + rng.normal(0, 10, shape)
    return np.clip(np.stack([dapi, muc2, cd3d]), 0, 65535).astype(np.uint16)


@pytest.fixture(scope="module")
def standin_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mesmer-model") / "standin"
    subprocess.run(
        [str(MESMER_PYTHON), str(REPO_ROOT / "mesmer_env" / "standin_model.py"), str(path)],
        check=True, capture_output=True, timeout=240,
    )
    return path


def write_slide(layout: DataLayout, shape: tuple[int, int], centres: np.ndarray) -> None:
    info = SlideInfo(SLIDE_ID, ("DAPI", "Muc2", "CD3d"), MPP, *shape, "uint16")
    with create_slide(layout.slide_zarr(SLIDE_ID), info, chunk_px=256) as writer:
        writer.write(0, 0, synthetic_stains(shape, centres))


def materialise(layout: DataLayout, params: MesmerParams) -> dict:
    found: dict = {}

    @dg.asset
    def nucleus_mask(
        context: dg.AssetExecutionContext, mesmer_pipes: dg.PipesSubprocessClient
    ) -> dg.MaterializeResult:
        found.update(segment_with_mesmer_pipes(context, SLIDE_ID, layout, params))
        return dg.MaterializeResult(metadata={"nucleus_count": found["nucleus_count"]})

    result = dg.materialize(
        [nucleus_mask], resources={"mesmer_pipes": dg.PipesSubprocessClient(cwd=str(REPO_ROOT))}
    )
    assert result.success
    return found


@pytest.mark.slow
@needs_env
def test_mesmer_round_trip_writes_the_slide_mask(tmp_path: Path, standin_model: Path) -> None:
    layout = DataLayout(tmp_path / "data")
    shape = (400, 520)  # 2 x 3 tiles of 256 px
    centres = nucleus_centres()
    write_slide(layout, shape, centres)

    params = MesmerParams(tile_px=256, halo_px=40, model_path=str(standin_model))
    meta = materialise(layout, params)

    mask = open_mask(layout.mask_zarr(SLIDE_ID))
    labels = mask.read()
    assert labels.shape == shape and labels.dtype == np.int32
    assert mask.attrs["backend"] == "mesmer" and mask.attrs["stains"] == ["DAPI", "Muc2"]
    # Metadata came back through Pipes from the worker.
    assert meta["tiles"] == 6 and meta["weights_source"] == "path"
    assert meta["deepcell_version"] == "0.12.10" and meta["tensorflow_version"].startswith("2.8")
    ids = np.unique(labels[labels > 0])
    assert meta["nucleus_count"] == ids.size == len(centres)
    # One whole nucleus per simulated one, also across tile borders: the label at each centre
    # is distinct, and covers about the simulated disc.
    at_centres = labels[centres[:, 0], centres[:, 1]]
    assert np.all(at_centres > 0) and np.unique(at_centres).size == len(centres)
    areas = np.bincount(labels.ravel())[at_centres]
    disc = np.pi * RADIUS_PX**2
    assert np.all((areas > 0.6 * disc) & (areas < 1.6 * disc))
    assert not list((tmp_path / "data" / "tmp").iterdir())  # exchange folder removed


def test_missing_weights_say_how_to_get_them(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MESMER_MODEL_PATH", raising=False)
    monkeypatch.delenv("DEEPCELL_ACCESS_TOKEN", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ModelWeightsError, match="DEEPCELL_ACCESS_TOKEN"):
        segment_with_mesmer_pipes(None, SLIDE_ID, DataLayout(tmp_path), MesmerParams())  # type: ignore[arg-type]


def test_a_mesmer_image_runs_the_worker_in_a_pod(monkeypatch) -> None:
    pytest.importorskip("dagster_k8s")
    from dagster_k8s import PipesK8sClient

    from dagster_project.defs.nuclei import mesmer

    monkeypatch.setenv(mesmer.IMAGE_VAR, "registry.example.org/nucleus-subtyping-mesmer:1")
    monkeypatch.setenv(mesmer.POD_SPEC_VAR, '{"volumes": [{"name": "data"}]}')
    defs = mesmer.mesmer_resources()
    assert isinstance(defs.resources["mesmer_pipes"], PipesK8sClient)

    class Invocation:
        def get_custom_messages(self) -> list:
            return [{"nucleus_count": 3}]

    calls: list[dict] = []

    class FakeK8sClient(dg.PipesClient):
        def run(self, **kwargs):  # type: ignore[override]
            calls.append(kwargs)
            return Invocation()

    assert mesmer._run_worker(FakeK8sClient(), None, {"tile_px": 256}) == [{"nucleus_count": 3}]
    assert calls[0]["command"] == ["python", "-m", "mesmer_env.worker"]
    assert calls[0]["image"] == "registry.example.org/nucleus-subtyping-mesmer:1"
    assert calls[0]["base_pod_spec"] == {"volumes": [{"name": "data"}]}
    assert calls[0]["extras"] == {"tile_px": 256}
