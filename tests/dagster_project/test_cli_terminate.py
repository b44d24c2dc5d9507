"""SIGTERM (the UI's Terminate, `timeout`, a scheduler) ends a chain run and its workers in
seconds, and what was written stays consistent for the next run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dagster_project.resources import DATA_ROOT_ENV


def _children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found |= {int(p) for p in text}
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_sigterm_stops_the_cli_and_its_workers_within_seconds(tmp_path: Path) -> None:
    config = tmp_path / "big.yaml"  # slides large enough that ingest is still running
    config.write_text(json.dumps({"ops": {"synthetic_cohort": {"config": {
        "n_patients": 4, "n_slides": 4, "slide_px": 2048}}}}))
    env = {k: v for k, v in os.environ.items()
           if k not in (DATA_ROOT_ENV, "DAGSTER_HOME") and not k.startswith("NUCLEUS_SUBTYPING")}
    cli = Path(sys.executable).with_name("nucleus-subtyping")
    proc = subprocess.Popen([str(cli), "demo", "--run-config", config.name, "--only",
                             "synthetic_cohort", "slide_manifest", "slide_image", "nucleus_mask",
                             "virtual_he", "nucleus_features"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    # Wait until slides are being processed by worker processes.
    deadline = time.monotonic() + 300
    workers: set[int] = set()
    while time.monotonic() < deadline and proc.poll() is None:
        workers = _children(proc.pid)
        if len(workers) >= 2 and (tmp_path / "data" / "slides").is_dir():
            break
        time.sleep(0.5)
    assert proc.poll() is None and workers, "the chain ended before it could be terminated"
    time.sleep(2)
    workers |= _children(proc.pid)
    # Three slide stages follow ingest, so the chain is still running when the signal goes.
    assert proc.poll() is None, "the chain ended before it could be terminated"
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    took = time.monotonic() - sent
    assert proc.returncode == 130, out[-3000:]
    assert "Interrupted" in out
    assert took < 20, f"took {took:.1f}s to stop"
    time.sleep(1)
    assert not [p for p in workers if _alive(p)], "worker processes outlived the CLI"
