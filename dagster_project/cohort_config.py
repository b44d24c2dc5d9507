"""`nucleus-subtyping run --config cohort.yaml`: one typed file for a real cohort.

The file names the manifest and the data root, and the settings of each stage that a cohort
usually changes; everything else keeps its demo default. It is validated before anything runs:
an unknown key or a bad value is an error naming the key and the allowed values, a missing file
an error naming the file. Relative paths are read from the config file's folder.

    manifest: slides.csv            # slide_id, path, patient_id, site, condition, mpp
    data_root: out                  # default: ./data
    segmentation: {backend: watershed, nuclear_stains: [HH3, Nuc], membrane_stain: null}
    labels: {rule_file: rules/mibi_breast.sql, auto_method: otsu_log1p, thresholds_csv: null}
    virtual_he: {backend: beer_lambert, missing_stains: ignore}
    training: {profile: demo, overrides: {steps: 300}}
    he: {segmentation: {backend: he-classical}, harmonise: reinhard, classifier_root: ../data}
    run: {only: [slide_manifest, ..., nucleus_catalog], slides: [], workers: 2}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipelines.segment.base import DEFAULT_MEMBRANE_STAIN, DEFAULT_NUCLEAR_STAINS, SegmentBackend
from pipelines.thresholds import AutoMethod
from storage.fs import as_path, is_remote
from storage.tiles import DEFAULT_TILE_PX


class CohortConfigError(ValueError):
    """The cohort file is not valid; the message names the file, the key and what is allowed."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Segmentation(_Section):
    backend: SegmentBackend = "watershed"
    nuclear_stains: list[str] = Field(default_factory=lambda: list(DEFAULT_NUCLEAR_STAINS),
                                      min_length=1)
    membrane_stain: str | None = DEFAULT_MEMBRANE_STAIN
    model_path: str | None = None  # mesmer / mesmer-onnx weights
    import_path: str | None = None  # import: masks, `{slide_id}` in the name
    tile_px: int = Field(default=DEFAULT_TILE_PX, ge=64)


class Labels(_Section):
    thresholds_csv: str | None = None  # manual thresholds; absent: every threshold automatic
    auto_method: AutoMethod = "otsu_log1p"
    rule_file: str = "cell_type_rules.sql"  # under sql/, or a path


class VirtualHE(_Section):
    backend: Literal["beer_lambert", "cyclegan"] = "beer_lambert"
    missing_stains: Literal["error", "ignore"] = "error"
    absorption_table: Literal["histology", "marker_tinted"] = "histology"  # Beer-Lambert only


class Training(_Section):
    profile: Literal["demo", "paper"] = "demo"
    overrides: dict[str, Any] = Field(default_factory=dict)  # classifier config keys

    @field_validator("overrides")
    @classmethod
    def _known_overrides(cls, value: dict[str, Any]) -> dict[str, Any]:
        allowed = {"steps", "batch_size", "augment", "device", "seed", "cpu_threads", "resume"}
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise ValueError(f"unknown override(s) {unknown}; allowed: {sorted(allowed)}")
        return value


class HESegmentation(_Section):
    backend: str = "he-classical"  # a registered H&E backend, or import
    settings: dict[str, float] = Field(default_factory=dict)  # the backend's own (µm)
    import_path: str | None = None  # import: masks or QuPath GeoJSON, `{slide_id}` in the name
    model_path: str | None = None  # a learned backend's weights
    tile_px: int = Field(default=1024, ge=64)

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        from pipelines.segment.he import he_backend_names

        if value not in he_backend_names():
            raise ValueError(f"not allowed; expected one of {', '.join(he_backend_names())}")
        return value


class HESlides(_Section):
    """Real H&E slides (manifest rows with modality he)."""

    segmentation: HESegmentation = HESegmentation()
    harmonise: Literal["none", "reinhard", "macenko"] = "reinhard"
    classifier_root: str | None = None  # the data root whose trained folds classify them
    device: str = "auto"


class RunSelection(_Section):
    only: list[str] = Field(default_factory=list)  # empty: every asset but synthetic_cohort
    slides: list[str] = Field(default_factory=list)  # empty: every slide of the manifest
    workers: int = Field(default=2, ge=1)


class CohortConfig(_Section):
    manifest: str
    data_root: str = "data"
    inbox: str | None = None
    stain_aliases: dict[str, str] = Field(default_factory=dict)  # alias -> stain, own panels
    segmentation: Segmentation = Segmentation()
    labels: Labels = Labels()
    virtual_he: VirtualHE = VirtualHE()
    training: Training = Training()
    he: HESlides = HESlides()
    run: RunSelection = RunSelection()


# The demo's own cohort is not part of a real cohort's run.
NOT_FOR_REAL_COHORTS = ("synthetic_cohort",)


def _resolve(base: Path, value: str) -> str:
    path = as_path(value)
    if is_remote(path) or path.is_absolute():
        return str(path)
    return os.path.normpath(base / path)


def _message(path: Path, error: ValidationError) -> str:
    lines = [f"Cohort config {path} is not valid:"]
    for problem in error.errors():
        key = ".".join(str(p) for p in problem["loc"])
        text = problem["msg"]
        if problem["type"] == "extra_forbidden":
            section = CohortConfig
            for part in problem["loc"][:-1]:
                section = section.model_fields[str(part)].annotation  # type: ignore[assignment]
            text = f"unknown key; allowed keys here: {', '.join(section.model_fields)}"
        elif problem["type"] == "literal_error":
            text = f"not allowed; {text[0].lower()}{text[1:]}"
        lines.append(f"  {key}: {text}")
    return "\n".join(lines)


def read_yaml_mapping(path: Path, what: str = "Cohort config") -> dict:
    """A YAML (or JSON) file holding a mapping; a missing, unparsable or non-mapping file is a
    `CohortConfigError` naming it."""
    import yaml

    if not path.is_file():
        raise CohortConfigError(f"{what} {path} does not exist.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise CohortConfigError(f"{what} {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise CohortConfigError(f"{what} {path} must be a mapping of keys to values.")
    return raw


def load_cohort_config(path: Path) -> CohortConfig:
    """Read and validate the file; relative paths become absolute against its folder."""
    raw = read_yaml_mapping(path)
    try:
        config = CohortConfig.model_validate(raw)
    except ValidationError as exc:
        raise CohortConfigError(_message(path, exc)) from None
    base = path.parent.absolute()
    files = {"manifest": config.manifest, "labels.thresholds_csv": config.labels.thresholds_csv,
             "segmentation.model_path": config.segmentation.model_path}
    resolved = {key: _resolve(base, value) for key, value in files.items() if value}
    for key, value in resolved.items():
        if not is_remote(value) and not Path(value).exists():
            raise CohortConfigError(f"Cohort config {path}: {key} names {value}, which does "
                                    "not exist.")
    rule_file = config.labels.rule_file
    if Path(rule_file).suffix == ".sql" and ("/" in rule_file or "\\" in rule_file):
        from storage.sql_files import SQL_DIR

        if not (SQL_DIR / rule_file).is_file():
            rule_file = _resolve(base, rule_file)
            if not Path(rule_file).is_file():
                raise CohortConfigError(
                    f"Cohort config {path}: labels.rule_file {config.labels.rule_file} is "
                    f"neither under {SQL_DIR} nor a file beside the config.")
    he = config.he
    if he.classifier_root:
        he = he.model_copy(update={"classifier_root": _resolve(base, he.classifier_root)})
    if he.segmentation.model_path:
        he = he.model_copy(update={"segmentation": he.segmentation.model_copy(update={
            "model_path": _resolve(base, he.segmentation.model_path)})})
    return config.model_copy(update={
        "he": he,
        "manifest": resolved["manifest"],
        "data_root": _resolve(base, config.data_root),
        "inbox": _resolve(base, config.inbox) if config.inbox else None,
        "labels": config.labels.model_copy(update={
            "thresholds_csv": resolved.get("labels.thresholds_csv"), "rule_file": rule_file}),
        "segmentation": config.segmentation.model_copy(update={
            "model_path": resolved.get("segmentation.model_path")}),
    })


def run_config(config: CohortConfig) -> dict:
    """The Dagster run config (`ops` and `resources`) the cohort file stands for."""
    seg = config.segmentation
    mask = {"backend": seg.backend, "nuclear_stains": list(seg.nuclear_stains),
            "membrane_stain": seg.membrane_stain, "tile_px": seg.tile_px}
    if seg.model_path:
        mask["model_path"] = seg.model_path
    if seg.import_path:
        mask["import_path"] = seg.import_path
    classifier = {"profile": config.training.profile, **config.training.overrides}
    slide_inputs = {"manifest_path": config.manifest}
    if config.inbox:
        slide_inputs["inbox_dir"] = config.inbox
    if config.stain_aliases:
        slide_inputs["stain_aliases"] = dict(config.stain_aliases)
    labels = {"auto_method": config.labels.auto_method,
              "catalog_rules_sql": config.labels.rule_file}
    if config.labels.thresholds_csv:
        labels["thresholds_csv"] = config.labels.thresholds_csv
    return {
        "ops": {
            "nucleus_mask": {"config": mask},
            "virtual_he": {"config": {"backend": config.virtual_he.backend,
                                      "missing_stains": config.virtual_he.missing_stains,
                                      "absorption_table": config.virtual_he.absorption_table}},
            "classifier": {"config": classifier},
            **_he_ops(config.he),
        },
        "resources": {
            "data_root": {"config": {"root": config.data_root}},
            "slide_inputs": {"config": slide_inputs},
            "label_settings": {"config": labels},
        },
    }


def _he_ops(he: HESlides) -> dict:
    """Run config of the real-H&E assets."""
    seg = he.segmentation
    mask: dict[str, Any] = {"backend": seg.backend, "tile_px": seg.tile_px,
                            "settings": dict(seg.settings)}
    if seg.import_path:
        mask["import_path"] = seg.import_path
    if seg.model_path:
        mask["model_path"] = seg.model_path
    if he.device != "auto":
        mask["device"] = he.device
    inference: dict[str, Any] = {"harmonise": he.harmonise, "device": he.device}
    if he.classifier_root:
        inference["classifier_root"] = he.classifier_root
    return {"he_nucleus_mask": {"config": mask},
            "he_nucleus_inference": {"config": inference}}
