"""`nucleus-subtyping`: run the whole chain, or one piece of it, without opening the UI.

`demo` materialises every asset of the project in dependency order on the data root
(default `./data`): unpartitioned assets once, slide-partitioned assets once per slide
(in parallel worker processes), fold-partitioned assets once per fold. It uses the same
Dagster instance as `dg dev` (DAGSTER_HOME, default `data/.dagster`), so every run shows
up in the UI afterwards.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from dagster_project.instance import ensure_dagster_home
from dagster_project.resources import DATA_ROOT_ENV
from storage.fs import as_path, is_remote

PROFILES = ("demo", "paper")
# Per-step logs stay in the Dagster instance (see them in the UI); the terminal shows problems only.
LOG_LEVEL = os.environ.get("NUCLEUS_SUBTYPING_LOG_LEVEL", "WARNING")


@dataclass(frozen=True)
class Stage:
    """Consecutive assets (in topological order) that share one partitioning."""

    partitions: str | None  # None, or the partitions definition's name ("slides", "folds")
    asset_keys: tuple[str, ...]


def _partitions_name(partitions_def) -> str | None:
    if partitions_def is None:
        return None
    return getattr(partitions_def, "name", None) or "folds"


def plan_stages(loaded_defs) -> list[Stage]:
    """Group the asset graph into stages: a stage runs after every stage before it."""
    graph = loaded_defs.resolve_asset_graph()
    stages: list[Stage] = []
    for level in graph.toposorted_asset_keys_by_level:
        for key in sorted(level, key=lambda k: k.to_user_string()):
            if not graph.get(key).is_materializable:
                continue
            name = _partitions_name(graph.get(key).partitions_def)
            if stages and stages[-1].partitions == name:
                stages[-1] = Stage(name, (*stages[-1].asset_keys, key.to_user_string()))
            else:
                stages.append(Stage(name, (key.to_user_string(),)))
    return stages


_WORKER_DEFS = None


def _load_defs():
    from dagster_project.definitions import defs

    return defs()


def _run_stage(
    stage: Stage, partition_key: str | None, run_config: dict
) -> tuple[str, bool, float]:
    """Execute one stage (for one partition) in this process against the shared instance."""
    import dagster as dg

    global _WORKER_DEFS
    if _WORKER_DEFS is None:
        _WORKER_DEFS = _load_defs()
    keys = [dg.AssetKey.from_user_string(k) for k in stage.asset_keys]
    job_name = "demo__" + "__".join(k.replace("/", "_") for k in stage.asset_keys)[:200]
    job = dg.define_asset_job(job_name, selection=dg.AssetSelection.assets(*keys))
    merged = dg.Definitions.merge(_WORKER_DEFS, dg.Definitions(jobs=[job]))
    started = time.perf_counter()
    ops = {k: v for k, v in run_config.get("ops", {}).items() if k in stage.asset_keys}
    result = merged.resolve_job_def(job_name).execute_in_process(
        instance=dg.DagsterInstance.get(),
        partition_key=partition_key,
        run_config={"ops": ops, "loggers": {"console": {"config": {"log_level": LOG_LEVEL}}}},
        raise_on_error=False,
    )
    return partition_key or "-", result.success, time.perf_counter() - started


def _partition_keys(stage: Stage, loaded_defs) -> list[str | None]:
    import dagster as dg

    if stage.partitions is None:
        return [None]
    graph = loaded_defs.resolve_asset_graph()
    partitions_def = graph.get(dg.AssetKey.from_user_string(stage.asset_keys[0])).partitions_def
    instance = dg.DagsterInstance.get()
    return list(partitions_def.get_partition_keys(dynamic_partitions_store=instance))


def run_all(
    profile: str = "demo",
    workers: int = 2,
    only: Sequence[str] = (),
    op_config: dict | None = None,
) -> int:
    """Materialise every asset (or those named in `only`) in dependency order; 0 on success.

    `op_config` ({asset_key: {"config": {...}}}) overrides the profile's settings per asset.
    """
    from dagster_project.profiles import run_config_for

    loaded = _load_defs()
    run_config = run_config_for(profile)
    if op_config:
        run_config = {"ops": {**run_config.get("ops", {}), **op_config}}
    stages = plan_stages(loaded)
    if only:
        stages = [
            Stage(s.partitions, tuple(k for k in s.asset_keys if k in only)) for s in stages
        ]
        stages = [s for s in stages if s.asset_keys]
    total = time.perf_counter()
    for stage in stages:
        keys = _partition_keys(stage, loaded)
        label = ", ".join(stage.asset_keys)
        elapsed = time.perf_counter() - total
        print(f"[{elapsed:7.1f}s] {label}: {len(keys)} partition(s)", flush=True)
        if not keys:
            continue
        if len(keys) == 1 or workers <= 1:
            results = [_run_stage(stage, k, run_config) for k in keys]
        else:
            # spawn, not fork: a forked copy of a process that already runs Dagster's threads
            # can deadlock on a lock held by a thread that does not exist in the child.
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(min(workers, len(keys)), mp_context=context) as pool:
                results = list(pool.map(_run_stage, [stage] * len(keys), keys,
                                        [run_config] * len(keys)))
        failed = [k for k, ok, _ in results if not ok]
        if failed:
            print(f"FAILED {label} for partition(s): {', '.join(failed)}. "
                  "Open the UI (`dg dev`) to read the run's logs.", file=sys.stderr)
            return 1
    print(f"Done in {time.perf_counter() - total:.1f}s. Outputs are under "
          f"{os.environ.get(DATA_ROOT_ENV, 'data')}/.", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nucleus-subtyping", description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None,
                        help=f"data root (default ./data, or ${DATA_ROOT_ENV})")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="materialise every asset on the data root, in order")
    demo.add_argument("--profile", choices=PROFILES, default="demo",
                      help="demo: minutes on a laptop CPU; paper: the paper's settings")
    demo.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                      help="processes for slide partitions (default: up to 2)")
    demo.add_argument("--only", nargs="*", default=(),
                      help="materialise only these asset keys (still in dependency order)")
    args = parser.parse_args(argv)
    if args.data:
        root = as_path(args.data)
        os.environ[DATA_ROOT_ENV] = str(root if is_remote(root) else root.resolve())
    ensure_dagster_home()
    if args.command == "demo":
        return run_all(args.profile, args.workers, args.only)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
