"""Loading the definitions (what every Dagster run worker does first) leaves torch, the AnnData
stack and the simulator out: ingest, segmentation, features and labels steps never pay for them."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
import dagster_project.definitions as d
loaded = d.defs()
loaded.validate_loadable(loaded)
heavy = ("torch", "torchvision", "matplotlib", "anndata", "pandas", "pipelines.synthetic")
print(json.dumps({"assets": len(list(loaded.resolve_all_asset_keys())),
                  "loaded": [m for m in heavy if m in sys.modules]}))
"""


def test_definitions_load_without_torch() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["assets"] > 10
    assert result["loaded"] == [], f"the definitions import {result['loaded']}"
