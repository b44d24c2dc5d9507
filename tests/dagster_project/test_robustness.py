"""Robustness under faults, on a two-slide synthetic cohort of 256 x 256 px.

- Two slides processed at the same time by two processes give the same bytes as one after the
  other (and neither touches the other's outputs).
- A run killed with SIGKILL in the middle of writing the features, the patches or the DuckDB
  catalog leaves the previous version (or nothing), never a half-written file, and a reader
  polling the file meanwhile never sees a broken one; a re-run restores outputs identical to an
  uninterrupted run and clears the killed run's temporaries.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipelines.synthetic import CohortParams, simulate_cohort
from storage.catalog import query_catalog
from storage.cohort_files import read_cohort_manifest, write_cohort
from storage.errors import StoreLayoutError
from storage.layout import DataLayout
from storage.parquet_dataset import partition_path
from storage.patch_store import PatchStore
from tests.robustness_child import (
    RERUN_ASSETS,
    SLIDE_ASSETS,
    instance_for,
    materialise,
    process_slide,
)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PARAMS = CohortParams(n_patients=2, n_slides=2, slide_px=256, seed=3)
SLOW_S = 0.4  # every write of the killed run takes at least this long
CATALOG_SQL = {
    "labels": "SELECT * FROM nucleus_labels ORDER BY nucleus_id",
    "classes": "SELECT nucleus_id, cell_type FROM nucleus_classes ORDER BY nucleus_id",
    "counts": "SELECT * FROM cell_type_counts_per_slide ORDER BY ALL",
}


def _snapshot(root: Path, copied_from: Path | None = None) -> dict[str, bytes]:
    """Every output file's bytes (the data root's path, or the one it was copied from,
    spelled `<root>` in metadata)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if not path.is_file() or rel.startswith(("cohort/", ".")) or rel == "catalog.duckdb":
            continue
        data = path.read_bytes()
        if path.name == "zarr.json":
            for where in filter(None, (root, copied_from)):
                data = data.replace(str(where).encode(), b"<root>")
        out[rel] = data
    return out


def _catalog_rows(path: Path) -> dict[str, pl.DataFrame]:
    return {name: query_catalog(path, sql) for name, sql in CATALOG_SQL.items()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The cohort processed slide after slide, then the catalog: an uninterrupted run."""
    root = tmp_path_factory.mktemp("reference")
    write_cohort(root / "cohort", simulate_cohort(PARAMS, 1), PARAMS.as_dict())
    instance = instance_for(root)
    for slide_id in read_cohort_manifest(root / "cohort")["slide_id"]:
        materialise(root, SLIDE_ASSETS, slide_id, instance)
    materialise(root, RERUN_ASSETS[-1:], None, instance)
    return root


def test_two_slides_at_once_equal_one_after_the_other(reference, tmp_path) -> None:
    shutil.copytree(reference / "cohort", tmp_path / "cohort")
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)  # both patch groups half-written at the same moment
    workers = [context.Process(target=process_slide, args=(str(tmp_path), slide_id, barrier))
               for slide_id in read_cohort_manifest(tmp_path / "cohort")["slide_id"]]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=240)
    assert [w.exitcode for w in workers] == [0, 0]

    ours, theirs = _snapshot(tmp_path), _snapshot(reference)
    theirs.pop("thresholds_suggested.csv")  # written by the catalog, not by the slide stages
    assert sorted(ours) == sorted(theirs)
    assert [name for name in ours if ours[name] != theirs[name]] == []
    assert not list(tmp_path.rglob(".*.tmp-*"))
    assert PatchStore(DataLayout(tmp_path).patch_store).slide_ids() == sorted(
        read_cohort_manifest(tmp_path / "cohort")["slide_id"])


class Target:
    """One output the killed run was writing: where it lands and how to read it whole."""

    def __init__(self, name: str, root: Path, slide_id: str) -> None:
        layout = DataLayout(root)
        self.name, self.slide_id = name, slide_id
        self.final = {
            "features": partition_path(layout.features_dir, slide_id),
            "patches": layout.patch_store / slide_id,
            "catalog": layout.catalog_db,
        }[name]

    def temporaries(self) -> list[Path]:
        return list(self.final.parent.glob(f".{self.final.name}.tmp-*"))

    def read(self):
        """The whole output, or None where there is none (yet)."""
        if self.name == "features":
            try:
                return pl.read_parquet(self.final)
            except FileNotFoundError:
                return None
        if self.name == "patches":
            try:
                slide = PatchStore(self.final.parent).slide(self.slide_id)
            except StoreLayoutError:
                return None
            return slide.nucleus_id, slide.class_index, slide.read_rows(0, slide.n_patches)
        try:
            return _catalog_rows(self.final)
        except StoreLayoutError:
            return None

    def same(self, a, b) -> bool:
        if self.name == "features":
            return a.equals(b)
        if self.name == "patches":
            return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
        return all(a[k].equals(b[k]) for k in CATALOG_SQL)


class Reader(threading.Thread):
    """Opens the output again and again while the run writes: each read must be absent or
    whole and equal to the uninterrupted run's."""

    def __init__(self, target: Target, expected) -> None:
        super().__init__(daemon=True)
        self.target, self.expected = target, expected
        self.reads, self.absent, self.broken = 0, 0, []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                seen = self.target.read()
            except Exception as exc:  # a half-written file would land here
                self.broken.append(repr(exc))
                continue
            self.reads += 1
            if seen is None:
                self.absent += 1
            elif not self.target.same(seen, self.expected):
                self.broken.append("content differs from the uninterrupted run")
            time.sleep(0.01)


class Kill(threading.Thread):
    """A re-run in its own process, SIGKILLed at a random moment after the target's temporary
    appears, with a reader polling the target meanwhile."""

    def __init__(self, root: Path, target: Target, expected, seed: int) -> None:
        super().__init__(daemon=True)
        self.root, self.target = root, target
        self.delay = random.Random(seed).uniform(0.0, 2 * SLOW_S)
        self.reader = Reader(target, expected)
        self.returncode: int | None = None
        self.error = ""

    def run(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.robustness_child", "rerun", str(self.root),
             self.target.slide_id, self.target.name, str(SLOW_S)],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.reader.start()
        deadline = time.monotonic() + 240
        try:
            while not self.target.temporaries():
                if child.poll() is not None or time.monotonic() > deadline:
                    self.error = child.stderr.read().decode()[-2000:] if child.poll() else ""
                    return
                time.sleep(0.002)
            time.sleep(self.delay)
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stderr.close()
            self.returncode = child.returncode
            self.reader.stop.set()
            self.reader.join()


# (target, whether the output exists before the killed run: a first write or a re-write)
SCENARIOS = (("features", False), ("patches", True), ("catalog", True))


def test_sigkill_mid_write_leaves_old_or_nothing_and_a_rerun_restores(
        reference, tmp_path) -> None:
    slide_id = read_cohort_manifest(reference / "cohort")["slide_id"][0]
    kills = []
    for i, (name, existed) in enumerate(SCENARIOS):
        root = tmp_path / name
        shutil.copytree(reference, root)
        target = Target(name, root, slide_id)
        if not existed:
            target.final.unlink()
        kills.append(Kill(root, target, Target(name, reference, slide_id).read(), seed=i))
    for kill in kills:  # the three runs at once: a loaded machine only makes them slower
        kill.start()
    for kill in kills:
        kill.join(timeout=300)

    for kill, (name, existed) in zip(kills, SCENARIOS, strict=True):
        target, reader = kill.target, kill.reader
        print(f"{name}: killed {kill.delay:.2f} s after its temporary appeared; "
              f"{reader.reads} reads ({reader.absent} absent, {len(reader.broken)} broken); "
              f"{len(target.temporaries())} temporaries left")
        assert kill.returncode == -signal.SIGKILL, kill.error
        assert reader.broken == [] and reader.reads > 0
        after = target.read()  # the old version, nothing, or (killed late) the new one, whole
        if after is None:
            assert not existed
        else:
            assert target.same(after, reader.expected)

        materialise(kill.root, RERUN_ASSETS, slide_id)  # the re-run
        assert target.same(target.read(), reader.expected)
        assert target.temporaries() == []
        ours, theirs = _snapshot(kill.root, copied_from=reference), _snapshot(reference)
        assert [k for k in theirs if ours.get(k) != theirs[k]] == []
