"""CycleGAN training: samplers, image pool, losses that fall, exact resume from a checkpoint."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from pipelines.errors import ConfigurationError, StainError
from pipelines.vhe.cyclegan.data import (
    HeCropSampler,
    MxifCropSampler,
    StainNormalisation,
    slide_pixel_sample,
    training_stains,
)
from pipelines.vhe.cyclegan.fit import (
    checkpoint_payload,
    prepare_run,
    preview,
    resume_run,
    withheld_stains,
)
from pipelines.vhe.cyclegan.model import Architecture, build_networks
from pipelines.vhe.cyclegan.train import CycleGanTrainer, ImagePool, TrainParams, train
from storage.checkpoints import load_cyclegan_checkpoint, save_cyclegan_checkpoint
from storage.slide_store import SlideInfo, create_slide, open_slide

STAINS = ("DAPI", "PanCK", "Vimentin", "CD3d")
TINY = {"ngf": 4, "ndf": 4, "n_blocks": 1, "n_disc_layers": 2}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@dataclass
class MemorySlide:
    """An in-memory slide with the reader interface the samplers use."""

    info: SlideInfo
    image: np.ndarray

    def read(self, y0, x0, y1, x1, stains=None):
        return self.image[:, y0:y1, x0:x1]


def _tissue(seed: int, size: int = 96, brightness: float = 1.0) -> MemorySlide:
    """Nuclei (round DAPI blobs), PanCK around some of them, a smooth Vimentin field."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    dapi = np.zeros((size, size))
    panck = np.zeros((size, size))
    for _ in range(size * size // 150):
        cy, cx = rng.uniform(0, size, 2)
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        dapi += np.exp(-d2 / 6.0)
        if rng.random() < 0.5:
            panck += np.exp(-d2 / 30.0) - np.exp(-d2 / 6.0)
    vim = 0.5 + 0.5 * np.sin(yy / 9.0) * np.cos(xx / 13.0)
    cd3 = rng.random((size, size)) * 0.1
    image = np.stack([dapi, panck.clip(0), vim, cd3]) * 1000 * brightness + 50
    info = SlideInfo(f"s{seed}", STAINS, 0.32, size, size, "float32")
    return MemorySlide(info, image.astype(np.float32))


class MemoryTiles:
    """Real-H&E-like tiles: pink eosin background, purple hematoxylin nuclei."""

    def __init__(self, n: int = 4, size: int = 64) -> None:
        rng = np.random.default_rng(5)
        self.tiles = []
        yy, xx = np.mgrid[0:size, 0:size]
        for _ in range(n):
            h = np.zeros((size, size))
            for _ in range(20):
                cy, cx = rng.uniform(0, size, 2)
                h += 1.2 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 6.0)
            od = h[..., None] * np.array([0.65, 0.70, 0.29]) + 0.4 * np.array([0.07, 0.99, 0.11])
            self.tiles.append((255 * np.exp(-od)).round().astype(np.uint8))

    def __len__(self) -> int:
        return len(self.tiles)

    def read(self, index: int) -> np.ndarray:
        return self.tiles[index]


def _params(**kw) -> TrainParams:
    base = {"steps": 40, "crop_px": 32, "batch_size": 2, "pool_size": 10, "seed": 0}
    return TrainParams(**{**base, **kw})


def test_normalisation_maps_percentiles_to_the_ends_of_the_range():
    sample = np.stack([np.arange(1001.0), np.full(1001, 7.0)])
    norm = StainNormalisation.from_sample(sample, ("A", "B"), 10.0, 90.0)
    assert norm.low[0] == pytest.approx(100.0) and norm.high[0] == pytest.approx(900.0)
    assert norm.high[1] > norm.low[1]  # a flat stain still gets a positive range
    out = norm.apply(np.array([[[100.0, 500.0, 900.0, 2000.0]], [[7.0] * 4]]))
    assert out[0, 0].tolist() == pytest.approx([-1.0, 0.0, 1.0, 1.0])
    assert out[1, 0].tolist() == pytest.approx([-1.0] * 4)


def test_mxif_crops_come_in_checkpoint_stain_order_from_a_slide_store(tmp_path):
    stored = ("CD3d", "DAPI", "PanCK")
    info = SlideInfo("z1", stored, 0.32, 80, 70, "uint16")
    with create_slide(tmp_path / "z1.zarr", info, chunk_px=32) as writer:
        writer.write(0, 0, np.stack([np.full((80, 70), v, np.uint16) for v in (30, 10, 20)]))
    slide = open_slide(tmp_path / "z1.zarr")
    wanted = ("DAPI", "PanCK", "CD3d")
    sample = slide_pixel_sample(slide, wanted, np.random.default_rng(0), n_pixels=500)
    assert sample.shape == (3, 500)
    assert sample[:, 0].tolist() == [10, 20, 30]
    norm = StainNormalisation(wanted, np.array([0.0, 0.0, 0.0]), np.array([20.0, 40.0, 120.0]))
    sampler = MxifCropSampler([slide], wanted, [norm], 32, np.random.default_rng(0),
                              region_px=64)
    batch = sampler.sample(3)
    assert batch.shape == (3, 3, 32, 32) and batch.dtype == torch.float32
    assert torch.allclose(batch[:, 0], torch.tensor(0.0))  # 10 of 0..20
    assert torch.allclose(batch[:, 1], torch.tensor(0.0))  # 20 of 0..40
    assert torch.allclose(batch[:, 2], torch.tensor(-0.5))  # 30 of 0..120


def test_he_crops_are_scaled_to_the_mxif_pixel_size():
    tiles = MemoryTiles(n=2, size=64)
    same = HeCropSampler(tiles, 32, np.random.default_rng(0)).sample(4)
    assert same.shape == (4, 3, 32, 32)
    assert same.min() >= -1 and same.max() <= 1
    values = {round(v, 4) for v in (tiles.read(0).astype(np.float32) / 127.5 - 1).flatten()[:50]}
    assert len(values) > 1
    # H&E tiles at half the MxIF's pixel size: 64-px crops shrunk to 32 px.
    scaled = HeCropSampler(tiles, 32, np.random.default_rng(0), scale=2.0).sample(2)
    assert scaled.shape == (2, 3, 32, 32)
    with pytest.raises(ConfigurationError, match="at least 128 px"):
        HeCropSampler(tiles, 32, np.random.default_rng(0), scale=4.0).sample(1)


def test_slides_without_the_first_slides_stains_are_refused():
    other = _tissue(1)
    other.info = SlideInfo("odd", ("DAPI", "PanCK"), 0.32, 96, 96, "float32")
    with pytest.raises(StainError, match=r"'odd' lacks stain\(s\) \['Vimentin', 'CD3d'\]"):
        training_stains([_tissue(0), other])


def test_withheld_stains_are_left_out_of_the_generators_input():
    assert training_stains([_tissue(0)], withheld=("CD3d",)) == ("DAPI", "PanCK", "Vimentin")
    assert withheld_stains("all") == () and "CD4" in withheld_stains("histology")
    with pytest.raises(ConfigurationError, match=r"input_stains must be one of \['all', "
                       r"'histology'\], not 'immune'"):
        withheld_stains("immune")
    with pytest.raises(StainError, match="no stain left"):
        training_stains([_tissue(0)], withheld=STAINS)
    run = prepare_run([_tissue(0)], MemoryTiles(), TINY, _params(steps=1), device="cpu")
    assert run.trainer.stains == ("DAPI", "PanCK", "Vimentin")  # "histology" by default
    assert run.trainer.architecture.n_stains == 3 and run.pooled.stains == run.trainer.stains
    every = prepare_run([_tissue(0)], MemoryTiles(), TINY, _params(steps=1), device="cpu",
                        input_stains="all")
    assert every.trainer.stains == STAINS


def test_image_pool_returns_stored_fakes_and_stays_bounded():
    pool = ImagePool(size=3, seed=0)
    first = torch.arange(3.0).view(3, 1, 1, 1)
    assert torch.equal(pool.query(first), first)  # filling: returned unchanged
    seen = set()
    for k in range(20):
        new = torch.full((1, 1, 1, 1), 10.0 + k)
        out = pool.query(new)
        seen.add(float(out))
        assert len(pool.images) == 3
    assert seen & {0.0, 1.0, 2.0}  # older fakes are handed back
    assert seen - {0.0, 1.0, 2.0}  # and new ones pass through
    assert torch.equal(ImagePool(0).query(first), first)


def test_cycle_loss_falls_over_a_few_dozen_steps():
    run = prepare_run([_tissue(0), _tissue(1, brightness=2.0)], MemoryTiles(), TINY,
                      _params(steps=30, batch_size=1), device="cpu")
    log = train(run.trainer, run.mxif, run.he)
    assert run.trainer.step == 30 and log.steps_run == 30
    cycle = [h["cycle_mxif"] + h["cycle_he"] for h in log.history]
    first, last = np.mean(cycle[:5]), np.mean(cycle[-5:])
    assert last < 0.8 * first, (first, last)  # about 1.27 -> 0.86 with seed 0
    assert all(np.isfinite(h["discriminator_he"]) for h in log.history)
    assert all(h["identity_he"] > 0 and h["nucleus"] > 0 for h in log.history)


def test_training_refuses_a_missing_nuclear_stain():
    arch = Architecture(n_stains=2, **TINY)
    with pytest.raises(ConfigurationError, match="nuclear stain 'DAPI'"):
        CycleGanTrainer(build_networks(arch), arch, _params(), ("PanCK", "CD3d"), "DAPI",
                        torch.device("cpu"))


class FixedBatches:
    """The same sequence of batches whatever the history, so two runs see identical data."""

    def __init__(self, batches: list[torch.Tensor]) -> None:
        self.batches, self.k = batches, 0

    def sample(self, batch_size: int) -> torch.Tensor:
        batch = self.batches[self.k % len(self.batches)]
        self.k += 1
        return batch


def test_training_resumes_exactly_from_a_checkpoint(tmp_path):
    slides, tiles = [_tissue(0)], MemoryTiles()
    params = _params(steps=6, pool_size=0, lr_decay_start=3)
    run = prepare_run(slides, tiles, TINY, params, device="cpu")
    mx = [run.mxif.sample(2) for _ in range(6)]
    he = [run.he.sample(2) for _ in range(6)]

    straight = prepare_run(slides, tiles, TINY, params, device="cpu")
    train(straight.trainer, FixedBatches(mx), FixedBatches(he))

    first = prepare_run(slides, tiles, TINY, _params(steps=3, pool_size=0, lr_decay_start=3),
                        device="cpu")
    train(first.trainer, FixedBatches(mx[:3]), FixedBatches(he[:3]),
          on_checkpoint=lambda _t, lg: save_cyclegan_checkpoint(
              tmp_path / "ck", *checkpoint_payload(first, lg)))
    resumed = prepare_run(slides, tiles, TINY, params, device="cpu")
    states, info = load_cyclegan_checkpoint(tmp_path / "ck")
    assert info.step == 3 and info.stains == STAINS[:3]  # CD3d withheld ("histology")
    resume_run(resumed, states, info)
    log = train(resumed.trainer, FixedBatches(mx[3:]), FixedBatches(he[3:]))
    assert log.steps_run == 3 and resumed.trainer.step == 6
    assert log.history[-1]["lr"] == pytest.approx(2e-4 / 3)  # linear decay continued
    a = straight.trainer.nets.generator_mxif_to_he.state_dict()
    b = resumed.trainer.nets.generator_mxif_to_he.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_resume_refuses_a_checkpoint_for_other_stains_or_sizes(tmp_path):
    run = prepare_run([_tissue(0)], MemoryTiles(), TINY, _params(steps=1), device="cpu",
                      input_stains="all")
    states, info = checkpoint_payload(run)
    other = _tissue(2)
    other.info = SlideInfo("o", ("DAPI", "PanCK", "Vimentin", "CD8"), 0.32, 96, 96, "float32")
    run_other = prepare_run([other], MemoryTiles(), TINY, _params(steps=1), device="cpu",
                            input_stains="all")
    with pytest.raises(StainError, match=r"missing from these slides: \['CD3d'\].*\['CD8'\]"):
        resume_run(run_other, states, info)
    bigger = prepare_run([_tissue(0)], MemoryTiles(), {**TINY, "ngf": 8}, _params(steps=1),
                         device="cpu", input_stains="all")
    with pytest.raises(ConfigurationError, match="architecture"):
        resume_run(bigger, states, info)


def test_preview_shows_nuclear_stain_virtual_and_real_he():
    run = prepare_run([_tissue(0)], MemoryTiles(), TINY, _params(steps=1), device="cpu")
    panel = preview(run, run.mxif.slides[0], MemoryTiles().read(0), size_px=64)
    assert panel.shape == (64, 192, 3) and panel.dtype == np.uint8
    assert np.array_equal(panel[:, 128:], MemoryTiles().read(0))
    assert (panel[:, :64, 0] == panel[:, :64, 1]).all()  # grey nuclear stain
    assert run.trainer.nets.generator_mxif_to_he.training  # left in training mode
