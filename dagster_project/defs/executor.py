"""Which engine runs the steps of a run: Dagster's own, chosen by one environment variable.

Unset (default): Dagster's multiprocess executor on this machine. `NUCLEUS_SUBTYPING_EXECUTOR=k8s`:
every step (one slide partition of one asset, one fold) becomes its own Kubernetes job through
`dagster_k8s.k8s_job_executor`; GPU steps carry `dagster-k8s/config` tags asking for a GPU node.
"""

import os

import dagster as dg

EXECUTOR_ENV = "NUCLEUS_SUBTYPING_EXECUTOR"


@dg.definitions
def executor() -> dg.Definitions:
    choice = os.environ.get(EXECUTOR_ENV, "").strip().lower()
    if choice in ("", "multiprocess"):
        return dg.Definitions()
    if choice == "k8s":
        from dagster_k8s import k8s_job_executor

        return dg.Definitions(executor=k8s_job_executor.configured({"max_concurrent": 32}))
    raise ValueError(f"{EXECUTOR_ENV}={choice!r} is not known; use 'k8s' or leave it unset.")
