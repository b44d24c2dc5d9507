"""A cohort folder on disk: slides as OME-TIFF, a manifest, and the ground truth kept apart.

    <cohort>/slides/<slide_id>.ome.tif        27-stain OME-TIFF (the pipeline's input)
    <cohort>/manifest.csv                     slide_id, patient_id, site, condition, path, mpp
    <cohort>/truth/<slide_id>/mask.tif        int32 nucleus instance mask (0 = background)
    <cohort>/truth/<slide_id>/nuclei.parquet  true_label, centroids, cell_type, pos_<stain_key>
    <cohort>/params.json                      the parameters, written last: its presence marks
                                              a complete cohort

`path` in the manifest is relative to the manifest's folder. Every file is written atomically.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import polars as pl
import tifffile

from storage.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from storage.errors import SlideIdError, StoreLayoutError
from storage.fs import as_path, read_csv, read_parquet, readable, remove_tree
from storage.layout import validate_slide_id
from storage.ome_tiff import write_ome_tiff

MANIFEST_NAME = "manifest.csv"
PARAMS_NAME = "params.json"
MANIFEST_COLUMNS: tuple[str, ...] = ("slide_id", "patient_id", "site", "condition", "path", "mpp")


class CohortSlide(Protocol):
    """What `write_cohort` needs from a slide (pipelines.synthetic.SimulatedSlide fits)."""

    slide_id: str
    patient_id: str
    site: str
    condition: str
    mpp: float
    stains: Sequence[str]
    image: np.ndarray  # (stain, y, x) uint16
    labels: np.ndarray  # (y, x) int32
    nuclei: pl.DataFrame


@dataclass(frozen=True)
class CohortSummary:
    cohort_dir: Path
    n_slides: int
    n_nuclei: int
    bytes_written: int
    seconds: float


def slide_path(cohort_dir: Path, slide_id: str) -> Path:
    return as_path(cohort_dir) / "slides" / f"{validate_slide_id(slide_id)}.ome.tif"


def truth_dir(cohort_dir: Path, slide_id: str) -> Path:
    return as_path(cohort_dir) / "truth" / validate_slide_id(slide_id)


def _params_text(params: Mapping[str, object]) -> str:
    return json.dumps(dict(params), sort_keys=True, indent=2) + "\n"


def write_slide(cohort_dir: Path, slide: CohortSlide, *, tile_px: int = 256,
                compression: str = "zstd", maxworkers: int | None = None) -> dict[str, object]:
    """Write one slide's OME-TIFF and truth files; returns its manifest row."""
    cohort_dir = as_path(cohort_dir)
    image_path = slide_path(cohort_dir, slide.slide_id)
    write_ome_tiff(image_path, slide.image, list(slide.stains), slide.mpp, name=slide.slide_id,
                   tile_px=tile_px, compression=compression, maxworkers=maxworkers)
    write_truth(cohort_dir, slide.slide_id, slide.labels, slide.nuclei, tile_px=tile_px)
    return {
        "slide_id": slide.slide_id, "patient_id": slide.patient_id, "site": slide.site,
        "condition": slide.condition, "path": image_path.relative_to(cohort_dir).as_posix(),
        "mpp": float(slide.mpp),
    }


def write_truth(cohort_dir: Path, slide_id: str, labels: np.ndarray, nuclei: pl.DataFrame,
                *, tile_px: int = 256) -> None:
    """Write the truth mask (int32 tiled TIFF) and the per-nucleus table of one slide."""
    folder = truth_dir(cohort_dir, slide_id)
    with atomic_path(folder / "mask.tif") as tmp:
        tifffile.imwrite(tmp, labels.astype(np.int32, copy=False), tile=(tile_px, tile_px),
                         compression="zlib", compressionargs={"level": 6}, metadata=None,
                         photometric="minisblack")
    with atomic_path(folder / "nuclei.parquet") as tmp:
        nuclei.write_parquet(tmp, compression="zstd", compression_level=3, statistics=True)


def write_cohort(cohort_dir: str | Path, slides: Iterable[CohortSlide],
                 params: Mapping[str, object], *, tile_px: int = 256,
                 compression: str = "zstd", maxworkers: int | None = None) -> CohortSummary:
    """Write every slide, then the manifest, then `params.json` (so an interrupted run never
    looks complete); files of slides no longer in the cohort are removed at the end."""
    cohort_dir = as_path(cohort_dir)
    started = time.perf_counter()
    cohort_dir.mkdir(parents=True, exist_ok=True)
    (cohort_dir / PARAMS_NAME).unlink(missing_ok=True)
    rows: list[dict[str, object]] = []
    seen: set[str] = set()
    n_nuclei = 0
    written = 0
    for slide in slides:
        if slide.slide_id in seen:
            raise SlideIdError(f"Slide {slide.slide_id!r} appears twice in the cohort; "
                               "give every slide its own id.")
        seen.add(slide.slide_id)
        rows.append(write_slide(cohort_dir, slide, tile_px=tile_px, compression=compression,
                                maxworkers=maxworkers))
        n_nuclei += slide.nuclei.height
        written += sum(p.stat().st_size for p in _slide_files(cohort_dir, slide.slide_id))
    manifest = pl.DataFrame(rows, schema={c: (pl.Float64 if c == "mpp" else pl.Utf8)
                                          for c in MANIFEST_COLUMNS})
    atomic_write_bytes(cohort_dir / MANIFEST_NAME, manifest.write_csv().encode("utf-8"))
    _remove_other_slides(cohort_dir, seen)
    atomic_write_text(cohort_dir / PARAMS_NAME, _params_text(params))
    return CohortSummary(cohort_dir, len(rows), n_nuclei, written,
                         time.perf_counter() - started)


def _slide_files(cohort_dir: Path, slide_id: str) -> list[Path]:
    folder = truth_dir(cohort_dir, slide_id)
    return [slide_path(cohort_dir, slide_id), folder / "mask.tif", folder / "nuclei.parquet"]


def _remove_other_slides(cohort_dir: Path, keep: set[str]) -> None:
    for path in (cohort_dir / "slides").glob("*.ome.tif"):
        if path.name[: -len(".ome.tif")] not in keep:
            path.unlink()
    truth = cohort_dir / "truth"
    if truth.is_dir():
        for folder in truth.iterdir():
            if folder.is_dir() and folder.name not in keep:
                remove_tree(folder)


def read_cohort_params(cohort_dir: str | Path) -> dict[str, object] | None:
    """The parameters of a complete cohort folder, or None when it is absent or unfinished."""
    path = as_path(cohort_dir) / PARAMS_NAME
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def cohort_is_current(cohort_dir: str | Path, params: Mapping[str, object]) -> bool:
    """True when the folder holds a complete cohort made with exactly `params`."""
    cohort_dir = as_path(cohort_dir)
    if read_cohort_params(cohort_dir) != json.loads(_params_text(params)):
        return False
    if not (cohort_dir / MANIFEST_NAME).exists():
        return False
    manifest = read_cohort_manifest(cohort_dir)
    return all(all(p.exists() for p in _slide_files(cohort_dir, s))
               for s in manifest["slide_id"].to_list())


def read_cohort_manifest(cohort_dir: str | Path) -> pl.DataFrame:
    """The synthetic cohort's manifest.csv (paths relative to the cohort folder); the slide manifest
    a user gives is read by `storage.manifest.read_manifest`."""
    path = as_path(cohort_dir) / MANIFEST_NAME
    if not path.exists():
        raise StoreLayoutError(f"No {MANIFEST_NAME} in {cohort_dir}: generate the cohort first.")
    frame = read_csv(path, schema_overrides={"mpp": pl.Float64, "slide_id": pl.Utf8,
                                                "patient_id": pl.Utf8})
    missing = [c for c in MANIFEST_COLUMNS if c not in frame.columns]
    if missing:
        raise StoreLayoutError(f"{path}: missing column(s) {missing}; regenerate the cohort.")
    return frame


def read_truth_mask(cohort_dir: str | Path, slide_id: str) -> np.ndarray:
    """The true nucleus instance mask (y, x) int32 of one slide."""
    path = truth_dir(cohort_dir, slide_id) / "mask.tif"
    if not path.exists():
        raise StoreLayoutError(f"No truth mask for slide {slide_id!r} at {path}.")
    with readable(path) as source:
        return tifffile.imread(source)


def read_truth_nuclei(cohort_dir: str | Path, slide_id: str) -> pl.DataFrame:
    """The per-nucleus truth table of one slide (one row per mask label)."""
    path = truth_dir(cohort_dir, slide_id) / "nuclei.parquet"
    if not path.exists():
        raise StoreLayoutError(f"No truth table for slide {slide_id!r} at {path}.")
    return read_parquet(path)


