"""`cyclegan_model`: trains the MxIF -> H&E CycleGAN on ingested slides and real H&E tiles.

The checkpoint lands in `models/cyclegan/` (format: storage/checkpoints.py) and is what the
`virtual_he` asset loads when its backend is "cyclegan". A run continues from the checkpoint
there (resume=True) until the profile's total step count.
"""

from pathlib import Path

import dagster as dg

from dagster_project.defs.metadata import linked_png_md
from dagster_project.defs.vhe import wiring
from dagster_project.resources import DataRoot

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
    layout, he_dir = data_root.layout, Path(config.he_tiles_dir)
    if not he_dir.is_dir():
        context.log.warning(f"No real H&E tiles at {he_dir.resolve()}; CycleGAN not trained.")
        return dg.MaterializeResult(metadata={"skipped": f"no H&E tile folder at {he_dir}"})
    from pipelines.vhe.cyclegan.train import PROFILES  # torch loads in this step only

    if config.profile not in PROFILES:
        raise dg.Failure(f"Unknown CycleGAN profile {config.profile!r}; use {sorted(PROFILES)}.")
    settings = wiring.cyclegan_settings(
        config.profile, {k: getattr(config, k) for k in wiring.CYCLEGAN_OVERRIDES}, config.seed,
        config.cpu_threads)
    slides = wiring.training_slides(layout, config.max_slides)
    if not slides:
        raise dg.Failure(f"No ingested slides under {layout.root}: materialise slide_image first.")
    out = wiring.train_cyclegan(layout, slides, he_dir, config.profile, settings, config.he_mpp,
                                config.device, config.resume, config.checkpoint_every,
                                config.input_stains)
    log, losses = out.log, out.log.mean_of_last()
    return dg.MaterializeResult(metadata={
        "checkpoint": dg.MetadataValue.path(str(out.checkpoint)),
        "step": out.step, "resumed_from_step": out.resumed_from_step, "steps_run": log.steps_run,
        "seconds": round(log.seconds, 2),
        "seconds_per_step": round(log.seconds / max(log.steps_run, 1), 4),
        "device": out.device, "slides": len(slides), "he_tiles": out.n_he_tiles,
        "input_stains": dg.MetadataValue.json(
            {"set": config.input_stains, "stains": list(out.stains)}),
        "losses_last_20": dg.MetadataValue.json({k: round(v, 4) for k, v in losses.items()}),
        "preview": linked_png_md(out.preview, caption="nuclear stain | virtual H&E | real H&E"),
        "preview_path": dg.MetadataValue.path(str(out.preview)),
    })
