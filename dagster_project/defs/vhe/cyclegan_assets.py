"""`cyclegan_model`: trains the MxIF -> H&E CycleGAN on ingested slides and real H&E tiles.

The checkpoint lands in `models/cyclegan/` (format: storage/checkpoints.py) and is what the
`virtual_he` asset loads when its backend is "cyclegan". A run continues from the checkpoint
there (resume=True) until the profile's total step count.
"""

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from dagster_project.resources import DataRoot
from storage.checkpoints import (
    checkpoint_exists,
    load_cyclegan_checkpoint,
    save_cyclegan_checkpoint,
)
from storage.fs import link
from storage.he_tiles import HeTileFolder
from storage.layout import DataLayout
from storage.manifest import read_manifest_parquet
from storage.png import write_rgb_png
from storage.slide_store import SlideReader, open_slide

# The CycleGAN modules (torch) load in the training step, not with the definitions.
if TYPE_CHECKING:
    from pipelines.vhe.cyclegan.train import TrainingLog, TrainParams

# The shared folder of real colon H&E tiles beside the project; never copied into it.
DEFAULT_HE_TILES = str(Path("..") / "shared" / "data" / "real_he_colon_tiles")


class CycleGanConfig(dg.Config):
    """profile: "demo" (tiny, CPU, about a minute) or "paper" (CycleGAN defaults, GPU);
    the fields left at None take the profile's value. he_mpp: pixel size of the H&E tiles
    (None: same as the slides). device: None picks cuda, then mps, then cpu. cpu_threads: None
    takes the profile's (1 for the demo), 0 leaves torch's default. input_stains: the stains
    the generator sees, "histology" (every stain but the immune-identity ones, which H&E cannot
    show) or "all"."""

    profile: str = "demo"
    input_stains: str = "histology"
    he_tiles_dir: str = DEFAULT_HE_TILES
    he_mpp: float | None = None
    steps: int | None = None
    crop_px: int | None = None
    batch_size: int | None = None
    lambda_nucleus: float | None = None
    cpu_threads: int | None = None
    max_slides: int = 8
    checkpoint_every: int = 50
    resume: bool = True
    device: str | None = None
    seed: int = 0


@dg.asset(
    key="cyclegan_model",
    group_name="virtual_he",
    deps=[dg.AssetDep("slide_image", partition_mapping=dg.AllPartitionMapping())],
    kinds={"pytorch"},
)
def cyclegan_model(
    context: dg.AssetExecutionContext, config: CycleGanConfig, data_root: DataRoot
) -> dg.MaterializeResult:
    """A CycleGAN checkpoint (models/cyclegan) and a preview PNG of MxIF -> virtual H&E."""
    from pipelines.torch_device import torch_threads
    from pipelines.vhe.cyclegan.fit import checkpoint_payload, prepare_run, preview, resume_run
    from pipelines.vhe.cyclegan.train import train

    layout, he_dir = data_root.layout, Path(config.he_tiles_dir)
    if not he_dir.is_dir():
        context.log.warning(f"No real H&E tiles at {he_dir.resolve()}; CycleGAN not trained.")
        return dg.MaterializeResult(metadata={"skipped": f"no H&E tile folder at {he_dir}"})
    architecture, params, threads = _profile(config)
    slides, he = _training_slides(layout, config.max_slides), HeTileFolder(he_dir)
    run = prepare_run(slides, he, architecture, params, he_mpp=config.he_mpp,
                      device=config.device, input_stains=config.input_stains)
    out = layout.models_dir / "cyclegan"
    start_step = 0
    if config.resume and checkpoint_exists(out):
        states, info = load_cyclegan_checkpoint(out, map_location=run.trainer.device)
        resume_run(run, states, info)
        start_step = info.step
    extra = {"profile": config.profile, "input_stains": config.input_stains,
             "slide_ids": [s.info.slide_id for s in slides], "he_tiles": len(he),
             "he_tiles_dir": str(he_dir)}

    def save(_trainer: object, lg: "TrainingLog") -> None:
        states, info = checkpoint_payload(run, lg, {**extra, "seconds": round(lg.seconds, 2)})
        save_cyclegan_checkpoint(out, states, info)

    with torch_threads(threads):
        log = train(run.trainer, run.mxif, run.he, checkpoint_every=config.checkpoint_every,
                    on_checkpoint=save)
    figure = write_rgb_png(layout.figures_dir("cyclegan") / "preview.png",
                           preview(run, slides[0], he.read(0)))
    losses = log.mean_of_last()
    return dg.MaterializeResult(metadata={
        "checkpoint": dg.MetadataValue.path(str(out)),
        "step": run.trainer.step, "resumed_from_step": start_step, "steps_run": log.steps_run,
        "seconds": round(log.seconds, 2),
        "seconds_per_step": round(log.seconds / max(log.steps_run, 1), 4),
        "device": str(run.trainer.device), "slides": len(slides), "he_tiles": len(he),
        "input_stains": dg.MetadataValue.json(
            {"set": config.input_stains, "stains": list(run.trainer.stains)}),
        "losses_last_20": dg.MetadataValue.json({k: round(v, 4) for k, v in losses.items()}),
        "preview": dg.MetadataValue.md(
            f"nuclear stain | virtual H&E | real H&E\n\n![preview]({link(figure)})"),
        "preview_path": dg.MetadataValue.path(str(figure)),
    })


def _profile(config: CycleGanConfig) -> tuple[dict[str, int], "TrainParams", int]:
    """Architecture, training parameters and CPU threads: the profile's, with overrides."""
    from pipelines.vhe.cyclegan.train import PROFILES

    if config.profile not in PROFILES:
        raise dg.Failure(f"Unknown CycleGAN profile {config.profile!r}; use {sorted(PROFILES)}.")
    profile = PROFILES[config.profile]
    overrides = {
        k: getattr(config, k)
        for k in ("steps", "crop_px", "batch_size", "lambda_nucleus")
        if getattr(config, k) is not None
    }
    threads = profile.cpu_threads if config.cpu_threads is None else config.cpu_threads
    params = dataclasses.replace(profile.train, seed=config.seed, **overrides)
    return dict(profile.architecture), params, threads


def _training_slides(layout: DataLayout, max_slides: int) -> list[SlideReader]:
    """Up to `max_slides` ingested slides, in manifest order (or by id without a manifest)."""
    if layout.manifest_parquet.exists():
        ids = read_manifest_parquet(layout.manifest_parquet)["slide_id"].to_list()
    else:
        ids = sorted(p.name.removesuffix(".zarr") for p in
                     layout.slide_zarr("x").parent.glob("*.zarr"))
    paths = [layout.slide_zarr(i) for i in ids if layout.slide_zarr(i).exists()]
    if not paths:
        raise dg.Failure(
            f"No ingested slides under {layout.root}: materialise slide_image first."
        )
    return [open_slide(p) for p in paths[:max_slides]]
