"""Each stage's glue (`defs/<stage>/wiring.py`) loads without Dagster or torch, so a notebook can
call it with a DataLayout; the two stages that still reach Dagster through a shared object are
named here, and the test fails once either stops (then drop it from the list)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# exports: SlideInputs (a Dagster resource); inference: fold_partitions (a Dagster partitions def)
STILL_LOAD_DAGSTER = {"exports", "inference"}

PROBE = """
import importlib, json, sys
importlib.import_module(f"dagster_project.defs.{sys.argv[1]}.wiring")
print(json.dumps([m for m in ("dagster", "torch") if m in sys.modules]))
"""


def _loaded(stage: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, stage], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_stage_has_plain_glue() -> None:
    stages = sorted(p.parent.name for p in (ROOT / "dagster_project" / "defs").glob("*/wiring.py"))
    assert {"cohort", "slides", "labels", "vhe"} <= set(stages)
    loaded = {stage: _loaded(stage) for stage in stages}
    assert {s for s, mods in loaded.items() if "torch" in mods} == set()
    assert {s for s, mods in loaded.items() if "dagster" in mods} == STILL_LOAD_DAGSTER
