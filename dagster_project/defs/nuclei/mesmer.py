"""The `mesmer` segmentation backend: DeepCell Mesmer in its own Python 3.10 environment, run as a
Dagster Pipes subprocess (mesmer_env/worker.py), the mask written through storage.mask_store.

The environment is created by `make mesmer-env` (mesmer_env/create_env.sh) at `.mesmer-env/`;
`MESMER_ENV_DIR` points elsewhere. In a cluster, `NUCLEUS_SUBTYPING_MESMER_IMAGE` (the image of
deploy/Dockerfile.mesmer) binds "mesmer_pipes" to a `dagster_k8s.PipesK8sClient` and the same
worker runs in its own pod; `NUCLEUS_SUBTYPING_MESMER_POD_SPEC` (JSON) adds the pod spec that
mounts the data root's volume at the same path (see docs/nuclei.md).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import dagster as dg

from pipelines.errors import ConfigurationError
from pipelines.segment.mesmer_weights import MesmerParams
from pipelines.stains import require_stains
from storage.layout import DataLayout
from storage.mesmer_exchange import INPUTS, LABELS, exchange_folder, publish_labels, write_inputs
from storage.model_weights import resolve_mesmer_weights
from storage.slide_store import open_slide

REPO_ROOT = Path(__file__).resolve().parents[3]
WORKER = REPO_ROOT / "mesmer_env" / "worker.py"
ENV_DIR_VAR = "MESMER_ENV_DIR"
IMAGE_VAR = "NUCLEUS_SUBTYPING_MESMER_IMAGE"
POD_SPEC_VAR = "NUCLEUS_SUBTYPING_MESMER_POD_SPEC"
# The worker inside the Mesmer image (deploy/Dockerfile.mesmer, WORKDIR /opt/mesmer).
CONTAINER_COMMAND = ("python", "-m", "mesmer_env.worker")


def mesmer_python() -> Path:
    """The Mesmer environment's interpreter, or an error that says how to create it."""
    env_dir = Path(os.environ.get(ENV_DIR_VAR) or REPO_ROOT / ".mesmer-env")
    python = env_dir / "bin" / "python"
    if not python.exists():
        raise ConfigurationError(
            f"The Mesmer environment is missing ({python} not found). Create it with "
            "`make mesmer-env` (mesmer_env/create_env.sh; needs Python 3.10), or set "
            f"{ENV_DIR_VAR} to an existing one, or use the 'watershed' backend."
        )
    return python


@dg.definitions
def mesmer_resources() -> dg.Definitions:
    if os.environ.get(IMAGE_VAR):
        from dagster_k8s import PipesK8sClient

        return dg.Definitions(resources={"mesmer_pipes": PipesK8sClient()})
    return dg.Definitions(resources={"mesmer_pipes": dg.PipesSubprocessClient(cwd=str(REPO_ROOT))})


def _run_worker(client: dg.PipesClient, context, extras: dict) -> list[dict]:
    """Launch the worker with `client`: a local subprocess, or a pod of the Mesmer image."""
    if isinstance(client, dg.PipesSubprocessClient):
        command = [str(mesmer_python()), str(WORKER)]
        invocation = client.run(context=context, extras=extras, command=command)
    else:
        options = {"image": os.environ[IMAGE_VAR]} if os.environ.get(IMAGE_VAR) else {}
        if os.environ.get(POD_SPEC_VAR):
            options["base_pod_spec"] = json.loads(os.environ[POD_SPEC_VAR])
        invocation = client.run(
            context=context, extras=extras, command=list(CONTAINER_COMMAND), **options
        )
    return [m for m in invocation.get_custom_messages() if isinstance(m, dict)]


def segment_with_mesmer_pipes(
    context: dg.AssetExecutionContext | dg.OpExecutionContext,
    slide_id: str,
    layout: DataLayout,
    params: MesmerParams,
    client: dg.PipesClient | None = None,
) -> dict:
    """Segment one slide with Mesmer in its own environment and write `layout.mask_zarr(slide_id)`.

    Returns metadata for the asset: nucleus count, tiles, timings, weights and versions.
    """
    started = time.perf_counter()
    weights = resolve_mesmer_weights(params.model_path)
    if client is None:
        try:
            client = context.resources.mesmer_pipes
        except Exception:  # the asset did not ask for the resource
            client = None
    client = client or dg.PipesSubprocessClient(cwd=str(REPO_ROOT))
    if isinstance(client, dg.PipesSubprocessClient):
        mesmer_python()  # fail before any work when the environment is missing
    reader = open_slide(layout.slide_zarr(slide_id))
    require_stains(reader.info.stains, [params.nuclear_stain], source=f"slide {slide_id!r}")
    membrane = params.membrane_stain if params.membrane_stain in reader.info.stains else None
    if params.membrane_stain and membrane is None:
        context.log.warning(f"Slide {slide_id!r} has no {params.membrane_stain}: Mesmer runs "
                            "on the nuclear stain with an empty membrane input.")
    stains = [params.nuclear_stain, *([membrane] if membrane else [])]
    with exchange_folder(layout.root, slide_id) as folder:
        write_inputs(reader, stains, folder / INPUTS, params.tile_px)
        extras = {
            "inputs": str(folder / INPUTS), "labels": str(folder / LABELS), "slide_id": slide_id,
            "mpp": reader.info.mpp, "tile_px": params.tile_px, "halo_px": params.halo_px,
            "batch_size": params.batch_size, **weights.as_params(),
            "postprocess": {"maxima_threshold": params.maxima_threshold,
                            "interior_threshold": params.interior_threshold},
        }
        messages = _run_worker(client, context, extras)
        attrs = {"backend": "mesmer", "stains": stains, "mpp": reader.info.mpp,
                 "params": asdict(params), "weights_source": weights.source}
        summary = publish_labels(folder / LABELS, layout.mask_zarr(slide_id), slide_id, attrs)
    summary.update(messages[-1] if messages else {})
    return {**summary, "backend": "mesmer", "nuclear_stain": params.nuclear_stain,
            "membrane_stain": membrane, "total_s": round(time.perf_counter() - started, 3)}
