"""Classifier stage: patient-level folds, one ResNet-18 per fold, and the evaluation report.

`classifier` runs in the `gpu` pool. The project's instance settings (dagster.yaml,
`concurrency: pools: default_limit: 1`) allow one step per pool at a time; to set the `gpu`
pool alone run `dagster instance concurrency set gpu 1`.
"""

import os
import time
import warnings

import dagster as dg
import polars as pl

from dagster_project.defs.training import wiring
from dagster_project.partitions import fold_partitions
from dagster_project.profiles import PROFILE_ENV
from dagster_project.resources import DataRoot
from pipelines.evaluate import frame_markdown, metrics_table_markdown
from pipelines.train.split import SplitParams, check_folds, make_folds
from storage.folds import folds_path, read_folds, write_folds
from storage.manifest import read_manifest_parquet

# Under the Kubernetes executor a training step asks for one GPU (ignored elsewhere).
GPU_NODE_TAGS = {
    "dagster-k8s/config": {
        "container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}},
        "pod_spec_config": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]},
    }
}


class FoldSplitConfig(dg.Config):
    """Seed of the patient deal; the same manifest and seed always give the same folds."""

    seed: int = 0


class ClassifierConfig(dg.Config):
    """`profile` demo (CPU minutes) or paper (§2.4: 20,000 steps at batch 256); fields set
    here override the profile. `resnet18_weights`: a local ImageNet file (never downloaded).
    `cpu_threads`: torch threads on CPU (None: the profile's; 0: torch's
    default). `resume`: continue an interrupted run of the same settings and slides."""

    profile: str = os.environ.get(PROFILE_ENV, "demo")
    steps: int | None = None
    batch_size: int | None = None
    augment: bool | None = None
    device: str = "auto"
    seed: int | None = None
    resnet18_weights: str | None = None
    resume: bool = True
    cpu_threads: int | None = None


@dg.asset(key="fold_split", group_name="classifier", deps=["slide_manifest"],
          kinds={"python", "parquet"})
def fold_split(config: FoldSplitConfig, data_root: DataRoot) -> dg.MaterializeResult:
    """Patient-level 5-fold split: per fold 60 % train, 20 % validation, 20 % test patients,
    every set with both sites and healthy and diseased patients."""
    layout = data_root.layout
    manifest = read_manifest_parquet(layout.manifest_parquet)
    folds = make_folds(manifest, SplitParams(seed=config.seed))
    problems = check_folds(folds, manifest)
    if problems:
        raise dg.Failure(f"The fold split is unsound: {problems}")
    path = write_folds(folds_path(layout.root), folds)
    table = wiring.folds_preview(folds, manifest)
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(path)),
        "n_patients": folds["patient_id"].n_unique(),
        "n_folds": folds["fold"].n_unique(),
        "patients_per_role": dg.MetadataValue.md(frame_markdown(table)),
    })


@dg.asset(
    key="classifier", group_name="classifier", partitions_def=fold_partitions, pool="gpu",
    deps=["fold_split", dg.AssetDep("nucleus_patches", partition_mapping=dg.AllPartitionMapping())],
    kinds={"pytorch"},
    op_tags=GPU_NODE_TAGS,
)
def classifier(
    context: dg.AssetExecutionContext, config: ClassifierConfig, data_root: DataRoot
) -> dg.MaterializeResult:
    """Train the fold's ResNet-18 on its train patients, keep the weights with the lowest
    validation loss, and predict every patch of its test patients."""
    from pipelines.torch_device import torch_threads  # torch loads in this step only
    from pipelines.train.model import RandomInitWarning
    from pipelines.train.profiles import training_profile

    fold = int(context.partition_key)
    params = training_profile(config.profile, steps=config.steps, batch_size=config.batch_size,
                              augment=config.augment, device=config.device, seed=config.seed,
                              cpu_threads=config.cpu_threads)
    inputs = wiring.load_fold(data_root.layout, fold, config.resnet18_weights)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RandomInitWarning)
        model = inputs.build_model(params.seed)
    for w in caught:
        context.log.warning(str(w.message))
    started = time.perf_counter()
    with torch_threads(params.cpu_threads):
        result = wiring.train_fold(inputs, model, params, config.resume, context.log)
        metrics, n_pred = wiring.predict_fold(inputs, model, params)
    seconds = time.perf_counter() - started
    context.log.info(f"fold {fold}: best step {result.best_step}, {seconds:.0f} s")
    return dg.MaterializeResult(metadata={
        "profile": config.profile,
        "best_step": result.best_step,
        "best_val_loss": float(result.best_val_loss),
        "steps": params.steps,
        "batch_size": params.batch_size,
        "steps_per_s": round(result.steps_per_s, 3),
        "train_seconds": round(result.seconds, 1),
        "total_seconds": round(seconds, 1),
        "device": result.device,
        "precision": result.precision,
        "init": inputs.init,
        "patients": dg.MetadataValue.json(inputs.patients),
        "train_patches": inputs.n_patches("train"),
        "train_class_counts": dg.MetadataValue.json(wiring.class_counts(inputs.sources["train"])),
        "test_nuclei_predicted": n_pred,
        "loader_wait_s": round(result.loader.wait_s, 2),
        "test_metrics": dg.MetadataValue.md(wiring.fold_metrics_markdown(metrics)),
        "validation_history": dg.MetadataValue.md(
            frame_markdown(pl.DataFrame(result.history))),
    })


@dg.asset(
    key="classifier_evaluation", group_name="classifier",
    deps=["classifier", "fold_split",
          dg.AssetDep("nucleus_features", partition_mapping=dg.AllPartitionMapping()),
          dg.AssetDep("virtual_he", partition_mapping=dg.AllPartitionMapping())],
    kinds={"python", "markdown"},
)
def classifier_evaluation(
    context: dg.AssetExecutionContext, data_root: DataRoot
) -> dg.MaterializeResult:
    """Per-class accuracy, PPV, NPV and prevalence on every fold's test patients (mean ± sample
    std over the folds where each is defined, predicted nuclei per fold, pooled PPV with its 95 %
    Wilson interval), confusion matrix, Fig. 3/4/5-style figures, in
    reports/classifier_report.md."""
    layout = data_root.layout
    started = time.perf_counter()
    evaluation = wiring.evaluate(layout, read_folds(folds_path(layout.root)))
    for note in evaluation.notes:
        context.log.warning(note)
    return dg.MaterializeResult(metadata={
        "report": dg.MetadataValue.path(str(evaluation.report_path)),
        "folds": evaluation.n_folds,
        "test_nuclei": evaluation.n_nuclei,
        "per_class": dg.MetadataValue.md(metrics_table_markdown(evaluation.summary)),
        "folds_overview": dg.MetadataValue.md(frame_markdown(evaluation.overview)),
        "seconds": round(time.perf_counter() - started, 1),
        "fig4": dg.MetadataValue.md(evaluation.preview_md),
    })


@dg.asset_check(asset="fold_split", description="Test sets partition the patients; every set "
                "holds both sites and healthy and diseased patients; no patient twice per fold.")
def fold_split_is_sound(data_root: DataRoot) -> dg.AssetCheckResult:
    layout = data_root.layout
    problems = check_folds(read_folds(folds_path(layout.root)),
                           read_manifest_parquet(layout.manifest_parquet))
    return dg.AssetCheckResult(passed=not problems, metadata={"problems": str(problems)})
