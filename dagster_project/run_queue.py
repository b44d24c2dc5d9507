"""The CLI's runs go where the UI's go: into the instance's run queue, launched by Dagster.

A chain run submits, per stage and partition, a run of the implicit asset job for that stage's
assets, exactly as the UI's Materialize button does. The instance's queued run coordinator
holds it; Dagster's own queue daemon (ticked here, so no `dagster-daemon` process and none of
its sensors are needed) launches it through the instance's run launcher into a run worker
process of the code location's server. So:
- how many runs execute at once is the queue's `concurrency.runs.max_concurrent_runs` (the
  CLI's `--workers` sets it for its own runs);
- a `gpu`-pool step (classifier folds, inference) waits for the pool's one slot, across runs,
  and the queue does not start a run whose first pooled step has no free slot;
- every run, with its logs, is in the instance that `dg dev` shows.

The engine Dagster's internals ask for (code location, execution plan, queue daemon) is
pinned with dagster==1.13.27.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import yaml
from dagster._core.definitions.selector import JobSubsetSelector
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import ModuleTarget
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
    QueuedRunCoordinatorDaemon,
)

from dagster_project.defs.executor import EXECUTOR_ENV

ASSET_JOB = "__ASSET_JOB"
DEFINITIONS_MODULE = "dagster_project.definitions"
DEFINITIONS_ATTRIBUTE = "defs"
LOCATION_NAME = "nucleus-subtyping"
PARTITION_TAG = "dagster/partition"
ENDED = frozenset({DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE,
                   DagsterRunStatus.CANCELED})


@dataclass(frozen=True)
class FailedCheck:
    asset_key: str
    check_name: str
    partition: str | None
    message: str
    warning: bool = False  # a WARN-severity check: listed, but the run still succeeds


@dataclass(frozen=True)
class RunResult:
    partition: str | None
    succeeded_assets: frozenset[str]
    run_id: str
    success: bool
    failed_checks: tuple[FailedCheck, ...]


def execution_config() -> dict:
    """How a CLI run executes its steps.

    A CLI run is one partition of one stage: for a slide, a chain of steps that depend on each
    other, so the parallelism is across runs (the queue). Dagster's in-process executor runs
    those steps inside the run worker; the multiprocess executor would start a Python process
    per step (on 4 demo slides of 512 px: 221 s against 43 s, 2-core VM, 3 Dec 2026).
    `NUCLEUS_SUBTYPING_EXECUTOR=multiprocess` asks for it anyway; `k8s` keeps the job's own.
    """
    choice = os.environ.get(EXECUTOR_ENV, "").strip().lower()
    if choice == "":
        return {"execution": {"config": {"in_process": {}}}}
    if choice == "multiprocess":
        return {"execution": {"config": {"multiprocess": {}}}}
    return {}


def _instance(workers: int) -> dg.DagsterInstance:
    """The DAGSTER_HOME instance, with the CLI's `workers` as the queue's run limit."""
    home = os.environ["DAGSTER_HOME"]
    path = Path(home) / "dagster.yaml"
    settings = (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}
    concurrency = dict(settings.get("concurrency") or {})
    concurrency["runs"] = {**(concurrency.get("runs") or {}), "max_concurrent_runs": workers}
    return dg.DagsterInstance.from_ref(
        InstanceRef.from_dir(home, overrides={"concurrency": concurrency}))


class RunQueue:
    """Submits stage runs to the instance's queue and follows them to their end."""

    def __init__(self, instance: dg.DagsterInstance, workspace: WorkspaceProcessContext) -> None:
        self.instance = instance
        self.workspace = workspace
        self._daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)
        request = workspace.create_request_context()
        error = request.get_code_location_error(LOCATION_NAME)
        if error:
            raise RuntimeError(f"The project's definitions failed to load:\n{error.to_string()}")
        self._location = request.get_code_location(LOCATION_NAME)
        self._repository = next(iter(self._location.get_repositories()))
        self._asset_graph = request.asset_graph

    @classmethod
    @contextmanager
    def open(cls, workers: int) -> Iterator[RunQueue]:
        """The instance and a code server for the project's definitions, for one chain run."""
        instance = _instance(workers)
        target = ModuleTarget(DEFINITIONS_MODULE, DEFINITIONS_ATTRIBUTE, os.getcwd(),
                              LOCATION_NAME)
        with WorkspaceProcessContext(instance, target, code_server_log_level="WARNING") as ws:
            yield cls(instance, ws)

    def submit(self, asset_keys: Sequence[str], partition: str | None, run_config: Mapping,
               tags: Mapping[str, str]) -> str:
        """Queue one run of the asset job for these assets and this partition."""
        keys = frozenset(dg.AssetKey.from_user_string(k) for k in asset_keys)
        selector = JobSubsetSelector(location_name=self._location.name,
                                     repository_name=self._repository, job_name=ASSET_JOB,
                                     op_selection=None, asset_selection=keys)
        job = self._location.get_job(selector)
        plan = self._location.get_execution_plan(job, run_config, step_keys_to_execute=None,
                                                 known_state=None, instance=self.instance)
        run_tags = {**job.tags, **tags, **({PARTITION_TAG: partition} if partition else {})}
        run = self.instance.create_run(
            job_name=ASSET_JOB, run_id=None, run_config=run_config, resolved_op_selection=None,
            step_keys_to_execute=plan.execution_plan_snapshot.step_keys_to_execute,
            op_selection=None, status=DagsterRunStatus.NOT_STARTED, root_run_id=None,
            parent_run_id=None, tags=run_tags, job_snapshot=job.job_snapshot,
            execution_plan_snapshot=plan.execution_plan_snapshot,
            parent_job_snapshot=job.parent_job_snapshot,
            remote_job_origin=job.get_remote_origin(), job_code_origin=job.get_python_origin(),
            asset_selection=keys, asset_check_selection=None, asset_graph=self._asset_graph)
        self.instance.submit_run(run.run_id, self.workspace.create_request_context())
        return run.run_id

    def tick(self) -> None:
        """One iteration of Dagster's queue daemon: launch what the limits allow."""
        for _ in self._daemon.run_iteration(self.workspace):
            pass

    def ended(self, run_id: str) -> bool:
        run = self.instance.get_run_by_id(run_id)
        return run is not None and run.status in ENDED

    def ended_among(self, run_ids: Sequence[str]) -> list[str]:
        """Those of `run_ids` that have ended, in one query."""
        if not run_ids:
            return []
        runs = self.instance.get_runs(RunsFilter(run_ids=list(run_ids), statuses=list(ENDED)))
        done = {r.run_id for r in runs}
        return [r for r in run_ids if r in done]

    def result(self, run_id: str, asset_keys: Sequence[str], partition: str | None) -> RunResult:
        """What the run did: the assets it materialised and the checks that failed."""
        run = self.instance.get_run_by_id(run_id)
        success = run is not None and run.status == DagsterRunStatus.SUCCESS
        done = {e.dagster_event.step_key
                for e in self.instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
                if e.dagster_event is not None}
        succeeded = frozenset(k for k in asset_keys
                              if dg.AssetKey.from_user_string(k).to_python_identifier() in done)
        checks = []
        for entry in self.instance.all_logs(
                run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
            evaluation = entry.dagster_event.event_specific_data if entry.dagster_event else None
            if evaluation is None or evaluation.passed:
                continue
            checks.append(FailedCheck(
                evaluation.asset_key.to_user_string(), evaluation.check_name,
                evaluation.partition or partition,
                evaluation.description or _check_message(evaluation.metadata),
                warning=evaluation.severity == dg.AssetCheckSeverity.WARN))
        return RunResult(partition, succeeded, run_id, success, tuple(checks))

    def cancel(self, run_ids: Sequence[str]) -> None:
        """Take queued runs off the queue and terminate the running ones (Dagster records
        them as canceled)."""
        for run_id in run_ids:
            try:
                if not self.ended(run_id):
                    self.instance.run_coordinator.cancel_run(run_id)
            except Exception as exc:  # the code server may be gone; the others still get theirs
                print(f"Could not cancel run {run_id}: {exc}", file=sys.stderr)


def _check_message(metadata: Mapping) -> str:
    return "; ".join(f"{k}={getattr(v, 'value', v)}" for k, v in metadata.items())[:300] or "-"
