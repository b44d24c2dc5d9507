"""Where each artifact lives under one data root, and the slide ids that may name them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from storage.errors import SlideIdError
from storage.fs import StoragePath, as_path, is_remote

_SLIDE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def is_slide_id(text: object) -> bool:
    """Whether `text` may name a slide (see validate_slide_id)."""
    return isinstance(text, str) and bool(_SLIDE_ID.match(text)) and ".." not in text


def validate_slide_id(slide_id: str) -> str:
    """Refuse ids that could escape the data folder or break a partition key (`../x`, `/`)."""
    if not is_slide_id(slide_id):
        raise SlideIdError(
            f"Slide id {slide_id!r} is not allowed: use ASCII letters (A-Z, a-z), digits, '.', '_' "
            "and '-' (no accents such as 'é'), "
            "starting with a letter or digit, with no '..' and no '/'."
        )
    return slide_id


@dataclass(frozen=True)
class DataLayout:
    """The project's folders under one root (default `./data`).

    The root is a local folder or an fsspec URL (`s3://bucket/prefix`, `gs://...`, `memory://...`);
    every path below is then a `Path` or a `upath.UPath` alike (see storage/fs.py).
    """

    root: StoragePath

    def __post_init__(self) -> None:
        # A relative root (`data`, `./data`) is taken from the working directory once, here:
        # every path below is then absolute, so file links, subprocesses and the Mesmer
        # environment (which runs elsewhere) all find the same files.
        root = as_path(self.root)
        object.__setattr__(self, "root", root if is_remote(root) else root.absolute())

    @property
    def cohort_dir(self) -> Path:
        return self.root / "cohort"

    @property
    def inbox_dir(self) -> Path:
        return self.root / "inbox"

    @property
    def slides_dir(self) -> Path:
        """The folder of the ingested slide stores, one `<slide_id>.zarr` each."""
        return self.root / "slides"

    def slide_zarr(self, slide_id: str) -> Path:
        return self.slides_dir / f"{validate_slide_id(slide_id)}.zarr"

    def mask_zarr(self, slide_id: str) -> Path:
        return self.root / "masks" / f"{validate_slide_id(slide_id)}.zarr"

    def vhe_zarr(self, slide_id: str) -> Path:
        return self.root / "vhe" / f"{validate_slide_id(slide_id)}.zarr"

    @property
    def manifest_parquet(self) -> Path:
        return self.root / "manifest.parquet"

    @property
    def features_dir(self) -> Path:
        return self.root / "nucleus_features"

    @property
    def thresholds_dir(self) -> Path:
        return self.root / "stain_thresholds"

    @property
    def labels_dir(self) -> Path:
        return self.root / "nucleus_labels"

    @property
    def predictions_dir(self) -> Path:
        return self.root / "nucleus_predictions"

    @property
    def inference_dir(self) -> Path:
        return self.root / "nucleus_inference"

    @property
    def qupath_dir(self) -> Path:
        return self.root / "exports" / "qupath"

    def anndata_slide(self, slide_id: str) -> Path:
        """One slide's nuclei as AnnData (storage/anndata_file.py)."""
        return self.root / "exports" / "anndata" / "slides" / f"{validate_slide_id(slide_id)}.h5ad"

    @property
    def anndata_cohort(self) -> Path:
        """Every slide's nuclei in one AnnData file."""
        return self.root / "exports" / "anndata" / "cohort.h5ad"

    def ome_zarr_dir(self, slide_id: str) -> Path:
        """One slide as OME-NGFF images (`mxif.ome.zarr`, `virtual_he.ome.zarr`), each with
        the nucleus labels (storage/ome_zarr.py)."""
        return self.root / "exports" / "ome_zarr" / validate_slide_id(slide_id)

    @property
    def patch_store(self) -> Path:
        return self.root / "patches.zarr"

    @property
    def catalog_db(self) -> Path:
        return self.root / "catalog.duckdb"

    @property
    def thresholds_csv(self) -> Path:
        """The manual thresholds a person writes (absent: every threshold automatic)."""
        return self.root / "thresholds.csv"

    @property
    def thresholds_suggested_csv(self) -> Path:
        """Every threshold in use, in the manual CSV's format, for a person to correct."""
        return self.root / "thresholds_suggested.csv"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def cyclegan_dir(self) -> Path:
        """The CycleGAN checkpoint (storage/checkpoints.py) the `cyclegan` backend loads."""
        return self.models_dir / "cyclegan"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def retired_dir(self) -> Path:
        """Outputs of slides that left the manifest, moved aside, one folder per retirement."""
        return self.root / "retired"

    @property
    def retired_log(self) -> Path:
        return self.retired_dir / "retired_slides.parquet"

    @property
    def stain_aliases_csv(self) -> Path:
        """The user's own stain aliases (`alias,stain`), read at ingest."""
        return self.root / "stain_aliases.csv"

    def figures_dir(self, stage: str) -> Path:
        return self.root / "figures" / stage

    @property
    def cohort_preview_png(self) -> Path:
        """The synthetic cohort's first slide in false colour."""
        return self.figures_dir("cohort") / "preview.png"

    def threshold_review_png(self, slide_id: str) -> Path:
        """Each stain's intensity histogram of the slide with its cut-off marked."""
        return self.figures_dir("thresholds") / f"{validate_slide_id(slide_id)}.png"

    def vhe_preview_png(self, slide_id: str) -> Path:
        """A thumbnail of the slide's virtual H&E at 0.5 µm/px."""
        return self.figures_dir("vhe") / f"{validate_slide_id(slide_id)}.png"

    @property
    def patch_gallery_png(self) -> Path:
        """Virtual H&E patches beside their key stain, per class (paper Fig. 1)."""
        return self.figures_dir("patches") / "gallery.png"

    @property
    def cyclegan_preview_png(self) -> Path:
        """Nuclear stain | virtual H&E | real H&E of the last CycleGAN run."""
        return self.figures_dir("cyclegan") / "preview.png"

    @property
    def he(self) -> DataLayout:
        """Real H&E slides' own tree (`he/`, the same folders as above): their stores, masks,
        features and predictions stay apart from the MxIF cohort's, so no cohort-wide reader
        (thresholds, labels, folds, training) ever sees them."""
        return DataLayout(self.root / "he")
