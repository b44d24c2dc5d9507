"""Run the whole chain, or part of it, as Dagster runs on the project's instance.

The asset graph is cut into stages (assets that share one partitioning, each stage after every
stage holding one of its inputs). Each stage becomes one Dagster run per partition, submitted to
the instance's run queue and launched by Dagster (see `run_queue`), recorded in the instance
with its logs (open it with `dg dev`). The queue runs up to `workers` of them at once; a
`gpu`-pool step (classifier folds, inference) waits for the pool's single slot.

A failure stops only what depends on it: a slide that fails a stage is skipped in that slide's
later stages, and cohort-wide stages run on the slides that are complete and name the missing
ones. Failed asset checks of ERROR severity count as failures; WARN ones are listed.
`run_stages` returns a `ChainSummary` to print.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import dagster as dg

from dagster_project.run_queue import FailedCheck, RunQueue, RunResult, execution_config

# Per-step logs stay in the Dagster instance (see them in the UI); the terminal shows problems only.
LOG_LEVEL = os.environ.get("NUCLEUS_SUBTYPING_LOG_LEVEL", "WARNING")
POLL_S = 0.5
IDLE_TICK_S = 5.0
STAGE_TAG = "nucleus-subtyping/stage"


@dataclass(frozen=True)
class Stage:
    """Consecutive assets (in topological order) that share one partitioning."""

    partitions: str | None  # None, or the partitions definition's name ("slides", "folds")
    asset_keys: tuple[str, ...]

    @property
    def label(self) -> str:
        return ", ".join(self.asset_keys)


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


def config_parents(run_config: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """Inputs a run's config adds to the asset graph: virtual H&E rendered by the CycleGAN
    reads its checkpoint, so with `backend: cyclegan` `cyclegan_model` is trained first."""
    vhe = ((run_config.get("ops") or {}).get("virtual_he") or {}).get("config") or {}
    return {"virtual_he": ("cyclegan_model",)} if vhe.get("backend") == "cyclegan" else {}


def plan_stages(
    loaded_defs, extra_parents: Mapping[str, Sequence[str]] | None = None
) -> list[Stage]:
    """Group the asset graph into stages: a stage runs after every stage before it.

    Assets are taken in dependency order (the graph's, plus `extra_parents`, inputs that only
    the run config creates: see `config_parents`); each joins the first stage of its
    partitioning that comes at or after every stage holding one of its inputs, or starts a new
    stage at the end. So an asset beside the main chain (a model trained on the slides, the
    real H&E slides' chain) never cuts a run of slide stages in two, unless the config makes
    the chain read it.
    """
    graph = loaded_defs.resolve_asset_graph()
    extra = {dg.AssetKey.from_user_string(k): {dg.AssetKey.from_user_string(p) for p in v}
             for k, v in (extra_parents or {}).items()}
    keys = [k for level in graph.toposorted_asset_keys_by_level
            for k in sorted(level, key=lambda k: k.to_user_string())]
    parents = {k: set(graph.get(k).parent_keys) | extra.get(k, set()) for k in keys}
    stages: list[Stage] = []
    where: dict[str, int] = {}
    done: set[dg.AssetKey] = set()
    pending = list(keys)
    while pending:
        key = next((k for k in pending if all(p in done or p not in parents
                                              for p in parents[k])), None)
        if key is None:
            raise ValueError(f"The assets {[k.to_user_string() for k in pending]} depend on "
                             "each other in a cycle once the run config's inputs are added.")
        pending.remove(key)
        done.add(key)
        node = graph.get(key)
        if not node.is_materializable:
            continue
        name = _partitions_name(node.partitions_def)
        after = max((where[p.to_user_string()] for p in parents[key]
                     if p.to_user_string() in where), default=0)
        index = next((i for i in range(after, len(stages)) if stages[i].partitions == name),
                     None)
        if index is None:
            stages.append(Stage(name, (key.to_user_string(),)))
            index = len(stages) - 1
        else:
            stages[index] = Stage(name, (*stages[index].asset_keys, key.to_user_string()))
        where[key.to_user_string()] = index
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


_STOP = threading.Event()


def _interrupt(signum, frame) -> None:
    """Noted, and acted on between two polls of the queue: an exception raised in the middle of
    a call to the code server would leave that call, and the cancellation after it, broken."""
    _STOP.set()


def _stop_requested() -> None:
    if _STOP.is_set():
        _STOP.clear()
        raise KeyboardInterrupt("SIGTERM")


def stop_on_sigterm() -> None:
    """Terminate (the UI's, `timeout`'s, a scheduler's SIGTERM) ends a chain run in seconds:
    `run_stages` cancels the runs it submitted on the way out."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


def _partition_keys(stage: Stage, loaded_defs, instance) -> list[str | None]:
    import dagster as dg

    if stage.partitions is None:
        return [None]
    graph = loaded_defs.resolve_asset_graph()
    partitions_def = graph.get(dg.AssetKey.from_user_string(stage.asset_keys[0])).partitions_def
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
) -> ChainSummary:
    """Run every stage in order, each partition as its own queued Dagster run; never stop
    early. An interrupt (Ctrl-C, SIGTERM) cancels the runs in flight, then propagates."""
    loaded = loaded_defs if loaded_defs is not None else load_definitions()
    ledger = Ledger(loaded)
    only_slides = set(slides)
    config = {**run_config, **execution_config(),
              "loggers": {"console": {"config": {"log_level": LOG_LEVEL}}}}
    summary = ChainSummary()
    started = time.perf_counter()
    with RunQueue.open(workers) as queue:
        for stage in stages:
            _stop_requested()
            keys = _partition_keys(stage, loaded, queue.instance)
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
                                                     if outcome.skipped else ""),
                  file=out, flush=True)
            stage_started = time.perf_counter()
            stage_config = {**config, "ops": {k: v for k, v in run_config.get("ops", {}).items()
                                              if k in stage.asset_keys}}
            results = _run_stage(queue, stage, runnable, stage_config,
                                 Progress(stage.label, len(runnable), out))
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


def _run_stage(queue: RunQueue, stage: Stage, partitions: Sequence[str | None], run_config: dict,
               progress: Progress) -> list[RunResult]:
    """Submit one run per partition, let the queue launch them, collect them as they end."""
    tags = {STAGE_TAG: stage.label[:200]}
    submitted: dict[str, str | None] = {}
    try:
        for partition in partitions:
            _stop_requested()
            submitted[queue.submit(stage.asset_keys, partition, run_config, tags)] = partition
        results: dict[str, RunResult] = {}
        last_tick = float("-inf")
        changed = True  # runs were just queued
        while len(results) < len(submitted):
            _stop_requested()
            # The queue can only start a run when one was queued or one ended (a slot freed);
            # otherwise a tick now and then is enough, and the poll costs one query.
            if changed or time.monotonic() - last_tick >= IDLE_TICK_S:
                queue.tick()
                last_tick = time.monotonic()
            pending = [r for r in submitted if r not in results]
            ended = queue.ended_among(pending)
            for run_id in ended:
                results[run_id] = queue.result(run_id, stage.asset_keys, submitted[run_id])
                progress.step(results[run_id].success)
            changed = bool(ended)
            if len(results) < len(submitted):
                time.sleep(POLL_S)
    except BaseException:
        queue.cancel(list(submitted))
        _wait_for_end(queue, list(submitted))
        raise
    return [results[run_id] for run_id in submitted]


def _wait_for_end(queue: RunQueue, run_ids: Sequence[str], timeout_s: float = 15.0) -> None:
    """Give canceled runs a moment to stop and be recorded as canceled."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not all(queue.ended(r) for r in run_ids):
        time.sleep(POLL_S)
