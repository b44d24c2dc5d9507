"""Checkpoints: exact round trip, atomic replacement, clear errors for missing or foreign ones."""

import json

import pytest
import torch

from storage import checkpoints as ck
from storage.errors import StoreLayoutError


def _states(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    net = {"conv.weight": torch.randn(4, 3, 3, 3, generator=g), "conv.bias": torch.zeros(4)}
    optim = {"state": {0: {"step": torch.tensor(5.0), "exp_avg": torch.randn(4, generator=g)}},
             "param_groups": [{"lr": 2e-4, "betas": (0.5, 0.999), "params": [0]}]}
    return {"net": net, "optimizer": optim}


def _info(step: int = 3) -> ck.CycleGanInfo:
    return ck.CycleGanInfo(
        stains=("DAPI", "CD3d"), norm_low=(1.0, 2.0), norm_high=(100.0, 50.0), mpp=0.32,
        architecture={"n_stains": 2, "ngf": 4}, step=step, extra={"loss": float("nan")},
    )


def test_round_trip_gives_identical_tensors_and_metadata(tmp_path):
    states = _states(0)
    ck.save_checkpoint(tmp_path / "m", states, {"step": 7, "stains": ("DAPI",)}, kind="demo")
    loaded = ck.load_checkpoint(tmp_path / "m", kind="demo")
    assert loaded.kind == "demo"
    assert loaded.metadata == {"step": 7, "stains": ["DAPI"]}
    for name, tensor in states["net"].items():
        assert torch.equal(loaded.state_dicts["net"][name], tensor)
    assert torch.equal(loaded.state_dicts["optimizer"]["state"][0]["exp_avg"],
                       states["optimizer"]["state"][0]["exp_avg"])
    sidecar = json.loads((tmp_path / "m" / ck.METADATA_FILE).read_text())
    assert sidecar["parts"] == ["net", "optimizer"]
    assert sidecar["format_version"] == ck.FORMAT_VERSION
    only = ck.load_checkpoint(tmp_path / "m", parts=["net"])
    assert list(only.state_dicts) == ["net"]


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    ck.save_checkpoint(tmp_path / "m", _states(0), {"step": 1}, kind="demo")

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        ck.save_checkpoint(tmp_path / "m", _states(1), {"step": 2}, kind="demo")
    monkeypatch.undo()
    loaded = ck.load_checkpoint(tmp_path / "m")
    assert loaded.metadata == {"step": 1}
    assert torch.equal(loaded.state_dicts["net"]["conv.weight"], _states(0)["net"]["conv.weight"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporaries left


def test_unserialisable_metadata_fails_before_anything_is_written(tmp_path):
    with pytest.raises(TypeError):
        ck.save_checkpoint(tmp_path / "m", _states(0), {"bad": object()}, kind="demo")
    assert not (tmp_path / "m").exists()


def test_missing_foreign_and_future_checkpoints_are_refused(tmp_path):
    with pytest.raises(StoreLayoutError, match="No checkpoint at"):
        ck.load_checkpoint(tmp_path / "nothing")
    ck.save_checkpoint(tmp_path / "m", _states(0), {}, kind="classifier")
    with pytest.raises(StoreLayoutError, match="'classifier' checkpoint, expected 'cyclegan'"):
        ck.load_cyclegan_checkpoint(tmp_path / "m")
    sidecar_path = tmp_path / "m" / ck.METADATA_FILE
    sidecar = json.loads(sidecar_path.read_text())
    sidecar["format_version"] = ck.FORMAT_VERSION + 1
    sidecar_path.write_text(json.dumps(sidecar))
    with pytest.raises(StoreLayoutError, match="format version"):
        ck.load_checkpoint(tmp_path / "m")
    with pytest.raises(StoreLayoutError, match="lacks part"):
        ck.save_checkpoint(tmp_path / "n", _states(0), {}, kind="demo")
        ck.load_checkpoint(tmp_path / "n", parts=["generator"])


def test_cyclegan_info_round_trip_and_validation(tmp_path):
    info = _info()
    ck.save_cyclegan_checkpoint(tmp_path / "g", {"generator_mxif_to_he": _states(0)["net"]}, info)
    states, loaded = ck.load_cyclegan_checkpoint(tmp_path / "g")
    assert list(states) == ["generator_mxif_to_he"]
    assert loaded.stains == ("DAPI", "CD3d")
    assert loaded.norm_low == (1.0, 2.0) and loaded.norm_high == (100.0, 50.0)
    assert loaded.step == 3 and loaded.mpp == 0.32
    assert loaded.extra == {"loss": None}  # non-finite numbers become null in JSON
    assert ck.read_cyclegan_info(tmp_path / "g") == loaded
    with pytest.raises(StoreLayoutError, match="2 stains but 1/2"):
        ck.CycleGanInfo(("DAPI", "CD3d"), (1.0,), (2.0, 3.0), 0.32, {}, 0)
    with pytest.raises(StoreLayoutError, match="lacks"):
        ck.CycleGanInfo.from_json({"stains": ["DAPI"]})
