"""SIGTERM (the UI's Terminate, `timeout`, a scheduler) ends a chain run, its code server and
its run workers in seconds, and what was written stays consistent for the next run."""

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
    """Every descendant: the code server and the run workers it launches."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            tasks = list(Path(f"/proc/{current}/task").iterdir())
        except FileNotFoundError:
            continue
        for task in tasks:
            try:
                kids = {int(p) for p in (task / "children").read_text().split()}
            except FileNotFoundError:
                continue
            todo.extend(kids - found)
            found |= kids
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
    # Wait until slides are being processed by run workers (beside the code server).
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
    # Dagster recorded every run it was given as ended: none left queued or started.
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    with dg.DagsterInstance.from_ref(
            InstanceRef.from_dir(str(tmp_path / "data" / ".dagster"))) as instance:
        statuses = {r.status for r in instance.get_runs()}
    assert statuses and statuses <= {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.CANCELED,
                                     dg.DagsterRunStatus.FAILURE}, statuses
    assert dg.DagsterRunStatus.CANCELED in statuses
