"""Run the whole chain, or part of it, as Dagster runs on the project's instance.

The asset graph is cut into stages (consecutive assets that share one partitioning). Each stage
becomes one Dagster run per partition, recorded in the instance with its logs (open it with
`dg dev`). Up to `workers` runs of a slide stage execute at once, in worker processes; a stage
with a pooled step (the `gpu` pool: classifier folds, inference) runs one partition at a time.

A failure stops only what depends on it: a slide that fails a stage is skipped in that slide's
later stages, and cohort-wide stages run on the slides that are complete and name the missing
ones. Failed asset checks of ERROR severity count as failures; WARN ones are listed.
`run_stages` returns a `ChainSummary` to print.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import TextIO

DEFINITIONS_MODULE = "dagster_project.definitions"
DEFINITIONS_ATTRIBUTE = "defs"
ASSET_JOB = "__ASSET_JOB"
# Per-step logs stay in the Dagster instance (see them in the UI); the terminal shows problems only.
LOG_LEVEL = os.environ.get("NUCLEUS_SUBTYPING_LOG_LEVEL", "WARNING")


@dataclass(frozen=True)
class Stage:
    """Consecutive assets (in topological order) that share one partitioning."""

    partitions: str | None  # None, or the partitions definition's name ("slides", "folds")
    asset_keys: tuple[str, ...]

    @property
    def label(self) -> str:
        return ", ".join(self.asset_keys)


@dataclass(frozen=True)
class FailedCheck:
    asset_key: str
    check_name: str
    partition: str | None
    message: str
    warning: bool = False  # a WARN-severity check: listed, but the run still succeeds


@dataclass
class StageOutcome:
    """What happened to each partition of one stage (`-` stands for an unpartitioned stage)."""

    stage: Stage
    succeeded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # partition -> why
    missing_slides: list[str] = field(default_factory=list)  # cohort stages: slides left out
    failed_run_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class ChainSummary:
    stages: list[StageOutcome] = field(default_factory=list)
    failed_checks: list[FailedCheck] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (not any(not c.warning for c in self.failed_checks)
                and all(not s.failed for s in self.stages))

    def render(self) -> str:
        lines = [f"Summary ({self.seconds:.1f}s):"]
        for outcome in self.stages:
            parts = [f"{len(outcome.succeeded)} succeeded ({outcome.seconds:.0f}s)"]
            if outcome.failed:
                parts.append(f"{len(outcome.failed)} FAILED ({', '.join(outcome.failed)})")
            if outcome.skipped:
                parts.append(f"{len(outcome.skipped)} skipped")
            lines.append(f"  {outcome.stage.label}: {'; '.join(parts)}")
            if outcome.missing_slides:
                lines.append(f"    ran without slide(s) {', '.join(outcome.missing_slides)}, "
                             "which failed an earlier stage")
            by_reason: dict[str, list[str]] = {}
            for key, why in outcome.skipped.items():
                by_reason.setdefault(why, []).append(key)
            for why, keys in by_reason.items():
                lines.append(f"    skipped {', '.join(keys)}: {why}")
        for check in self.failed_checks:
            where = f"[{check.partition}]" if check.partition else ""
            kind = "WARNING, CHECK" if check.warning else "FAILED CHECK"
            lines.append(f"  {kind} {check.asset_key}{where} {check.check_name}: "
                         f"{check.message}")
        run_ids = [r for s in self.stages for r in s.failed_run_ids]
        if run_ids:
            lines.append("  Read the failed runs' logs in the UI (`make ui`, or `dg dev` with "
                         f"DAGSTER_HOME={os.environ.get('DAGSTER_HOME', '')}); run ids: "
                         + ", ".join(run_ids))
        lines.append("Done." if self.ok else "FAILED: see above.")
        return "\n".join(lines)


def _partitions_name(partitions_def) -> str | None:
    if partitions_def is None:
        return None
    return getattr(partitions_def, "name", None) or "folds"


# Partitionings of side chains (the real H&E slides'): planned after the main chain, each asset
# joining a stage of its partitioning at or after its inputs, so they never cut a main stage.
SIDE_PARTITIONS: tuple[str, ...] = ("he_slides",)


def plan_stages(loaded_defs) -> list[Stage]:
    """Group the asset graph into stages: a stage runs after every stage before it."""
    graph = loaded_defs.resolve_asset_graph()
    stages: list[Stage] = []
    side = []
    for level in graph.toposorted_asset_keys_by_level:
        for key in sorted(level, key=lambda k: k.to_user_string()):
            if not graph.get(key).is_materializable:
                continue
            name = _partitions_name(graph.get(key).partitions_def)
            if name in SIDE_PARTITIONS:
                side.append((key, name))
            elif stages and stages[-1].partitions == name:
                stages[-1] = Stage(name, (*stages[-1].asset_keys, key.to_user_string()))
            else:
                stages.append(Stage(name, (key.to_user_string(),)))
    for key, name in side:
        parents = {p.to_user_string() for p in graph.get(key).parent_keys}
        after = max((i for i, st in enumerate(stages) if parents & set(st.asset_keys)),
                    default=-1)
        joinable = [i for i, st in enumerate(stages) if st.partitions == name and i >= after]
        if joinable:
            stage = stages[joinable[0]]
            stages[joinable[0]] = Stage(name, (*stage.asset_keys, key.to_user_string()))
        else:
            stages.insert(after + 1, Stage(name, (key.to_user_string(),)))
    return stages


def load_definitions():
    from dagster_project.definitions import defs

    return defs()


class Progress:
    """Partitions done / total, elapsed and an estimate of what is left, per stage.

    A terminal gets one line redrawn in place; anything else (CI, a log file) gets plain lines,
    at most one every `every_s` seconds.
    """

    def __init__(self, label: str, total: int, out: TextIO = sys.stdout, every_s: float = 15.0):
        self.label, self.total, self.out, self.every_s = label, total, out, every_s
        self.done, self.failed = 0, 0
        self.started = self._last = time.perf_counter()
        self.tty = out.isatty()
        self._lock = threading.Lock()

    def step(self, ok: bool) -> None:
        with self._lock:
            self.done += 1
            self.failed += 0 if ok else 1
            now = time.perf_counter()
            if self.tty or self.done == self.total or now - self._last >= self.every_s:
                self._last = now
                self._print(now)

    def _print(self, now: float) -> None:
        elapsed = now - self.started
        left = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        width = 24
        filled = int(width * self.done / max(self.total, 1))
        bar = "#" * filled + "-" * (width - filled)
        failed = f", {self.failed} failed" if self.failed else ""
        text = (f"  {self.label}: {self.done}/{self.total}{failed}, {elapsed:.0f}s elapsed, "
                f"~{left:.0f}s left")
        if self.tty:
            end = "\n" if self.done == self.total else ""
            self.out.write(f"\r  [{bar}]{text}{end}")
        else:
            self.out.write(text + "\n")
        self.out.flush()


@dataclass(frozen=True)
class RunResult:
    partition: str | None
    succeeded_assets: frozenset[str]
    run_id: str
    success: bool
    failed_checks: tuple[FailedCheck, ...]


_WORKER_DEFS = None


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _worker_init() -> None:
    """A worker stops like the CLI does: SIGTERM interrupts its run (Dagster records the run as
    ended), and it is sent SIGTERM if the CLI dies without a word (SIGKILL)."""
    signal.signal(signal.SIGTERM, _interrupt)
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _stop_workers(signum, frame) -> None:
    """SIGTERM to the CLI: stop every worker's run, then interrupt the CLI itself."""
    for child in multiprocessing.active_children():
        child.terminate()
    raise KeyboardInterrupt(f"signal {signum}")


def stop_on_sigterm() -> None:
    """Terminate (the UI's, `timeout`'s, a scheduler's SIGTERM) ends a chain run in seconds."""
    signal.signal(signal.SIGTERM, _stop_workers)


def _execute(stage: Stage, partition: str | None, run_config: dict) -> RunResult:
    """One Dagster run on the instance: the stage's assets for one partition."""
    import dagster as dg

    global _WORKER_DEFS
    if _WORKER_DEFS is None:
        _WORKER_DEFS = load_definitions()
    keys = [dg.AssetKey.from_user_string(k) for k in stage.asset_keys]
    job_name = "chain__" + "__".join(k.replace("/", "_") for k in stage.asset_keys)[:200]
    job = dg.define_asset_job(job_name, selection=dg.AssetSelection.assets(*keys),
                              tags={"nucleus-subtyping/stage": stage.label[:200]})
    merged = dg.Definitions.merge(_WORKER_DEFS, dg.Definitions(jobs=[job]))
    result = merged.resolve_job_def(job_name).execute_in_process(
        instance=dg.DagsterInstance.get(), partition_key=partition, run_config=run_config,
        raise_on_error=False)
    done = {e.step_key for e in result.get_step_success_events() if e.step_key}
    succeeded = frozenset(k for k in stage.asset_keys
                          if dg.AssetKey.from_user_string(k).to_python_identifier() in done)
    checks = tuple(
        FailedCheck(e.asset_key.to_user_string(), e.check_name, e.partition or partition,
                    e.description or _check_message(e.metadata),
                    warning=e.severity == dg.AssetCheckSeverity.WARN)
        for e in result.get_asset_check_evaluations() if not e.passed)
    return RunResult(partition, succeeded, result.run_id, result.success, checks)


def _one_at_a_time(stage: Stage, loaded_defs) -> bool:
    """A stage holding a pooled step (the `gpu` pool: classifier folds, inference) runs its
    partitions one after another, as the instance's pool limit of one step asks."""
    import dagster as dg

    graph = loaded_defs.resolve_asset_graph()
    return any(graph.get(dg.AssetKey.from_user_string(k)).pools for k in stage.asset_keys)


def _check_message(metadata: Mapping) -> str:
    return "; ".join(f"{k}={getattr(v, 'value', v)}" for k, v in metadata.items())[:300] or "-"


def _partition_keys(stage: Stage, loaded_defs) -> list[str | None]:
    import dagster as dg

    if stage.partitions is None:
        return [None]
    graph = loaded_defs.resolve_asset_graph()
    partitions_def = graph.get(dg.AssetKey.from_user_string(stage.asset_keys[0])).partitions_def
    instance = dg.DagsterInstance.get()
    return list(partitions_def.get_partition_keys(dynamic_partitions_store=instance))


class Ledger:
    """Which (asset, partition) pairs succeeded so far, to decide what a later stage may run."""

    def __init__(self, loaded_defs) -> None:
        self.graph = loaded_defs.resolve_asset_graph()
        self.ran: dict[str, dict[str | None, bool]] = {}

    def record(self, stage: Stage, result: RunResult) -> None:
        for key in stage.asset_keys:
            self.ran.setdefault(key, {})[result.partition] = key in result.succeeded_assets

    def _parents(self, key: str) -> list[tuple[str, str | None]]:
        import dagster as dg

        node = self.graph.get(dg.AssetKey.from_user_string(key))
        out = []
        for parent in node.parent_keys:
            if parent.to_user_string() in self.ran:
                out.append((parent.to_user_string(),
                            _partitions_name(self.graph.get(parent).partitions_def)))
        return out

    def blocked_by(self, stage: Stage, partition: str | None) -> str | None:
        """Why this partition of the stage cannot run (a failed input), or None."""
        for key in stage.asset_keys:
            for parent, parent_partitions in self._parents(key):
                outcomes = self.ran[parent]
                if parent_partitions is None:
                    if not outcomes.get(None, False):
                        return f"{parent} did not succeed"
                elif parent_partitions == stage.partitions:
                    if partition in outcomes and not outcomes[partition]:
                        return f"{parent} did not succeed for {partition}"
                elif outcomes and not any(outcomes.values()):
                    return f"{parent} succeeded for no partition"
        return None

    def missing_slides(self, stage: Stage) -> list[str]:
        """Slides a cohort-wide stage runs without: they failed a slide stage it reads."""
        missing: set[str] = set()
        for key in stage.asset_keys:
            for parent, parent_partitions in self._parents(key):
                if parent_partitions == "slides" and stage.partitions != "slides":
                    missing |= {p for p, ok in self.ran[parent].items() if not ok and p}
        return sorted(missing)


def run_stages(
    stages: Sequence[Stage],
    run_config: dict,
    workers: int = 2,
    slides: Iterable[str] = (),
    loaded_defs=None,
    out: TextIO = sys.stdout,
    execute: Callable[[Stage, str | None, dict], RunResult] = _execute,
) -> ChainSummary:
    """Run every stage in order, each partition as its own Dagster run; never stop early."""
    loaded = loaded_defs if loaded_defs is not None else load_definitions()
    ledger = Ledger(loaded)
    only_slides = set(slides)
    config = {**run_config,
              "loggers": {"console": {"config": {"log_level": LOG_LEVEL}}}}
    summary = ChainSummary()
    started = time.perf_counter()
    for stage in stages:
        keys = _partition_keys(stage, loaded)
        if only_slides and stage.partitions == "slides":
            keys = [k for k in keys if k in only_slides]
        outcome = StageOutcome(stage, missing_slides=ledger.missing_slides(stage))
        summary.stages.append(outcome)
        runnable = []
        for key in keys:
            why = ledger.blocked_by(stage, key)
            if why:
                outcome.skipped[key or "-"] = why
                ledger.record(stage, RunResult(key, frozenset(), "", False, ()))
            else:
                runnable.append(key)
        print(f"[{time.perf_counter() - started:7.1f}s] {stage.label}: "
              f"{len(runnable)} partition(s)" + (f", {len(outcome.skipped)} skipped"
                                                 if outcome.skipped else ""), file=out, flush=True)
        stage_started = time.perf_counter()
        progress = Progress(stage.label, len(runnable), out)
        stage_config = {**config, "ops": {k: v for k, v in run_config.get("ops", {}).items()
                                          if k in stage.asset_keys}}

        def run_one(key: str | None, stage=stage, stage_config=stage_config, progress=progress):
            result = execute(stage, key, stage_config)
            progress.step(result.success)
            return result

        if len(runnable) <= 1 or workers <= 1 or _one_at_a_time(stage, loaded):
            results = [run_one(k) for k in runnable]
        else:
            # spawn, not fork: a forked copy of a process that already runs Dagster's threads
            # can deadlock on a lock held by a thread that does not exist in the child.
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(min(workers, len(runnable)), mp_context=context,
                                     initializer=_worker_init) as pool:
                results = []
                for result in pool.map(execute, [stage] * len(runnable), runnable,
                                       [stage_config] * len(runnable)):
                    progress.step(result.success)
                    results.append(result)
        for result in results:
            ledger.record(stage, result)
            name = result.partition or "-"
            if result.success:
                outcome.succeeded.append(name)
            else:
                outcome.failed.append(name)
                outcome.failed_run_ids.append(result.run_id)
            summary.failed_checks.extend(result.failed_checks)
        outcome.seconds = time.perf_counter() - stage_started
    summary.seconds = time.perf_counter() - started
    return summary
