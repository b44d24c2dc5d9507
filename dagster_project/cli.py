"""`nucleus-subtyping`: run the whole chain, or one piece of it, without opening the UI.

`demo` materialises every asset of the project in dependency order on the data root
(default `./data`): unpartitioned assets once, slide-partitioned assets once per slide
(up to --workers runs at once, through the instance's run queue), fold-partitioned assets once
per fold, one at a time (the `gpu` pool). A slide that fails is skipped in its later stages
while the others go on; the run ends with a summary per stage and of every failed check, and
exits non-zero when anything failed.
It uses the same Dagster instance as `dg dev` (DAGSTER_HOME, default `data/.dagster`), so
every run shows up in the UI afterwards.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from dagster_project.instance import ensure_dagster_home
from dagster_project.profiles import NOT_IN_DEMO
from dagster_project.resources import DATA_ROOT_ENV, default_data_root
from dagster_project.runner import (
    Stage,
    config_parents,
    load_definitions,
    plan_stages,
    run_stages,
    stop_on_sigterm,
)
from storage.fs import as_path, is_remote
from storage.layout import DataLayout

PROFILES = ("demo", "paper")


def run_all(
    profile: str = "demo",
    workers: int = 2,
    only: Sequence[str] = (),
    op_config: dict | None = None,
    slides: Sequence[str] = (),
    out: TextIO = sys.stdout,
    resources: dict | None = None,
    exclude: Sequence[str] = (),
) -> int:
    """Materialise every asset (or those named in `only`) in dependency order; 0 on success.

    `op_config` ({asset_key: {"config": {...}}}) overrides the profile's settings per asset;
    `slides` limits the slide-partitioned stages to those slides; `resources` is the run
    config's `resources:` section; `exclude` leaves assets out of a full run.
    """
    from dagster_project.profiles import run_config_for

    loaded = load_definitions()
    run_config = run_config_for(profile)
    if op_config:
        run_config = {**run_config, "ops": {**run_config.get("ops", {}), **op_config}}
    if resources:
        run_config = {**run_config, "resources": resources}
    stages = plan_stages(loaded, config_parents(run_config))
    known = {k for s in stages for k in s.asset_keys}
    if op_config and set(op_config) - known:
        print(f"Run config names unknown asset(s) {', '.join(sorted(set(op_config) - known))}; "
              f"the assets are: {', '.join(sorted(known))}.", file=sys.stderr)
        return 2
    if only:
        unknown = sorted(set(only) - {k for s in stages for k in s.asset_keys})
        if unknown:
            known = ", ".join(k for s in stages for k in s.asset_keys)
            print(f"Unknown asset(s) {', '.join(unknown)}; the assets are: {known}.",
                  file=sys.stderr)
            return 2
        stages = [Stage(s.partitions, tuple(k for k in s.asset_keys if k in only))
                  for s in stages]
        stages = [s for s in stages if s.asset_keys]
    elif exclude:
        stages = [Stage(s.partitions, tuple(k for k in s.asset_keys if k not in exclude))
                  for s in stages]
        stages = [s for s in stages if s.asset_keys]
    summary = run_stages(stages, run_config, workers=workers, slides=slides,
                         loaded_defs=loaded, out=out)
    print(summary.render(), file=out if summary.ok else sys.stderr, flush=True)
    if summary.ok:
        print(f"Outputs are under {DataLayout(default_data_root()).root}/.", file=out)
    return 0 if summary.ok else 1


def read_op_config(path: Path) -> dict:
    """The `ops:` section of a YAML/JSON run config file; Dagster validates the values."""
    from dagster_project.cohort_config import CohortConfigError, read_yaml_mapping

    try:
        loaded = read_yaml_mapping(path, "Run config")
    except CohortConfigError as exc:
        raise SystemExit(str(exc)) from None
    unknown = sorted(set(loaded) - {"ops"})
    if unknown:
        raise SystemExit(f"Run config {path}: unknown top-level key(s) {', '.join(unknown)}; "
                         "only `ops` is read.")
    return dict(loaded.get("ops") or {})


def _run_cohort(args: argparse.Namespace) -> int:
    from dagster_project.cohort_config import (
        NOT_FOR_REAL_COHORTS,
        CohortConfigError,
        load_cohort_config,
        run_config,
    )

    try:
        cohort = load_cohort_config(args.config)
    except CohortConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    os.environ[DATA_ROOT_ENV] = cohort.data_root
    ensure_dagster_home()
    config = run_config(cohort)
    profile = cohort.training.profile
    only = args.only if args.only is not None else cohort.run.only
    slides = args.slides if args.slides is not None else cohort.run.slides
    return run_all(profile, cohort.run.workers, only, op_config=config["ops"], slides=slides,
                   resources=config["resources"], exclude=NOT_FOR_REAL_COHORTS)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nucleus-subtyping", description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None,
                        help=f"data root (default ./data, or ${DATA_ROOT_ENV})")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="materialise every asset on the data root, in order")
    demo.add_argument("--profile", choices=PROFILES, default="demo",
                      help="demo: minutes on a laptop CPU; paper: the paper's settings")
    demo.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                      help="Dagster runs at once, e.g. slides (default: up to 2)")
    demo.add_argument("--only", nargs="*", default=(),
                      help="materialise only these asset keys (still in dependency order)")
    demo.add_argument("--run-config", type=Path, default=None, metavar="FILE",
                      help="YAML or JSON run config (`ops: {asset: {config: {...}}}`) "
                           "overriding the profile's settings per asset")
    demo.add_argument("--slides", nargs="*", default=(),
                      help="run the slide stages for these slide ids only")
    run = sub.add_parser("run", help="run a real cohort from one typed config file")
    run.add_argument("--config", type=Path, required=True, metavar="COHORT_YAML",
                     help="the cohort file (see dagster_project/cohort_config.py and "
                          "docs/real-slides.md)")
    run.add_argument("--only", nargs="*", default=None,
                     help="materialise only these asset keys (overrides run.only)")
    run.add_argument("--slides", nargs="*", default=None,
                     help="run the slide stages for these slide ids only (overrides run.slides)")
    args = parser.parse_args(argv)
    stop_on_sigterm()
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        print("Interrupted: the runs in flight were stopped; re-run to continue where it ended.",
              file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        return _run_cohort(args)
    if args.data:
        root = as_path(args.data)
        os.environ[DATA_ROOT_ENV] = str(root if is_remote(root) else root.resolve())
    ensure_dagster_home()
    if args.command == "demo":
        op_config = read_op_config(args.run_config) if args.run_config else None
        return run_all(args.profile, args.workers, args.only, op_config=op_config,
                       slides=args.slides, exclude=NOT_IN_DEMO if args.profile == "demo" else ())
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
