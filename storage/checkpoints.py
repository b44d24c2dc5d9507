"""Model checkpoints: a folder holding torch state dicts and a JSON sidecar, written atomically.

Layout of one checkpoint folder (e.g. `models/cyclegan/`):

    state.pt          torch.save of {part name: state dict}, e.g. {"generator_mxif_to_he": ...}
    checkpoint.json   {"kind", "format_version", "parts", "saved_utc", "torch_version",
                       "metadata": {...}}

The folder is built beside its final path and renamed into place, so a reader sees the previous
checkpoint or the new one, never a half-written one. Loading uses `torch.load(weights_only=True)`:
a checkpoint can hold tensors, numbers, strings, lists and dicts, never code.

`save_checkpoint` / `load_checkpoint` are generic (any model, any metadata). `CycleGanInfo` is
the metadata the CycleGAN virtual H&E backend stores; see its docstring for the fields.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storage.atomic import atomic_path
from storage.errors import StoreLayoutError
from storage.fs import StoragePath, as_path

if TYPE_CHECKING:  # torch is imported by the functions that save or load tensors
    import torch

FORMAT_VERSION = 1
STATE_FILE = "state.pt"
METADATA_FILE = "checkpoint.json"
CYCLEGAN_KIND = "cyclegan"


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: state dicts by part name and the caller's metadata."""

    path: StoragePath
    kind: str
    state_dicts: dict[str, dict[str, Any]]
    metadata: dict[str, Any]


def checkpoint_exists(directory: str | Path) -> bool:
    directory = as_path(directory)
    return (directory / STATE_FILE).is_file() and (directory / METADATA_FILE).is_file()


def save_checkpoint(
    directory: str | Path,
    state_dicts: Mapping[str, Mapping[str, Any]],
    metadata: Mapping[str, Any],
    *,
    kind: str,
) -> StoragePath:
    """Write `state_dicts` and JSON-serialisable `metadata` to `directory`, replacing it atomically.

    Tensors are moved to the CPU first, so a checkpoint written on a GPU loads anywhere.
    """
    import torch

    directory = as_path(directory)
    sidecar = {
        "kind": kind,
        "format_version": FORMAT_VERSION,
        "parts": sorted(state_dicts),
        "saved_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
        "metadata": _json_safe(dict(metadata)),
    }
    text = json.dumps(sidecar, indent=2, sort_keys=True)  # fails before anything is written
    with atomic_path(directory) as tmp:
        tmp.mkdir(parents=True)
        torch.save({name: _to_cpu(sd) for name, sd in state_dicts.items()}, tmp / STATE_FILE)
        (tmp / METADATA_FILE).write_text(text, encoding="utf-8")
    return directory


def read_checkpoint_sidecar(directory: str | Path, *, kind: str | None = None) -> dict[str, Any]:
    """The parsed `checkpoint.json`, checked for kind and format version."""
    directory = as_path(directory)
    if not checkpoint_exists(directory):
        raise StoreLayoutError(
            f"No checkpoint at {directory} (expected {STATE_FILE} and {METADATA_FILE}): "
            "materialise the training asset that writes it, or point the config at another folder."
        )
    try:
        sidecar = json.loads((directory / METADATA_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise StoreLayoutError(f"{directory / METADATA_FILE} is not readable JSON: {exc}") from exc
    version = sidecar.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise StoreLayoutError(
            f"{directory} has checkpoint format version {version!r}; this code reads up to "
            f"{FORMAT_VERSION}. Update the project or retrain the model."
        )
    if kind is not None and sidecar.get("kind") != kind:
        raise StoreLayoutError(
            f"{directory} holds a {sidecar.get('kind')!r} checkpoint, expected {kind!r}."
        )
    return sidecar


def load_checkpoint(
    directory: str | Path,
    *,
    kind: str | None = None,
    map_location: str | torch.device = "cpu",
    parts: Sequence[str] | None = None,
) -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint`; `parts` keeps only the named state dicts."""
    import torch

    directory = as_path(directory)
    sidecar = read_checkpoint_sidecar(directory, kind=kind)
    try:
        state_file = directory / STATE_FILE
        if not isinstance(directory, Path):  # object storage: one GET, then a seekable buffer
            state_file = io.BytesIO(state_file.read_bytes())
        states = torch.load(state_file, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged file
        raise StoreLayoutError(
            f"{directory / STATE_FILE} cannot be read ({exc}); retrain or restore the checkpoint."
        ) from exc
    if parts is not None:
        missing = [p for p in parts if p not in states]
        if missing:
            raise StoreLayoutError(
                f"{directory} lacks part(s) {missing}; it has {sorted(states)}."
            )
        states = {p: states[p] for p in parts}
    return Checkpoint(directory, str(sidecar["kind"]), states, dict(sidecar["metadata"]))


@dataclass(frozen=True)
class CycleGanInfo:
    """What a CycleGAN checkpoint records beside its weights (the `metadata` of the sidecar).

    - `stains`: canonical stain names in the order the generator's input planes expect.
    - `norm_method`: how raw intensities become [-1, 1] inputs; "percentile_clip":
      x' = 2 * clip((x - low) / (high - low), 0, 1) - 1 per stain.
    - `norm_low_percentile`, `norm_high_percentile`: percentiles that give `low` and `high` from
      a per-slide pixel sample (what `calibrate` recomputes for every slide rendered).
    - `norm_low`, `norm_high`: per-stain fallback values pooled over the training slides (median
      of their per-slide values), used when a caller renders without calibrating.
    - `mpp`: pixel size (µm/px) the generator was trained at; windows at another pixel size are
      resampled to it.
    - `architecture`: generator/discriminator sizes (ngf, ndf, n_blocks, n_disc_layers, ...).
    - `step`: optimisation steps done; training resumes from here.
    - `extra`: anything else worth keeping (training parameters, last losses, timings).
    """

    stains: tuple[str, ...]
    norm_low: tuple[float, ...]
    norm_high: tuple[float, ...]
    mpp: float
    architecture: dict[str, Any]
    step: int
    norm_method: str = "percentile_clip"
    norm_low_percentile: float = 1.0
    norm_high_percentile: float = 99.9
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stains", tuple(self.stains))
        object.__setattr__(self, "norm_low", tuple(float(v) for v in self.norm_low))
        object.__setattr__(self, "norm_high", tuple(float(v) for v in self.norm_high))
        if not (len(self.stains) == len(self.norm_low) == len(self.norm_high)):
            raise StoreLayoutError(
                f"CycleGAN checkpoint info has {len(self.stains)} stains but "
                f"{len(self.norm_low)}/{len(self.norm_high)} normalisation values."
            )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, source: str = "checkpoint") -> CycleGanInfo:
        names = {f for f in cls.__dataclass_fields__}
        required = {"stains", "norm_low", "norm_high", "mpp", "architecture", "step"}
        missing = sorted(required - set(data))
        if missing:
            raise StoreLayoutError(f"{source}: CycleGAN metadata lacks {missing}; retrain it.")
        return cls(**{k: v for k, v in data.items() if k in names})


def save_cyclegan_checkpoint(
    directory: str | Path, state_dicts: Mapping[str, Mapping[str, Any]], info: CycleGanInfo
) -> Path:
    return save_checkpoint(directory, state_dicts, info.to_json(), kind=CYCLEGAN_KIND)


def load_cyclegan_checkpoint(
    directory: str | Path,
    *,
    map_location: str | torch.device = "cpu",
    parts: Sequence[str] | None = None,
) -> tuple[dict[str, dict[str, Any]], CycleGanInfo]:
    checkpoint = load_checkpoint(directory, kind=CYCLEGAN_KIND, map_location=map_location,
                                 parts=parts)
    info = CycleGanInfo.from_json(checkpoint.metadata, source=str(directory))
    return checkpoint.state_dicts, info


def read_cyclegan_info(directory: str | Path) -> CycleGanInfo:
    """The sidecar alone (no weights), e.g. to check stains before loading a model."""
    sidecar = read_checkpoint_sidecar(directory, kind=CYCLEGAN_KIND)
    return CycleGanInfo.from_json(sidecar["metadata"], source=str(directory))


def _to_cpu(state: Mapping[str, Any]) -> Any:
    import torch

    if isinstance(state, torch.Tensor):
        return state.detach().cpu()
    if isinstance(state, Mapping):
        return {k: _to_cpu(v) for k, v in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(_to_cpu(v) for v in state)
    return state


def _json_safe(value: Any) -> Any:
    """Tuples to lists, numpy scalars to Python numbers, non-finite floats to None."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
