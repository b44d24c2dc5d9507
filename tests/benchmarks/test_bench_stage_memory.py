"""Peak memory of every slide stage at two slide sizes 16x apart in area: flat, or it fails.

Run: python -m pytest tests/benchmarks/test_bench_stage_memory.py -s   (about 10 min on 2 cores)

Slides: one simulated 27-stain demo slide (1024 px at 0.32 µm/px) tiled 2x2 and 8x8 into two
OME-TIFFs (2048² and 8192², 226 MB and 3.6 GB raw). Both are several of the stages' 1024 px tiles
wide, so each stage's per-tile working set is reached at both sizes and what is compared is what
grows with the slide. Each stage runs alone, as a user runs it,
through `nucleus-subtyping run --config ... --only STAGE`, in its own process tree (the command,
the code server and the run worker). Printed per stage: peak RSS of that tree at both sizes
(the largest process's VmHWM, sampled from /proc while the tree runs), throughput (megapixels per
second of the run, from the instance's run record) and the ratio of the peaks. The peer is the
same stage at the small size: the check is that no stage's peak grows more than 15 % while the
slide grows 16-fold. `slide_manifest` alone is the process baseline (imports and definitions).
`STAGE_MEMORY_UPTO=nucleus_features` stops after that stage (the stages before it run too: they
make its inputs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from dagster._core.instance.ref import InstanceRef

from dagster_project.resources import DATA_ROOT_ENV
from pipelines.synthetic.cohort import CohortParams, plan_cohort, simulate_slide
from storage.ome_tiff import write_ome_tiff

STAGES = ("slide_manifest", "slide_image", "nucleus_mask", "nucleus_features",
          "stain_thresholds", "nucleus_labels", "virtual_he", "nucleus_patches")
SIZES = {"small": 2, "large": 8}  # tiles per side of the 1024 px demo slide
MAX_GROWTH = 1.15
UPTO_ENV = "STAGE_MEMORY_UPTO"


def _stages() -> tuple[str, ...]:
    last = os.environ.get(UPTO_ENV)
    if last is None:
        return STAGES
    if last not in STAGES:
        raise ValueError(f"{UPTO_ENV}={last!r} is not one of {STAGES}.")
    return STAGES[: STAGES.index(last) + 1]


def _slides(folder: Path) -> dict[str, Path]:
    params = CohortParams(n_patients=2, n_slides=2, slide_px=1024, seed=11)
    sim = simulate_slide(plan_cohort(params)[0], params)
    out = {}
    for name, k in SIZES.items():
        image = np.tile(sim.image, (1, k, k))
        out[name] = write_ome_tiff(folder / f"{name}.ome.tif", image, sim.stains, sim.mpp)
        del image
    return out


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while the folder was read
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _peak_rss_kb(pid: int) -> int:
    """The kernel's high-water mark of a process's resident set (VmHWM), 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree_peak_mb(process: subprocess.Popen, every_s: float = 0.05) -> float:
    """Until `process` ends: the largest VmHWM of any process in its tree (the command, the code
    server, the run worker). VmHWM is each process's own peak so far, so sampling it loses only
    what a process adds in its last `every_s` seconds. GNU time cannot see this tree: the run
    worker is the code server's child, which the code server reaps itself."""
    peaks: dict[int, int] = {}
    while process.poll() is None:
        todo, seen = [process.pid], set()
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            peaks[pid] = max(peaks.get(pid, 0), _peak_rss_kb(pid))
            todo.extend(_children(pid))
        time.sleep(every_s)
    return max(peaks.values(), default=0) / 1024


def _run_stage(root: Path, stage: str) -> tuple[float, float, int]:
    """(peak RSS in MB of the tree's largest process, run seconds, exit code) of one stage run
    through the CLI."""
    env = {k: v for k, v in os.environ.items()
           if k not in (DATA_ROOT_ENV, "DAGSTER_HOME") and not k.startswith("NUCLEUS_SUBTYPING")}
    cli = Path(sys.executable).with_name("nucleus-subtyping")
    with subprocess.Popen([str(cli), "run", "--config", "cohort.yaml", "--only", stage],
                          cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as process:
        peak_mb = _tree_peak_mb(process)
        stdout, stderr = process.communicate(timeout=1800)
    with dg.DagsterInstance.from_ref(
            InstanceRef.from_dir(str(root / "data" / ".dagster"))) as instance:
        record = instance.get_run_records(limit=1)[0]
    seconds = (record.end_time or 0) - (record.start_time or 0)
    if process.returncode:
        print(stdout[-2000:], stderr[-3000:])
    return peak_mb, seconds, process.returncode


@pytest.mark.timeout(3600)
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_bench_stage_memory(tmp_path: Path) -> None:
    slides = _slides(tmp_path)
    stages = _stages()
    rows: dict[str, dict[str, tuple[float, float]]] = {s: {} for s in stages}
    for name, path in slides.items():
        root = tmp_path / name
        root.mkdir()
        (root / "manifest.csv").write_text(
            f"slide_id,path,patient_id\nS_{name},{path},P1\n")
        (root / "cohort.yaml").write_text(json.dumps({
            "manifest": "manifest.csv", "data_root": "data",
            "segmentation": {"backend": "watershed"}}))
        px = (1024 * SIZES[name]) ** 2
        for stage in stages:
            peak_mb, seconds, code = _run_stage(root, stage)
            assert code == 0, f"{stage} failed on the {name} slide"
            rows[stage][name] = (peak_mb, px / 1e6 / max(seconds, 1e-6))
    small, large = (f"{1024 * SIZES[k]}²" for k in ("small", "large"))
    print(f"\n{'stage':18} {'peak ' + small + ' MB':>14} {'peak ' + large + ' MB':>14} "
          f"{'ratio':>6} {'MPx/s ' + small:>12} {'MPx/s ' + large:>12}")
    grown = []
    for stage, by_size in rows.items():
        (small_mb, small_rate), (large_mb, large_rate) = by_size["small"], by_size["large"]
        ratio = large_mb / small_mb
        print(f"{stage:18} {small_mb:14.0f} {large_mb:14.0f} {ratio:6.2f} "
              f"{small_rate:12.2f} {large_rate:12.2f}")
        if ratio > MAX_GROWTH:
            grown.append(f"{stage} ({ratio:.2f}x)")
    assert not grown, f"peak memory grows with the slide: {', '.join(grown)}"
