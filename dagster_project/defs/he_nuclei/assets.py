"""`he_nucleus_model`: trains the he-learned H&E nucleus segmenter on the cohort's own pairs of
virtual H&E and MxIF nucleus mask; the checkpoint lands in `models/he_learned/`
(storage/he_segmenter_checkpoints.py), which the `he-learned` backend loads. It runs in the
`gpu` pool, like the classifier."""

from typing import Literal

import dagster as dg

from dagster_project.defs.he_nuclei.wiring import score_holdout, training_pairs
from dagster_project.defs.metadata import linked_png_md
from dagster_project.defs.training.assets import GPU_NODE_TAGS
from dagster_project.resources import DataRoot


class HeNucleusModelConfig(dg.Config):
    """profile: "demo" (CPU, a few minutes) or "paper" (GPU); fields left at None take the
    profile's value. The last slide is held out to score the model when there are two or more.
    device: None picks cuda, then mps, then cpu."""

    profile: Literal["demo", "paper"] = "demo"
    steps: int | None = None
    batch_size: int | None = None
    crop_px: int | None = None
    cpu_threads: int | None = None
    device: str | None = None
    max_slides: int = 32
    seed: int = 0


@dg.asset(
    key="he_nucleus_model", group_name="he_nuclei", kinds={"pytorch"}, pool="gpu",
    op_tags=GPU_NODE_TAGS,
    deps=[dg.AssetDep(k, partition_mapping=dg.AllPartitionMapping())
          for k in ("virtual_he", "nucleus_mask")],
)
def he_nucleus_model(context: dg.AssetExecutionContext, config: HeNucleusModelConfig,
                     data_root: DataRoot) -> dg.MaterializeResult:
    """U-Net weights (foreground + nucleus core) learnt from virtual H&E and MxIF masks."""
    # torch loads in this step only, not with the definitions every step process loads.
    from pipelines.segment.he_learned import (
        HeLearnedSegmenter,
        he_train_profile,
        train_he_segmenter,
    )
    from storage.he_segmenter_checkpoints import he_segmenter_dir, save_he_segmenter

    layout = data_root.layout
    params = he_train_profile(config.profile, steps=config.steps, batch_size=config.batch_size,
                              crop_px=config.crop_px, cpu_threads=config.cpu_threads,
                              device=config.device, seed=config.seed)
    pairs = training_pairs(layout, config.max_slides)
    if not pairs:
        raise dg.Failure(f"No slide under {layout.root} has both a virtual H&E and a nucleus "
                         "mask: materialise virtual_he and nucleus_mask first.")
    train, holdout = (pairs[:-1], pairs[-1]) if len(pairs) > 1 else (pairs, None)
    model, log = train_he_segmenter(train, params,
                                    on_log=lambda s, v: context.log.info(f"step {s}: loss {v:.4f}"))
    out = save_he_segmenter(he_segmenter_dir(layout.models_dir), model.state_dict,
                            model.metadata())
    metadata = {
        "checkpoint": dg.MetadataValue.path(str(out)), "profile": config.profile,
        "steps": model.step, "seconds": round(log.seconds, 2),
        "seconds_per_step": round(log.seconds / model.step, 4), "device": log.device,
        "slides": len(train), "first_loss": round(log.loss[0], 4),
        "last_loss": round(log.loss[-1], 4),
        "loss": dg.MetadataValue.json(dict(zip(log.steps, [round(v, 4) for v in log.loss],
                                               strict=True))),
    }
    if holdout is not None:
        scored = score_holdout(holdout, HeLearnedSegmenter(model, params.device),
                               layout.figures_dir("he_nuclei") / "holdout.png")
        metadata.update(holdout_slide=scored.slide_id, holdout_f1_iou50=scored.f1_iou50,
                        holdout_f1_iou30=scored.f1_iou30, holdout_nuclei=scored.n_true,
                        preview=linked_png_md(scored.preview, alt="holdout",
                                              caption="MxIF mask | he-learned on virtual H&E"))
    return dg.MaterializeResult(metadata=metadata)
